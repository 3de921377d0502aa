//! Host-auth tokens: how a component knows its host verified a request to a protected route.
//!
//! The host keeps one random key per data dir (`route-auth.key`, owner-only). A component with protected routes
//! gets its own token, derived from that key and its name, as the secret `EDGEFN_HOST_AUTH` of its environment;
//! the host sends the same token in `x-edgefn-auth` with every request it verified (and strips that header from
//! what clients send). The SDK refuses a protected route's request without it, so a protected route fails closed
//! under a host that ignores `auth`. One component's token says nothing about another's.

use crate::storage::{StorageError, load_or_create_secret};
use sha2::{Digest, Sha256};
use std::path::Path;

const KEY_FILE: &str = "route-auth.key";

/// The data dir's key, from which each component's token is derived.
pub struct RouteTokens {
    key: String,
}

impl std::fmt::Debug for RouteTokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RouteTokens").finish_non_exhaustive()
    }
}

impl RouteTokens {
    /// Reads the data dir's key, creating it on first start.
    pub fn load_or_create(data_dir: &Path) -> Result<Self, StorageError> {
        let (key, _) = load_or_create_secret(&data_dir.join(KEY_FILE))?;
        Ok(Self { key })
    }

    /// The token of component `component`: stable across restarts, different for every component.
    pub fn token_for(&self, component: &str) -> String {
        let mut hash = Sha256::new();
        hash.update(b"edgefn route auth\0");
        hash.update(self.key.as_bytes());
        hash.update(b"\0");
        hash.update(component.as_bytes());
        hex::encode(hash.finalize())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]
    use super::*;

    #[test]
    fn tokens_are_stable_per_data_dir_and_differ_per_component() {
        let dir = tempfile::tempdir().unwrap();
        let tokens = RouteTokens::load_or_create(dir.path()).unwrap();
        let again = RouteTokens::load_or_create(dir.path()).unwrap();
        assert_eq!(tokens.token_for("a"), again.token_for("a"));
        assert_ne!(tokens.token_for("a"), tokens.token_for("b"));
        let other = tempfile::tempdir().unwrap();
        assert_ne!(RouteTokens::load_or_create(other.path()).unwrap().token_for("a"), tokens.token_for("a"));
    }
}
