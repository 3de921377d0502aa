//! Alarms, as CloudWatch has them: `[[alarms]]` rules over a sliding window, each in `ok` or `breach`, and a
//! notification once when it goes into breach and once when it recovers.
//!
//! Function metrics (`invocations`, `errors`, `error_rate`, `throttles`, `p99_ms`, `cron_failures`) are counted
//! from invocation reports as they end, in per-second buckets (bounded: one bucket per second of the window, and at
//! most [`MAX_DURATIONS_PER_SECOND`] durations each for the percentile). Queue metrics (`queue_depth`,
//! `dead_letters`) are read from the queues, `stream_iterator_age_ms` from the streams, and the workflow metrics
//! (`workflow_oldest_wait_ms`, `workflow_runs_retrying`) from the workflow runs, when the rules are evaluated. [`Alarms::evaluate`] turns the values
//! into transitions; whoever runs it (see `crate::alarms`) delivers the notifications.

use super::{InvocationReport, Outcome};
use crate::config::{AlarmConfig, AlarmMetric};
use crate::storage::backends::QueueStats;
use crate::storage::streams::StreamInfo;
use crate::storage::telemetry::names_function;
use crate::storage::workflows::RunStats;
use std::collections::VecDeque;
use std::sync::Mutex;

/// Durations kept per second per rule for `p99_ms`; past this, a second's percentile is of a sample.
pub const MAX_DURATIONS_PER_SECOND: usize = 1000;

/// One second of one rule's window.
#[derive(Debug, Default, Clone)]
struct Bucket {
    second: u64,
    invocations: u64,
    failures: u64,
    throttles: u64,
    durations_us: Vec<u64>,
}

#[derive(Debug)]
struct RuleState {
    config: AlarmConfig,
    buckets: VecDeque<Bucket>,
    in_breach: bool,
}

/// A change of an alarm's state, to notify.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Transition {
    pub alarm: String,
    /// `breach` or `recovered`.
    pub state: &'static str,
    pub metric: AlarmMetric,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub function: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub queue: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stream: Option<String>,
    pub value: f64,
    pub threshold: f64,
    pub window_s: u64,
    /// When it was evaluated (ms since the epoch).
    pub at: i64,
    #[serde(skip)]
    pub notify_url: Option<String>,
    #[serde(skip)]
    pub notify_queue: Option<String>,
}

/// The rules and their windows.
#[derive(Debug)]
pub struct Alarms {
    rules: Mutex<Vec<RuleState>>,
}

impl Alarms {
    pub fn new(rules: &[AlarmConfig]) -> Self {
        let rules = rules
            .iter()
            .map(|config| RuleState { config: config.clone(), buckets: VecDeque::new(), in_breach: false })
            .collect();
        Self { rules: Mutex::new(rules) }
    }

    /// Whether any rule reads the queues (so the evaluator has to).
    pub fn reads_queues(&self) -> bool {
        let rules = self.rules.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        rules.iter().any(|rule| rule.config.metric.is_queue_metric())
    }

    /// Whether any rule reads the workflow runs.
    pub fn reads_workflows(&self) -> bool {
        let rules = self.rules.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        rules.iter().any(|rule| rule.config.metric.is_workflow_metric())
    }

    /// Whether any rule reads the streams.
    pub fn reads_streams(&self) -> bool {
        let rules = self.rules.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        rules.iter().any(|rule| rule.config.metric.is_stream_metric())
    }

    /// Counts an invocation that ended, `now_s` seconds into the host's clock.
    pub fn observe(&self, report: &InvocationReport, now_s: u64) {
        let mut rules = self.rules.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        for rule in rules.iter_mut() {
            let config = &rule.config;
            if config.metric.is_queue_metric()
                || config.metric.is_stream_metric()
                || config.metric.is_workflow_metric()
                || (config.metric == AlarmMetric::CronFailures && report.trace.trigger != "cron")
                || config.function.as_deref().is_some_and(|wanted| !names_function(wanted, &report.trace.function))
            {
                continue;
            }
            if rule.buckets.back().is_none_or(|bucket| bucket.second != now_s) {
                rule.buckets.push_back(Bucket { second: now_s, ..Bucket::default() });
            }
            let window = config.window_s;
            while rule.buckets.front().is_some_and(|bucket| bucket.second + window <= now_s) {
                rule.buckets.pop_front();
            }
            let Some(bucket) = rule.buckets.back_mut() else { continue };
            match report.outcome {
                Outcome::Throttled => bucket.throttles += 1,
                // Never ran: neither an invocation of the function nor a failure of it.
                Outcome::Unauthorized => {}
                outcome => {
                    bucket.invocations += 1;
                    if outcome.is_failure() {
                        bucket.failures += 1;
                    }
                    if bucket.durations_us.len() < MAX_DURATIONS_PER_SECOND {
                        bucket.durations_us.push(report.wall.as_micros() as u64);
                    }
                }
            }
        }
    }

