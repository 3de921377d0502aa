//! Signing in: a name and password checked against the `GALLERY_USERS` secret, answered with a session token (an
//! HS256 JWT) that the host's `gallery` authorizer verifies on every other route. The function signs with
//! `GALLERY_SIGNING_KEY`, the same secret the authorizer's `hs256_secret` holds; it never verifies tokens itself.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use edgefn::prelude::*;
use hmac::{Hmac, Mac as _};
use serde::Deserialize;
use serde_json::json;
use sha2::{Digest as _, Sha256};

/// How long a session token lasts.
pub const SESSION_SECONDS: u64 = 3600;

/// The issuer and audience the authorizer expects (`GALLERY_ISSUER`, `GALLERY_AUDIENCE`), with the defaults the
/// example's host configuration uses.
fn issuer() -> String {
    edgefn::config::get("GALLERY_ISSUER").unwrap_or_else(|| "https://gallery.example.test/".into())
}

fn audience() -> String {
    edgefn::config::get("GALLERY_AUDIENCE").unwrap_or_else(|| "photo-gallery".into())
}

#[derive(Debug, Deserialize)]
struct SignIn {
    user: String,
    password: String,
}

/// Whether `user` / `password` is one of `users` (`name:password` pairs, comma-separated). Every entry is compared,
/// each through SHA-256 digests compared in full, so the time taken says nothing about which part was wrong.
fn known(users: &str, user: &str, password: &str) -> bool {
    let given = Sha256::digest(format!("{user}:{password}"));
    users.split(',').map(str::trim).filter(|entry| !entry.is_empty()).fold(false, |found, entry| {
        let expected = Sha256::digest(entry);
        let same = given.iter().zip(expected.iter()).fold(0u8, |diff, (a, b)| diff | (a ^ b)) == 0;
        found | same
    })
}

/// An HS256 JWT of `claims`, signed with `key`.
fn sign(claims: &serde_json::Value, key: &[u8]) -> Result<String> {
    let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"HS256","typ":"JWT"}"#);
    let payload = URL_SAFE_NO_PAD.encode(serde_json::to_vec(claims).map_err(|e| Error::internal(e.to_string()))?);
    let signing_input = format!("{header}.{payload}");
    let mut mac = Hmac::<Sha256>::new_from_slice(key).map_err(|e| Error::internal(e.to_string()))?;
    mac.update(signing_input.as_bytes());
    Ok(format!("{signing_input}.{}", URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes())))
}

/// `POST /api/session` with `{"user": ..., "password": ...}`: `{"token": ..., "user": ..., "expires_in": ...}`, or
/// 401 with the same words whichever part was wrong.
#[function(trigger = http("/api/session", method = "POST"))]
fn sign_in(req: Request) -> Result<Response> {
    let form: SignIn = req.json()?;
    let users = edgefn::config::require("GALLERY_USERS")?;
    if form.user.is_empty() || form.user.contains([':', ',']) || !known(&users, &form.user, &form.password) {
        return Err(Error::unauthorized("wrong name or password"));
    }
    let key = edgefn::config::require("GALLERY_SIGNING_KEY")?;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_err(|e| Error::internal(e.to_string()))?
        .as_secs();
    let claims = json!({
        "iss": issuer(),
        "aud": audience(),
        "sub": form.user,
        "iat": now,
        "exp": now + SESSION_SECONDS,
        "scope": "photos",
    });
    let token = sign(&claims, key.as_bytes())?;
    Response::json(&json!({ "token": token, "user": form.user, "expires_in": SESSION_SECONDS }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_listed_name_with_its_password_is_known() {
        let users = "ada:lovelace, grace:hopper";
        assert!(known(users, "ada", "lovelace"));
        assert!(known(users, "grace", "hopper"));
        assert!(!known(users, "ada", "hopper"));
        assert!(!known(users, "ada", ""));
        assert!(!known(users, "alan", "turing"));
        assert!(!known("", "ada", "lovelace"));
    }

    #[test]
    fn a_token_is_three_base64url_parts_signed_over_the_first_two() {
        let token = sign(&json!({ "sub": "ada" }), b"key").expect("signed");
        let parts: Vec<&str> = token.split('.').collect();
        assert_eq!(parts.len(), 3);
        let payload = URL_SAFE_NO_PAD.decode(parts[1]).expect("base64url");
        assert_eq!(serde_json::from_slice::<serde_json::Value>(&payload).expect("json"), json!({ "sub": "ada" }));
        let mut mac = Hmac::<Sha256>::new_from_slice(b"key").expect("key");
        mac.update(format!("{}.{}", parts[0], parts[1]).as_bytes());
        mac.verify_slice(&URL_SAFE_NO_PAD.decode(parts[2]).expect("base64url")).expect("the signature checks");
    }
}
