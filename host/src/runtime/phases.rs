//! How an invocation ends, decided without I/O. Every executor (WASI 0.2 HTTP, WASI 0.3 HTTP, reused instances,
//! cron/queue/invoke calls, deploy-time init) runs a guest under a deadline and then asks the same questions, in
//! the same order, here:
//!
//! 1. **ended**: did the run return, trap, or pass its hard deadline; and a trap while the memory budget refused
//!    the guest memory is the host's capacity ([`InvokeError::MemoryBudget`]), not the function's fault;
//! 2. **cleaned**: the error text a function produced is logged and stored (run history, dead-letter reasons), so
//!    its secrets are masked and it is cut to `max_error_bytes`;
//! 3. **reported**: what the invocation's report says (its outcome and error), and a 5xx answer is a failure
//!    whatever the run says.

use super::guest::{GuestOutcome, Settlement};
use super::{InvokeError, redact};
use crate::telemetry::{InvocationReport, Outcome};
use std::time::Duration;
use wasmtime::Trap;

/// Whether the memory budget refused the guest memory during its run, and the budget's size in MiB.
#[derive(Debug, Clone, Copy)]
pub(super) struct BudgetState {
    pub(super) refused: bool,
    pub(super) limit_mb: usize,
}

/// How a guest's run ended: `ran` is its result, or `None` when it passed the hard deadline (a guest blocked in
/// a host call, which epochs do not interrupt); `deadline` is what the error names.
pub(super) fn ended<T>(
    ran: Option<wasmtime::Result<T>>,
    deadline: Duration,
    budget: BudgetState,
) -> Result<T, InvokeError> {
    match ran {
        Some(Ok(value)) => Ok(value),
        Some(Err(error)) => Err(failed(error, deadline, budget)),
        None => Err(InvokeError::Timeout(deadline)),
    }
}

/// Why a run that failed with `error` failed. A trap while the budget refused memory is the host's capacity, not
/// the function's fault.
pub(super) fn failed(error: wasmtime::Error, deadline: Duration, budget: BudgetState) -> InvokeError {
    match classify_trap(error, deadline) {
        InvokeError::Trap(_) if budget.refused => InvokeError::MemoryBudget(budget.limit_mb),
        other => other,
    }
}

/// A wasmtime error as the invocation's error: the epoch interrupt is the deadline; anything else a trap.
fn classify_trap(error: wasmtime::Error, timeout: Duration) -> InvokeError {
    if error.downcast_ref::<Trap>() == Some(&Trap::Interrupt) {
        return InvokeError::Timeout(timeout);
    }
    // The alternate form includes the trap code and the guest backtrace: what an operator needs.
    InvokeError::Trap(format!("{error:#}"))
}

/// The epoch deadline of `timeout`, in ticks of `tick`: at least one, plus one for the tick already under way.
pub(super) fn deadline_ticks(timeout: Duration, tick: Duration) -> u64 {
    (timeout.as_micros() / tick.as_micros().max(1)).max(1) as u64 + 1
}

/// Error text as it may be logged and stored: `secrets` masked, cut to `max_bytes`.
pub(super) fn clean(message: &str, secrets: &[(String, String)], max_bytes: usize) -> String {
    redact::truncate(redact::mask(message, secrets), max_bytes)
}

/// A cron, queue, topic or invoke call's outcome with its error text cleaned (the function's own `Err` and a
/// trap's message; the host's own errors carry no guest text).
pub(super) fn cleaned(
    outcome: Result<GuestOutcome, InvokeError>,
    secrets: &[(String, String)],
    max_bytes: usize,
) -> Result<GuestOutcome, InvokeError> {
    match outcome {
        Ok(returned) => Ok(returned.map_err(|message| clean(&message, secrets, max_bytes))),
        Err(InvokeError::Trap(message)) => Err(InvokeError::Trap(clean(&message, secrets, max_bytes))),
        Err(other) => Err(other),
    }
}

