//! Test guest, built for WASI 0.3 (the SDK's `wasip3` feature): async handlers of every trigger, request bodies read
//! as they arrive, streamed responses and server-sent events, concurrent outbound calls, and state that shows whether
//! an instance was reused. Each route reports what really happened; none turns an error into the answer a test
//! expects.

use edgefn::prelude::*;
use sha2::{Digest as _, Sha256};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Counts the requests this instance has served: 1 on every request of a fresh instance, more when it is reused.
static SERVED: AtomicU64 = AtomicU64::new(0);

#[function(trigger = http("/s/hello"))]
async fn hello(_req: Request) -> Response {
    Response::text("hello from an async handler")
}

#[function(trigger = http("/s/sync-hello"))]
fn sync_hello(req: Request) -> Response {
    Response::text(format!("hello from a sync handler, {} body bytes", req.body().len()))
}

/// The body, passed back as it arrives.
#[function(trigger = http("/s/echo", method = "POST"))]
async fn echo(req: Request) -> Response {
    Response::from_stream(200, req.body_stream())
}

// ANCHOR: hash
/// Reads the body chunk by chunk and answers its length, its sha256 and how many chunks it came in.
#[function(trigger = http("/s/hash", method = "POST"))]
async fn hash(req: Request) -> Result<Response> {
    let mut body = req.body_stream();
    let (mut hasher, mut bytes, mut chunks) = (Sha256::new(), 0u64, 0u64);
    while let Some(chunk) = body.next().await {
        let chunk = chunk?;
        bytes += chunk.len() as u64;
        chunks += 1;
        hasher.update(&chunk);
    }
    let sha256 = hex::encode(hasher.finalize());
    Response::json(&serde_json::json!({ "bytes": bytes, "chunks": chunks, "sha256": sha256 }))
}
// ANCHOR_END: hash

/// Computes (no await) for `ms` milliseconds, then answers how long it computed: a guest that counts as
/// long-running for the host's CPU lanes.
fn compute_for(ms: &str) -> Result<Response> {
    let ms: u64 = ms.parse().map_err(|_| Error::bad_request("ms must be a number"))?;
    let started = Instant::now();
    let mut spins = 0u64;
    while started.elapsed() < Duration::from_millis(ms) {
        spins = std::hint::black_box(spins.wrapping_add(1));
    }
    Ok(Response::text(format!("computed {ms} ms")))
}

/// [`compute_for`], on an instance the test's config asks to reuse.
#[function(trigger = http("/s/compute-reused/{ms}"))]
async fn compute_reused(req: Request) -> Result<Response> {
    compute_for(req.param("ms").unwrap_or_default())
}

/// [`compute_for`], on a fresh instance.
#[function(trigger = http("/s/compute-fresh/{ms}"))]
async fn compute_fresh(req: Request) -> Result<Response> {
    compute_for(req.param("ms").unwrap_or_default())
}

/// Reads the body as a stream to its end, then fails: a failure whose input the host never held whole.
#[function(trigger = http("/s/fail-after-reading", method = "POST"))]
async fn fail_after_reading(req: Request) -> Result<Response> {
    let mut body = req.body_stream();
    let mut bytes = 0;
    while let Some(chunk) = body.next().await {
        bytes += chunk?.len();
    }
    Err(Error::internal(format!("read {bytes} bytes, then failed on purpose")))
}

/// A sync handler in a WASI 0.3 component: the whole body, parsed as JSON (a body over the limit is a 413).
#[function(trigger = http("/s/json", method = "POST"))]
fn json_echo(req: Request) -> Result<Response> {
    let value: serde_json::Value = req.json()?;
    Response::json(&value)
}

/// An async handler reading the whole body with the sync accessor.
#[function(trigger = http("/s/json-async", method = "POST"))]
async fn json_async(req: Request) -> Result<Response> {
    let value: serde_json::Value = req.json()?;
    Response::json(&serde_json::json!({ "got": value }))
}

// ANCHOR: generate
/// `bytes` bytes of `0123456789`, made while they are sent, 64 KiB at a time.
#[function(trigger = http("/s/generate/{bytes}"))]
async fn generate(req: Request) -> Result<Response> {
    let total: u64 = req.param("bytes").unwrap_or("0").parse().map_err(|_| Error::bad_request("bytes is a number"))?;
    let chunk: Vec<u8> = (0..64 << 10).map(|i| b'0' + (i % 10) as u8).collect();
    Ok(Response::stream(move |mut body| async move {
        let mut left = total;
        while left > 0 {
            let take = left.min(chunk.len() as u64) as usize;
            body.write(chunk[..take].to_vec()).await?;
            left -= take as u64;
        }
        Ok(())
    })
    .with_header("content-type", "application/octet-stream"))
}
// ANCHOR_END: generate

