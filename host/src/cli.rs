//! The command line: `edgefn up` serves functions, `edgefn inspect` shows what a component declares, and the
//! admin commands (`send`, `publish`, `invoke`, `queues`, `dead-letters`, `redrive`, `runs`) talk to a running
//! host.

mod admin_client;
mod deployments;
mod inspect;
mod up;

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
    /// Deploy function crates or components and serve them.
    Up(Box<up::UpArgs>),
    /// Print the functions and triggers a component declares, without running it.
    Inspect(inspect::InspectArgs),
    /// List what the data directory's database records as deployed.
    Deployments(deployments::DeploymentsArgs),
    /// Send a message to a queue of the running host: `edgefn send orders '{"id":1}'`.
    Send(admin_client::SendArgs),
    /// Publish a message to a topic of the running host.
    Publish(admin_client::PublishArgs),
    /// Call an `invoke` function with a JSON payload, or fire a cron function now with `--cron`.
    Invoke(admin_client::InvokeArgs),
    /// Show every queue's ready, in-flight, delayed and dead counts.
    Queues(admin_client::QueuesArgs),
    /// List a queue's dead letters.
    DeadLetters(admin_client::QueueArgs),
    /// Move a queue's dead letters back into it.
    Redrive(admin_client::QueueArgs),
    /// Show a cron function's run history.
    Runs(admin_client::RunsArgs),
}

impl Cli {
    /// Runs the chosen subcommand to completion.
    pub fn run(self) -> anyhow::Result<()> {
        match self.command {
            Command::Up(args) => up::run(*args),
            Command::Inspect(args) => inspect::run(args),
            Command::Deployments(args) => deployments::run(args),
            Command::Send(args) => admin_client::send(args),
            Command::Publish(args) => admin_client::publish(args),
            Command::Invoke(args) => admin_client::invoke(args),
            Command::Queues(args) => admin_client::queues(args),
            Command::DeadLetters(args) => admin_client::dead_letters(args),
            Command::Redrive(args) => admin_client::redrive(args),
            Command::Runs(args) => admin_client::runs(args),
        }
    }
}
