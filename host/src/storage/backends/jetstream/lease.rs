//! The lease bookkeeping of a JetStream queue consumer, without I/O: when a buffered batch is due, how long an idle
//! consumer sleeps, which pulled messages need their ack wait renewed before they are handed out, what a retry's
//! `-NAK` says, the order a batch is delivered in, and when this node next expects a retry or a delayed message to
//! become ready. `queues.rs` does the pulling, acking and publishing around these decisions.

use crate::storage::backends::{BatchPolicy, LeasedMessage};
use std::collections::HashMap;
use std::time::Duration;

/// Whether a buffer of `buffered` messages, the oldest of which was pulled `oldest_waited` ago, makes a batch
/// now: it is full, or its oldest message has waited `policy.max_wait_ms`.
pub(super) fn batch_is_due(buffered: usize, oldest_waited: Option<Duration>, policy: BatchPolicy) -> bool {
    let Some(oldest_waited) = oldest_waited else { return false };
    buffered >= policy.batch_size as usize || oldest_waited >= Duration::from_millis(policy.max_wait_ms)
}

/// How long a consumer that pulled nothing new sleeps (unless a send wakes it first): at most `idle_poll`, and no
/// longer than until its partial batch is due or the next retry or delayed message this node knows of is ready.
pub(super) fn idle_sleep(
    idle_poll: Duration,
    oldest_waited: Option<Duration>,
    next_ready_in_ms: Option<i64>,
    policy: BatchPolicy,
) -> Duration {
    let mut sleep = idle_poll;
    if let Some(waited) = oldest_waited {
        sleep = sleep.min(Duration::from_millis(policy.max_wait_ms).saturating_sub(waited));
    }
    if let Some(in_ms) = next_ready_in_ms.filter(|ms| *ms > 0) {
        sleep = sleep.min(Duration::from_millis(in_ms as u64));
    }
    sleep
}

/// Whether a message that waited `waited` in the buffer (for a batch to fill, or for an instance slot) must have
/// its ack wait renewed before it is handed out: past a quarter of it, so the delivery starts with most of its
/// lease left and another node does not get it while it runs.
pub(super) fn needs_renewal(waited: Duration, ack_wait: Duration) -> bool {
    waited > ack_wait / 4
}

/// The reply that puts a delivery back for a retry at `at` (unix ms), seen at `now`: a `-NAK` with its delay in
/// nanoseconds, zero when `at` has passed.
pub(super) fn retry_reply(at: i64, now: i64) -> String {
    let delay_ns = u128::from(at.saturating_sub(now).max(0) as u64) * 1_000_000;
    format!("-NAK {{\"delay\":{delay_ns}}}")
}

/// Orders a batch as SQLite does: highest priority first, then oldest (lowest stream sequence) first.
pub(super) fn order_batch(batch: &mut [LeasedMessage]) {
    batch.sort_by_key(|m| (std::cmp::Reverse(m.priority), m.id.parse::<u64>().unwrap_or(u64::MAX)));
}

/// When this node next expects a message of each queue to become ready (a retry it asked for, or a delayed message
/// it put back), so an idle consumer wakes for it instead of at its next poll.
#[derive(Debug, Default)]
pub(super) struct ReadyTimes(HashMap<String, i64>);

impl ReadyTimes {
    /// Remembers that a message of `queue` becomes ready at `at`; the earliest such time is kept.
    pub(super) fn expect(&mut self, queue: &str, at: i64) {
        let known = self.0.entry(queue.to_owned()).or_insert(at);
        *known = (*known).min(at);
    }

