//! Benchmark (h): cron fire jitter. Ten per-second cron jobs (`bench-sink`'s `tick0`..`tick9`) run for a minute.
//! Two figures per run:
//!
//! - tick -> the guest's first statement: each job reads the wall clock as it starts and sends the difference from
//!   its scheduled tick to `jitter_results` (the headline figure: everything the host does before the function
//!   runs, instantiation included);
//! - tick -> the host starting the attempt (`delay_us` of the run history: timer wake-up, the overlap check and
//!   the SQLite writes, before the guest is instantiated).
//!
//! ```sh
//! cargo build --release --target wasm32-wasip2 -p bench-sink
//! cargo bench -p edgefn-host --bench cron_jitter
//! ```

#[path = "support.rs"]
mod support;

use edgefn_host::storage::backends::BatchPolicy;
use std::time::Duration;

fn main() {
    let seconds: u64 = std::env::var("JITTER_SECONDS").ok().and_then(|s| s.parse().ok()).unwrap_or(60);
    let bench = support::start();
    std::thread::sleep(Duration::from_secs(seconds) + Duration::from_millis(500));
    let mut delays_us: Vec<i64> = Vec::new();
    for n in 0..10 {
        let runs = bench.tokio.block_on(bench.node.cron.runs(&format!("tick{n}"), 1_000)).expect("runs");
        delays_us
            .extend(runs.iter().filter(|r| r.reason == "schedule" && r.outcome == "succeeded").map(|r| r.delay_us));
    }
    delays_us.sort_unstable();
    assert!(!delays_us.is_empty(), "no cron run recorded");
    let all = BatchPolicy { batch_size: 100_000, max_wait_ms: 0, lease_ms: 3_600_000 };
    let results = bench.tokio.block_on(bench.node.queues.backend().lease_if_due("jitter_results", all));
    let mut to_guest_ns: Vec<u64> = results
        .expect("read jitter_results")
        .unwrap_or_default()
        .iter()
        .map(|m| serde_json::from_slice::<u64>(&m.body).expect("a delay in ns"))
        .collect();
    to_guest_ns.sort_unstable();
    assert_eq!(to_guest_ns.len(), delays_us.len(), "every successful run reported when its guest started");
    let ms = |us: f64| us / 1000.0;
    let guest_us = |q: f64| support::quantile(&to_guest_ns, q) as f64 / 1000.0;
    println!(
        "cron over {seconds} s, 10 per-second jobs, {} runs: tick -> guest's first statement p50 {:.3} ms, \
         p99 {:.3} ms, max {:.3} ms",
        to_guest_ns.len(),
        ms(guest_us(0.5)),
        ms(guest_us(0.99)),
        ms(guest_us(1.0)),
    );
    println!(
        "  tick -> host starts the attempt: p50 {:.3} ms, p99 {:.3} ms, max {:.3} ms",
        ms(support::quantile(&delays_us, 0.5) as f64),
        ms(support::quantile(&delays_us, 0.99) as f64),
        ms(*delays_us.last().expect("max") as f64),
    );
    println!("figure: cron_tick_to_guest_p99_ms {:.3}", ms(guest_us(0.99)));
}