// ANCHOR: sse
/// `count` events, `every_ms` apart (default 20), with a keep-alive comment after `keepalive_ms` of quiet.
#[function(trigger = http("/s/sse/{count}"))]
async fn sse(req: Request) -> Result<Response> {
    let count: u32 = req.param("count").unwrap_or("0").parse().map_err(|_| Error::bad_request("count is a number"))?;
    let every = Duration::from_millis(req.query("every_ms").unwrap_or("20").parse().unwrap_or(20));
    let keep_alive = Duration::from_millis(req.query("keepalive_ms").unwrap_or("15000").parse().unwrap_or(15_000));
    Ok(Response::sse(move |mut events| async move {
        for n in 0..count {
            if n > 0 {
                edgefn::rt::sleep(every).await;
            }
            events.send(Event::data(format!("tick {n}")).event("tick").id(n.to_string())).await?;
        }
        Ok(())
    })
    .with_keep_alive(keep_alive))
}
// ANCHOR_END: sse

/// How many requests this instance has served, this one included.
#[function(trigger = http("/s/counter"))]
async fn counter(_req: Request) -> Response {
    let served = SERVED.fetch_add(1, Ordering::SeqCst) + 1;
    Response::text(served.to_string())
}

// ANCHOR: fanout
/// Fetches every `url` at once and answers their bodies and how long the whole took inside the guest.
#[function(trigger = http("/s/fanout"))]
async fn fanout(req: Request) -> Result<Response> {
    let urls: Vec<String> = req.query_pairs().iter().filter(|(k, _)| k == "url").map(|(_, v)| v.clone()).collect();
    let started = Instant::now();
    let calls = urls.iter().map(|url| async move {
        let request = edgefn::http::Request::get(url.as_str()).body(Vec::new())?;
        let fetched = edgefn::fetch::send(request).await?;
        let status = fetched.status();
        Ok::<_, Error>((status, fetched.text().await?))
    });
    let answers = edgefn::futures::future::join_all(calls).await;
    let elapsed_ms = started.elapsed().as_millis() as u64;
    let mut bodies = Vec::new();
    for answer in answers {
        let (status, body) = answer?;
        bodies.push(serde_json::json!({ "status": status, "body": body }));
    }
    Response::json(&serde_json::json!({ "elapsed_ms": elapsed_ms, "answers": bodies }))
}
// ANCHOR_END: fanout

// ANCHOR: fetch_timeout
/// Fetches `url` with a `timeout_ms` timeout and answers its body.
#[function(trigger = http("/s/fetch-timeout"))]
async fn fetch_timeout(req: Request) -> Result<Response> {
    let url = req.query("url").ok_or_else(|| Error::bad_request("url is required"))?;
    let limit = Duration::from_millis(req.query("timeout_ms").unwrap_or("100").parse().unwrap_or(100));
    let request = edgefn::http::Request::get(url).body(Vec::new())?;
    let fetched = edgefn::fetch::send_with(request, edgefn::fetch::Options::new().timeout(limit)).await?;
    Ok(Response::text(fetched.text().await?))
}
// ANCHOR_END: fetch_timeout

// ANCHOR: proxy
/// `url`'s response, passed on as it arrives.
#[function(trigger = http("/s/proxy"))]
async fn proxy(req: Request) -> Result<Response> {
    let url = req.query("url").ok_or_else(|| Error::bad_request("url is required"))?;
    let fetched = edgefn::fetch::send(edgefn::http::Request::get(url).body(Vec::new())?).await?;
    Ok(Response::forward(fetched).with_header("x-proxied-by", "streaming"))
}
// ANCHOR_END: proxy

/// Sleeps `ms`, then answers.
#[function(trigger = http("/s/slow"))]
async fn slow(req: Request) -> Response {
    let ms: u64 = req.query("ms").unwrap_or("0").parse().unwrap_or(0);
    edgefn::rt::sleep(Duration::from_millis(ms)).await;
    Response::text(format!("slept {ms} ms"))
}

/// Writes `line N` every `every_ms` for `n` lines, and counts each line written in the `drips` store under the
/// key `key`: once the client hangs up, the count stops growing.
#[function(trigger = http("/s/drip"))]
async fn drip(req: Request) -> Result<Response> {
    let n: u64 = req.query("n").unwrap_or("100").parse().unwrap_or(100);
    let every = Duration::from_millis(req.query("every_ms").unwrap_or("50").parse().unwrap_or(50));
    let key = req.query("key").unwrap_or("drip").to_owned();
    let store = edgefn::kv::Store::open("drips")?;
    Ok(Response::stream(move |mut body| async move {
        for line in 0..n {
            body.write(format!("line {line}\n")).await?;
            store.increment(&key, 1)?;
            edgefn::rt::sleep(every).await;
        }
        Ok(())
    }))
}

