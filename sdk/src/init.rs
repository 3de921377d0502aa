//! One-time initialization: `#[edgefn::init]`.
//!
//! The init function runs once per component state, and before any handler:
//! - on the edgefn host, once at deploy. The memory it leaves is snapshotted (wasmtime-wizer) and every instance
//!   starts from that snapshot, so no request pays for init;
//! - under any other host (e.g. `wasmtime serve`), or in native tests, lazily before the first request an
//!   instance handles.
//!
//! Either way the result is the same state. A failing init (an `Err` or a panic) refuses the deploy with its error
//! on the edgefn host, and answers 500 elsewhere.

use crate::Error;
use std::sync::OnceLock;

/// An init function, as registered by `#[edgefn::init]`.
#[derive(Debug)]
pub struct InitFunction {
    pub name: &'static str,
    pub run: fn() -> Result<(), Error>,
}

inventory::collect!(InitFunction);

/// Runs the init functions if they have not run in this memory yet; a snapshot taken after them has it done.
pub(crate) fn ensure() -> Result<(), &'static str> {
    static DONE: OnceLock<Result<(), String>> = OnceLock::new();
    DONE.get_or_init(|| {
        for init in inventory::iter::<InitFunction> {
            (init.run)().map_err(|e| format!("init function `{}` failed: {e}", init.name))?;
        }
        Ok(())
    })
    .as_ref()
    .copied()
    .map_err(String::as_str)
}

/// What `wizer-initialize` does: runs init, and builds everything an instance would otherwise build on its first
/// request, so the snapshot holds it. A failing init aborts, and the host quotes the line printed here as the reason
/// it refuses the deploy.
#[cfg(target_family = "wasm")]
pub(crate) fn before_snapshot() {
    crate::dispatch::warm_up();
    if let Err(error) = ensure() {
        eprintln!("edgefn: {error}");
        std::process::abort();
    }
}
