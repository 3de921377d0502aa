//! Live feeds as server-sent events, from async functions (a WASI 0.3 component):
//!
//! - `GET /feed/clock?count=N&every_ms=M` sends `N` ticks (default: forever), `M` ms apart (default 1000), each
//!   with an `id`. A browser that reconnects sends the last id it saw in `Last-Event-ID`, and the clock goes on from
//!   there instead of starting over.
//! - `GET /feed/answer?q=...` streams an answer word by word, the way an LLM's tokens arrive, then an event `done`
//!   carrying how many tokens were sent.
//! - `GET /feed` is a page that shows both, with the browser's own `EventSource`.
//!
//! While a feed is quiet, a keep-alive comment goes out every 15 s, so proxies do not close it. When the browser
//! goes away, the next send fails and the function stops there.

use edgefn::prelude::*;
use std::time::Duration;

// ANCHOR: clock
#[function(trigger = http("/feed/clock"))]
async fn clock(req: Request) -> Result<Response> {
    let count: Option<u64> = req.query("count").map(str::parse).transpose().map_err(|_| bad("count"))?;
    let every = Duration::from_millis(req.query("every_ms").unwrap_or("1000").parse().map_err(|_| bad("every_ms"))?);
    // A reconnecting browser resumes after the last tick it saw.
    let first = match req.header("last-event-id") {
        Some(last) => last.parse::<u64>().map_err(|_| bad("Last-Event-ID"))? + 1,
        None => 0,
    };
    Ok(Response::sse(move |mut events| async move {
        let mut tick = first;
        if count == Some(0) {
            return Ok(());
        }
        loop {
            let payload = serde_json::json!({ "tick": tick, "unix_ms": unix_ms() });
            events.send(Event::json(&payload)?.event("tick").id(tick.to_string())).await?;
            tick += 1;
            // Checked after sending, so the last tick ends the stream at once instead of after one more wait.
            if count.is_some_and(|count| tick >= first + count) {
                return Ok(());
            }
            edgefn::rt::sleep(every).await;
        }
    }))
}
// ANCHOR_END: clock

#[function(trigger = http("/feed/answer"))]
async fn answer(req: Request) -> Result<Response> {
    let question = req.query("q").unwrap_or("what is edgefn").to_owned();
    let delay = Duration::from_millis(req.query("token_ms").unwrap_or("40").parse().map_err(|_| bad("token_ms"))?);
    let text = format!(
        "You asked: {question}. edgefn runs WebAssembly functions on machines you own, and this answer reaches you \
         one word at a time, as it is made."
    );
    Ok(Response::sse(move |mut events| async move {
        let mut sent = 0;
        for word in text.split(' ') {
            events.send(Event::data(word).event("token")).await?;
            sent += 1;
            edgefn::rt::sleep(delay).await;
        }
        events.send(Event::json(&serde_json::json!({ "tokens": sent }))?.event("done")).await
    }))
}

#[function(trigger = http("/feed"))]
fn page(_req: Request) -> Response {
    Response::html(PAGE)
}

fn bad(what: &str) -> Error {
    Error::bad_request(format!("`{what}` must be a whole number"))
}

fn unix_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

const PAGE: &str = r#"<!doctype html>
<meta charset="utf-8">
<title>edgefn live feed</title>
<h1>Live feed</h1>
<p>Clock: <output id="clock">waiting for the first tick</output></p>
<p>Answer: <output id="answer"></output></p>
<script>
  const clock = new EventSource("/feed/clock");
  clock.addEventListener("tick", (e) => { document.getElementById("clock").textContent = JSON.parse(e.data).tick; });
  const answer = new EventSource("/feed/answer?q=" + encodeURIComponent("what is a live feed"));
  answer.addEventListener("token", (e) => { document.getElementById("answer").textContent += e.data + " "; });
  answer.addEventListener("done", () => answer.close());
</script>
"#;

#[cfg(test)]
mod tests {
    // ANCHOR: test_resume
    #[test]
    fn the_clock_resumes_after_the_last_event_a_browser_saw() {
        let request = edgefn::testing::request("GET", "/feed/clock?count=2&every_ms=1").header("last-event-id", "41");
        let events = edgefn::testing::sse_events(edgefn::testing::call(request)).expect("the feed ends cleanly");
        let ids: Vec<_> = events.iter().map(|e| e.event_id().unwrap_or_default().to_owned()).collect();
        assert_eq!(ids, ["42", "43"]);
        assert!(events.iter().all(|e| e.event_type() == Some("tick")));
    }
    // ANCHOR_END: test_resume

    #[test]
    fn an_answer_arrives_word_by_word_then_says_it_is_done() {
        let response = edgefn::testing::call(edgefn::testing::get("/feed/answer?q=hi&token_ms=0"));
        assert_eq!(response.header("content-type"), Some("text/event-stream"));
        let events = edgefn::testing::sse_events(response).expect("the answer ends cleanly");
        let (done, tokens) = events.split_last().expect("events");
        assert_eq!(done.event_type(), Some("done"));
        let words: Vec<&str> = tokens.iter().map(|e| e.data_str()).collect();
        assert_eq!(words[..3], ["You", "asked:", "hi."]);
        assert_eq!(done.data_str(), format!("{{\"tokens\":{}}}", tokens.len()));
    }

    #[test]
    fn a_malformed_last_event_id_is_a_400() {
        let request = edgefn::testing::request("GET", "/feed/clock").header("last-event-id", "yesterday");
        assert_eq!(edgefn::testing::call(request).status(), 400);
    }
}
