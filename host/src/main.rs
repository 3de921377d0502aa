//! The `edgefn` binary: parse the command line, set up logging, run.

use clap::Parser as _;

fn main() -> std::process::ExitCode {
    let cli = edgefn_host::cli::Cli::parse();
    edgefn_host::logging::init(cli.default_log_level());
    let outcome = cli.run();
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
