//! Rate limits of routes, counted by the host before the function runs: a route whose function has a
//! `rate_limit` takes a token from its client's bucket (by IP, verified subject, API key header or claim); with none
//! left it answers `429` with `Retry-After`, without calling the function. Every answer of such a route carries
//! `RateLimit-Limit`, `RateLimit-Remaining` and `RateLimit-Reset` (IETF draft, seconds).

use super::error_response;
use super::server::ClientAddr;
use crate::capabilities::ratelimit::Decision;
use crate::config::{RateKey, RateLimitSettings};
use axum::extract::Request;
use axum::response::Response;
use base64::Engine as _;
use edgefn_manifest::record::CLAIMS_HEADER;
use http::{HeaderValue, StatusCode, header};

/// The claim `name` of the token the route's authorizer verified, as text.
/// Claim `name` of the token the auth gate verified (it passes the claims on in a header only it sets).
pub(super) fn claim(headers: &http::HeaderMap, name: &str) -> Option<String> {
    let encoded = headers.get(CLAIMS_HEADER)?.to_str().ok()?;
    let json = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(encoded).ok()?;
    let claims: serde_json::Value = serde_json::from_slice(&json).ok()?;
    match claims.get(name)? {
        serde_json::Value::String(text) => Some(text.clone()),
        other => Some(other.to_string()),
    }
}

/// Whose bucket `request` counts against under `limit`. Requests without the key (no token, no header) share
/// one bucket, named so that it cannot be a real key's.
pub(super) fn client_key(limit: &RateLimitSettings, request: &Request) -> String {
    let key = match limit.rate_key() {
        Ok(RateKey::Ip) => request.extensions().get::<ClientAddr>().map(|addr| addr.0.ip().to_string()),
        Ok(RateKey::Subject) => claim(request.headers(), "sub"),
        Ok(RateKey::Claim(name)) => claim(request.headers(), &name),
        Ok(RateKey::Header(name)) => {
            request.headers().get(name.as_str()).and_then(|v| v.to_str().ok()).map(str::to_owned)
        }
        Err(_) => None,
    };
    key.map_or_else(|| "\u{0}none".to_owned(), |key| format!("={key}"))
}

fn whole_seconds(duration: std::time::Duration) -> u64 {
    duration.as_secs() + u64::from(duration.subsec_nanos() > 0)
}

/// Adds the `RateLimit-*` headers of `decision` to `response`.
pub(super) fn add_headers(response: &mut Response, decision: &Decision) {
    let headers = response.headers_mut();
    headers.insert("ratelimit-limit", HeaderValue::from(decision.limit));
    headers.insert("ratelimit-remaining", HeaderValue::from(decision.remaining));
    headers.insert("ratelimit-reset", HeaderValue::from(whole_seconds(decision.reset)));
}

/// The `429` of a refused request.
pub(super) fn too_many(decision: &Decision, function: &str, request_id: &str) -> Response {
    let wait = whole_seconds(decision.retry_after).max(1);
    let message = format!("too many requests to {function}: try again in {wait} s (its rate_limit)");
    let mut response = error_response(StatusCode::TOO_MANY_REQUESTS, &message, request_id);
    response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(wait));
    add_headers(&mut response, decision);
    response
}
