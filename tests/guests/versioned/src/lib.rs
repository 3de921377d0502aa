//! A test-only component for live deployments: every answer and every report carries `TAG`, the configuration
//! each version is deployed with, so a test can tell which version served a request, ran a cron tick or handled a
//! message. Reports go to `COLLECTOR_URL` over real HTTP.

use edgefn::prelude::*;
use serde_json::json;
use std::time::Duration;

fn tag() -> String {
    edgefn::config::get("TAG").unwrap_or_else(|| "untagged".to_owned())
}

fn report(path: &str, body: &serde_json::Value) -> Result<()> {
    let Some(collector) = edgefn::config::get("COLLECTOR_URL") else { return Ok(()) };
    let response = edgefn::fetch::post_json(&format!("{collector}{path}"), body)?;
    if !response.status().is_success() {
        return Err(Error::internal(format!("the collector answered {}", response.status())));
    }
    Ok(())
}

/// Which version answers.
#[function(trigger = http("/versioned/who"))]
fn who(_req: Request) -> String {
    tag()
}

/// Answers after `?ms=` milliseconds (default 300): a request still in flight while a deploy switches versions.
#[function(trigger = http("/versioned/slow"))]
fn slow(req: Request) -> String {
    let ms = req.query("ms").and_then(|ms| ms.parse().ok()).unwrap_or(300);
    std::thread::sleep(Duration::from_millis(ms));
    tag()
}

/// The tag, for `invoke`.
#[function(trigger = invoke)]
fn tag_of(_payload: serde_json::Value) -> Result<String> {
    Ok(tag())
}

/// Sleeps `?ms=` milliseconds, or with `?gate=NAME` waits until the collector's gate `NAME` opens (at most a
/// minute), then invokes `tag_of` of its own component: answers `<own tag> then <its tag>`.
#[function(trigger = http("/versioned/slow-invoke"))]
fn slow_invoke(req: Request) -> Result<String> {
    let ms = req.query("ms").and_then(|ms| ms.parse().ok()).unwrap_or(0);
    std::thread::sleep(Duration::from_millis(ms));
    if let Some(gate) = req.query("gate") {
        wait_for_gate(gate)?;
    }
    let theirs: String = edgefn::invoke("versioned/tag_of", &())?;
    Ok(format!("{} then {theirs}", tag()))
}

/// Reports `/waiting` with the gate's name, then polls the collector's gate `name` until it answers `open`: the
/// test decides when a request in flight goes on, so it stays in flight however long a deploy takes on a loaded
/// machine.
fn wait_for_gate(name: &str) -> Result<()> {
    let collector = edgefn::config::get("COLLECTOR_URL")
        .ok_or_else(|| Error::bad_request("`?gate=` needs the component deployed with COLLECTOR_URL"))?;
    report("/waiting", &json!({ "tag": tag(), "gate": name }))?;
    for _ in 0..1_200 {
        if edgefn::fetch::get(&format!("{collector}/gate/{name}"))?.body().as_slice() == b"open" {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Err(Error::internal(format!("the gate {name} stayed closed for a minute")))
}

/// Computes forever: only its deadline stops it.
#[function(trigger = http("/versioned/spin"))]
fn spin(_req: Request) -> Response {
    let mut counter: u64 = 0;
    loop {
        counter = std::hint::black_box(counter.wrapping_add(1));
    }
}

/// Reports every tick, with the version that ran it.
#[function(trigger = cron("* * * * * *"))]
fn tick(event: CronEvent) -> Result<()> {
    let scheduled_at = event.scheduled_at().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_millis();
    report("/tick", &json!({ "tag": tag(), "scheduled_at": scheduled_at as u64, "reason": event.reason() }))
}

/// Reports every message (a number), with the version that handled it; takes `WORK_DELAY_MS` per batch first. A
/// version deployed with `FAIL_ON=N` fails every batch holding `N`: a bug, which a later version fixes.
#[function(trigger = queue("versioned-work", batch_size = 20, max_wait_ms = 5))]
fn work(batch: Batch<u64>) -> Result<()> {
    if let Some(delay) = edgefn::config::get("WORK_DELAY_MS").and_then(|ms| ms.parse().ok()) {
        std::thread::sleep(Duration::from_millis(delay));
    }
    let numbers: Vec<u64> = batch.iter().map(|m| *m.body()).collect();
    if let Some(bad) = edgefn::config::get("FAIL_ON").and_then(|n| n.parse::<u64>().ok())
        && numbers.contains(&bad)
    {
        return Err(Error::internal(format!("{} cannot handle {bad}", tag())));
    }
    report("/work", &json!({ "tag": tag(), "numbers": numbers }))
}

/// Answers how many bytes it was sent, or fails (500) in a version deployed with `FAIL_ON`.
#[function(trigger = http("/versioned/check", method = "POST"))]
fn check(req: Request) -> Result<String> {
    if edgefn::config::get("FAIL_ON").is_some() {
        return Err(Error::internal(format!("{} is broken", tag())));
    }
    Ok(format!("{} checked {} bytes", tag(), req.body().len()))
}

/// Enqueues the number in the path: messages sent by HTTP traffic while versions switch.
#[function(trigger = http("/versioned/enqueue/{n}", method = "POST"))]
fn enqueue(req: Request) -> Result<Response> {
    let n: u64 = req.param("n").unwrap_or_default().parse().map_err(|_| Error::bad_request("n is a number"))?;
    edgefn::queue::send("versioned-work", &n)?;
    Ok(Response::text(tag()).with_status(202))
}
