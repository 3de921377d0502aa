//! The WASI 0.3 executor: a call on a fresh instance of a `wasi:http/handler@0.3` component (HTTP) or of its
//! `edgefn:function/async-handler` export (cron, queues, topics, invoke), on the engine with concurrency support.
//!
//! An HTTP call runs its store in a task of its own: the guest answers with a response head and keeps writing the
//! body from its own tasks, which the store's event loop (`run_concurrent`) drives while the client reads.
//!
//! - **Deadlines.** The response head must come within the function's `timeout_ms` (504 otherwise). Its body may
//!   then stream until `limits.stream_timeout_ms` from the start, and at most `limits.max_stream_bytes` of it;
//!   past either, the response is cut short (never a clean end) and the instance dropped.
//! - **Backpressure.** Each chunk the guest writes waits until the host has passed the previous one on: a slow
//!   client slows the guest down, and the host holds a chunk or two per response, whatever its size.
//! - **Cancellation.** A client that hangs up (before the head, or in the middle of the body) drops the instance:
//!   the guest's tasks stop where they are, its outbound calls are dropped, and its metering ends there.

mod reuse;

pub use reuse::ReusePool;

use super::engines::Abi;
use super::guest::{GuestCall, GuestOutcome, Settlement};
use super::long_running::Migrating;
use super::metering::PendingReport;
use super::state::InvocationState;
use super::{HARD_DEADLINE_SLACK, Invocation, InvokeError, RequestBody, Runtime, Slot, metering, phases};
use crate::capabilities::bindings::p3::SdkAsyncPre;
use crate::telemetry::Outcome;
use bytes::Bytes;
use http_body_util::BodyExt as _;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};
use wasmtime::Store;
use wasmtime_wasi_http::p3::bindings::ServicePre;
use wasmtime_wasi_http::p3::bindings::http::types::ErrorCode;
use wasmtime_wasi_http::{WasiBody, WasiHttpView as _};

/// What the guest answered: its response (the body still being written), or the error code it returned.
pub(super) type Answer = Result<http::Response<WasiBody>, ErrorCode>;

/// How a guest's run ended, once it has: a response body that ends while its run failed was cut short.
pub(super) type RunEnd = Arc<OnceLock<Result<(), String>>>;

