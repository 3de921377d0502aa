//! The WASI 0.3 examples on a real host, over real HTTP, against real origins on 127.0.0.1 (`support::origin`):
//! `examples/edge-proxy` (a streaming reverse proxy that rewrites headers and HTML, and an aggregator that fetches
//! several origins at once) and `examples/live-feed` (server-sent events with resume).

use crate::support::origin::Origin;
use crate::support::wire::{connect, read_chunk, read_head};
use crate::support::{Host, component_arg, get, send};
use std::io::Read as _;
use std::time::Duration;

/// A host serving both examples, the proxy pointed at `origin` and aggregating `aggregate` (paths at the origin).
fn examples_host(origin: &Origin, aggregate: &[&str]) -> (Host, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("temp dir");
    let config = dir.path().join("edgefn.toml");
    let urls: Vec<String> = aggregate.iter().map(|path| format!("{}{path}", origin.url)).collect();
    let text = format!(
        "[components.edge_proxy]\n\
         env = {{ ORIGIN_URL = \"{url}\", AGGREGATE_URLS = \"{urls}\", AGGREGATE_TIMEOUT_MS = \"1500\" }}\n\
         allowed_outbound_hosts = [\"{authority}\"]\n",
        url = origin.url,
        urls = urls.join(","),
        authority = origin.authority,
    );
    std::fs::write(&config, text).expect("write config");
    let host = Host::start(&[
        "--config",
        config.to_str().expect("utf-8"),
        &component_arg("edge_proxy"),
        &component_arg("live_feed"),
    ]);
    (host, dir)
}

#[test]
fn the_edge_proxy_rewrites_headers_and_html_on_the_fly() {
    let origin = Origin::start();
    let (host, _dir) = examples_host(&origin, &[]);
    let reply = get(&host.url("/edge/page"));
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(reply.header("content-type"), Some("text/html; charset=utf-8"));
    assert_eq!(reply.header("server"), None, "the origin's server header is dropped: {:?}", reply.headers);
    assert_eq!(reply.header("via"), Some("1.1 edgefn"));
    assert_eq!(reply.header("x-edge"), Some("edgefn"));
    // The origin sent the page 7 bytes at a time, so tags arrived cut in pieces; every link is still rewritten.
    let expected = "<!doctype html><html><head><link rel=\"stylesheet\" href=\"/edge/style.css\"></head><body>\
         <div id=\"edge-banner\">served at the edge by edgefn</div>\
         <h1>The origin</h1><a href=\"/edge/about\">about</a> <a href=\"https://elsewhere.test/x\">away</a>\
         <img src=\"/edge/logo.png\"></body></html>";
    assert_eq!(reply.body, expected);

    // A redirect at the origin stays at the edge.
    let agent = ureq::AgentBuilder::new().redirects(0).timeout(Duration::from_secs(30)).build();
    let response = agent.get(&host.url("/edge/redirect")).call().expect("the redirect");
    assert_eq!(response.status(), 302);
    assert_eq!(response.header("location"), Some("/edge/page"));
    assert_eq!(response.header("via"), Some("1.1 edgefn"));

    // The client's headers and query reach the origin, which sees its own host, not the edge's.
    let reply =
        send("GET", &host.url("/edge/json/fwd?ms=1"), &[("x-client", "kept"), ("x-request-id", "proxy-1")], b"");
    assert_eq!((reply.status, reply.json()), (200, serde_json::json!({ "name": "fwd" })));
    let seen = origin.headers("/json/fwd");
    assert_eq!(seen.len(), 1, "{seen:?}");
    assert_eq!(seen[0].get("x-client").map(String::as_str), Some("kept"), "{seen:?}");
    assert_eq!(seen[0].get("x-request-id").map(String::as_str), Some("proxy-1"), "{seen:?}");
    assert_eq!(seen[0].get("host").map(String::as_str), Some(origin.authority.as_str()), "{seen:?}");
}

#[test]
fn the_edge_proxy_forwards_a_large_body_byte_for_byte() {
    let origin = Origin::start();
    let (host, _dir) = examples_host(&origin, &[]);
    let size = 24 << 20;
    let response = ureq::get(&host.url(&format!("/edge/bytes/{size}"))).call().expect("the body");
    assert_eq!(response.status(), 200);
    assert_eq!(response.header("content-type"), Some("application/octet-stream"));
    assert_eq!(response.header("x-powered-by"), None, "the origin's x-powered-by is dropped");
    assert_eq!(response.header("x-edge"), Some("edgefn"));
    let mut body = Vec::with_capacity(size);
    response.into_reader().read_to_end(&mut body).expect("read the body");
    assert_eq!(body.len(), size);
    let first_wrong = body.iter().enumerate().position(|(i, byte)| *byte != b'a' + (i % 10) as u8);
    assert_eq!(first_wrong, None, "the body differs from the origin's");
}