    /// Evaluates every rule at `now_s` (and `now_ms`, for the notification and the age of waits), with the queues,
    /// streams and workflow runs as they are now; returns the rules whose state changed.
    pub fn evaluate(&self, now_s: u64, now_ms: i64, state: &StateNow<'_>) -> Vec<Transition> {
        let StateNow { queues, streams, workflows } = *state;
        let mut rules = self.rules.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let mut transitions = Vec::new();
        for rule in rules.iter_mut() {
            let config = &rule.config;
            let window = config.window_s;
            while rule.buckets.front().is_some_and(|bucket| bucket.second + window <= now_s) {
                rule.buckets.pop_front();
            }
            let sum = |field: fn(&Bucket) -> u64| rule.buckets.iter().map(field).sum::<u64>();
            let queue = || queues.iter().find(|q| Some(&q.queue) == config.queue.as_ref());
            let value = match config.metric {
                AlarmMetric::Invocations => sum(|b| b.invocations) as f64,
                AlarmMetric::Errors | AlarmMetric::CronFailures => sum(|b| b.failures) as f64,
                AlarmMetric::Throttles => sum(|b| b.throttles) as f64,
                AlarmMetric::ErrorRate => {
                    let invocations = sum(|b| b.invocations);
                    if invocations == 0 { 0.0 } else { sum(|b| b.failures) as f64 / invocations as f64 }
                }
                AlarmMetric::P99Ms => {
                    let mut durations: Vec<u64> =
                        rule.buckets.iter().flat_map(|b| b.durations_us.iter().copied()).collect();
                    durations.sort_unstable();
                    match durations.len() {
                        0 => 0.0,
                        n => durations[((0.99 * n as f64).ceil() as usize).clamp(1, n) - 1] as f64 / 1000.0,
                    }
                }
                AlarmMetric::QueueDepth => queue().map_or(0, |q| q.ready + q.in_flight + q.delayed) as f64,
                AlarmMetric::DeadLetters => queue().map_or(0, |q| q.dead) as f64,
                AlarmMetric::StreamIteratorAgeMs => streams
                    .iter()
                    .filter(|s| Some(&s.name) == config.stream.as_ref())
                    .flat_map(|s| s.consumers.iter())
                    .filter(|c| config.function.as_deref().is_none_or(|wanted| names_function(wanted, &c.consumer)))
                    .map(|c| c.iterator_age_ms)
                    .max()
                    .unwrap_or(0) as f64,
                AlarmMetric::WorkflowOldestWaitMs => {
                    workflows.oldest_wait_since.map_or(0, |since| now_ms.saturating_sub(since).max(0)) as f64
                }
                AlarmMetric::WorkflowRunsRetrying => {
                    workflows.by_state.iter().find(|(state, _)| state == "retrying").map_or(0, |(_, n)| *n) as f64
                }
            };
            let breach = value > config.threshold;
            if breach != rule.in_breach {
                rule.in_breach = breach;
                transitions.push(Transition {
                    alarm: config.name.clone(),
                    state: if breach { "breach" } else { "recovered" },
                    metric: config.metric,
                    function: config.function.clone(),
                    queue: config.queue.clone(),
                    stream: config.stream.clone(),
                    value,
                    threshold: config.threshold,
                    window_s: window,
                    at: now_ms,
                    notify_url: config.notify_url.clone(),
                    notify_queue: config.notify_queue.clone(),
                });
            }
        }
        transitions
    }
}

