//! The `edgefn` binary: parse the command line, set up logging, run.

use clap::Parser as _;

fn main() -> std::process::ExitCode {
    edgefn_host::logging::init();
    let outcome = edgefn_host::cli::Cli::parse().run();
    // Every log line first, then the error that ends the run.
    edgefn_host::logging::flush();
    match outcome {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
