//! The WASI 0.2 executor: every call on a fresh instance of a `wasi:http/incoming-handler@0.2` component (HTTP) or
//! of its `edgefn:function/handler` export (cron, queues, topics, invoke), on the engine without concurrency
//! support. A function always runs to its end: a client that hangs up does not cut it short.

use super::engines::Abi;
use super::guest::{GuestCall, GuestOutcome, Settlement};
use super::long_running::Migrating;
use super::state::InvocationState;
use super::{HARD_DEADLINE_SLACK, Invocation, InvokeError, Runtime, Slot, host_error, metering, phases};
use crate::capabilities::bindings::p2::SdkPre;
use crate::telemetry::Outcome;
use bytes::Bytes;
use http_body_util::Full;
use std::time::Duration;
use wasmtime::Store;
use wasmtime_wasi_http::WasiHttpView as _;
use wasmtime_wasi_http::p2::bindings::ProxyPre;
use wasmtime_wasi_http::p2::bindings::http::types::{ErrorCode, Scheme};
use wasmtime_wasi_http::p2::body::HyperOutgoingBody;

impl Runtime {
    /// Runs one cron, queue, topic or invoke function through a fresh instance of `pre` in `slot`.
    pub(super) async fn call_guest_p2(
        &self,
        pre: &SdkPre<InvocationState>,
        invocation: &Invocation,
        slot: Slot,
        guest_call: GuestCall,
    ) -> (Result<GuestOutcome, InvokeError>, Vec<(String, Settlement)>) {
        let run = async |store: &mut Store<InvocationState>| {
            let instance = pre.instantiate_async(&mut *store).await?;
            let handler = instance.edgefn_function_handler();
            match &guest_call {
                GuestCall::Cron(event) => {
                    handler.call_on_cron(&mut *store, event).await.map(|r| r.map(|()| Vec::new()))
                }
                GuestCall::Messages(delivery) => {
                    handler.call_on_messages(&mut *store, delivery).await.map(|r| r.map(|()| Vec::new()))
                }
                GuestCall::Invoke { function, payload, correlation_id } => {
                    handler.call_on_invoke(&mut *store, function, payload, correlation_id).await
                }
            }
        };
        self.run_guest_call(invocation, slot, Abi::P2, run).await
    }

    /// Runs one HTTP request through a fresh instance of `component` in `slot`.
    pub(super) async fn invoke_http_p2(
        &self,
        pre: &ProxyPre<InvocationState>,
        invocation: &Invocation,
        slot: Slot,
        request: http::Request<Bytes>,
    ) -> Result<http::Response<HyperOutgoingBody>, InvokeError> {
        let timeout = invocation.limits.timeout;
        let (mut store, pace) = self.new_store(invocation, Abi::P2);

        let request = request.map(Full::new);
        let (sender, mut receiver) = tokio::sync::oneshot::channel();
        let (incoming, outparam) = {
            let mut http = store.data_mut().http();
            let incoming = http.new_incoming_request(Scheme::Http, request).map_err(host_error)?;
            let outparam = http.new_response_outparam(sender).map_err(host_error)?;
            (incoming, outparam)
        };
        let pre = pre.clone();
        let runtime = self.clone();
        let report = self.telemetry.is_enabled().then(|| {
            let memory_mb = invocation.limits.memory_mb();
            metering::PendingReport::new(
                self.telemetry.clone(),
                invocation.trace.clone(),
                memory_mb,
                invocation.cold_start,
            )
        });
        let run_report = report.clone();
        // The epoch deadline stops a guest that computes forever; the hard deadline also stops a guest blocked in
        // a host call (epochs do not interrupt those), including after it has sent its response head.
        let hard_deadline = timeout + HARD_DEADLINE_SLACK;
        let run_pace = pace.clone();
        let run = async move {
            // The slot is held until the guest is done, body streaming included, and given back after the store
            // (`phases::release`).
            let mut store = store;
            let started = std::time::Instant::now();
            let mut busy = Duration::ZERO;
            let run = async {
                let proxy = pre.instantiate_async(&mut store).await?;
                proxy.wasi_http_incoming_handler().call_handle(&mut store, incoming, outparam).await
            };
            let ran = tokio::time::timeout(hard_deadline, metering::timed(&mut busy, &pace, run)).await.ok();
            let ended = phases::ended(ran, timeout, runtime.budget_state(&store));
            if let Some(report) = run_report {
                report.update(|report| {
                    report.wall = started.elapsed();
                    report.guest_cpu = busy;
                    report.peak_memory_bytes = store.data().limits.peak as u64;
                    if let Err(error) = &ended {
                        phases::record_failure(report, error);
                    }
                });
            }
            let peak = store.data().limits.peak;
            phases::release(store, slot, peak);
            ended
        };
        // Most functions answer and return in one go: run them right here, on the request's own task, with no
        // task to spawn and no thread to wake. One that sets its response and keeps streaming the body goes on
        // in a task of its own; so does one whose caller goes away (the client hung up): a function always runs
        // to its end, as it would have with nobody waiting.
        // Once it computes long, on the long-running guests' threads (`long_running`).
        let mut run = Detached::new(Migrating::new(run, run_pace));
        let answer = tokio::select! {
            biased;
            finished = &mut run => match receiver.try_recv() {
                Ok(answer) => answered_with(answer),
                Err(_none) => Err(finished.err().unwrap_or(InvokeError::NoResponse)),
            },
            answered = &mut receiver => {
                run.detach();
                match answered {
                    Ok(answer) => answered_with(answer),
                    // The guest dropped its response outparam without setting it: its own end tells why.
                    Err(_dropped) => Err(run.await.err().unwrap_or(InvokeError::NoResponse)),
                }
            }
        };
        if let Some(report) = report {
            report.update(|report| match &answer {
                Ok(response) => report.status = Some(response.status().as_u16()),
                Err(error) if report.outcome == Outcome::Ok => phases::record_failure(report, error),
                Err(_) => {}
            });
        }
        answer
    }
}

