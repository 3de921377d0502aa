//! Runs the `[[alarms]]` rules: evaluates them every second ([`crate::telemetry::alarms`] keeps the windows) and
//! delivers each transition: a JSON POST to the rule's `notify_url` (off the async threads, 5 s timeout, retried
//! twice) and/or a message in its `notify_queue`, and a host event in the log either way.

use crate::capabilities::messaging::Queues;
use crate::capabilities::streams::Streams;
use crate::storage::backends::NewMessage;
use crate::storage::now_ms;
use crate::storage::telemetry::Level;
use crate::storage::workflows::{RunStats, WorkflowDb};
use crate::telemetry::Telemetry;
use crate::telemetry::alarms::{Alarms, StateNow, Transition};
use std::sync::Arc;
use std::time::Duration;

/// How often the rules are evaluated.
const EVALUATE_EVERY: Duration = Duration::from_secs(1);
/// How long one POST of a notification may take.
const NOTIFY_TIMEOUT: Duration = Duration::from_secs(5);
/// Attempts at each POST.
const NOTIFY_ATTEMPTS: u32 = 3;

/// Evaluates `alarms` every second for as long as the runtime runs.
pub fn spawn(
    alarms: Arc<Alarms>,
    telemetry: Telemetry,
    queues: Arc<Queues>,
    streams: Option<Arc<Streams>>,
    workflows: WorkflowDb,
) {
    tokio::spawn(async move {
        let mut interval = tokio::time::interval(EVALUATE_EVERY);
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            interval.tick().await;
            let stats = if alarms.reads_queues() {
                match queues.stats(Vec::new()).await {
                    Ok(stats) => stats,
                    Err(error) => {
                        tracing::warn!(%error, "alarms: failed to read the queues; skipping this evaluation");
                        continue;
                    }
                }
            } else {
                Vec::new()
            };
            let streams = match (&streams, alarms.reads_streams()) {
                (Some(streams), true) => match streams.db.describe(None).await {
                    Ok(streams) => streams,
                    Err(error) => {
                        tracing::warn!(%error, "alarms: failed to read the streams; skipping this evaluation");
                        continue;
                    }
                },
                _ => Vec::new(),
            };
            let runs = if alarms.reads_workflows() {
                match workflows.stats().await {
                    Ok(runs) => runs,
                    Err(error) => {
                        tracing::warn!(%error, "alarms: failed to read the workflow runs; skipping this evaluation");
                        continue;
                    }
                }
            } else {
                RunStats::default()
            };
            let now = now_ms();
            let state = StateNow { queues: &stats, streams: &streams, workflows: &runs };
            for transition in alarms.evaluate(now.div_euclid(1000) as u64, now, &state) {
                notify(&telemetry, &queues, transition).await;
            }
        }
    });
}

async fn notify(telemetry: &Telemetry, queues: &Queues, transition: Transition) {
    let body = serde_json::to_vec(&transition).unwrap_or_default();
    let summary = format!(
        "alarm `{}` {}: {:?} is {} (threshold {}, window {} s)",
        transition.alarm,
        if transition.state == "breach" { "in breach" } else { "recovered" },
        transition.metric,
        transition.value,
        transition.threshold,
        transition.window_s
    );
    let level = if transition.state == "breach" { Level::Warn } else { Level::Info };
    if level == Level::Warn {
        tracing::warn!("{summary}");
    } else {
        tracing::info!("{summary}");
    }
    telemetry.host_event(level, None, summary);
    if let Some(queue) = &transition.notify_queue {
        let message = NewMessage { body: body.clone(), delay_ms: 0, priority: 0, correlation_id: None, parent_span: 0 };
        if let Err(error) = queues.send_many(queue, vec![message]).await {
            let text =
                format!("alarm `{}`: failed to send its notification to queue {queue}: {error}", transition.alarm);
            tracing::error!("{text}");
            telemetry.host_event(Level::Error, None, text);
        }
    }
    if let Some(url) = transition.notify_url.clone() {
        let alarm = transition.alarm.clone();
        let posted = tokio::task::spawn_blocking(move || post(&url, &body)).await;
        let failure = match posted {
            Ok(Ok(())) => None,
            Ok(Err(error)) => Some(error),
            Err(join) => Some(join.to_string()),
        };
        if let Some(error) = failure {
            let text = format!("alarm `{alarm}`: failed to post its notification: {error}");
            tracing::error!("{text}");
            telemetry.host_event(Level::Error, None, text);
        }
    }
}

/// POSTs `body` as JSON to `url`, retrying a failure twice (after 1 s, then 2 s).
fn post(url: &str, body: &[u8]) -> Result<(), String> {
    let agent = ureq::AgentBuilder::new().timeout(NOTIFY_TIMEOUT).build();
    let mut last = String::new();
    for attempt in 0..NOTIFY_ATTEMPTS {
        if attempt > 0 {
            std::thread::sleep(Duration::from_secs(u64::from(attempt)));
        }
        match agent.post(url).set("content-type", "application/json").send_bytes(body) {
            Ok(_) => return Ok(()),
            Err(error) => last = format!("{url}: {error}"),
        }
    }
    Err(last)
}
