//! The command line, one file per group of subcommands:
//!
//! - `up` starts a host and serves it; `dev` builds, deploys and watches a crate (on a host it starts or finds);
//!   `new` writes a function crate; `inspect` reads a component; `deployments` reads a data dir offline;
//! - everything else is a thin client of a running host's admin API ([`admin_client`]): `deploy`, `versions`,
//!   `rollback`, `promote`, `undeploy`, `components`, `send`, `publish`, `invoke`, `queues`, `dead-letters`,
//!   `redrive`, `runs`, `cache`, `kv`, `logs`, `usage`, `replay`, `nodes`, `workflows`;
//! - `token mint` signs a test token for an authorizer of the host config, offline.

mod admin_client;
mod build;
mod cache;
mod deploy;
mod deployments;
mod dev;
mod functions;
mod inspect;
mod kv;
pub mod logs;
mod new;
mod nodes;
mod objects;
mod output;
mod queues;
mod secrets;
mod streams;
mod token;
mod up;
mod versions;
mod workflows;

use clap::{Parser, Subcommand};

/// edgefn: run WebAssembly edge functions on a machine you own.
///
/// Commands that talk to a running host find its admin API and token in the data dir (`--data`, default
/// `./.edgefn`, where `edgefn up` writes `admin-url` and `admin-token`); `--admin`, `--token`, `EDGEFN_ADMIN_URL`
/// and `EDGEFN_ADMIN_TOKEN` override them. They print a table or a summary, or the exact JSON with `--json`.
/// Results go to stdout, errors to stderr. Exit codes: 0 done, 1 failed (refused, or the host not reachable),
/// 2 bad usage.
#[derive(Debug, Parser)]
#[command(name = "edgefn", version, about, long_about)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Serve what was live in the data dir, plus these function crates or components, and take live deploys.
    #[command(after_help = "Example: edgefn up examples/hello examples/todo-api --config examples/edgefn.toml")]
    Up(Box<up::UpArgs>),
    /// Build, deploy and watch a crate: redeploy on every save, with cargo's errors and the live log.
    #[command(after_help = "Example: edgefn dev examples/hello   (then edit src/lib.rs and save)")]
    Dev(Box<dev::DevArgs>),
    /// Write a new function crate from a template: `edgefn new my-fn --template http`.
    #[command(after_help = "Example: edgefn new my-fn --template http && edgefn up my-fn")]
    New(new::NewArgs),
    /// Build (a crate) and deploy a component to a running host, as a new version: `edgefn deploy examples/hello`.
    #[command(after_help = "Example: edgefn deploy examples/hello --env GREETING=hi --canary 10")]
    Deploy(Box<deploy::DeployArgs>),
    /// List a component's versions and which one is live.
    #[command(after_help = "Example: edgefn versions hello --json")]
    Versions(versions::ComponentArgs),
    /// Go back to the previous version (or `--to N`), or end a canary. Nothing compiles.
    #[command(after_help = "Example: edgefn rollback hello --to 3")]
    Rollback(versions::RollbackArgs),
    /// Make a component's canary its live version.
    #[command(after_help = "Example: edgefn promote hello")]
    Promote(versions::ComponentArgs),
    /// Take a component out of service: its routes answer 404, its triggers stop; versions and queues are kept.
    /// Refused while workflow runs of it have not finished, unless `--force` (which cancels them).
    #[command(after_help = "Example: edgefn undeploy hello")]
    Undeploy(versions::UndeployArgs),
    /// List what is live on a running host.
    #[command(after_help = "Example: edgefn components --data /var/lib/edgefn")]
    Components(versions::ComponentsArgs),
    /// Print the functions and triggers a component declares, without running it.
    #[command(after_help = "Example: edgefn inspect target/wasm32-wasip2/release/hello.wasm")]
    Inspect(inspect::InspectArgs),
    /// List the versions a data dir's database records (offline).
    #[command(after_help = "Example: edgefn deployments --data /var/lib/edgefn")]
    Deployments(deployments::DeploymentsArgs),
    /// Send a message to a queue of the running host: `edgefn send orders '{"id":1}'`.
    #[command(after_help = "Example: edgefn send orders '{\"id\":1}' --delay-ms 5000")]
    Send(queues::SendArgs),
    /// Publish a message to a topic of the running host.
    #[command(after_help = "Example: edgefn publish order.created '{\"id\":1,\"state\":\"paid\"}'")]
    Publish(queues::PublishArgs),
    /// Call an `invoke` function with a JSON payload, or fire a cron function now with `--cron`.
    #[command(
        after_help = "Example: edgefn invoke order-pipeline/tax '{\"country\":\"DE\",\"amount_cents\":1000}'   or   edgefn invoke heartbeat --cron"
    )]
    Invoke(functions::InvokeArgs),
    /// Show every queue's ready, in-flight, delayed and dead counts.
    #[command(after_help = "Example: edgefn queues --json")]
    Queues(queues::QueuesArgs),
    /// List a queue's dead letters.
    #[command(after_help = "Example: edgefn dead-letters orders")]
    DeadLetters(queues::QueueArgs),
    /// Move a queue's dead letters back into it.
    #[command(after_help = "Example: edgefn redrive orders")]
    Redrive(queues::QueueArgs),
    /// Show a cron function's run history.
    #[command(after_help = "Example: edgefn runs heartbeat --limit 50")]
    Runs(functions::RunsArgs),
    /// Durable workflow runs: `edgefn workflows list|show RUN|start WORKFLOW INPUT|signal RUN EVENT PAYLOAD|cancel RUN`.
    #[command(after_help = "Example: edgefn workflows start checkout '{\"order\": 42}' --id order-42")]
    Workflows(workflows::WorkflowsArgs),
    /// See and purge a running host's HTTP response cache: `edgefn cache stats|purge COMPONENT [--path P|--tag T]`.
    #[command(after_help = "Example: edgefn cache purge shop --tag product-42")]
    Cache(cache::CacheArgs),
    /// Read and write a running host's key-value stores: `edgefn kv get|set|delete|list STORE ...`.
    #[command(after_help = "Example: edgefn kv list todos --prefix todo:ada:")]
    Kv(kv::KvArgs),
    /// Read and write a running host's object buckets: `edgefn objects ls|get|put|rm|usage BUCKET ...`.
    #[command(after_help = "Example: edgefn objects put photos uploads/cat.png ./cat.png --type image/png")]
    Objects(objects::ObjectsArgs),
    /// Inspect, feed and replay a running host's ordered streams: `edgefn streams list|describe|put|replay`.
    #[command(after_help = "Example: edgefn streams replay count --from 15m")]
    Streams(streams::StreamsArgs),
    /// Sign a test token for an authorizer of the host config: `edgefn token mint --authorizer main --sub ada`.
    #[command(
        after_help = "Example: edgefn token mint --config edgefn.toml --authorizer main --sub ada --scope orders:write"
    )]
    Token(token::TokenArgs),
    /// Manage the host key that seals secrets at rest: `edgefn secrets rotate-key` (offline).
    #[command(after_help = "Example: edgefn secrets rotate-key --data /var/lib/edgefn")]
    Secrets(secrets::SecretsArgs),
    /// Read the log of a running host (`--follow` to stream it): `edgefn logs --id 4bf92f35...`.
    #[command(after_help = "Example: edgefn logs hello --since 10m --level warn   or   edgefn logs --follow")]
    Logs(logs::LogsArgs),
    /// What functions used (requests, GB-s, CPU), with an estimated bill: `edgefn usage --since 24h`.
    #[command(after_help = "Example: edgefn usage --since 7d --prices cloudflare.toml")]
    Usage(logs::UsageArgs),
    /// Run a kept failure's input again, on the live version or `--version N`: `edgefn replay 17`.
    #[command(after_help = "Example: edgefn replay 17 --version 4")]
    Replay(logs::ReplayArgs),
    /// Print a shell's completion script: `edgefn completions bash > ~/.local/share/bash-completion/completions/edgefn`.
    #[command(after_help = "Example: edgefn completions zsh > ~/.zfunc/_edgefn")]
    Completions {
        /// bash, zsh, fish, elvish or powershell.
        shell: clap_complete::Shell,
    },
    /// List the members of the host's cluster, with their live versions and load.
    #[command(after_help = "Example: edgefn nodes --admin http://10.0.0.2:8081")]
    Nodes(nodes::NodesArgs),
}