/// A panic: the instance traps.
#[function(trigger = http("/s/trap"))]
async fn trap(_req: Request) -> Response {
    SERVED.fetch_add(1, Ordering::SeqCst);
    panic!("this handler always panics")
}

/// The correlation id this request's work runs under, read after an await.
#[function(trigger = http("/s/correlation"))]
async fn correlation(_req: Request) -> Response {
    edgefn::rt::sleep(Duration::from_millis(5)).await;
    Response::text(edgefn::correlation_id())
}

// ANCHOR: async_invoke
#[derive(serde::Deserialize, serde::Serialize)]
struct Sum {
    a: u64,
    b: u64,
}

/// An async invoke function.
#[function(trigger = invoke)]
async fn add(input: Sum) -> Result<u64> {
    edgefn::rt::sleep(Duration::from_millis(5)).await;
    Ok(input.a + input.b)
}

/// Calls `add` with the async invoke, from an HTTP handler.
#[function(trigger = http("/s/add/{a}/{b}"))]
async fn add_over_http(req: Request) -> Result<Response> {
    let parse = |name: &str| req.param(name).unwrap_or("0").parse::<u64>().map_err(|_| Error::bad_request("numbers"));
    let sum: u64 = edgefn::invoke::call("add", &Sum { a: parse("a")?, b: parse("b")? }).await?;
    Ok(Response::text(sum.to_string()))
}
// ANCHOR_END: async_invoke

// ANCHOR: async_queue
#[derive(serde::Deserialize, serde::Serialize)]
struct Job {
    id: u64,
}

/// An async queue consumer: acks each job after an await, and records it in the `drips` store.
#[function(trigger = queue("s-jobs"))]
async fn jobs(batch: Batch<Job>) -> Result<()> {
    let store = edgefn::kv::Store::open("drips")?;
    for message in &batch {
        edgefn::rt::sleep(Duration::from_millis(1)).await;
        store.set(&format!("job-{}", message.body().id), edgefn::correlation_id().as_bytes())?;
        message.ack();
    }
    Ok(())
}
// ANCHOR_END: async_queue

/// Sends a job to `s-jobs` and answers its message id.
#[function(trigger = http("/s/jobs/{id}", method = "POST"))]
async fn send_job(req: Request) -> Result<Response> {
    let id: u64 = req.param("id").unwrap_or("0").parse().map_err(|_| Error::bad_request("id is a number"))?;
    Ok(Response::text(edgefn::queue::send("s-jobs", &Job { id })?))
}

/// `bytes` bytes made while they are sent, 64 KiB at a time, each piece counted in the `drips` store under
/// `produced-KEY` as soon as the client has taken it in: how far a client that reads nothing lets the function get.
#[function(trigger = http("/s/produce/{bytes}"))]
async fn produce(req: Request) -> Result<Response> {
    let total: u64 = req.param("bytes").unwrap_or("0").parse().map_err(|_| Error::bad_request("bytes is a number"))?;
    let key = format!("produced-{}", req.query("key").unwrap_or("default"));
    let store = edgefn::kv::Store::open("drips")?;
    let piece = vec![b'p'; 64 << 10];
    Ok(Response::stream(move |mut body| async move {
        let mut left = total;
        while left > 0 {
            let take = left.min(piece.len() as u64) as usize;
            body.write(piece[..take].to_vec()).await?;
            store.increment(&key, 1)?;
            left -= take as u64;
        }
        Ok(())
    }))
}

/// Counts this instance's requests like `/s/counter`, and with `?trap=1` then panics: a reused instance that
/// traps takes only its own requests down.
#[function(trigger = http("/s/counted"))]
async fn counted(req: Request) -> Response {
    let served = SERVED.fetch_add(1, Ordering::SeqCst) + 1;
    if req.query("trap").is_some() {
        panic!("trapping on request {served} of this instance");
    }
    Response::text(served.to_string())
}

/// Says (on stdout) which work it serves, after an await, and answers how many requests its instance has served.
#[function(trigger = http("/s/whoami"))]
async fn whoami(_req: Request) -> Response {
    let served = SERVED.fetch_add(1, Ordering::SeqCst) + 1;
    edgefn::rt::sleep(Duration::from_millis(2)).await;
    println!("serving {} as request {served} of this instance", edgefn::correlation_id());
    Response::text(served.to_string())
}