impl Runtime {
    /// Runs one HTTP request through a fresh instance of `pre` in `slot`; see the module docs.
    pub(super) async fn invoke_http_p3(
        &self,
        pre: &ServicePre<InvocationState>,
        invocation: &Invocation,
        slot: Slot,
        request: http::Request<RequestBody>,
    ) -> Result<http::Response<ResponseBody>, InvokeError> {
        let started = Instant::now();
        let timeout = invocation.limits.timeout;
        let stream_timeout = self.limits.stream_timeout().max(timeout);
        let (mut store, pace) = self.new_store_until(invocation, Abi::P3, started + stream_timeout);
        let request = request.map(|body| match body {
            RequestBody::Whole(bytes) => {
                http_body_util::Full::new(bytes).map_err(|never| match never {}).boxed_unsync()
            }
            RequestBody::Streaming(body) => body,
        });
        let (request, request_io) = wasmtime_wasi_http::p3::Request::from_http(store.data_mut().http().hooks, request);
        let report = self.telemetry.is_enabled().then(|| {
            PendingReport::new(
                self.telemetry.clone(),
                invocation.trace.clone(),
                invocation.limits.memory_mb(),
                invocation.cold_start,
            )
        });
        let ended: RunEnd = Arc::default();
        let (answer_tx, answer_rx) = tokio::sync::oneshot::channel::<Answer>();
        let run_pace = pace.clone();
        let run = {
            let (pre, runtime, report, ended) = (pre.clone(), self.clone(), report.clone(), ended.clone());
            async move {
                // The slot is held until the guest is done, body included, and given back after the store
                // (`phases::release`).
                let mut busy = Duration::ZERO;
                let call = async {
                    let service = pre.instantiate_async(&mut store).await?;
                    store
                        .run_concurrent(async |accessor| {
                            match service.handle(accessor, request).await? {
                                Ok(response) => {
                                    let response = accessor.with(|store| response.into_http(store, request_io))?;
                                    let _ = answer_tx.send(Ok(response));
                                }
                                Err(code) => {
                                    let _ = answer_tx.send(Err(code));
                                }
                            }
                            // The guest may go on after answering (writing the body, or other work it spawned):
                            // the call ends when it has nothing left to do.
                            std::future::poll_fn(|cx| accessor.poll_no_interesting_tasks(cx)).await;
                            wasmtime::error::Ok(())
                        })
                        .await?
                };
                let hard_deadline = stream_timeout + HARD_DEADLINE_SLACK;
                let ran = tokio::time::timeout(hard_deadline, metering::timed(&mut busy, &pace, call)).await.ok();
                let outcome = phases::ended(ran, stream_timeout, runtime.budget_state(&store));
                // Said before the store goes: its body must not look complete to the client when it was cut short.
                let _ = ended.set(outcome.as_ref().map(|_| ()).map_err(ToString::to_string));
                if let Some(report) = &report {
                    let peak = store.data().limits.peak as u64;
                    report.update(|report| {
                        report.wall = started.elapsed();
                        report.guest_cpu = busy;
                        report.peak_memory_bytes = peak;
                        if let Err(error) = &outcome {
                            phases::record_failure(report, error);
                        }
                    });
                }
                let peak = store.data().limits.peak;
                phases::release(store, slot, peak);
                outcome
            }
        };
        // Once it computes long, on the long-running guests' threads (`long_running`).
        let task = tokio::spawn(Migrating::new(run, run_pace));
        // Dropped before the response is handed over (the client went away, the head never came): the instance
        // goes with it.
        let mut guard = Cancel::new(Some(task.abort_handle()), report.clone());
        let answer = match tokio::time::timeout(timeout, answer_rx).await {
            Ok(Ok(answer)) => answer,
            // The guest ended without answering: its end says why.
            Ok(Err(_no_answer)) => {
                let ended = task.await.unwrap_or_else(|join| Err(InvokeError::Host(join.to_string())));
                guard.disarm();
                return Err(ended.err().unwrap_or(InvokeError::NoResponse));
            }
            Err(_elapsed) => {
                if let Some(report) = &report {
                    report.update(|report| {
                        report.outcome = Outcome::Timeout;
                        report.error = Some(InvokeError::Timeout(timeout).to_string());
                        report.wall = started.elapsed();
                    });
                }
                guard.abort_now();
                return Err(InvokeError::Timeout(timeout));
            }
        };
        let response =
            answer.map_err(|code| InvokeError::Trap(format!("the function answered with an error: {code:?}")))?;
        if let Some(report) = &report {
            report.update(|report| report.status = Some(response.status().as_u16()));
        }
        Ok(response.map(|body| ResponseBody::new(body, ended, guard, self.limits.max_stream_bytes)))
    }

    /// Runs one cron, queue, topic or invoke function through a fresh instance of `pre` in `slot`. The call ends
    /// when the guest has nothing left to do (its own tasks included), within the deadline.
    pub(super) async fn call_guest_p3(
        &self,
        pre: &SdkAsyncPre<InvocationState>,
        invocation: &Invocation,
        slot: Slot,
        guest_call: GuestCall,
    ) -> (Result<GuestOutcome, InvokeError>, Vec<(String, Settlement)>) {
        let run = async |store: &mut Store<InvocationState>| {
            let instance = pre.instantiate_async(&mut *store).await?;
            store
                .run_concurrent(async |accessor| {
                    let handler = instance.edgefn_function_async_handler();
                    let outcome = match guest_call {
                        GuestCall::Cron(event) => handler.call_on_cron(accessor, event).await?.map(|()| Vec::new()),
                        GuestCall::Messages(delivery) => {
                            handler.call_on_messages(accessor, delivery).await?.map(|()| Vec::new())
                        }
                        GuestCall::Invoke { function, payload, correlation_id } => {
                            handler.call_on_invoke(accessor, function, payload, correlation_id).await?
                        }
                    };
                    std::future::poll_fn(|cx| accessor.poll_no_interesting_tasks(cx)).await;
                    wasmtime::error::Ok(outcome)
                })
                .await?
        };
        self.run_guest_call(invocation, slot, Abi::P3, run).await
    }
}