impl Cli {
    /// The log level unless `EDGEFN_LOG` says otherwise: `info` for the host (`up`), which is a server and logs
    /// what it does; `warn` for the commands a person or a script runs, whose result is what they print.
    pub fn default_log_level(&self) -> &'static str {
        match self.command {
            Command::Up(_) | Command::Dev(_) => "info",
            _ => "warn",
        }
    }

    /// Runs the chosen subcommand to completion.
    pub fn run(self) -> anyhow::Result<()> {
        match self.command {
            Command::Up(args) => up::run(*args),
            Command::New(args) => new::run(args),
            Command::Dev(args) => dev::run(*args),
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
            Command::Workflows(args) => workflows::run(args),
            Command::Cache(args) => cache::run(args),
            Command::Kv(args) => kv::run(args),
            Command::Objects(args) => objects::run(args),
            Command::Streams(args) => streams::run(args),
            Command::Token(args) => token::run(args),
            Command::Logs(args) => logs::logs(args),
            Command::Usage(args) => logs::usage(args),
            Command::Replay(args) => logs::replay(args),
            Command::Nodes(args) => nodes::run(args),
            Command::Completions { shell } => {
                let mut command = <Self as clap::CommandFactory>::command();
                clap_complete::generate(shell, &mut command, "edgefn", &mut std::io::stdout());
                Ok(())
            }
        }
    }
}
