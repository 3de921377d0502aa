//! The webhook example: verifies a GitHub-style `X-Hub-Signature-256` header, the HMAC-SHA256 of the raw body
//! keyed with a shared secret, before trusting the payload.
//!
//! The secret is configuration the host hands over (`WEBHOOK_SECRET`, see `examples/edgefn.toml`); the function
//! never logs it and never echoes it.
//!
//! ```text
//! body='{"action":"opened"}'
//! sig=$(printf '%s' "$body" | openssl dgst -sha256 -hmac "$WEBHOOK_SECRET" | cut -d' ' -f2)
//! curl -X POST localhost:8080/webhooks/github -H "x-hub-signature-256: sha256=$sig" -d "$body"
//! ```

use edgefn::prelude::*;
use hmac::{Hmac, Mac};
use sha2::Sha256;

/// The configuration key holding the shared secret.
pub const SECRET_KEY: &str = "WEBHOOK_SECRET";
/// The header GitHub signs deliveries with.
pub const SIGNATURE_HEADER: &str = "x-hub-signature-256";

// ANCHOR: github_webhook
#[function(trigger = http("/webhooks/github", method = "POST"))]
fn github_webhook(req: Request) -> Result<Response> {
    let secret = edgefn::config::require(SECRET_KEY)?;
    verify_signature(secret.as_bytes(), req.header(SIGNATURE_HEADER), req.body())?;
    let event = req.header("x-github-event").unwrap_or("unknown").to_owned();
    let payload: serde_json::Value = req.json()?;
    let action = payload.get("action").and_then(|a| a.as_str()).unwrap_or("none");
    Response::json(&serde_json::json!({ "accepted": true, "event": event, "action": action }))
}
// ANCHOR_END: github_webhook

/// Checks `header` (`sha256=<hex>`) against the HMAC-SHA256 of `body`, in constant time. 401 when it is missing,
/// malformed or wrong: the caller must not learn which.
pub fn verify_signature(secret: &[u8], header: Option<&str>, body: &[u8]) -> Result<()> {
    let unauthorized = || Error::unauthorized(format!("missing or invalid {SIGNATURE_HEADER} signature"));
    let hex_signature = header.and_then(|h| h.strip_prefix("sha256=")).ok_or_else(unauthorized)?;
    let signature = hex::decode(hex_signature).map_err(|_| unauthorized())?;
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).map_err(|_| Error::internal("HMAC key rejected"))?;
    mac.update(body);
    mac.verify_slice(&signature).map_err(|_| unauthorized())
}

/// Signs `body` the way GitHub does: `sha256=<hex of HMAC-SHA256>`.
pub fn sign(secret: &[u8], body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC accepts keys of any length");
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &[u8] = b"It's a Secret to Everybody";

    #[test]
    fn github_documented_vector_verifies() {
        // The example from GitHub's "Validating webhook deliveries" documentation.
        let expected = "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17";
        assert_eq!(sign(SECRET, b"Hello, World!"), expected);
        assert!(verify_signature(SECRET, Some(expected), b"Hello, World!").is_ok());
    }

    #[test]
    fn bad_or_missing_signatures_are_401() {
        let good = sign(SECRET, b"body");
        for header in [None, Some("sha1=abc"), Some("sha256=zz"), Some(good.as_str())] {
            let result = verify_signature(SECRET, header, b"tampered body");
            assert_eq!(result.unwrap_err().status(), 401, "{header:?}");
        }
    }
}
