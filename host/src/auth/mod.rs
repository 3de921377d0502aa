//! JWT-protected routes: the authorizers of the host's config (`[authorizers.NAME]`), checked by the HTTP trigger
//! before the guest runs, with API Gateway's JWT-authorizer semantics:
//!
//! - the token comes as `Authorization: Bearer <token>`;
//! - its signature is checked with the key its `kid` names (a JWKS file, reloaded when it changes), or the
//!   authorizer's HS256 secret; its `alg` must be on the authorizer's list and fit the key (an RSA public key is
//!   never used as an HMAC secret; `none` is never accepted);
//! - `iss` must be the issuer, `aud` one of the audiences, `exp` in the future and `nbf` in the past (with leeway);
//! - a route that lists scopes needs a token with at least one of them (`scope`, space-separated, or `scp`).
//!
//! A missing or bad token is a 401 with `WWW-Authenticate: Bearer error="invalid_token"` and a reason that tells
//! the caller nothing about which check failed (the host log says); a good token without the scope is a 403. The
//! verified claims reach the function.

mod keys;
mod mint;
mod route_token;
mod verified;

pub use keys::KeySet;
pub use mint::{Signer, standard_claims};
pub use route_token::RouteTokens;

use crate::config::AuthorizerConfig;
use arc_swap::ArcSwap;
use jsonwebtoken::{Algorithm, Validation};
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::SystemTime;
use verified::VerifiedTokens;

/// Why an authorizer could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("authorizer `{name}`: {reason}")]
    Config { name: String, reason: String },
    #[error("authorizer `{name}`: failed to load {path}: {reason}")]
    Keys { name: String, path: PathBuf, reason: String },
    #[error("no authorizer `{0}` is configured")]
    Unknown(String),
}

/// What a request's token amounts to.
#[derive(Debug, Clone, PartialEq)]
pub enum Verdict {
    /// Valid, and with a listed scope: the claims.
    Allowed(Value),
    /// Missing or invalid: 401. The reason is for the host log only.
    Unauthorized(String),
    /// Valid, but with none of the route's scopes: 403.
    Forbidden,
}

/// The keys loaded at one time, and the tokens verified with them (forgotten with them at the next reload).
#[derive(Debug, Default)]
struct LoadedKeys {
    keys: KeySet,
    verified: VerifiedTokens,
}

/// One authorizer.
#[derive(Debug)]
pub struct Authorizer {
    name: String,
    config: AuthorizerConfig,
    algorithms: Vec<Algorithm>,
    keys: ArcSwap<LoadedKeys>,
    /// The JWKS file's modification time and size when it was last loaded.
    loaded_stamp: Mutex<Option<(SystemTime, u64)>>,
}

fn parse_algorithm(name: &str) -> Option<Algorithm> {
    match name {
        "HS256" => Some(Algorithm::HS256),
        "HS384" => Some(Algorithm::HS384),
        "HS512" => Some(Algorithm::HS512),
        "RS256" => Some(Algorithm::RS256),
        "RS384" => Some(Algorithm::RS384),
        "RS512" => Some(Algorithm::RS512),
        "PS256" => Some(Algorithm::PS256),
        "ES256" => Some(Algorithm::ES256),
        "ES384" => Some(Algorithm::ES384),
        "EdDSA" => Some(Algorithm::EdDSA),
        _ => None,
    }
}

