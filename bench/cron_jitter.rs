//! Issue 3, section 7: cron fire jitter. Ten per-second cron jobs (`bench-sink`'s `tick0`..`tick9`) run for a
//! minute; every attempt's `delay_us` (how long after its tick the host started it: timer wake-up, the overlap
//! check and the SQLite writes before the guest is instantiated) comes from the run history.
//!
//! ```sh
//! cargo build --release --target wasm32-wasip2 -p bench-sink
//! cargo bench -p edgefn-host --bench cron_jitter
//! ```

#[path = "support.rs"]
mod support;

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
    let ms = |us: i64| us as f64 / 1000.0;
    println!(
        "cron fire jitter over {seconds} s, 10 per-second jobs, {} runs: p50 {:.3} ms, p99 {:.3} ms, max {:.3} ms",
        delays_us.len(),
        ms(support::quantile(&delays_us, 0.5)),
        ms(support::quantile(&delays_us, 0.99)),
        ms(*delays_us.last().expect("max")),
    );
}
