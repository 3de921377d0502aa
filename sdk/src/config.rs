//! Configuration and secrets the host hands to a function.
//!
//! The host passes each function's configuration (from its config file, or from its own environment) as the
//! function's environment, the portable WASI way: the same component reads the same values under
//! `wasmtime serve --env KEY=VALUE`. Values are never logged by the host.
//!
//! ```no_run
//! let secret = edgefn::config::require("WEBHOOK_SECRET")?; // a 500 that names the key if it is missing
//! # Ok::<(), edgefn::Error>(())
//! ```

use crate::{Error, Result};

/// The value of `key`, if the host set it.
pub fn get(key: &str) -> Option<String> {
    std::env::var(key).ok()
}

/// The value of `key`, or an error (500) that names the missing key and how to set it.
pub fn require(key: &str) -> Result<String> {
    get(key).ok_or_else(|| {
        Error::internal(format!(
            "config `{key}` is not set: add it to the function's `env` in the host config file, \
             or list it in `env_from_host`"
        ))
    })
}
