//! Test-only consumers for a cluster of hosts. Each reports what it handled, and on which node (`NODE`, set per
//! host in its config), by POSTing JSON to the test's collector (`COLLECTOR_URL`).

use edgefn::prelude::*;
use serde::Deserialize;
use serde_json::{Value, json};
use std::time::Duration;

/// POSTs `value`, with this node's name, to the collector at `path`.
fn report(path: &str, mut value: Value) -> Result<()> {
    value["node"] = json!(edgefn::config::require("NODE")?);
    let url = format!("{}{path}", edgefn::config::require("COLLECTOR_URL")?);
    let response = edgefn::fetch::post_json(&url, &value)?;
    if response.status() != 200 {
        return Err(Error::internal(format!("the collector answered {}", response.status())));
    }
    Ok(())
}

#[derive(Debug, Deserialize)]
struct Job {
    n: u32,
}

/// Shared work: a little time per message, so both nodes have something to take.
#[function(trigger = queue("work", batch_size = 10, max_wait_ms = 20, concurrency = 2))]
fn work(batch: Batch<Job>) -> Result<()> {
    std::thread::sleep(Duration::from_millis(2 * batch.len() as u64));
    let numbers: Vec<u32> = batch.iter().map(|m| m.body().n).collect();
    report("/work", json!({ "n": numbers }))
}

/// Slow batches: says when it starts, then takes 2 s, then says it is done.
#[function(trigger = queue("slow", batch_size = 5, max_wait_ms = 10, concurrency = 1))]
fn slow(batch: Batch<Job>) -> Result<()> {
    let numbers: Vec<u32> = batch.iter().map(|m| m.body().n).collect();
    report("/slow-start", json!({ "n": numbers }))?;
    std::thread::sleep(Duration::from_millis(2_000));
    report("/slow-done", json!({ "n": numbers }))
}

/// Always fails: dead-lettered after three deliveries.
#[function(trigger = queue("poison", max_retries = 2, backoff_ms = 10, max_wait_ms = 0))]
fn poison(batch: Batch<Value>) -> Result<()> {
    for message in &batch {
        report("/poison", json!({ "id": message.id(), "attempts": message.attempts() }))?;
    }
    Err(Error::internal("this message is poison"))
}

/// One message at a time, so the order of delivery shows.
#[function(trigger = queue("prio", batch_size = 1, concurrency = 1, max_wait_ms = 0))]
fn prio(batch: Batch<Value>) -> Result<()> {
    for message in &batch {
        let waited_ms = message.enqueued_at().elapsed().map(|d| d.as_millis() as u64).unwrap_or(0);
        report("/prio", json!({ "body": message.body(), "priority": message.priority(), "waited_ms": waited_ms }))?;
    }
    Ok(())
}

#[function(trigger = topic("events"))]
fn sub_a(batch: Batch<Value>) -> Result<()> {
    let bodies: Vec<&Value> = batch.iter().map(|m| m.body()).collect();
    report("/sub_a", json!({ "bodies": bodies }))
}

#[function(trigger = topic("events"))]
fn sub_b(batch: Batch<Value>) -> Result<()> {
    let bodies: Vec<&Value> = batch.iter().map(|m| m.body()).collect();
    report("/sub_b", json!({ "bodies": bodies }))
}

/// Every second: says which tick it runs, and why (`schedule` or `catch-up`).
#[function(trigger = cron("* * * * * *"))]
fn tick(event: CronEvent) -> Result<()> {
    let tick_ms = event.scheduled_at().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0);
    report("/tick", json!({ "tick": tick_ms, "reason": event.reason() }))
}

/// Every 5 s, a run of 3 s: says when it starts and when it is done, with its tick and why it runs.
#[function(trigger = cron("*/5 * * * * *"))]
fn slow_tick(event: CronEvent) -> Result<()> {
    let tick_ms = event.scheduled_at().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0);
    report("/slow-tick-start", json!({ "tick": tick_ms, "reason": event.reason() }))?;
    std::thread::sleep(Duration::from_millis(3_000));
    report("/slow-tick-done", json!({ "tick": tick_ms, "reason": event.reason() }))
}

#[derive(Debug, Deserialize)]
struct Feed {
    from: u64,
    count: u64,
    keys: u64,
}

/// Puts `count` records to stream `moves` from record `from`: record `i` has key `k{i % keys}` and is that key's
/// number `i / keys`, so each key's numbers count up from 0 in put order.
#[function(trigger = invoke)]
fn feed_moves(feed: Feed) -> Result<u64> {
    let records: Vec<(String, Value)> = (feed.from..feed.from + feed.count)
        .map(|i| (format!("k{}", i % feed.keys), json!({ "key": format!("k{}", i % feed.keys), "n": i / feed.keys })))
        .collect();
    Ok(edgefn::stream::put_batch("moves", &records)?.len() as u64)
}

/// Consumes stream `moves`: takes 40 ms per batch (so a node is mid-batch when the test kills it), then reports
/// the batch's shard and records, in the order they came.
#[function(trigger = stream("moves", batch_size = 25, max_wait_ms = 20, start = "oldest"))]
fn moves(batch: Batch<Value>) -> Result<()> {
    std::thread::sleep(Duration::from_millis(40));
    // A stream record's id is `stream:SHARD:SEQ:KEY`.
    let shard = batch.iter().next().and_then(|m| m.id().split(':').nth(1).map(str::to_owned));
    let records: Vec<Value> = batch.iter().map(|m| json!([m.body()["key"], m.body()["n"]])).collect();
    report("/moves", json!({ "shard": shard, "records": records }))
}