/// What the guest set its response outparam to, as the invocation's result.
fn answered_with(
    answer: Result<http::Response<HyperOutgoingBody>, ErrorCode>,
) -> Result<http::Response<HyperOutgoingBody>, InvokeError> {
    answer.map_err(|code| InvokeError::Trap(format!("the function answered with an error: {code:?}")))
}

/// A guest's HTTP run: it ends with the guest, after its response has been handed over.
type GuestRun = std::pin::Pin<Box<dyn Future<Output = Result<(), InvokeError>> + Send>>;

/// A guest's run, polled in place by whoever awaits it, that goes on in a task of its own once
/// [`Detached::detach`] is called, or when it is dropped before its end.
struct Detached(Stage);

/// Where a [`Detached`] run is.
enum Stage {
    /// Polled by whoever awaits it.
    Here(GuestRun),
    /// Running in a task of its own; awaiting it waits for the task.
    Elsewhere(tokio::task::JoinHandle<Result<(), InvokeError>>),
    /// Finished, and its outcome reported.
    Done,
}

impl Detached {
    fn new(run: impl Future<Output = Result<(), InvokeError>> + Send + 'static) -> Self {
        Self(Stage::Here(Box::pin(run)))
    }

    /// Hands the rest of the run to a task of its own.
    fn detach(&mut self) {
        if let Stage::Here(run) = std::mem::replace(&mut self.0, Stage::Done) {
            self.0 = Stage::Elsewhere(tokio::spawn(run));
        }
    }
}

impl Future for Detached {
    type Output = Result<(), InvokeError>;

    fn poll(self: std::pin::Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> std::task::Poll<Self::Output> {
        let stage = &mut self.get_mut().0;
        let outcome = match stage {
            Stage::Here(run) => std::task::ready!(run.as_mut().poll(cx)),
            Stage::Elsewhere(task) => std::task::ready!(std::pin::Pin::new(task).poll(cx))
                .unwrap_or_else(|join| Err(InvokeError::Host(join.to_string()))),
            Stage::Done => Ok(()),
        };
        *stage = Stage::Done;
        std::task::Poll::Ready(outcome)
    }
}

impl Drop for Detached {
    fn drop(&mut self) {
        // Dropped mid-run (the caller went away): the guest finishes anyway, so that what it started (messages
        // sent, state written) is not cut in half. Without a runtime (the host is shutting down) it stops here. A
        // run already in its own task goes on there.
        if let Stage::Here(run) = std::mem::replace(&mut self.0, Stage::Done)
            && let Ok(runtime) = tokio::runtime::Handle::try_current()
        {
            runtime.spawn(run);
        }
    }
}
