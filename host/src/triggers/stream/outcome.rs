//! How far a shard's checkpoint moves after a delivery, and what the loop does next, decided without I/O from what
//! the function settled record by record and how the call ended.
//!
//! The rules, record by record in order: an ack (or no settlement of a call that succeeded) is done; a dead letter
//! is done and goes to the on-failure queue; the first retry, or the first unsettled record of a call that failed,
//! is where the batch failed. The checkpoint moves past everything before that record. From it on:
//! - with `bisect` and more than one record left, the next batch is the first half of them (no attempt counted);
//! - otherwise the attempt counts: after `max_retries` retries, or once the record is older than
//!   `max_record_age_ms`, the records left go to the on-failure queue and the checkpoint moves past them; else they
//!   are retried after the backoff (the function's own delay, if it gave one).
//!
//! After a success the batch size doubles back towards `batch_size`.

use super::ShardState;
use crate::runtime::Settlement;
use crate::storage::streams::StoredRecord;
use edgefn_manifest::record::StreamDelivery;
use std::collections::HashMap;
use std::time::Duration;

/// The longest wait before a retry.
const MAX_BACKOFF_MS: u64 = 15 * 60 * 1000;

/// What a delivery decided.
#[derive(Debug, PartialEq)]
pub(super) struct Decided {
    /// The sequence the checkpoint moves to, if it moves.
    pub checkpoint_to: Option<u64>,
    /// Records (by index) that go to the on-failure queue, with the reason.
    pub to_on_failure: Vec<(usize, String)>,
    /// The batch size and head attempts of the next delivery.
    pub next: ShardState,
    /// How long to wait before it.
    pub backoff: Option<Duration>,
}

