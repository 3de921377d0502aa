//! Rate limiters the host configures, for the limits a function decides itself (per user, per tenant, per
//! anything), as Cloudflare's rate-limiting binding has them:
//!
//! ```no_run
//! # fn run(user: &str) -> edgefn::Result<edgefn::Response> {
//! let decision = edgefn::ratelimit::check("per-user", user)?;
//! if !decision.allowed {
//!     return Ok(edgefn::Response::text("slow down").with_status(429));
//! }
//! # Ok(edgefn::Response::text("ok")) }
//! ```
//!
//! The host's `[rate_limits.per-user]` (`requests`, `window_s`, `burst`) sets the token bucket; each key has its
//! own, kept in the node's memory and scoped to the calling component. Routes can also be limited by the host
//! before the function runs (`rate_limit` in the component's configuration). Natively (unit tests) every check is
//! allowed.

use crate::Result;
use std::time::Duration;

/// What one check decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decision {
    pub allowed: bool,
    /// Whole tokens left after this call.
    pub remaining: u32,
    /// The bucket's size.
    pub limit: u32,
    /// When refused: how long until a token is back.
    pub retry_after: Duration,
}

/// Takes a token from `key`'s bucket of the host's limiter `limiter`; errs when the host has no such limiter.
pub fn check(limiter: &str, key: &str) -> Result<Decision> {
    imp::check(limiter, key)
}

#[cfg(target_family = "wasm")]
mod imp {
    use super::Decision;
    use crate::abi::bindings::edgefn::function::ratelimit;
    use crate::{Error, Result};
    use std::time::Duration;

    pub(super) fn check(limiter: &str, key: &str) -> Result<Decision> {
        let decision = ratelimit::check(limiter, key).map_err(Error::internal)?;
        Ok(Decision {
            allowed: decision.allowed,
            remaining: decision.remaining,
            limit: decision.limit,
            retry_after: Duration::from_millis(decision.retry_after_ms),
        })
    }
}

#[cfg(not(target_family = "wasm"))]
mod imp {
    use super::Decision;
    use crate::Result;
    use std::time::Duration;

    pub(super) fn check(_limiter: &str, _key: &str) -> Result<Decision> {
        Ok(Decision { allowed: true, remaining: u32::MAX, limit: u32::MAX, retry_after: Duration::ZERO })
    }
}