impl Authorizer {
    fn new(name: &str, config: &AuthorizerConfig) -> Result<Self, AuthError> {
        let config_error = |reason: String| AuthError::Config { name: name.to_owned(), reason };
        if config.issuer.is_empty() {
            return Err(config_error("`issuer` is required".into()));
        }
        if config.audiences.is_empty() {
            return Err(config_error("`audiences` needs at least one audience".into()));
        }
        let has_secret = config.hs256_secret.is_some() || config.hs256_secret_from_host.is_some();
        if config.jwks_file.is_none() && !has_secret {
            return Err(config_error("give a `jwks_file`, or an HS256 secret (`hs256_secret_from_host`)".into()));
        }
        let algorithms: Vec<Algorithm> = if config.algorithms.is_empty() {
            let mut defaults = Vec::new();
            if config.jwks_file.is_some() {
                defaults.extend([Algorithm::RS256, Algorithm::ES256, Algorithm::EdDSA]);
            }
            if has_secret {
                defaults.push(Algorithm::HS256);
            }
            defaults
        } else {
            config
                .algorithms
                .iter()
                .map(|name| {
                    parse_algorithm(name).ok_or_else(|| {
                        config_error(format!(
                            "unknown algorithm `{name}`; expected RS256, RS384, RS512, PS256, ES256, ES384, EdDSA, HS256, \
                             HS384 or HS512 (`none` is never accepted)"
                        ))
                    })
                })
                .collect::<Result<_, _>>()?
        };
        let authorizer = Self {
            name: name.to_owned(),
            config: config.clone(),
            algorithms,
            keys: ArcSwap::from_pointee(LoadedKeys::default()),
            loaded_stamp: Mutex::new(None),
        };
        authorizer.reload()?;
        Ok(authorizer)
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// Loads the keys again (the JWKS file, the secret). On an error the keys loaded before stay in use.
    pub fn reload(&self) -> Result<usize, AuthError> {
        let secret = self.hmac_secret()?;
        // RFC 7518 3.2: an HMAC key must be at least as long as the hash output.
        if let Some(secret) = &secret
            && secret.len() < 32
        {
            return Err(AuthError::Config {
                name: self.name.clone(),
                reason: format!("the HS256 secret is {} bytes; it must be at least 32", secret.len()),
            });
        }
        let (jwks, stamp) = match &self.config.jwks_file {
            Some(path) => {
                let keys_error =
                    |reason: String| AuthError::Keys { name: self.name.clone(), path: path.clone(), reason };
                let text = std::fs::read_to_string(path).map_err(|e| keys_error(e.to_string()))?;
                let stamp = file_stamp(path);
                (Some(KeySet::parse_jwks(&text).map_err(keys_error)?), stamp)
            }
            None => (None, None),
        };
        let keys = KeySet::combine(jwks, secret.as_deref());
        let count = keys.len();
        self.keys.store(Arc::new(LoadedKeys { keys, verified: VerifiedTokens::default() }));
        *self.loaded_stamp.lock().unwrap_or_else(|poisoned| poisoned.into_inner()) = stamp;
        tracing::info!(authorizer = %self.name, keys = count, "loaded the authorizer's keys");
        Ok(count)
    }

    /// How many keys are loaded now.
    pub fn key_count(&self) -> usize {
        self.keys.load().keys.len()
    }

    /// The `iss` tokens must carry.
    pub fn issuer(&self) -> &str {
        &self.config.issuer
    }

    /// The first audience: what a minted token is for.
    pub fn audience(&self) -> &str {
        self.config.audiences.first().map_or("", String::as_str)
    }

    /// The HS256 secret, if the authorizer has one (to mint test tokens).
    pub fn hmac_secret(&self) -> Result<Option<String>, AuthError> {
        match (&self.config.hs256_secret, &self.config.hs256_secret_from_host) {
            (Some(secret), _) => Ok(Some(secret.clone())),
            (None, Some(variable)) => std::env::var(variable).map(Some).map_err(|_| AuthError::Config {
                name: self.name.clone(),
                reason: format!("`hs256_secret_from_host` names `{variable}`, which the host's environment lacks"),
            }),
            (None, None) => Ok(None),
        }
    }

    /// Reloads the keys if the JWKS file changed since they were loaded.
    fn reload_if_changed(&self) {
        let Some(path) = &self.config.jwks_file else { return };
        let stamp = file_stamp(path);
        let loaded = *self.loaded_stamp.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if stamp.is_some()
            && stamp != loaded
            && let Err(error) = self.reload()
        {
            tracing::error!(%error, "the JWKS file changed but does not load; the keys loaded before stay in use");
            // Do not retry the same broken file every second.
            *self.loaded_stamp.lock().unwrap_or_else(|poisoned| poisoned.into_inner()) = stamp;
        }
    }

    /// Checks the `Authorization` header of a request to a route that needs one of `scopes` (none: any valid
    /// token).
    pub fn check(&self, authorization: Option<&str>, scopes: &[String]) -> Verdict {
        let Some(token) = authorization.and_then(bearer) else {
            return Verdict::Unauthorized("no bearer token".into());
        };
        let loaded = self.keys.load();
        let leeway = self.config.leeway_s.unwrap_or(60);
        let now = jsonwebtoken::get_current_timestamp();
        // A remembered token passed every check of `verify` with these keys; only its time bounds can have changed.
        let claims = match loaded.verified.get(token, now, leeway) {
            Some(claims) => claims,
            None => match self.verify(token, &loaded.keys, leeway) {
                Ok(claims) => {
                    loaded.verified.insert(token, &claims, now, leeway);
                    claims
                }
                Err(reason) => return Verdict::Unauthorized(reason),
            },
        };
        if !edgefn_manifest::scopes::allows(&claims, scopes) {
            return Verdict::Forbidden;
        }
        Verdict::Allowed(claims)
    }

    /// The full check of a token (its `alg` on the list, the signature by its `kid`, `iss`, `aud`, `exp`, `nbf`):
    /// its claims, or why not.
    fn verify(&self, token: &str, keys: &KeySet, leeway: u64) -> Result<Value, String> {
        let header = jsonwebtoken::decode_header(token).map_err(|error| format!("malformed token: {error}"))?;
        if !self.algorithms.contains(&header.alg) {
            return Err(format!("algorithm {:?} is not accepted", header.alg));
        }
        let key = keys.find(header.kid.as_deref(), header.alg)?;
        let mut validation = Validation::new(header.alg);
        validation.algorithms = vec![header.alg];
        validation.set_issuer(&[&self.config.issuer]);
        validation.set_audience(&self.config.audiences);
        validation.set_required_spec_claims(&["exp", "iss", "aud"]);
        validation.validate_nbf = true;
        validation.leeway = leeway;
        jsonwebtoken::decode::<Value>(token, key, &validation).map(|data| data.claims).map_err(|e| e.to_string())
    }
}

/// The token of `Bearer <token>` (the scheme in any case).
fn bearer(header: &str) -> Option<&str> {
    let (scheme, token) = header.trim().split_once(' ')?;
    (scheme.eq_ignore_ascii_case("bearer") && !token.trim().is_empty()).then(|| token.trim())
}

fn file_stamp(path: &std::path::Path) -> Option<(SystemTime, u64)> {
    let metadata = std::fs::metadata(path).ok()?;
    Some((metadata.modified().ok()?, metadata.len()))
}

/// Every authorizer of the host.
#[derive(Debug, Default)]
pub struct Authorizers {
    by_name: BTreeMap<String, Arc<Authorizer>>,
}

impl Authorizers {
    /// Sets up the config's authorizers; an error names the authorizer and what is wrong.
    pub fn from_config(config: &BTreeMap<String, AuthorizerConfig>) -> Result<Self, AuthError> {
        let by_name = config
            .iter()
            .map(|(name, config)| Ok((name.clone(), Arc::new(Authorizer::new(name, config)?))))
            .collect::<Result<_, AuthError>>()?;
        Ok(Self { by_name })
    }

    pub fn get(&self, name: &str) -> Option<&Arc<Authorizer>> {
        self.by_name.get(name)
    }

    pub fn names(&self) -> Vec<String> {
        self.by_name.keys().cloned().collect()
    }

    /// Reloads authorizer `name` now (the admin API's reload).
    pub fn reload(&self, name: &str) -> Result<usize, AuthError> {
        self.get(name).ok_or_else(|| AuthError::Unknown(name.to_owned()))?.reload()
    }

    /// Watches the JWKS files: a changed file is loaded within a second, with no restart.
    pub fn spawn_watcher(self: &Arc<Self>) {
        if self.by_name.values().all(|a| a.config.jwks_file.is_none()) {
            return;
        }
        let authorizers = self.clone();
        tokio::spawn(async move {
            let mut interval = tokio::time::interval(std::time::Duration::from_secs(1));
            loop {
                interval.tick().await;
                let watched = authorizers.clone();
                let _ = tokio::task::spawn_blocking(move || {
                    for authorizer in watched.by_name.values() {
                        authorizer.reload_if_changed();
                    }
                })
                .await;
            }
        });
    }
}

#[cfg(test)]
mod tests;
