//! A test guest for the gateway: `GET /limited/{limiter}/{who}` takes a token from `who`'s bucket of the host's
//! limiter `limiter` and answers 200 with what is left, or 429 with `Retry-After`.

use edgefn::prelude::*;

// ANCHOR: limited
#[function(trigger = http("/limited/{limiter}/{who}"))]
fn limited(req: Request) -> Result<Response> {
    let (limiter, who) = (req.param("limiter").unwrap_or_default(), req.param("who").unwrap_or_default());
    let decision = edgefn::ratelimit::check(limiter, who)?;
    let body = serde_json::json!({ "allowed": decision.allowed, "remaining": decision.remaining });
    if decision.allowed {
        return Response::json(&body);
    }
    let retry_after = decision.retry_after.as_secs().max(1).to_string();
    Ok(Response::json(&body)?.with_status(429).with_header("retry-after", &retry_after))
}
// ANCHOR_END: limited
