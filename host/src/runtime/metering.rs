//! Measuring one invocation for its [`InvocationReport`]: wall time, the time its instance was being run, and how
//! it ended.

use super::InvokeError;
use super::fairness::Pace;
use crate::telemetry::{InvocationReport, Outcome, Telemetry, Trace};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Runs `future`, a guest's run, adding the time spent polling it to `busy`: the time the guest's code (and the
/// host calls it makes without waiting) ran, not the time it waited for a timer, a message or the network. Tells
/// the guest's `pace` each time it waits (see `fairness`).
pub(super) async fn timed<F: Future>(busy: &mut Duration, pace: &Pace, future: F) -> F::Output {
    let mut future = std::pin::pin!(future);
    std::future::poll_fn(|cx| {
        let started = Instant::now();
        let polled = future.as_mut().poll(cx);
        *busy += started.elapsed();
        if polled.is_pending() {
            pace.pending();
        }
        polled
    })
    .await
}

impl InvokeError {
    /// How an invocation that ended with this error is reported and billed.
    pub fn outcome(&self) -> Outcome {
        match self {
            InvokeError::Timeout(_) => Outcome::Timeout,
            InvokeError::Trap(_) => Outcome::Trap,
            InvokeError::Busy(_) | InvokeError::MemoryBudget(_) | InvokeError::Throttled(_) => Outcome::Throttled,
            InvokeError::NoResponse | InvokeError::Host(_) => Outcome::Error,
        }
    }
}

/// The report of an HTTP invocation, filled in by two parties that end in either order: the guest's run (its
/// outcome, times and memory) and the request (the status it answered with). Sent when the last one lets go.
pub(crate) struct PendingReport {
    telemetry: Telemetry,
    /// Taken when it is sent.
    report: Mutex<Option<InvocationReport>>,
}

impl PendingReport {
    pub(crate) fn new(telemetry: Telemetry, trace: Arc<Trace>, memory_mb: u64, cold_start: bool) -> Arc<Self> {
        let report = InvocationReport {
            trace,
            outcome: Outcome::Ok,
            status: None,
            error: None,
            wall: Duration::ZERO,
            guest_cpu: Duration::ZERO,
            memory_mb,
            peak_memory_bytes: 0,
            cold_start,
        };
        Arc::new(Self { telemetry, report: Mutex::new(Some(report)) })
    }

    pub(crate) fn update(&self, change: impl FnOnce(&mut InvocationReport)) {
        if let Some(report) = self.report.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).as_mut() {
            change(report);
        }
    }
}

impl Drop for PendingReport {
    fn drop(&mut self) {
        let Some(mut report) = self.report.get_mut().unwrap_or_else(|poisoned| poisoned.into_inner()).take() else {
            return;
        };
        report.outcome = super::phases::http_outcome(report.outcome, report.status);
        self.telemetry.invocation(report);
    }
}
