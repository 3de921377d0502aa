//! What becomes of each message of a delivery, decided without I/O: from what the function settled message by
//! message, how the invocation ended, and each message's attempts so far. The consumer then logs and stores these
//! outcomes (see `deliver`).
//!
//! The rules, in order, for each leased message:
//! 1. the function's first settlement of it counts (a later one is ignored, like a second ack): ack, retry (after the
//!    delay it asked for, or the backoff when it asked for none), or dead-letter with its reason;
//! 2. an unsettled message is acked when the invocation succeeded, and retried when it failed;
//! 3. a retry of a message that has had `max_retries + 1` deliveries dead-letters it instead, with the last error;
//! 4. the retry backoff doubles from `backoff_ms` with each attempt, capped at 15 minutes.

use crate::runtime::Settlement;
use crate::storage::backends::{LeasedMessage, Outcome};
use edgefn_manifest::record::Delivery as DeliveryPolicy;
use std::collections::HashMap;

/// The longest wait before a retry.
pub(super) const MAX_BACKOFF_MS: u64 = 15 * 60 * 1000;

/// How a consumer's failed messages are retried and where they go when they run out of retries.
#[derive(Debug, Clone, Copy)]
pub(super) struct RetryPolicy<'a> {
    pub delivery: &'a DeliveryPolicy,
    pub dead_letter_queue: &'a str,
}

impl RetryPolicy<'_> {
    /// The wait before retry number `attempts` (1 after the first delivery failed): `backoff_ms`, doubling.
    fn backoff_ms(&self, attempts: u32) -> u64 {
        let doublings = attempts.saturating_sub(1).min(30);
        self.delivery.backoff_ms.saturating_mul(1 << doublings).min(MAX_BACKOFF_MS)
    }

    /// What to do with a message that failed the delivery that was its `attempts`th: retry it at `now` plus
    /// `delay_ms` (the function's own delay, when it gave one) or the backoff, or dead-letter it.
    fn retry_or_dead_letter(&self, attempts: u32, delay_ms: Option<u64>, error: String, now: i64) -> Outcome {
        if attempts > self.delivery.max_retries {
            return Outcome::DeadLetter {
                queue: self.dead_letter_queue.to_owned(),
                reason: format!(
                    "failed {attempts} deliveries (max_retries = {}); last error: {error}",
                    self.delivery.max_retries
                ),
            };
        }
        let delay = delay_ms.filter(|d| *d > 0).unwrap_or_else(|| self.backoff_ms(attempts));
        Outcome::Retry { at: now.saturating_add(i64::try_from(delay).unwrap_or(i64::MAX)), error }
    }
}

/// What a delivery decided.
#[derive(Debug)]
pub(super) struct Decided {
    /// One outcome per leased message, in the batch's order.
    pub outcomes: Vec<Outcome>,
    /// Ids the function settled that were not in its batch (ignored; the consumer warns about them).
    pub strangers: Vec<String>,
}

