//! A test guest for the gateway: `GET /limited/{limiter}/{who}` takes a token from `who`'s bucket of the host's
//! limiter `limiter` and answers 200 with what is left, or 429 with `Retry-After`. The `/cached/...` routes answer
//! with what a cache may keep, each answer unique (the time it was made), and `/purge` purges the host's cache.

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

/// A unique mark for each run of a function: a cached answer repeats it, a fresh one does not.
fn run_mark() -> u128 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos())
}

// ANCHOR: cached
/// Cacheable for a minute, by language, tagged for purges; `x-fail: 1` makes it fail (500), which a stale answer may
/// then cover for up to five minutes.
#[function(trigger = http("/cached/{name}", method = "GET"))]
fn cached(req: Request) -> Response {
    let name = req.param("name").unwrap_or_default();
    if req.header("x-fail") == Some("1") {
        return Response::text("failing on purpose").with_status(500);
    }
    let language = req.header("accept-language").unwrap_or("en");
    let max_age = req.query("max_age").unwrap_or("60");
    Response::text(format!("{language} {name} {}", run_mark()))
        .with_header("cache-control", &format!("public, max-age={max_age}, stale-if-error=300"))
        .with_header("vary", "Accept-Language")
        .with_header("cache-tag", &format!("greetings, greeting-{name}"))
}
// ANCHOR_END: cached

/// Never cached: the answer is this user's.
#[function(trigger = http("/uncached/private", method = "GET"))]
fn private(_req: Request) -> Response {
    Response::text(run_mark().to_string()).with_header("cache-control", "private, max-age=60")
}

/// `POST /purge?tag=T` or `?path=P`: purges the host's cache of this component's entries; answers how many.
#[function(trigger = http("/purge", method = "POST"))]
fn purge(req: Request) -> Result<Response> {
    let purged = match (req.query("tag"), req.query("path")) {
        (Some(tag), _) => edgefn::cache::purge_tag(tag)?,
        (None, Some(path)) => edgefn::cache::purge_path(path)?,
        (None, None) => return Ok(Response::text("name a tag or a path").with_status(400)),
    };
    Ok(Response::text(purged.to_string()))
}