#[test]
fn the_aggregator_fetches_every_origin_at_once_and_reports_the_one_that_timed_out() {
    let origin = Origin::start();
    let (host, _dir) = examples_host(&origin, &["/delay/300", "/json/a?ms=300", "/delay/301", "/delay/10000"]);
    let reply = get(&host.url("/aggregate"));
    assert_eq!(reply.status, 200, "{}", reply.body);
    let merged = reply.json();
    let sources = merged["sources"].as_array().expect("sources");
    assert_eq!(sources.len(), 4, "{merged}");
    assert_eq!(sources[0]["body"], "origin waited 300 ms", "{merged}");
    assert_eq!(sources[1]["body"], serde_json::json!({ "name": "a" }), "JSON is merged as JSON: {merged}");
    assert_eq!(sources[2]["body"], "origin waited 301 ms", "{merged}");
    assert!(sources[..3].iter().all(|s| s["status"] == 200), "{merged}");
    // The slow origin passes AGGREGATE_TIMEOUT_MS and is reported, without failing the others.
    let error = sources[3]["error"].as_str().unwrap_or_else(|| panic!("the slow origin is an error: {merged}"));
    assert!(error.contains("timed out") || error.contains("timeout"), "{error}");
    // All four were at the origin at the same time: the calls ran at once, not one after another.
    assert_eq!(origin.most_at_once(), 4);
}

/// The events of a server-sent-events body as a browser reads them: blocks of fields, comments left out.
fn events(wire: &str) -> Vec<Vec<String>> {
    wire.split("\n\n")
        .map(|block| block.lines().filter(|line| !line.starts_with(':')).map(str::to_owned).collect::<Vec<_>>())
        .filter(|fields| !fields.is_empty())
        .collect()
}

/// The `tick` of a clock event's JSON data.
fn tick(event: &[String]) -> u64 {
    let data = event.iter().find_map(|f| f.strip_prefix("data: ")).expect("a data field");
    let data: serde_json::Value = serde_json::from_str(data).expect("JSON data");
    data["tick"].as_u64().expect("a tick")
}

#[test]
fn the_live_feed_clock_sends_ticks_one_by_one_and_resumes_after_the_last_event_id() {
    let origin = Origin::start();
    let (host, _dir) = examples_host(&origin, &[]);
    let mut reader = connect(&host, "GET /feed/clock?count=3&every_ms=400 HTTP/1.1\r\nHost: {host}\r\n\r\n");
    let head = read_head(&mut reader);
    assert!(head[0].starts_with("HTTP/1.1 200"), "{head:?}");
    assert!(head.iter().any(|h| h.eq_ignore_ascii_case("content-type: text/event-stream")), "{head:?}");
    // The first tick comes alone: the next is not made for another 400 ms.
    let first = String::from_utf8(read_chunk(&mut reader).expect("the first tick")).expect("utf-8");
    let first = events(&first);
    assert_eq!(first.len(), 1, "{first:?}");
    assert_eq!(first[0][..2], ["event: tick", "id: 0"]);
    assert_eq!(tick(&first[0]), 0);
    let mut rest = String::new();
    while let Some(chunk) = read_chunk(&mut reader) {
        rest.push_str(&String::from_utf8(chunk).expect("utf-8"));
    }
    let rest = events(&rest);
    let ids: Vec<&str> = rest.iter().map(|e| e[1].as_str()).collect();
    assert_eq!(ids, ["id: 1", "id: 2"], "{rest:?}");
    assert_eq!(rest.iter().map(|e| tick(e)).collect::<Vec<_>>(), [1, 2]);

    // A browser that reconnects says the last id it saw; the clock goes on from the next one.
    let mut reader =
        connect(&host, "GET /feed/clock?count=2&every_ms=1 HTTP/1.1\r\nHost: {host}\r\nLast-Event-ID: 41\r\n\r\n");
    let head = read_head(&mut reader);
    assert!(head[0].starts_with("HTTP/1.1 200"), "{head:?}");
    let mut wire = String::new();
    while let Some(chunk) = read_chunk(&mut reader) {
        wire.push_str(&String::from_utf8(chunk).expect("utf-8"));
    }
    let resumed = events(&wire);
    assert_eq!(resumed.iter().map(|e| e[1].as_str()).collect::<Vec<_>>(), ["id: 42", "id: 43"], "{resumed:?}");
    assert_eq!(resumed.iter().map(|e| tick(e)).collect::<Vec<_>>(), [42, 43]);

    let reply = send("GET", &host.url("/feed/clock"), &[("last-event-id", "yesterday")], b"");
    assert_eq!(reply.status, 400, "{}", reply.body);
    assert!(reply.body.contains("Last-Event-ID"), "the refusal names the header: {}", reply.body);
}

#[test]
fn the_live_feed_streams_an_answer_word_by_word_and_serves_its_page() {
    let origin = Origin::start();
    let (host, _dir) = examples_host(&origin, &[]);
    let reply = get(&host.url("/feed/answer?q=hello&token_ms=0"));
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(reply.header("content-type"), Some("text/event-stream"));
    let answer = events(&reply.body);
    let (done, tokens) = answer.split_last().expect("events");
    assert!(tokens.iter().all(|e| e[0] == "event: token"), "{tokens:?}");
    let words: Vec<&str> = tokens.iter().map(|e| e[1].strip_prefix("data: ").expect("data")).collect();
    assert_eq!(words[..3], ["You", "asked:", "hello."]);
    assert_eq!(done[0], "event: done");
    assert_eq!(done[1], format!("data: {{\"tokens\":{}}}", tokens.len()));

    let page = get(&host.url("/feed"));
    assert_eq!(page.status, 200);
    assert!(page.header("content-type").is_some_and(|t| t.starts_with("text/html")), "{:?}", page.headers);
    assert!(page.body.contains("new EventSource(\"/feed/clock\")"), "{}", page.body);
}
