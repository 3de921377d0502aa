//! Test-only functions for the automation triggers. Each reports what it saw by POSTing JSON to the test's
//! collector (`COLLECTOR_URL`, an outbound host the test allows), so the tests observe real deliveries.

use edgefn::prelude::*;
use serde::Deserialize;
use serde_json::{Value, json};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}

/// POSTs `value` to the collector at `path`.
fn report(path: &str, value: &Value) -> Result<()> {
    let url = format!("{}{path}", edgefn::config::require("COLLECTOR_URL")?);
    let response = edgefn::fetch::post_json(&url, value)?;
    if response.status() != 200 {
        return Err(Error::internal(format!("the collector answered {}", response.status())));
    }
    Ok(())
}

// --- cron ---

#[function(trigger = cron("* * * * * *"))]
fn every_second(event: CronEvent) -> Result<()> {
    report("/every_second", &json!({ "reason": event.reason(), "attempt": event.attempt() }))
}

// ANCHOR: cron_options
#[function(trigger = cron("* * * * * *", catch_up = "all", catch_up_limit = 2))]
fn every_second_all(_event: CronEvent) {}

#[function(trigger = cron("* * * * * *", catch_up = "skip"))]
fn every_second_skip(_event: CronEvent) {}

/// Takes 2.5 s, so the next two ticks arrive while it runs.
#[function(trigger = cron("* * * * * *"))]
fn slow(_event: CronEvent) {
    std::thread::sleep(Duration::from_millis(2_500));
}

#[function(trigger = cron("*/2 * * * * *", retries = 2, backoff_ms = 100))]
fn always_fails(_event: CronEvent) -> Result<()> {
    Err(Error::internal("failing on purpose"))
}
// ANCHOR_END: cron_options

// ANCHOR: nightly
#[function(trigger = cron("0 0 3 * * *", tz = "Europe/Berlin"))]
fn nightly(event: CronEvent) -> Result<()> {
    report("/nightly", &json!({ "reason": event.reason(), "expression": event.expression(), "tz": event.timezone() }))
}
// ANCHOR_END: nightly

// --- queues ---

#[derive(Debug, Deserialize)]
struct Job {
    n: u32,
    #[serde(default)]
    fail_percent: u64,
}

fn roll(percent: u64) -> bool {
    percent > 0 && edgefn::random::u64() % 100 < percent
}

/// Fails at random: whole batches (`Err`), single messages (`retry_after`) and traps after acking half.
#[function(trigger = queue("flaky", batch_size = 10, max_wait_ms = 20, max_retries = 30, backoff_ms = 5, concurrency = 2))]
fn flaky(batch: Batch<Job>) -> Result<()> {
    let fail = batch.iter().map(|m| m.body().fail_percent).max().unwrap_or(0);
    if roll(fail / 3) {
        return Err(Error::internal("transient failure of the whole batch"));
    }
    let mut done = Vec::new();
    for message in &batch {
        if roll(fail / 3) {
            message.retry_after(Duration::from_millis(5));
        } else {
            done.push(message);
        }
    }
    let numbers: Vec<u32> = done.iter().map(|m| m.body().n).collect();
    report("/flaky", &json!({ "done": numbers }))?;
    for message in done.iter().take(done.len() / 2) {
        message.ack();
    }
    if roll(fail / 3) {
        // The acked half stays acked; the rest is redelivered.
        panic!("trapping after acking half of the batch");
    }
    Ok(())
}

#[function(trigger = queue("poison", max_retries = 2, backoff_ms = 10, max_wait_ms = 0))]
fn poison(batch: Batch<Value>) -> Result<()> {
    for message in &batch {
        report("/poison", &json!({ "id": message.id(), "attempts": message.attempts() }))?;
    }
    Err(Error::internal("this message is poison"))
}

#[function(trigger = queue("ordered", batch_size = 1, concurrency = 1, max_wait_ms = 0))]
fn ordered(batch: Batch<Value>) -> Result<()> {
    for message in &batch {
        let enqueued_at = message.enqueued_at().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0);
        report(
            "/ordered",
            &json!({ "body": message.body(), "priority": message.priority(), "enqueued_at": enqueued_at, "received_at": now_ms() }),
        )?;
    }
    Ok(())
}

/// Slow on purpose, and says when it starts a batch, so a test can kill the host in the middle of one.
#[function(trigger = queue("durable", batch_size = 10, max_wait_ms = 10, concurrency = 1))]
fn durable(batch: Batch<Job>) -> Result<()> {
    let numbers: Vec<u32> = batch.iter().map(|m| m.body().n).collect();
    report("/durable-started", &json!({ "started": numbers }))?;
    std::thread::sleep(Duration::from_millis(100 * batch.len() as u64));
    report("/durable", &json!({ "done": numbers }))
}

// --- topics ---

#[function(trigger = topic("events"))]
fn sub_a(batch: Batch<Value>) -> Result<()> {
    let bodies: Vec<&Value> = batch.iter().map(|m| m.body()).collect();
    report("/sub_a", &json!({ "bodies": bodies }))
}

#[function(trigger = topic("events"))]
fn sub_b(batch: Batch<Value>) -> Result<()> {
    let bodies: Vec<&Value> = batch.iter().map(|m| m.body()).collect();
    report("/sub_b", &json!({ "bodies": bodies }))
}

// --- invoke ---

#[function(trigger = invoke)]
fn double(n: i64) -> Result<i64> {
    Ok(n * 2)
}

/// Calls itself forever: the host's depth limit must stop it.
#[function(trigger = invoke)]
fn recurse(depth: u32) -> Result<u32> {
    edgefn::invoke("recurse", &(depth + 1))
}

// --- HTTP entry points that use the host ---

#[function(trigger = http("/double/{n}"))]
fn double_http(req: Request) -> Result<Response> {
    let n: i64 = req.param("n").unwrap_or("0").parse().map_err(|_| Error::bad_request("n is not a number"))?;
    let doubled: i64 = edgefn::invoke("double", &n)?;
    Response::json(&json!({ "result": doubled }))
}

#[function(trigger = http("/publish", method = "POST"))]
fn publish_http(req: Request) -> Result<Response> {
    let value: Value = req.json()?;
    let subscribers = edgefn::topic::publish("events", &value)?;
    Response::json(&json!({ "subscribers": subscribers }))
}

// ANCHOR: send_big
#[function(trigger = http("/send-big", method = "POST"))]
fn send_big(_req: Request) -> Result<Response> {
    let big = vec![b'x'; 2 << 20];
    match edgefn::queue::send_bytes("ordered", &big, edgefn::queue::SendOptions::new()) {
        Ok(id) => Response::json(&json!({ "sent": id })),
        Err(error) => Ok(Response::json(&json!({ "error": error.message() }))?.with_status(413)),
    }
}
// ANCHOR_END: send_big

#[function(trigger = http("/fetch"))]
fn fetch_http(req: Request) -> Result<Response> {
    let url = req.query("url").ok_or_else(|| Error::bad_request("missing ?url="))?;
    match edgefn::fetch::get(url) {
        Ok(response) => Response::json(&json!({ "status": response.status().as_u16() })),
        Err(error) => Ok(Response::json(&json!({ "error": error.message() }))?.with_status(502)),
    }
}

/// Uses a secret, and (carelessly) prints it: the host must keep it out of its logs.
#[function(trigger = http("/secret"))]
fn secret(_req: Request) -> Result<Response> {
    let secret = edgefn::config::require("API_SECRET")?;
    eprintln!("calling the API with secret {secret}");
    println!("secret is {secret}");
    Response::json(&json!({ "length": secret.len() }))
}
