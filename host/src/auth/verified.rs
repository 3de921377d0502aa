//! Tokens whose signature, issuer and audience were already checked, so that a client sending the same token on
//! every request pays for the RSA or ECDSA verification once, not per request.
//!
//! What is cached holds only what cannot change while the keys stay the same: the signature, `iss` and `aud`. The
//! time claims are checked again on every hit, with the same rules and leeway as the full check, so a cached token
//! expires on time. A cache belongs to one loaded key set: a reload (a rotated JWKS file) starts an empty one, so a
//! token signed by a key that is no longer listed is refused at once. Only valid tokens are cached, and the cache
//! is bounded: a client sending a fresh token each time costs what it cost before, and no more memory.

use serde_json::Value;
use std::collections::HashMap;
use std::sync::Mutex;

/// At most this many tokens are remembered per authorizer.
const CAPACITY: usize = 4096;

/// A verified token's claims and its time bounds.
#[derive(Debug, Clone)]
struct Verified {
    claims: Value,
    /// `exp`, in seconds since the Unix epoch (a verified token always has one).
    expires: u64,
    /// `nbf`, if the token has one.
    not_before: Option<u64>,
}

/// The verified tokens of one key set.
#[derive(Debug, Default)]
pub(super) struct VerifiedTokens {
    by_token: Mutex<HashMap<String, Verified>>,
}

impl VerifiedTokens {
    /// The claims of `token` if it was verified before and is still within its time bounds at `now` (seconds),
    /// allowing `leeway` seconds, as jsonwebtoken does: expired once `exp + leeway < now`, not yet valid while
    /// `nbf > now + leeway`.
    pub(super) fn get(&self, token: &str, now: u64, leeway: u64) -> Option<Value> {
        let by_token = self.by_token.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let verified = by_token.get(token)?;
        let expired = verified.expires.saturating_add(leeway) < now;
        let early = verified.not_before.is_some_and(|nbf| nbf > now.saturating_add(leeway));
        (!expired && !early).then(|| verified.claims.clone())
    }

    /// Remembers a token that passed the full check. When full, forgets the expired ones first, and everything if
    /// that is not enough (the next requests simply verify again).
    pub(super) fn insert(&self, token: &str, claims: &Value, now: u64, leeway: u64) {
        let Some(expires) = claims.get("exp").and_then(Value::as_u64) else { return };
        let not_before = claims.get("nbf").and_then(Value::as_u64);
        let mut by_token = self.by_token.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if by_token.len() >= CAPACITY {
            by_token.retain(|_, verified| verified.expires.saturating_add(leeway) >= now);
            if by_token.len() >= CAPACITY {
                by_token.clear();
            }
        }
        by_token.insert(token.to_owned(), Verified { claims: claims.clone(), expires, not_before });
    }

    /// How many tokens are remembered.
    #[cfg(test)]
    pub(super) fn len(&self) -> usize {
        self.by_token.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_cached_token_keeps_its_time_bounds() {
        let cache = VerifiedTokens::default();
        cache.insert("t", &json!({"sub": "ada", "exp": 1000, "nbf": 500}), 600, 0);
        assert_eq!(cache.get("t", 600, 0), Some(json!({"sub": "ada", "exp": 1000, "nbf": 500})));
        assert_eq!(cache.get("t", 1000, 0).map(|c| c["sub"].clone()), Some(json!("ada")));
        assert_eq!(cache.get("t", 1001, 0), None, "expired");
        assert!(cache.get("t", 1030, 60).is_some(), "within the leeway");
        assert_eq!(cache.get("t", 499, 0), None, "not yet valid");
        assert!(cache.get("t", 450, 60).is_some(), "within the leeway");
        assert_eq!(cache.get("other", 600, 0), None);
    }

    #[test]
    fn the_cache_stays_bounded() {
        let cache = VerifiedTokens::default();
        for n in 0..CAPACITY * 3 {
            cache.insert(&format!("token-{n}"), &json!({"exp": 10_000}), 0, 0);
            assert!(cache.len() <= CAPACITY);
        }
        assert!(cache.get(&format!("token-{}", CAPACITY * 3 - 1), 0, 0).is_some(), "the newest is kept");
        cache.insert("no-exp", &json!({"sub": "x"}), 0, 0);
        assert!(cache.get("no-exp", 0, 0).is_none(), "a token without exp is never cached");
    }
}