/// See the module docs.
pub(super) fn decide(
    policy: &StreamDelivery,
    records: &[StoredRecord],
    settled: HashMap<usize, Settlement>,
    failure: Option<&str>,
    state: ShardState,
    now: i64,
) -> Decided {
    let mut to_on_failure = Vec::new();
    let mut failed_at = None;
    for index in 0..records.len() {
        match settled.get(&index) {
            Some(Settlement::Ack) => {}
            Some(Settlement::DeadLetter(reason)) => {
                to_on_failure.push((index, format!("the function dead-lettered it: {reason}")));
            }
            Some(Settlement::Retry(_)) => {
                failed_at = Some(index);
                break;
            }
            None if failure.is_some() => {
                failed_at = Some(index);
                break;
            }
            None => {}
        }
    }
    let last = records.len() - 1;
    let Some(at) = failed_at else {
        return Decided {
            checkpoint_to: Some(records[last].seq),
            to_on_failure,
            next: ShardState { limit: state.limit.saturating_mul(2).min(policy.batch_size), attempts: 0 },
            backoff: None,
        };
    };
    let checkpoint_to = at.checked_sub(1).map(|before| records[before].seq);
    let attempts = if at > 0 { 0 } else { state.attempts };
    let left = records.len() - at;
    if policy.bisect && left > 1 {
        let half = u32::try_from(left.div_ceil(2)).unwrap_or(u32::MAX);
        return Decided { checkpoint_to, to_on_failure, next: ShardState { limit: half, attempts }, backoff: None };
    }
    let attempts = attempts + 1;
    let (error, asked_delay) = match settled.get(&at) {
        Some(Settlement::Retry(delay)) => ("the function asked for a retry".to_owned(), *delay),
        _ => (failure.unwrap_or("the delivery failed").to_owned(), 0),
    };
    let age = now - records[at].at;
    let too_old = policy.max_record_age_ms > 0 && age > i64::try_from(policy.max_record_age_ms).unwrap_or(i64::MAX);
    if attempts > policy.max_retries || too_old {
        let why = if too_old {
            format!("it is {age} ms old (max_record_age_ms = {}); last error: {error}", policy.max_record_age_ms)
        } else {
            format!("failed {attempts} deliveries (max_retries = {}); last error: {error}", policy.max_retries)
        };
        to_on_failure.extend((at..records.len()).map(|index| (index, why.clone())));
        return Decided {
            checkpoint_to: Some(records[last].seq),
            to_on_failure,
            next: ShardState { limit: policy.batch_size, attempts: 0 },
            backoff: None,
        };
    }
    let delay = if asked_delay > 0 {
        asked_delay
    } else {
        policy.backoff_ms.saturating_mul(1 << (attempts - 1).min(30)).min(MAX_BACKOFF_MS)
    };
    Decided {
        checkpoint_to,
        to_on_failure,
        next: ShardState { limit: state.limit, attempts },
        backoff: Some(Duration::from_millis(delay)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_000_000;

    fn records(count: u64) -> Vec<StoredRecord> {
        (1..=count)
            .map(|seq| StoredRecord {
                seq: seq + 10,
                key: "k".into(),
                body: Vec::new(),
                at: NOW - 10,
                correlation_id: None,
            })
            .collect()
    }

    fn policy(bisect: bool) -> StreamDelivery {
        StreamDelivery { batch_size: 8, bisect, max_retries: 2, backoff_ms: 100, ..StreamDelivery::default() }
    }

    const FRESH: ShardState = ShardState { limit: 8, attempts: 0 };

    #[test]
    fn a_success_moves_past_every_record_and_sends_what_the_function_dead_lettered() {
        let settled = HashMap::from([(1, Settlement::DeadLetter("bad".into())), (2, Settlement::Ack)]);
        let decided = decide(&policy(true), &records(4), settled, None, ShardState { limit: 2, attempts: 0 }, NOW);
        assert_eq!(decided.checkpoint_to, Some(14));
        assert_eq!(decided.to_on_failure, [(1, "the function dead-lettered it: bad".to_owned())]);
        assert_eq!(decided.next, ShardState { limit: 4, attempts: 0 }, "the batch grows back after a bisection");
        assert_eq!(decided.backoff, None);
    }

    #[test]
    fn a_failed_call_splits_the_batch_in_half_without_counting_an_attempt() {
        let decided = decide(&policy(true), &records(5), HashMap::new(), Some("trap"), FRESH, NOW);
        assert_eq!(decided.checkpoint_to, None);
        assert_eq!(decided.next, ShardState { limit: 3, attempts: 0 });
        assert_eq!(decided.backoff, None);
    }

    #[test]
    fn acked_records_before_a_failure_are_checkpointed_and_the_lone_failing_one_backs_off_then_goes_to_on_failure() {
        // Records 0 and 1 acked, then the call failed: the checkpoint moves past them; record 2 is alone, retried.
        let settled = HashMap::from([(0, Settlement::Ack), (1, Settlement::Ack)]);
        let decided = decide(&policy(true), &records(3), settled, Some("boom"), FRESH, NOW);
        assert_eq!(decided.checkpoint_to, Some(12));
        assert_eq!(decided.next, ShardState { limit: 8, attempts: 1 });
        assert_eq!(decided.backoff, Some(Duration::from_millis(100)));
        // Its second failure waits twice as long; its third (max_retries = 2 used up) sends it on.
        let one = &records(1);
        let second = decide(&policy(true), one, HashMap::new(), Some("boom"), decided.next, NOW);
        assert_eq!((second.next.attempts, second.backoff), (2, Some(Duration::from_millis(200))));
        let third = decide(&policy(true), one, HashMap::new(), Some("boom"), second.next, NOW);
        assert_eq!(third.checkpoint_to, Some(11));
        assert_eq!(third.to_on_failure.len(), 1);
        assert!(third.to_on_failure[0].1.contains("failed 3 deliveries (max_retries = 2); last error: boom"));
        assert_eq!(third.next, FRESH);
    }

    #[test]
    fn without_bisect_the_whole_batch_is_retried_and_then_sent_on_and_a_retry_settlement_sets_the_delay() {
        let settled = HashMap::from([(0, Settlement::Retry(5_000))]);
        let decided = decide(&policy(false), &records(3), settled, None, FRESH, NOW);
        assert_eq!((decided.checkpoint_to, decided.backoff), (None, Some(Duration::from_secs(5))));
        let exhausted =
            decide(&policy(false), &records(3), HashMap::new(), Some("x"), ShardState { limit: 8, attempts: 2 }, NOW);
        assert_eq!(exhausted.to_on_failure.iter().map(|(i, _)| *i).collect::<Vec<_>>(), [0, 1, 2]);
        assert_eq!(exhausted.checkpoint_to, Some(13));
    }

    #[test]
    fn a_record_past_its_maximum_age_goes_on_after_one_failure() {
        let policy = StreamDelivery { max_record_age_ms: 5, ..policy(false) };
        let decided = decide(&policy, &records(1), HashMap::new(), Some("x"), FRESH, NOW);
        assert!(decided.to_on_failure[0].1.contains("max_record_age_ms = 5"), "{decided:?}");
        assert_eq!(decided.checkpoint_to, Some(11));
    }
}