/// What happens to a request's guest work when its client goes away before the response is complete: dropped while
/// armed, it reports the request as cancelled (unless its report already says how it ended) and, for a fresh
/// instance, aborts the instance's task. A reused instance cannot drop one request's task alone: its writes then
/// fail, so the request stops at its next await.
struct Cancel {
    armed: bool,
    task: Option<tokio::task::AbortHandle>,
    report: Option<Arc<PendingReport>>,
    /// When the request started, for a report whose wall time ends with its body (a reused instance's).
    started: Option<Instant>,
}

impl Cancel {
    fn new(task: Option<tokio::task::AbortHandle>, report: Option<Arc<PendingReport>>) -> Self {
        Self { armed: true, task, report, started: None }
    }

    /// The request's report takes its wall time from `started` to when its body ends (or is dropped).
    fn timing(mut self, started: Instant) -> Self {
        self.started = Some(started);
        self
    }

    /// The request is complete: dropping this ends nothing.
    fn disarm(&mut self) {
        self.armed = false;
    }

    /// Ends the instance now (a fresh one: a reused one goes on with its other requests).
    fn abort_now(&mut self) {
        self.armed = false;
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

impl Drop for Cancel {
    fn drop(&mut self) {
        if let (Some(started), Some(report)) = (self.started, &self.report) {
            report.update(|report| report.wall = started.elapsed());
        }
        if !self.armed || self.task.as_ref().is_some_and(tokio::task::AbortHandle::is_finished) {
            return;
        }
        if let Some(report) = &self.report {
            report.update(|report| {
                if report.outcome == Outcome::Ok {
                    report.outcome = Outcome::Cancelled;
                    report.error = Some("the client went away before the response was complete".to_owned());
                }
            });
        }
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

/// A WASI 0.3 function's response body, as the client reads it: see the module docs for its bounds. Dropped before
/// its end (the client hung up), it cancels the guest.
pub struct ResponseBody {
    body: WasiBody,
    /// How the guest's run ended, once it has: a body that ends while the run failed is cut short, not complete.
    ended: RunEnd,
    cancel: Cancel,
    sent: AtomicU64,
    max_bytes: u64,
}

impl ResponseBody {
    fn new(body: WasiBody, ended: RunEnd, cancel: Cancel, max_bytes: u64) -> Self {
        Self { body, ended, cancel, sent: AtomicU64::new(0), max_bytes }
    }
}

impl std::fmt::Debug for ResponseBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResponseBody")
            .field("sent", &self.sent)
            .field("ended", &self.ended.get())
            .finish_non_exhaustive()
    }
}

impl http_body::Body for ResponseBody {
    type Data = Bytes;
    type Error = Box<dyn std::error::Error + Send + Sync>;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, Self::Error>>> {
        let this = &mut *self;
        match std::task::ready!(Pin::new(&mut this.body).poll_frame(cx)) {
            Some(Ok(frame)) => {
                let len = frame.data_ref().map_or(0, |data| data.len() as u64);
                let sent = this.sent.fetch_add(len, Ordering::Relaxed) + len;
                if sent > this.max_bytes {
                    this.cancel.abort_now();
                    let limit = this.max_bytes;
                    tracing::warn!(limit, "a streamed response passed limits.max_stream_bytes and was cut short");
                    return Poll::Ready(Some(Err(format!(
                        "the response passed limits.max_stream_bytes ({limit} bytes) and was cut short"
                    )
                    .into())));
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Some(Err(error)) => {
                this.cancel.abort_now();
                Poll::Ready(Some(Err(Box::new(error))))
            }
            None => match this.ended.get() {
                Some(Err(reason)) => Poll::Ready(Some(Err(format!("the response was cut short: {reason}").into()))),
                // Whole: the guest may still have work of its own to finish, which goes on.
                _ => {
                    this.cancel.disarm();
                    Poll::Ready(None)
                }
            },
        }
    }

    fn is_end_stream(&self) -> bool {
        // A run that failed must be seen failing by a last poll, not skipped as ended.
        self.body.is_end_stream() && !matches!(self.ended.get(), Some(Err(_)))
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.body.size_hint()
    }
}