/// The settlements of a delivery with their dead-letter reasons cleaned.
pub(super) fn cleaned_settlements(
    settlements: &mut [(String, Settlement)],
    secrets: &[(String, String)],
    max_bytes: usize,
) {
    for (_, settlement) in settlements {
        if let Settlement::DeadLetter(reason) = settlement {
            *reason = clean(reason, secrets, max_bytes);
        }
    }
}

/// What the report of a cron, queue, topic or invoke call says: its outcome and error.
pub(super) fn guest_report(outcome: &Result<GuestOutcome, InvokeError>) -> (Outcome, Option<String>) {
    match outcome {
        Ok(Ok(_)) => (Outcome::Ok, None),
        Ok(Err(message)) => (Outcome::Error, Some(message.clone())),
        Err(error) => (error.outcome(), Some(error.to_string())),
    }
}

/// Records a failed run in its report (outcome and error).
pub(crate) fn record_failure(report: &mut InvocationReport, error: &InvokeError) {
    report.outcome = error.outcome();
    report.error = Some(error.to_string());
}

/// The outcome an HTTP invocation is billed and counted under: its run's, except that a run that answered 5xx is
/// an error and one that answered 4xx a client error.
pub(crate) fn http_outcome(run: Outcome, status: Option<u16>) -> Outcome {
    match status {
        Some(500..) if run == Outcome::Ok => Outcome::Error,
        Some(400..=499) if run == Outcome::Ok => Outcome::ClientError,
        _ => run,
    }
}

/// Linear memory past which a store is given back off the async threads: [`release`].
const RELEASE_INLINE_BYTES: usize = 8 << 20;

