//! The command line: `edgefn up` serves functions, `edgefn inspect` shows what a component declares.

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
}

impl Cli {
    /// Runs the chosen subcommand to completion.
    pub fn run(self) -> anyhow::Result<()> {
        match self.command {
            Command::Up(args) => up::run(*args),
            Command::Inspect(args) => inspect::run(args),
            Command::Deployments(args) => deployments::run(args),
        }
    }
}
