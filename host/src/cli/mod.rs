//! The command line, one file per group of subcommands:
//!
//! - `up` starts a host and serves it; `new` writes a function crate; `inspect` reads a component; `deployments`
//!   reads a data dir offline;
//! - everything else is a thin client of a running host's admin API ([`admin_client`]): `deploy`, `versions`,
//!   `rollback`, `promote`, `undeploy`, `components`, `send`, `publish`, `invoke`, `queues`, `dead-letters`,
//!   `redrive`, `runs`, `kv`, `logs`, `usage`, `replay`, `nodes`;
//! - `token mint` signs a test token for an authorizer of the host config, offline.

mod admin_client;
mod build;
mod deploy;
mod deployments;
mod functions;
mod inspect;
mod kv;
pub mod logs;
mod new;
mod nodes;
mod queues;
mod secrets;
mod token;
mod up;
mod versions;

use clap::{Parser, Subcommand};

/// edgefn: run WebAssembly edge functions on a machine you own.
#[derive(Debug, Parser)]
#[command(name = "edgefn", version, about)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Serve what was live in the data dir, plus these function crates or components, and take live deploys.
    Up(Box<up::UpArgs>),
    /// Write a new function crate from a template: `edgefn new my-fn --template http`.
    New(new::NewArgs),
    /// Build (a crate) and deploy a component to a running host, as a new version: `edgefn deploy examples/hello`.
    Deploy(Box<deploy::DeployArgs>),
    /// List a component's versions and which one is live.
    Versions(versions::ComponentArgs),
    /// Go back to the previous version (or `--to N`), or end a canary. Nothing compiles.
    Rollback(versions::RollbackArgs),
    /// Make a component's canary its live version.
    Promote(versions::ComponentArgs),
    /// Take a component out of service: its routes answer 404, its triggers stop; versions and queues are kept.
    Undeploy(versions::ComponentArgs),
    /// List what is live on a running host.
    Components(versions::ComponentsArgs),
    /// Print the functions and triggers a component declares, without running it.
    Inspect(inspect::InspectArgs),
    /// List the versions a data dir's database records (offline).
    Deployments(deployments::DeploymentsArgs),
    /// Send a message to a queue of the running host: `edgefn send orders '{"id":1}'`.
    Send(queues::SendArgs),
    /// Publish a message to a topic of the running host.
    Publish(queues::PublishArgs),
    /// Call an `invoke` function with a JSON payload, or fire a cron function now with `--cron`.
    Invoke(functions::InvokeArgs),
    /// Show every queue's ready, in-flight, delayed and dead counts.
    Queues(queues::QueuesArgs),
    /// List a queue's dead letters.
    DeadLetters(queues::QueueArgs),
    /// Move a queue's dead letters back into it.
    Redrive(queues::QueueArgs),
    /// Show a cron function's run history.
    Runs(functions::RunsArgs),
    /// Read and write a running host's key-value stores: `edgefn kv get|set|delete|list STORE ...`.
    Kv(kv::KvArgs),
    /// Sign a test token for an authorizer of the host config: `edgefn token mint --authorizer main --sub ada`.
    Token(token::TokenArgs),
    /// Manage the host key that seals secrets at rest: `edgefn secrets rotate-key` (offline).
    Secrets(secrets::SecretsArgs),
    /// Read the log of a running host (`--follow` to stream it): `edgefn logs --id 4bf92f35...`.
    Logs(logs::LogsArgs),
    /// What functions used (requests, GB-s, CPU), with an estimated bill: `edgefn usage --since 24h`.
    Usage(logs::UsageArgs),
    /// Run a kept failure's input again, on the live version or `--version N`: `edgefn replay 17`.
    Replay(logs::ReplayArgs),
    /// List the members of the host's cluster, with their live versions and load.
    Nodes(nodes::NodesArgs),
}

impl Cli {
    /// Runs the chosen subcommand to completion.
    pub fn run(self) -> anyhow::Result<()> {
        match self.command {
            Command::Up(args) => up::run(*args),
            Command::New(args) => new::run(args),
            Command::Deploy(args) => deploy::run(*args),
            Command::Versions(args) => versions::versions(args),
            Command::Rollback(args) => versions::rollback(args),
            Command::Promote(args) => versions::promote(args),
            Command::Undeploy(args) => versions::undeploy(args),
            Command::Components(args) => versions::components(args),
            Command::Inspect(args) => inspect::run(args),
            Command::Deployments(args) => deployments::run(args),
            Command::Secrets(args) => secrets::run(args),
            Command::Send(args) => queues::send(args),
            Command::Publish(args) => queues::publish(args),
            Command::Invoke(args) => functions::invoke(args),
            Command::Queues(args) => queues::queues(args),
            Command::DeadLetters(args) => queues::dead_letters(args),
            Command::Redrive(args) => queues::redrive(args),
            Command::Runs(args) => functions::runs(args),
            Command::Kv(args) => kv::run(args),
            Command::Token(args) => token::run(args),
            Command::Logs(args) => logs::logs(args),
            Command::Usage(args) => logs::usage(args),
            Command::Replay(args) => logs::replay(args),
            Command::Nodes(args) => nodes::run(args),
        }
    }
}
