//! A test guest for the gateway: `GET /limited/{limiter}/{who}` takes a token from `who`'s bucket of the host's
//! limiter `limiter` and answers 200 with what is left, or 429 with `Retry-After`. The `/cached/...` routes answer
//! with what a cache may keep, each answer unique (the time it was made), and `/purge` purges the host's cache. The
//! `/ws/{room}` functions are a chat room over WebSockets, and `/broadcast` sends to every connection of it.

use edgefn::prelude::*;
use edgefn::websocket::{self, WebSocketEvent};

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

/// A write to the greeting (answers 204): the host then drops what its cache holds for the path.
#[function(trigger = http("/cached/{name}", method = "POST"))]
fn rename(_req: Request) -> Response {
    Response::text("").with_status(204)
}

/// Never cached: the answer is this user's.
#[function(trigger = http("/uncached/private", method = "GET"))]
fn private(_req: Request) -> Response {
    Response::text(run_mark().to_string()).with_header("cache-control", "private, max-age=60")
}

// ANCHOR: purge
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
// ANCHOR_END: purge

// ANCHOR: websocket
/// A chat room's connect: `/ws/closed` is refused; every other room's connection is recorded in the store and
/// welcomed.
#[function(trigger = websocket("/ws/{room}", on = "connect"))]
fn ws_connect(event: WebSocketEvent) -> Result<()> {
    let room = event.param("room").unwrap_or_default();
    if room == "closed" {
        return Err(Error::new(403, "room `closed` is closed"));
    }
    edgefn::kv::Store::open("default")?.set(&format!("ws:{}", event.connection_id), room)?;
    websocket::send(&event.connection_id, "welcome")
}

/// Echoes each message (naming the version's `GENERATION`); `who am i` answers the connection's id; `close me`
/// makes the function close the connection.
#[function(trigger = websocket("/ws/{room}", on = "message"))]
fn ws_message(event: WebSocketEvent) -> Result<()> {
    let text = event.text().unwrap_or_default();
    if text == "who am i" {
        return websocket::send(&event.connection_id, &event.connection_id);
    }
    if text == "close me" {
        return websocket::close(&event.connection_id, 4000, "asked to");
    }
    let generation = std::env::var("GENERATION").unwrap_or_else(|_| "1".into());
    websocket::send(&event.connection_id, &format!("echo {text} from generation {generation}"))
}

/// Records that the connection's disconnect ran.
#[function(trigger = websocket("/ws/{room}", on = "disconnect"))]
fn ws_disconnect(event: WebSocketEvent) -> Result<()> {
    let store = edgefn::kv::Store::open("default")?;
    store.delete(&format!("ws:{}", event.connection_id))?;
    store.set(&format!("gone:{}", event.connection_id), "")
}

/// `POST /broadcast` with a text body: sends it to every open connection; answers how many got it.
#[function(trigger = http("/broadcast", method = "POST"))]
fn broadcast(req: Request) -> Result<Response> {
    let text = req.text()?.to_owned();
    let store = edgefn::kv::Store::open("default")?;
    let (mut cursor, mut sent) = (None, 0);
    loop {
        let page = store.list("ws:", cursor.as_deref(), 500)?;
        for key in &page.keys {
            websocket::send(&key["ws:".len()..], &text)?;
            sent += 1;
        }
        match page.cursor {
            Some(next) => cursor = Some(next),
            None => break,
        }
    }
    Ok(Response::text(sent.to_string()))
}
// ANCHOR_END: websocket

/// `POST /send/{connection}` with a text body: sends it to that connection, wherever in the cluster it is held;
/// `?close=CODE` closes it instead. Answers 200, or 404 with the reason the send failed.
#[function(trigger = http("/send/{connection}", method = "POST"))]
fn send_to(req: Request) -> Result<Response> {
    let connection = req.param("connection").unwrap_or_default();
    let sent = match req.query("close").and_then(|code| code.parse().ok()) {
        Some(code) => websocket::close(connection, code, "closed from afar"),
        None => websocket::send(connection, req.text()?),
    };
    Ok(match sent {
        Ok(()) => Response::text("sent"),
        Err(error) => Response::text(error.message()).with_status(404),
    })
}