/// What the rules about state (not invocations) read: the queues, the streams and the workflow runs as they are.
#[derive(Debug, Clone, Copy)]
pub struct StateNow<'a> {
    pub queues: &'a [QueueStats],
    pub streams: &'a [StreamInfo],
    pub workflows: &'a RunStats,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::telemetry::Trace;
    use std::sync::Arc;
    use std::time::Duration;

    static NO_RUNS: RunStats = RunStats { by_state: Vec::new(), step_failures: 0, oldest_wait_since: None };

    fn now<'a>(queues: &'a [QueueStats], streams: &'a [StreamInfo]) -> StateNow<'a> {
        StateNow { queues, streams, workflows: &NO_RUNS }
    }

    #[test]
    fn workflow_alarms_watch_the_oldest_wait_and_the_retrying_runs() {
        let oldest = AlarmConfig { function: None, ..rule(AlarmMetric::WorkflowOldestWaitMs, 60_000.0) };
        let retrying = AlarmConfig { name: "b".into(), function: None, ..rule(AlarmMetric::WorkflowRunsRetrying, 0.0) };
        let alarms = Alarms::new(&[oldest, retrying]);
        let runs =
            RunStats { by_state: vec![("retrying".into(), 2)], step_failures: 5, oldest_wait_since: Some(1_000) };
        let state = StateNow { queues: &[], streams: &[], workflows: &runs };
        let breaches: Vec<(String, f64)> =
            alarms.evaluate(1, 61_001, &state).into_iter().map(|t| (t.alarm, t.value)).collect();
        assert_eq!(breaches, [("a".to_owned(), 60_001.0), ("b".to_owned(), 2.0)]);
        let recovered = alarms.evaluate(2, 61_002, &now(&[], &[]));
        assert!(recovered.iter().all(|t| t.state == "recovered") && recovered.len() == 2, "{recovered:?}");
    }

    fn rule(metric: AlarmMetric, threshold: f64) -> AlarmConfig {
        AlarmConfig {
            name: "a".into(),
            metric,
            function: Some("shop/order".into()),
            queue: None,
            stream: None,
            threshold,
            window_s: 10,
            notify_url: Some("http://127.0.0.1:9/alarms".into()),
            notify_queue: None,
        }
    }

    fn report(function: &str, outcome: Outcome, ms: u64) -> InvocationReport {
        let trace = Arc::new(Trace { function: function.into(), trigger: "http", ..Trace::default() });
        let mut report = InvocationReport::refused(trace, outcome, String::new(), Duration::from_millis(ms));
        report.error = None;
        report
    }

    #[test]
    fn an_alarm_breaches_once_and_recovers_once_as_its_window_slides() {
        let alarms = Alarms::new(&[rule(AlarmMetric::Errors, 2.0)]);
        for second in [100, 101, 101] {
            alarms.observe(&report("shop/order", Outcome::Error, 5), second);
        }
        alarms.observe(&report("other/fn", Outcome::Error, 5), 101);
        alarms.observe(&report("shop/order", Outcome::Ok, 5), 101);
        let transitions = alarms.evaluate(102, 0, &now(&[], &[]));
        assert_eq!(transitions.len(), 1);
        assert_eq!((transitions[0].state, transitions[0].value), ("breach", 3.0));
        // Still in breach: nothing new.
        alarms.observe(&report("shop/order", Outcome::Trap, 5), 105);
        assert!(alarms.evaluate(106, 0, &now(&[], &[])).is_empty());
        // The window (10 s) slides past all the errors but the last: 1 <= 2.
        let transitions = alarms.evaluate(111, 0, &now(&[], &[]));
        assert_eq!(transitions.iter().map(|t| (t.state, t.value)).collect::<Vec<_>>(), [("recovered", 1.0)]);
        assert!(alarms.evaluate(120, 0, &now(&[], &[])).is_empty());
    }

    #[test]
    fn rates_percentiles_and_queues_are_measured() {
        let alarms = Alarms::new(&[
            rule(AlarmMetric::ErrorRate, 0.5),
            rule(AlarmMetric::P99Ms, 50.0),
            AlarmConfig { function: None, queue: Some("orders".into()), ..rule(AlarmMetric::DeadLetters, 0.0) },
        ]);
        alarms.observe(&report("shop/order", Outcome::Ok, 10), 1);
        alarms.observe(&report("shop/order", Outcome::Timeout, 80), 1);
        alarms.observe(&report("shop/order", Outcome::Throttled, 0), 1);
        let queues = [QueueStats { queue: "orders".into(), dead: 2, ..QueueStats::default() }];
        let values: Vec<(&str, f64)> =
            alarms.evaluate(2, 0, &now(&queues, &[])).iter().map(|t| (t.state, t.value)).collect::<Vec<_>>();
        // 1 of 2 failed is not over 0.5; the p99 of [10, 80] is 80; 2 dead letters.
        assert_eq!(values, [("breach", 80.0), ("breach", 2.0)]);
    }

    #[test]
    fn a_stream_alarm_watches_the_oldest_iterator_age_of_the_consumers_it_names() {
        use crate::storage::streams::ConsumerShard;
        let alarms = Alarms::new(&[AlarmConfig {
            function: Some("shop/count".into()),
            stream: Some("clicks".into()),
            ..rule(AlarmMetric::StreamIteratorAgeMs, 1_000.0)
        }]);
        let place = |consumer: &str, age: i64| ConsumerShard {
            consumer: consumer.into(),
            shard: 0,
            checkpoint: 0,
            behind: 1,
            iterator_age_ms: age,
            owner: None,
        };
        let stream = |consumers| StreamInfo { name: "clicks".into(), shards: Vec::new(), consumers };
        // Another consumer's lag is not this alarm's.
        assert!(alarms.evaluate(1, 0, &now(&[], &[stream(vec![place("shop/other", 9_000)])])).is_empty());
        let breach =
            alarms.evaluate(2, 0, &now(&[], &[stream(vec![place("shop/count", 5_000), place("shop/count", 10)])]));
        assert_eq!(breach.iter().map(|t| (t.state, t.value)).collect::<Vec<_>>(), [("breach", 5_000.0)]);
        let recovered = alarms.evaluate(3, 0, &now(&[], &[stream(vec![place("shop/count", 0)])]));
        assert_eq!(recovered[0].state, "recovered");
    }
}
