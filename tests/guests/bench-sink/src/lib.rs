//! Benchmark-only functions: queue consumers that ack every batch and do nothing else, at batch sizes 1, 10 and
//! 100, and ten per-second cron jobs that do nothing. See bench/queue.rs and bench/cron_jitter.rs.

use edgefn::prelude::*;
use edgefn::queue::Raw;

#[function(trigger = queue("batch1", batch_size = 1, max_wait_ms = 0, concurrency = 4))]
fn sink1(_batch: Batch<Raw>) {}

#[function(trigger = queue("batch10", batch_size = 10, max_wait_ms = 0, concurrency = 4))]
fn sink10(_batch: Batch<Raw>) {}

#[function(trigger = queue("batch100", batch_size = 100, max_wait_ms = 0, concurrency = 4))]
fn sink100(_batch: Batch<Raw>) {}

#[function(trigger = cron("* * * * * *"))]
fn tick0(_event: CronEvent) {}
#[function(trigger = cron("* * * * * *"))]
fn tick1(_event: CronEvent) {}
#[function(trigger = cron("* * * * * *"))]
fn tick2(_event: CronEvent) {}
#[function(trigger = cron("* * * * * *"))]
fn tick3(_event: CronEvent) {}
#[function(trigger = cron("* * * * * *"))]
fn tick4(_event: CronEvent) {}
#[function(trigger = cron("* * * * * *"))]
fn tick5(_event: CronEvent) {}
#[function(trigger = cron("* * * * * *"))]
fn tick6(_event: CronEvent) {}
#[function(trigger = cron("* * * * * *"))]
fn tick7(_event: CronEvent) {}
#[function(trigger = cron("* * * * * *"))]
fn tick8(_event: CronEvent) {}
#[function(trigger = cron("* * * * * *"))]
fn tick9(_event: CronEvent) {}
