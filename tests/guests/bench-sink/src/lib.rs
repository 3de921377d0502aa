//! Benchmark-only functions: queue consumers that ack every batch and do nothing else, at batch sizes 1, 10 and
//! 100; stream consumers that do nothing, of a 1-shard and a 4-shard stream (bench/streams.rs); a consumer and ten per-second cron jobs that stop a benchmark's clock at their first statement. See
//! bench/queue.rs and bench/cron_jitter.rs.
//!
//! A clock stopped inside the guest reads the wall clock (wasi:clocks, the host's `CLOCK_REALTIME`), so the
//! benchmark needs no thread watching for the handler, and the figure includes everything the host does before the
//! function runs. What it measures is sent to a queue (`latency_results`, `jitter_results`) after the clock has
//! stopped, for the benchmark to read at the end.

use edgefn::prelude::*;
use edgefn::queue::Raw;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Nanoseconds since the Unix epoch, by the wall clock.
fn now_ns() -> u64 {
    let since_epoch = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or(Duration::ZERO);
    u64::try_from(since_epoch.as_nanos()).unwrap_or(u64::MAX)
}

#[function(trigger = queue("batch1", batch_size = 1, max_wait_ms = 0, concurrency = 4))]
fn sink1(_batch: Batch<Raw>) {}

#[function(trigger = queue("batch10", batch_size = 10, max_wait_ms = 0, concurrency = 4))]
fn sink10(_batch: Batch<Raw>) {}

#[function(trigger = queue("batch100", batch_size = 100, max_wait_ms = 0, concurrency = 4))]
fn sink100(_batch: Batch<Raw>) {}

#[function(trigger = stream("bench1", batch_size = 100, max_wait_ms = 0, start = "oldest"))]
fn stream_sink1(_batch: Batch<Raw>) {}

#[function(trigger = stream("bench4", batch_size = 100, max_wait_ms = 0, start = "oldest"))]
fn stream_sink4(_batch: Batch<Raw>) {}

/// Benchmark (g): the body is the wall-clock time of the send, in ns since the epoch; the handler's first statement
/// takes the time again, and the difference (enqueue -> handler, in ns) goes to `latency_results`.
#[function(trigger = queue("latency", batch_size = 1, max_wait_ms = 0, concurrency = 1))]
fn latency(batch: Batch<Raw>) -> Result<()> {
    let started = now_ns();
    for message in &batch {
        let sent: u64 = std::str::from_utf8(message.body()).ok().and_then(|s| s.parse().ok()).unwrap_or(started);
        edgefn::queue::send("latency_results", &started.saturating_sub(sent))?;
    }
    Ok(())
}

/// Benchmark (h): how long after its scheduled tick a cron function starts running, in ns, to `jitter_results`.
fn jitter(event: &CronEvent) -> Result<()> {
    let started = now_ns();
    let scheduled = event.scheduled_at().duration_since(UNIX_EPOCH).unwrap_or(Duration::ZERO);
    let scheduled = u64::try_from(scheduled.as_nanos()).unwrap_or(u64::MAX);
    edgefn::queue::send("jitter_results", &started.saturating_sub(scheduled))?;
    Ok(())
}

#[function(trigger = cron("* * * * * *"))]
fn tick0(event: CronEvent) -> Result<()> {
    jitter(&event)
}
#[function(trigger = cron("* * * * * *"))]
fn tick1(event: CronEvent) -> Result<()> {
    jitter(&event)
}
#[function(trigger = cron("* * * * * *"))]
fn tick2(event: CronEvent) -> Result<()> {
    jitter(&event)
}
#[function(trigger = cron("* * * * * *"))]
fn tick3(event: CronEvent) -> Result<()> {
    jitter(&event)
}
#[function(trigger = cron("* * * * * *"))]
fn tick4(event: CronEvent) -> Result<()> {
    jitter(&event)
}
#[function(trigger = cron("* * * * * *"))]
fn tick5(event: CronEvent) -> Result<()> {
    jitter(&event)
}
#[function(trigger = cron("* * * * * *"))]
fn tick6(event: CronEvent) -> Result<()> {
    jitter(&event)
}
#[function(trigger = cron("* * * * * *"))]
fn tick7(event: CronEvent) -> Result<()> {
    jitter(&event)
}
#[function(trigger = cron("* * * * * *"))]
fn tick8(event: CronEvent) -> Result<()> {
    jitter(&event)
}
#[function(trigger = cron("* * * * * *"))]
fn tick9(event: CronEvent) -> Result<()> {
    jitter(&event)
}
