//! __CRATE__: a scheduled function. `edgefn deploy .` builds and deploys it; `edgefn invoke __COMPONENT__/heartbeat
//! --cron` fires it by hand and `edgefn runs heartbeat` shows its history; `cargo test` runs it natively.

use edgefn::prelude::*;

/// Every five minutes, on the minute, in UTC. A failed run is retried twice, a second apart, then recorded as
/// failed.
#[function(trigger = cron("0 */5 * * * *", tz = "UTC", retries = 2, backoff_ms = 1000))]
fn heartbeat(event: CronEvent) -> Result<()> {
    let target = edgefn::config::get("HEARTBEAT_TARGET").unwrap_or_else(|| "this node".to_owned());
    println!("{}", describe(&event, &target));
    Ok(())
}

/// What a run reports.
pub fn describe(event: &CronEvent, target: &str) -> String {
    format!("heartbeat for {target}: attempt {} ({}, schedule `{}`)", event.attempt(), event.reason(), event.expression())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_run_succeeds_and_says_what_it_checked() {
        let event = CronEvent::new("0 */5 * * * *");
        assert!(heartbeat(event.clone()).is_ok());
        let report = describe(&event, "db-1");
        assert!(report.starts_with("heartbeat for db-1: attempt 1"), "{report}");
        assert!(report.contains("0 */5 * * * *"), "{report}");
    }
}
