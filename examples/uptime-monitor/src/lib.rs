//! The uptime-monitor example: a cron job checks a URL every 5 seconds with outbound HTTP; when the check fails it
//! sends an alert to the `alerts` queue, whose consumer posts it to a webhook (retried with backoff, dead-lettered
//! to `alerts-dlq` if the webhook stays down).
//!
//! Config (see examples/edgefn.toml): `CHECK_URL`, `ALERT_WEBHOOK_URL`, and both hosts in
//! `allowed_outbound_hosts`. Out of the box the webhook is this component's own `/uptime/inbox`, which prints the
//! alerts it receives.

use edgefn::prelude::*;
use serde::{Deserialize, Serialize};
use std::time::UNIX_EPOCH;

/// What the checker tells the notifier.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Alert {
    pub url: String,
    pub problem: String,
    /// The tick of the failed check, in ms since the Unix epoch.
    pub checked_at: u64,
}

/// Why a check failed, or `None` if the URL answered 2xx.
fn problem_with(url: &str) -> Option<String> {
    match edgefn::fetch::get(url) {
        Ok(response) if response.status().is_success() => None,
        Ok(response) => Some(format!("answered HTTP {}", response.status().as_u16())),
        Err(error) => Some(error.message().to_owned()),
    }
}

// ANCHOR: check
#[function(trigger = cron("*/5 * * * * *"))]
fn check(event: CronEvent) -> Result<()> {
    let url = edgefn::config::require("CHECK_URL")?;
    if let Some(problem) = problem_with(&url) {
        let checked_at = event.scheduled_at().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0);
        edgefn::queue::send("alerts", &Alert { url, problem, checked_at })?;
    }
    Ok(())
}
// ANCHOR_END: check

// ANCHOR: notify
#[function(trigger = queue("alerts", batch_size = 10, max_retries = 5, backoff_ms = 2000))]
fn notify(batch: Batch<Alert>) -> Result<()> {
    let webhook = edgefn::config::require("ALERT_WEBHOOK_URL")?;
    for message in &batch {
        let alert = message.body();
        let text = format!("{} is DOWN: {}", alert.url, alert.problem);
        match edgefn::fetch::post_json(&webhook, &serde_json::json!({ "text": text, "alert": alert })) {
            Ok(response) if response.status().is_success() => message.ack(),
            // Only this alert is retried (with the queue's backoff); the others of the batch are not re-sent.
            Ok(response) => {
                eprintln!("alert webhook answered HTTP {}", response.status().as_u16());
                message.retry();
            }
            Err(error) => {
                eprintln!("alert webhook failed: {}", error.message());
                message.retry();
            }
        }
    }
    Ok(())
}
// ANCHOR_END: notify

/// A stand-in alert webhook, so the example runs with nothing else: prints what it receives.
#[function(trigger = http("/uptime/inbox", method = "POST"))]
fn inbox(req: Request) -> Result<Response> {
    let alert: serde_json::Value = req.json()?;
    println!("ALERT {}", alert.get("text").and_then(|t| t.as_str()).unwrap_or_default());
    Ok(Response::new(204))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_inbox_accepts_an_alert() {
        let response = inbox(edgefn::testing::post_json("/uptime/inbox", &serde_json::json!({ "text": "x is DOWN" })));
        assert_eq!(response.unwrap().status(), 204);
    }

    #[test]
    fn a_check_without_config_fails_clearly() {
        let error = check(CronEvent::new("*/5 * * * * *")).unwrap_err();
        assert!(error.message().contains("CHECK_URL"), "{}", error.message());
    }
}
