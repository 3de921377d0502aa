//! __CRATE__: a webhook receiver that checks a GitHub-style `X-Hub-Signature-256` (HMAC-SHA256 of the raw body)
//! before it trusts the payload. The shared secret is configuration: deploy with `edgefn deploy . --secret
//! WEBHOOK_SECRET=...` (it is masked in everything the function prints). `cargo test` runs it natively.

use edgefn::prelude::*;
use hmac::{Hmac, Mac};
use sha2::Sha256;

/// The configuration key holding the shared secret.
pub const SECRET_KEY: &str = "WEBHOOK_SECRET";
/// The header the sender signs deliveries with.
pub const SIGNATURE_HEADER: &str = "x-hub-signature-256";

/// `POST /__ROUTE__/webhook`: 200 for a delivery whose signature checks out, 401 otherwise.
#[function(trigger = http("/__ROUTE__/webhook", method = "POST"))]
fn receive(req: Request) -> Result<Response> {
    let secret = edgefn::config::require(SECRET_KEY)?;
    verify_signature(secret.as_bytes(), req.header(SIGNATURE_HEADER), req.body())?;
    let payload: serde_json::Value = req.json()?;
    let event = req.header("x-github-event").unwrap_or("unknown");
    Response::json(&serde_json::json!({ "accepted": true, "event": event, "action": payload["action"] }))
}

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
    fn the_documented_github_vector_verifies() {
        let expected = "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17";
        assert_eq!(sign(SECRET, b"Hello, World!"), expected);
        assert!(verify_signature(SECRET, Some(expected), b"Hello, World!").is_ok());
    }

    #[test]
    fn bad_or_missing_signatures_are_401() {
        let good = sign(SECRET, b"body");
        for header in [None, Some("sha1=abc"), Some("sha256=zz"), Some(good.as_str())] {
            assert_eq!(verify_signature(SECRET, header, b"tampered").unwrap_err().status(), 401, "{header:?}");
        }
    }
}
