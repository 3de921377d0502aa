//! The verification keys of one authorizer: the public keys of a JWKS file by `kid`, and an optional HMAC secret.
//!
//! A key is only ever used with an algorithm of its own family, so an RSA public key (which anyone may read) can
//! never be fed to HMAC as a shared secret (the classic "alg confusion" attack), and a key that names its `alg`
//! is only used with that algorithm.

use jsonwebtoken::jwk::{JwkSet, PublicKeyUse};
use jsonwebtoken::{Algorithm, DecodingKey};
use std::str::FromStr;

/// One usable key.
struct Key {
    kid: Option<String>,
    /// The algorithm the JWK pins, if it names one.
    algorithm: Option<Algorithm>,
    key: DecodingKey,
}

impl std::fmt::Debug for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print key material, not even a public key: logs are for people.
        f.debug_struct("Key").field("kid", &self.kid).field("algorithm", &self.algorithm).finish_non_exhaustive()
    }
}

/// The keys an authorizer verifies signatures with.
#[derive(Debug, Default)]
pub struct KeySet {
    keys: Vec<Key>,
}

impl KeySet {
    /// Reads a JWKS document (`{"keys": [...]}`). Keys marked for encryption (`"use": "enc"`) and keys of a type
    /// jsonwebtoken cannot verify with are left out with a warning; a document with no usable key is an error, so
    /// a truncated or wrong file is refused and the keys loaded before stay in use.
    pub fn parse_jwks(text: &str) -> Result<Self, String> {
        let set: JwkSet = serde_json::from_str(text).map_err(|e| format!("not a JWKS document: {e}"))?;
        let mut keys = Vec::new();
        for (index, jwk) in set.keys.iter().enumerate() {
            let kid = jwk.common.key_id.clone();
            let label = kid.clone().unwrap_or_else(|| format!("#{index}"));
            if matches!(jwk.common.public_key_use, Some(PublicKeyUse::Encryption)) {
                tracing::warn!(key = %label, "skipping a JWKS key marked for encryption (`use: enc`)");
                continue;
            }
            let algorithm = match jwk.common.key_algorithm {
                Some(named) => match Algorithm::from_str(&named.to_string()) {
                    Ok(algorithm) => Some(algorithm),
                    Err(_) => {
                        tracing::warn!(key = %label, alg = %named, "skipping a JWKS key for an algorithm that does not sign JWTs");
                        continue;
                    }
                },
                None => None,
            };
            let key = match DecodingKey::from_jwk(jwk) {
                Ok(key) => key,
                Err(error) => {
                    tracing::warn!(key = %label, %error, "skipping a JWKS key that does not load");
                    continue;
                }
            };
            if let Some(algorithm) = algorithm
                && algorithm.family() != key.family()
            {
                return Err(format!("key {label} names alg {algorithm:?}, which does not fit its key type"));
            }
            keys.push(Key { kid, algorithm, key });
        }
        if keys.is_empty() {
            return Err("the JWKS document holds no usable signing key".into());
        }
        Ok(Self { keys })
    }

    /// The keys of a JWKS document (if any) plus an HMAC secret (if any).
    pub fn combine(jwks: Option<KeySet>, hmac_secret: Option<&str>) -> Self {
        let mut keys = jwks.map(|set| set.keys).unwrap_or_default();
        if let Some(secret) = hmac_secret {
            keys.push(Key { kid: None, algorithm: None, key: DecodingKey::from_secret(secret.as_bytes()) });
        }
        Self { keys }
    }

    pub fn len(&self) -> usize {
        self.keys.len()
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// The key to verify a token signed with `algorithm` and naming key `kid`. A `kid` must match a key of the
    /// algorithm's family; a token without one is accepted only when exactly one key of that family could have
    /// signed it (an HMAC secret, or a JWKS of one key).
    pub fn find(&self, kid: Option<&str>, algorithm: Algorithm) -> Result<&DecodingKey, String> {
        let fits = |key: &&Key| {
            key.key.family() == algorithm.family() && key.algorithm.is_none_or(|pinned| pinned == algorithm)
        };
        match kid {
            Some(kid) => {
                // An HMAC secret from the config has no kid; a token naming one still verifies against it.
                let by_kid = self.keys.iter().filter(fits).find(|key| key.kid.as_deref() == Some(kid));
                let unnamed_secret = || {
                    let mut secrets = self.keys.iter().filter(fits).filter(|key| key.kid.is_none());
                    match (secrets.next(), secrets.next()) {
                        (Some(only), None) if algorithm.family() == jsonwebtoken::AlgorithmFamily::Hmac => Some(only),
                        _ => None,
                    }
                };
                by_kid
                    .or_else(unnamed_secret)
                    .map(|key| &key.key)
                    .ok_or_else(|| format!("no {algorithm:?} key has kid `{kid}`"))
            }
            None => {
                let mut candidates = self.keys.iter().filter(fits);
                match (candidates.next(), candidates.next()) {
                    (Some(only), None) => Ok(&only.key),
                    (None, _) => Err(format!("no key verifies {algorithm:?}")),
                    (Some(_), Some(_)) => Err(format!("the token names no kid and several {algorithm:?} keys fit")),
                }
            }
        }
    }
}