    /// When a message of `queue` is next expected at `now`; forgotten once that time has come, so it is answered
    /// one last time and then not again until something new is expected.
    pub(super) fn next(&mut self, queue: &str, now: i64) -> Option<i64> {
        let at = self.0.get(queue).copied()?;
        if at <= now {
            self.0.remove(queue);
        }
        Some(at)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const POLICY: BatchPolicy = BatchPolicy { batch_size: 10, max_wait_ms: 200, lease_ms: 30_000 };

    #[test]
    fn a_batch_is_due_when_full_or_when_its_oldest_message_waited_long_enough() {
        assert!(!batch_is_due(0, None, POLICY), "an empty buffer is never due");
        assert!(!batch_is_due(3, Some(Duration::from_millis(199)), POLICY));
        assert!(batch_is_due(3, Some(Duration::from_millis(200)), POLICY));
        assert!(batch_is_due(10, Some(Duration::ZERO), POLICY));
    }

    #[test]
    fn an_idle_consumer_sleeps_until_the_first_thing_it_knows_is_due() {
        let poll = Duration::from_secs(1);
        assert_eq!(idle_sleep(poll, None, None, POLICY), poll);
        assert_eq!(idle_sleep(poll, Some(Duration::from_millis(50)), None, POLICY), Duration::from_millis(150));
        assert_eq!(idle_sleep(poll, None, Some(40), POLICY), Duration::from_millis(40));
        assert_eq!(idle_sleep(poll, Some(Duration::from_millis(50)), Some(400), POLICY), Duration::from_millis(150));
        // A retry time already passed, or far off, changes nothing.
        assert_eq!(idle_sleep(poll, None, Some(-5), POLICY), poll);
        assert_eq!(idle_sleep(poll, None, Some(60_000), POLICY), poll);
        // A partial batch already overdue: no sleep at all.
        assert_eq!(idle_sleep(poll, Some(Duration::from_secs(5)), None, POLICY), Duration::ZERO);
    }

    #[test]
    fn a_message_that_waited_past_a_quarter_of_the_ack_wait_is_renewed() {
        let ack_wait = Duration::from_secs(40);
        assert!(!needs_renewal(Duration::from_secs(10), ack_wait));
        assert!(needs_renewal(Duration::from_millis(10_001), ack_wait));
    }

    #[test]
    fn a_retry_says_its_delay_in_nanoseconds_and_never_a_negative_one() {
        assert_eq!(retry_reply(1_500, 1_000), r#"-NAK {"delay":500000000}"#);
        assert_eq!(retry_reply(1_000, 1_000), r#"-NAK {"delay":0}"#);
        assert_eq!(retry_reply(900, 1_000), r#"-NAK {"delay":0}"#);
    }

    #[test]
    fn a_batch_goes_out_highest_priority_first_then_oldest_first() {
        let message = |id: &str, priority: i32| LeasedMessage {
            id: id.into(),
            token: format!("token-{id}"),
            body: Vec::new(),
            attempts: 1,
            priority,
            enqueued_at: 0,
            correlation_id: None,
            parent_span: 0,
        };
        let mut batch = vec![message("12", 0), message("9", 0), message("30", 5), message("2", -1), message("10", 5)];
        order_batch(&mut batch);
        let ids: Vec<&str> = batch.iter().map(|m| m.id.as_str()).collect();
        // By number, not text: "9" comes before "12".
        assert_eq!(ids, ["10", "30", "9", "12", "2"]);
    }

    #[test]
    fn the_earliest_expected_time_is_kept_and_forgotten_once_it_has_come() {
        let mut ready = ReadyTimes::default();
        assert_eq!(ready.next("orders", 0), None);
        ready.expect("orders", 5_000);
        ready.expect("orders", 3_000);
        ready.expect("orders", 4_000);
        ready.expect("emails", 9_000);
        assert_eq!(ready.next("orders", 1_000), Some(3_000));
        assert_eq!(ready.next("orders", 1_000), Some(3_000), "still ahead: still known");
        assert_eq!(ready.next("orders", 3_000), Some(3_000), "answered once more when it comes");
        assert_eq!(ready.next("orders", 3_001), None, "then forgotten");
        assert_eq!(ready.next("emails", 3_001), Some(9_000), "each queue its own");
    }
}
