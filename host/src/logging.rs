//! The host's own log: formatted on the thread that logs, written by a thread of its own, so a request never
//! waits for stderr and, under load, many lines go out in one write. The writer drains at once when idle.
//!
//! [`init`] sets it up once per process; [`flush`] writes what is still queued, and must run before the process
//! ends other than by returning from `main` (`std::process::exit` skips destructors).

use std::io::IsTerminal as _;
use std::sync::Mutex;
use tracing_appender::non_blocking::WorkerGuard;
use tracing_subscriber::EnvFilter;

/// The writer thread's guard: dropping it writes every queued line and waits for the writer to finish.
static WRITER: Mutex<Option<WorkerGuard>> = Mutex::new(None);

/// Logs to stderr at the level `EDGEFN_LOG` names (else `default`, e.g. `info`), through the writer thread.
pub fn init(default: &str) {
    let stderr = std::io::BufWriter::with_capacity(64 << 10, std::io::stderr());
    // `lossy(false)`: a full queue (128k lines) makes the logging thread wait rather than drop lines.
    let (writer, guard) = tracing_appender::non_blocking::NonBlockingBuilder::default()
        .lossy(false)
        .thread_name("edgefn-log")
        .finish(stderr);
    tracing_subscriber::fmt()
        .with_env_filter(EnvFilter::try_from_env("EDGEFN_LOG").unwrap_or_else(|_| EnvFilter::new(default)))
        .with_writer(writer)
        .with_target(false)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
    *WRITER.lock().unwrap_or_else(|poisoned| poisoned.into_inner()) = Some(guard);
}

/// Writes every line logged so far. Later lines are not written by the writer thread any more.
pub fn flush() {
    drop(WRITER.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).take());
}