/// The outcome of each of `leased` (see the module docs): `settlements` are what the function settled, in order;
/// `failure` is how the invocation failed, if it did.
pub(super) fn decide(
    policy: RetryPolicy<'_>,
    leased: &[LeasedMessage],
    settlements: Vec<(String, Settlement)>,
    failure: Option<&str>,
    now: i64,
) -> Decided {
    let mut settled: HashMap<String, Settlement> = HashMap::with_capacity(settlements.len());
    for (id, settlement) in settlements {
        settled.entry(id).or_insert(settlement);
    }
    let outcomes = leased
        .iter()
        .map(|message| match settled.remove(&message.id) {
            Some(Settlement::Ack) => Outcome::Ack,
            Some(Settlement::Retry(delay)) => {
                policy.retry_or_dead_letter(message.attempts, Some(delay), "the function asked for a retry".into(), now)
            }
            Some(Settlement::DeadLetter(reason)) => {
                Outcome::DeadLetter { queue: policy.dead_letter_queue.to_owned(), reason }
            }
            None => match failure {
                None => Outcome::Ack,
                Some(error) => policy.retry_or_dead_letter(message.attempts, None, error.to_owned(), now),
            },
        })
        .collect();
    let mut strangers: Vec<String> = settled.into_keys().collect();
    strangers.sort();
    Decided { outcomes, strangers }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_000_000;

    fn policy(delivery: &DeliveryPolicy) -> RetryPolicy<'_> {
        RetryPolicy { delivery, dead_letter_queue: "orders-dlq" }
    }

    fn message(id: &str, attempts: u32) -> LeasedMessage {
        LeasedMessage {
            id: id.to_owned(),
            token: format!("{id}-token"),
            body: Vec::new(),
            attempts,
            priority: 0,
            enqueued_at: 0,
            correlation_id: None,
            parent_span: 0,
        }
    }

    #[test]
    fn a_successful_run_acks_what_the_function_left_unsettled_and_keeps_what_it_settled() {
        let delivery = DeliveryPolicy::default();
        let leased = [message("a", 1), message("b", 1), message("c", 1)];
        let settlements = vec![
            ("b".to_owned(), Settlement::Retry(250)),
            ("c".to_owned(), Settlement::DeadLetter("bad order".into())),
        ];
        let decided = decide(policy(&delivery), &leased, settlements, None, NOW);
        assert_eq!(
            decided.outcomes,
            [
                Outcome::Ack,
                Outcome::Retry { at: NOW + 250, error: "the function asked for a retry".into() },
                Outcome::DeadLetter { queue: "orders-dlq".into(), reason: "bad order".into() },
            ]
        );
        assert!(decided.strangers.is_empty());
    }

    #[test]
    fn a_failed_run_retries_the_unsettled_messages_after_a_doubling_backoff_and_keeps_their_acks() {
        let delivery = DeliveryPolicy { backoff_ms: 100, max_retries: 5, ..DeliveryPolicy::default() };
        let leased = [message("a", 1), message("b", 3), message("c", 1)];
        let decided = decide(policy(&delivery), &leased, vec![("c".into(), Settlement::Ack)], Some("trap"), NOW);
        assert_eq!(
            decided.outcomes,
            [
                Outcome::Retry { at: NOW + 100, error: "trap".into() },
                Outcome::Retry { at: NOW + 400, error: "trap".into() },
                Outcome::Ack,
            ]
        );
    }

    #[test]
    fn a_message_out_of_retries_is_dead_lettered_with_its_last_error_whoever_asked_for_the_retry() {
        let delivery = DeliveryPolicy { max_retries: 2, ..DeliveryPolicy::default() };
        let leased = [message("a", 3), message("b", 3), message("c", 2)];
        let decided = decide(policy(&delivery), &leased, vec![("b".into(), Settlement::Retry(0))], Some("boom"), NOW);
        let reason = |error: &str| format!("failed 3 deliveries (max_retries = 2); last error: {error}");
        assert_eq!(decided.outcomes[0], Outcome::DeadLetter { queue: "orders-dlq".into(), reason: reason("boom") });
        assert_eq!(
            decided.outcomes[1],
            Outcome::DeadLetter { queue: "orders-dlq".into(), reason: reason("the function asked for a retry") }
        );
        // Two deliveries of a message with two retries allowed: one more try, after the backoff (no delay given).
        assert!(matches!(decided.outcomes[2], Outcome::Retry { at, .. } if at == NOW + 2_000), "{decided:?}");
    }

    #[test]
    fn the_first_settlement_of_a_message_counts_and_strangers_are_reported_not_applied() {
        let delivery = DeliveryPolicy::default();
        let leased = [message("a", 1)];
        let settlements = vec![
            ("a".to_owned(), Settlement::Ack),
            ("a".to_owned(), Settlement::DeadLetter("too late".into())),
            ("zz".to_owned(), Settlement::Ack),
        ];
        let decided = decide(policy(&delivery), &leased, settlements, Some("failed after acking"), NOW);
        assert_eq!(decided.outcomes, [Outcome::Ack]);
        assert_eq!(decided.strangers, ["zz"]);
    }

    #[test]
    fn the_backoff_doubles_per_attempt_and_stops_at_fifteen_minutes() {
        let delivery = DeliveryPolicy { backoff_ms: 1_000, ..DeliveryPolicy::default() };
        let policy = policy(&delivery);
        let waits: Vec<u64> = [1, 2, 3, 4].map(|attempts| policy.backoff_ms(attempts)).to_vec();
        assert_eq!(waits, [1_000, 2_000, 4_000, 8_000]);
        assert_eq!(policy.backoff_ms(11), MAX_BACKOFF_MS);
        assert_eq!(policy.backoff_ms(u32::MAX), MAX_BACKOFF_MS);
    }
}
