//! The `edgefn` binary: parse the command line, set up logging, run.

use clap::Parser as _;
use std::io::IsTerminal as _;
use tracing_subscriber::EnvFilter;

fn main() -> std::process::ExitCode {
    // Log lines are formatted on the thread that logs, and written by a thread of their own: a request never waits
    // for stderr, and under load the writer puts many lines in one write. It drains at once when idle, and
    // dropping `flushed` writes what is left. `lossy(false)`: a full queue (128k lines) makes the
    // logging thread wait rather than drop lines.
    let stderr = std::io::BufWriter::with_capacity(64 << 10, std::io::stderr());
    let (writer, flushed) = tracing_appender::non_blocking::NonBlockingBuilder::default()
        .lossy(false)
        .thread_name("edgefn-log")
        .finish(stderr);
    tracing_subscriber::fmt()
        .with_env_filter(EnvFilter::try_from_env("EDGEFN_LOG").unwrap_or_else(|_| EnvFilter::new("info")))
        .with_writer(writer)
        .with_target(false)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
    let outcome = edgefn_host::cli::Cli::parse().run();
    // Every log line first, then the error that ends the run.
    drop(flushed);
    match outcome {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
