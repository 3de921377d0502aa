//! Signing tokens for local testing (`edgefn token mint`): with an authorizer's HS256 secret, or a private key
//! file whose public half is in the authorizer's JWKS.

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};
use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Reads a PEM private key of one type.
type LoadKey = fn(&[u8]) -> jsonwebtoken::errors::Result<EncodingKey>;

/// A key that signs tokens.
pub struct Signer {
    algorithm: Algorithm,
    key: EncodingKey,
    kid: Option<String>,
}

impl std::fmt::Debug for Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Signer").field("algorithm", &self.algorithm).field("kid", &self.kid).finish_non_exhaustive()
    }
}

impl Signer {
    /// An HS256 signer over a shared secret.
    pub fn hmac(secret: &[u8], kid: Option<String>) -> Self {
        Self { algorithm: Algorithm::HS256, key: EncodingKey::from_secret(secret), kid }
    }

    /// A signer over a PEM private key (PKCS#8, or PKCS#1 for RSA). The algorithm defaults by key type: RS256,
    /// ES256 or EdDSA.
    pub fn from_pem_file(path: &Path, algorithm: Option<Algorithm>, kid: Option<String>) -> Result<Self, String> {
        let pem = std::fs::read(path).map_err(|e| format!("failed to read key {}: {e}", path.display()))?;
        let attempts: [(Algorithm, LoadKey); 3] = [
            (Algorithm::RS256, EncodingKey::from_rsa_pem),
            (Algorithm::ES256, EncodingKey::from_ec_pem),
            (Algorithm::EdDSA, EncodingKey::from_ed_pem),
        ];
        for (default_algorithm, load) in attempts {
            let wanted = algorithm.unwrap_or(default_algorithm);
            if wanted.family() != default_algorithm.family() {
                continue;
            }
            if let Ok(key) = load(&pem) {
                return Ok(Self { algorithm: wanted, key, kid });
            }
        }
        Err(match algorithm {
            Some(algorithm) => format!("{} is not a PEM private key for {algorithm:?}", path.display()),
            None => format!("{} is not a PEM RSA, EC (P-256) or Ed25519 private key", path.display()),
        })
    }

    pub fn algorithm(&self) -> Algorithm {
        self.algorithm
    }

    /// Signs `claims` as they are.
    pub fn sign(&self, claims: &Value) -> Result<String, String> {
        let mut header = Header::new(self.algorithm);
        header.kid = self.kid.clone();
        jsonwebtoken::encode(&header, claims, &self.key).map_err(|e| format!("failed to sign the token: {e}"))
    }
}

/// The claims of a token from `issuer` for `audience` about `subject`, granting `scopes`, valid from now for
/// `ttl`.
pub fn standard_claims(issuer: &str, audience: &str, subject: &str, scopes: &[String], ttl: Duration) -> Value {
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default().as_secs();
    let mut claims = json!({
        "iss": issuer,
        "aud": audience,
        "sub": subject,
        "iat": now,
        "nbf": now,
        "exp": now + ttl.as_secs(),
    });
    if !scopes.is_empty() {
        claims["scope"] = Value::String(scopes.join(" "));
    }
    claims
}