/// Gives back a finished invocation's `store`, then its `slot`. Dropping a store resets its pool slot, which for a
/// guest that touched a lot of memory is milliseconds of madvise and page-table work in one piece; done on an
/// async worker it would hold up every short request queued there (a neighbour's p99 under a tenant that churns
/// memory). A store whose memory grew past [`RELEASE_INLINE_BYTES`] is therefore dropped on the blocking pool, the
/// slot after it: the pool's slot is free before the permit lets another instance in. A small store is dropped
/// here, cheaper than handing it over.
pub(super) fn release<T: Send + 'static>(store: wasmtime::Store<T>, slot: super::Slot, peak_memory_bytes: usize) {
    if peak_memory_bytes <= RELEASE_INLINE_BYTES {
        drop(store);
        drop(slot);
        return;
    }
    match tokio::runtime::Handle::try_current() {
        Ok(runtime) => {
            runtime.spawn_blocking(move || {
                drop(store);
                drop(slot);
            });
        }
        Err(_) => {
            drop(store);
            drop(slot);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FINE: BudgetState = BudgetState { refused: false, limit_mb: 512 };
    const DEADLINE: Duration = Duration::from_secs(3);

    #[test]
    fn a_run_ends_returned_timed_out_or_trapped() {
        assert_eq!(ended(Some(Ok(7)), DEADLINE, FINE).ok(), Some(7));
        let past = ended::<()>(None, DEADLINE, FINE).unwrap_err();
        assert!(matches!(past, InvokeError::Timeout(d) if d == DEADLINE), "{past:?}");
        // The epoch interrupt is the deadline, not a trap.
        let interrupted = ended::<()>(Some(Err(wasmtime::Error::new(Trap::Interrupt))), DEADLINE, FINE).unwrap_err();
        assert!(matches!(interrupted, InvokeError::Timeout(_)), "{interrupted:?}");
        let trapped = ended::<()>(Some(Err(wasmtime::Error::new(Trap::UnreachableCodeReached))), DEADLINE, FINE);
        let trapped = trapped.unwrap_err();
        assert!(matches!(&trapped, InvokeError::Trap(m) if m.contains("unreachable")), "{trapped:?}");
    }

    #[test]
    fn a_trap_while_the_budget_refused_memory_is_the_hosts_capacity() {
        let refused = BudgetState { refused: true, limit_mb: 64 };
        let error = ended::<()>(Some(Err(wasmtime::Error::new(Trap::UnreachableCodeReached))), DEADLINE, refused);
        assert!(matches!(error, Err(InvokeError::MemoryBudget(64))), "{error:?}");
        assert_eq!(error.unwrap_err().outcome(), Outcome::Throttled);
        // A timeout stays a timeout: the guest's own deadline passed.
        let error = ended::<()>(None, DEADLINE, refused);
        assert!(matches!(error, Err(InvokeError::Timeout(_))), "{error:?}");
    }

    #[test]
    fn the_epoch_deadline_is_at_least_two_ticks() {
        let tick = Duration::from_millis(10);
        assert_eq!(deadline_ticks(Duration::from_millis(1), tick), 2);
        assert_eq!(deadline_ticks(Duration::from_millis(100), tick), 11);
        assert_eq!(deadline_ticks(Duration::from_millis(105), tick), 11);
    }

    #[test]
    fn error_text_is_masked_and_cut_but_host_errors_are_left_alone() {
        let secrets = vec![("PASSWORD".to_owned(), "hunter2".to_owned())];
        let outcome = cleaned(Ok(Err("password hunter2 rejected".into())), &secrets, 4096);
        let Ok(Err(message)) = outcome else { panic!("{outcome:?}") };
        assert!(!message.contains("hunter2") && message.contains("rejected"), "{message}");
        let outcome = cleaned(Err(InvokeError::Trap(format!("{} hunter2", "x".repeat(100)))), &secrets, 40);
        let Err(InvokeError::Trap(message)) = outcome else { panic!("{outcome:?}") };
        assert!(!message.contains("hunter2") && message.len() < 100, "{message}");
        assert!(matches!(cleaned(Err(InvokeError::Busy(4)), &secrets, 40), Err(InvokeError::Busy(4))));
        assert_eq!(cleaned(Ok(Ok(b"{}".to_vec())), &secrets, 40).ok(), Some(Ok(b"{}".to_vec())));

        let mut settlements = vec![
            ("1".to_owned(), Settlement::DeadLetter("token hunter2 expired".into())),
            ("2".to_owned(), Settlement::Ack),
        ];
        cleaned_settlements(&mut settlements, &secrets, 4096);
        let Settlement::DeadLetter(reason) = &settlements[0].1 else { panic!("{settlements:?}") };
        assert!(!reason.contains("hunter2") && reason.contains("expired"), "{reason}");
        assert!(matches!(settlements[1].1, Settlement::Ack));
    }

    #[test]
    fn a_report_says_the_functions_error_or_the_invocations() {
        assert_eq!(guest_report(&Ok(Ok(Vec::new()))), (Outcome::Ok, None));
        assert_eq!(guest_report(&Ok(Err("no".into()))), (Outcome::Error, Some("no".into())));
        let (outcome, error) = guest_report(&Err(InvokeError::Timeout(DEADLINE)));
        assert_eq!(outcome, Outcome::Timeout);
        assert!(error.is_some_and(|e| e.contains("deadline")));
    }

    #[test]
    fn a_5xx_answer_is_an_error_whatever_the_run_says() {
        assert_eq!(http_outcome(Outcome::Ok, Some(200)), Outcome::Ok);
        assert_eq!(http_outcome(Outcome::Ok, Some(503)), Outcome::Error);
        assert_eq!(http_outcome(Outcome::Ok, Some(404)), Outcome::ClientError);
        assert_eq!(http_outcome(Outcome::Ok, Some(302)), Outcome::Ok);
        assert_eq!(http_outcome(Outcome::Trap, Some(400)), Outcome::Trap);
        assert_eq!(http_outcome(Outcome::Ok, None), Outcome::Ok);
        assert_eq!(http_outcome(Outcome::Trap, Some(500)), Outcome::Trap, "the run's own failure is kept");
    }
}
