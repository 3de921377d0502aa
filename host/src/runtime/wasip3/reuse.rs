//! Instance reuse, for the WASI 0.3 HTTP functions that ask for it (`reuse = { max_requests, max_concurrent,
//! idle_ms }`): one instance serves up to `max_requests` requests, `max_concurrent` at a time, and is retired when
//! it has served them, after `idle_ms` without work, when one of its requests times out, when it traps, or when its
//! version is no longer live (once what it is serving is done).
//!
//! The shape follows wasmtime's own `ProxyHandler` (`wasmtime-wasi-http` 48, `handler.rs`), which `wasmtime serve`
//! uses: a queue of requests, and workers, each a task that owns one instance and takes requests while it has room.
//! Each worker holds one instance slot (and its memory admission) for its whole life. Three details of that design
//! matter for speed and are kept here:
//! - a worker takes a second request only once its instance has gone idle (the event loop returned `Pending`), so a
//!   burst of short requests spreads over as many instances as there are threads instead of queueing behind one;
//! - it takes a request only when the instance can start a call at once (`poll_ready_for_concurrent_call`), never
//!   parking a call inside wasmtime where nothing wakes it;
//! - only a worker with room listens for new requests, and the last one to lose its room starts another worker if
//!   requests are waiting, so no request waits in the queue for a worker that is not coming.
//!
//! What stays per request:
//! - its deadline (`timeout_ms` for the response head; 504 past it, and the instance stops taking requests);
//! - its report: status, outcome, wall time until its body ended, and guest time, each poll of the instance split
//!   between the requests in flight at the time;
//! - its correlation id and log: an instance moves its current work to each request it takes, so what it prints,
//!   sends and fetches is tied to that request. With several requests on one instance at once, output and sends
//!   are tied to the one that started last (the SDK also tags each outbound call with its own task's id).

use super::{Answer, Cancel, ResponseBody, RunEnd};
use crate::runtime::engines::Abi;
use crate::runtime::loader::{HttpPre, PreparedComponent};
use crate::runtime::metering::PendingReport;
use crate::runtime::state::InvocationState;
use crate::runtime::{Invocation, InvokeError, Reuse, Runtime, SlotKind, phases};
use crate::telemetry::{Outcome, Trace};
use futures_util::StreamExt as _;
use std::collections::VecDeque;
use std::pin::pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::task::Poll;
use std::time::{Duration, Instant};
use tokio::sync::{Notify, oneshot};
use wasmtime_wasi_http::WasiBody;
use wasmtime_wasi_http::p3::bindings::ServicePre;

/// The reused instances of one function of one version. Dropped (its version is no longer live), it retires them:
/// each finishes what it is serving and takes nothing more.
pub struct ReusePool {
    inner: Arc<Pool>,
}

impl std::fmt::Debug for ReusePool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReusePool")
            .field("function", &self.inner.label)
            .field("workers", &self.inner.workers.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

struct Pool {
    runtime: Runtime,
    pre: ServicePre<InvocationState>,
    /// What every instance starts with (its first request moves it on: see `InvocationState::begin`).
    template: Invocation,
    reuse: Reuse,
    label: String,
    queue: Mutex<VecDeque<Job>>,
    /// A job was queued: wakes one worker that has room (only those wait on it).
    wake: Notify,
    /// The pool retired: wakes every worker.
    retire: Notify,
    /// Workers that could take a job now.
    available: AtomicUsize,
    /// Workers running.
    workers: AtomicUsize,
    retired: AtomicBool,
}

/// One request waiting for, or served by, a worker.
struct Job {
    request: http::Request<WasiBody>,
    trace: Arc<Trace>,
    report: Option<Arc<PendingReport>>,
    answer: oneshot::Sender<Result<(Answer, RunEnd), InvokeError>>,
}

impl ReusePool {
    /// A pool of instances of `component`, which run as `template` says (its trace names the function). Only a
    /// WASI 0.3 component's instances can be reused.
    pub fn new(
        runtime: Runtime,
        component: &PreparedComponent,
        template: Invocation,
        reuse: Reuse,
    ) -> Result<Self, InvokeError> {
        let HttpPre::P3(pre) = &component.http else {
            return Err(InvokeError::Host("only a WASI 0.3 component's instances can be reused".to_owned()));
        };
        let pre = pre.clone();
        let label = template.trace.function.clone();
        let inner = Arc::new(Pool {
            runtime,
            pre,
            template,
            reuse,
            label,
            queue: Mutex::default(),
            wake: Notify::new(),
            retire: Notify::new(),
            available: AtomicUsize::new(0),
            workers: AtomicUsize::new(0),
            retired: AtomicBool::new(false),
        });
        Ok(Self { inner })
    }

    /// Instances running now.
    pub fn instances(&self) -> usize {
        self.inner.workers.load(Ordering::Relaxed)
    }

    /// Serves `request` (of the work `trace`) on a reused instance, starting one if none has room.
    pub async fn handle(
        &self,
        request: http::Request<WasiBody>,
        trace: Arc<Trace>,
        timeout: Duration,
    ) -> Result<http::Response<ResponseBody>, InvokeError> {
        let runtime = &self.inner.runtime;
        // A reused instance takes no new slot, where requests are usually noted: note this one here, or a host
        // serving only reused instances would count as idle and give its deploys every core.
        crate::runtime::background::note_request();
        let started = Instant::now();
        let report = runtime.telemetry().is_enabled().then(|| {
            PendingReport::new(
                runtime.telemetry().clone(),
                trace.clone(),
                self.inner.template.limits.memory_mb(),
                false,
            )
        });
        let (answer, answered) = oneshot::channel();
        self.inner.push(Job { request, trace, report: report.clone(), answer });
        let outcome = match tokio::time::timeout(timeout + crate::runtime::HARD_DEADLINE_SLACK, answered).await {
            Ok(Ok(outcome)) => outcome,
            // The instance went away without answering (it trapped, or its worker ended): the worker said why in
            // the report, if it could.
            Ok(Err(_dropped)) => Err(InvokeError::Trap(
                "the reused instance ended (another request on it trapped) before it answered".to_owned(),
            )),
            Err(_elapsed) => Err(InvokeError::Timeout(timeout)),
        };
        let (answer, ended) = match outcome {
            Ok(answered) => answered,
            Err(error) => {
                if let Some(report) = &report {
                    report.update(|report| {
                        if report.outcome == Outcome::Ok {
                            phases::record_failure(report, &error);
                        }
                        report.wall = started.elapsed();
                    });
                }
                return Err(error);
            }
        };
        let response =
            answer.map_err(|code| InvokeError::Trap(format!("the function answered with an error: {code:?}")))?;
        if let Some(report) = &report {
            report.update(|report| report.status = Some(response.status().as_u16()));
        }
        let cancel = Cancel::new(None, report).timing(started);
        Ok(response.map(|body| ResponseBody::new(body, ended, cancel, runtime.limits().max_stream_bytes)))
    }
}

impl Drop for ReusePool {
    /// Retires the pool: its instances serve what is queued and in flight (requests that started on this version
    /// finish on it), then end, idle or not.
    fn drop(&mut self) {
        self.inner.retired.store(true, Ordering::Release);
        self.inner.retire.notify_waiters();
    }
}

impl Pool {
    fn lock(&self) -> std::sync::MutexGuard<'_, VecDeque<Job>> {
        self.queue.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Hands `job` to a worker with room, or to a new worker when none has room.
    fn push(self: &Arc<Self>, job: Job) {
        if self.available.load(Ordering::Acquire) == 0 {
            start_worker(self.clone(), Some(job));
            return;
        }
        let mut queue = self.lock();
        queue.push_back(job);
        // Checked again after queueing: the last worker with room may have filled up in between (then either this
        // check or that worker's `Available::set` starts a new worker; see there).
        if self.available.load(Ordering::Acquire) == 0 {
            let job = queue.pop_back();
            drop(queue);
            if let Some(job) = job {
                start_worker(self.clone(), Some(job));
            }
        } else {
            drop(queue);
            self.wake.notify_one();
        }
    }

    fn pop(&self) -> Option<Job> {
        self.lock().pop_front()
    }

    fn has_queued(&self) -> bool {
        !self.lock().is_empty()
    }

    /// Answers every queued request with `error`.
    fn fail_queued(&self, error: &InvokeError) {
        for job in std::mem::take(&mut *self.lock()) {
            let _ = job.answer.send(Err(clone_error(error)));
        }
    }
}

/// An [`InvokeError`] again, for each of several requests it ends.
fn clone_error(error: &InvokeError) -> InvokeError {
    match error {
        InvokeError::Timeout(deadline) => InvokeError::Timeout(*deadline),
        InvokeError::Trap(message) => InvokeError::Trap(message.clone()),
        InvokeError::NoResponse => InvokeError::NoResponse,
        InvokeError::Busy(slots) => InvokeError::Busy(*slots),
        InvokeError::MemoryBudget(mib) => InvokeError::MemoryBudget(*mib),
        InvokeError::Throttled(limit) => InvokeError::Throttled(*limit),
        InvokeError::Host(message) => InvokeError::Host(message.clone()),
    }
}

/// How one request on an instance went.
enum Served {
    Answered,
    /// It did not answer in time: the instance takes nothing more.
    Expired,
}

/// The requests in flight on one instance, by report: each poll of the instance is billed to them in equal parts.
#[derive(Default)]
struct InFlight(Mutex<Vec<Weak<PendingReport>>>);

impl InFlight {
    fn add(&self, report: &Option<Arc<PendingReport>>) {
        if let Some(report) = report {
            self.0.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).push(Arc::downgrade(report));
        }
    }

    /// Splits `busy` between the requests whose bodies are still going.
    fn bill(&self, busy: Duration) {
        let mut reports = self.0.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        reports.retain(|report| report.strong_count() > 0);
        if reports.is_empty() {
            return;
        }
        let share = busy / reports.len() as u32;
        for report in reports.iter().filter_map(Weak::upgrade) {
            report.update(|report| report.guest_cpu += share);
        }
    }
}

/// A worker: one instance, serving `first` and then what the queue holds until it is retired.
async fn work(pool: Arc<Pool>, first: Option<Job>) {
    let ended = serve_on_one_instance(&pool, first).await;
    pool.workers.fetch_sub(1, Ordering::AcqRel);
    if let Err(error) = ended {
        tracing::warn!(function = %pool.label, "a reused instance ended: {error}");
    }
}

/// Starts a worker in a task of its own.
fn start_worker(pool: Arc<Pool>, first: Option<Job>) {
    pool.workers.fetch_add(1, Ordering::AcqRel);
    let worker: std::pin::Pin<Box<dyn Future<Output = ()> + Send>> = Box::pin(work(pool, first));
    tokio::spawn(worker);
}

async fn serve_on_one_instance(pool: &Arc<Pool>, first: Option<Job>) -> Result<(), InvokeError> {
    let runtime = &pool.runtime;
    // A worker that cannot start fails the request it was started for, or, started for the queue, what is queued.
    let fail = |first: Option<Job>, error: &InvokeError| match first {
        Some(job) => {
            let _ = job.answer.send(Err(clone_error(error)));
        }
        None => pool.fail_queued(error),
    };
    let slot = match runtime.acquire_slot(SlotKind::Request, &pool.label).await {
        Ok(slot) => slot,
        Err(error) => {
            fail(first, &error);
            return Err(error);
        }
    };
    let lifetime = runtime.limits().stream_timeout();
    let (mut store, pace) = runtime.new_store_until(&pool.template, Abi::P3, Instant::now() + lifetime);
    let service = match pool.pre.instantiate_async(&mut store).await {
        Ok(service) => service,
        Err(error) => {
            let error = phases::failed(error, lifetime, runtime.budget_state(&store));
            fail(first, &error);
            return Err(error);
        }
    };
    let in_flight = InFlight::default();
    let service = &service;
    // Said when the instance ends: a body it was still writing is then cut short, never complete.
    let ended: RunEnd = Arc::default();
    // Whether the worker may take another request while some are running: cleared when it takes one, set again
    // once the instance has run out of things to do for now (see the module docs).
    let take_more = AtomicBool::new(true);
    let mut available = Available { pool, counted: false };
    let reuse = pool.reuse;
    let timeout = pool.template.limits.timeout;
    let run = store.run_concurrent(async |accessor| {
        let handler = *service.wasi_http_handler().func_handle().func();
        let serve = |job: Job| {
            let ended = ended.clone();
            async move {
                let Job { request, trace, report: _, answer } = job;
                accessor.with(|mut store| store.get().begin(trace));
                let (request, request_io) = wasmtime_wasi_http::p3::Request::from_http(Default::default(), request);
                match tokio::time::timeout(timeout, service.handle(accessor, request)).await {
                    Ok(Ok(Ok(response))) => {
                        let response = accessor.with(|store| response.into_http(store, request_io))?;
                        let _ = answer.send(Ok((Ok(response), ended)));
                        wasmtime::error::Ok(Served::Answered)
                    }
                    Ok(Ok(Err(code))) => {
                        let _ = answer.send(Ok((Err(code), ended)));
                        Ok(Served::Answered)
                    }
                    // A trap: the instance is done for, and so is every other request on it (their answers drop,
                    // which fails them).
                    Ok(Err(trap)) => {
                        let _ = answer.send(Err(InvokeError::Trap(format!("{trap:#}"))));
                        Err(trap)
                    }
                    Err(_elapsed) => {
                        let _ = answer.send(Err(InvokeError::Timeout(timeout)));
                        Ok(Served::Expired)
                    }
                }
            }
        };
        let mut requests = futures_util::stream::FuturesUnordered::new();
        let mut served: u32 = 0;
        // Cleared when a request timed out: the instance takes nothing more.
        let mut healthy = true;
        let take = |job: Job, requests: &mut futures_util::stream::FuturesUnordered<_>, served: &mut u32| {
            *served += 1;
            take_more.store(false, Ordering::Relaxed);
            in_flight.add(&job.report);
            requests.push(serve(job));
        };
        if let Some(job) = first {
            take(job, &mut requests, &mut served);
        }
        // Listening for a queued request; only while the worker has room.
        let mut listening: Option<std::pin::Pin<Box<tokio::sync::futures::Notified<'_>>>> = None;
        let mut retiring = pin!(pool.retire.notified());
        retiring.as_mut().enable();
        let mut retire_seen = false;
        let mut idle: Option<std::pin::Pin<Box<tokio::time::Sleep>>> = None;
        // After a request timed out, its guest task may never end: the others get the function's deadline, no more.
        let mut expired_grace: Option<std::pin::Pin<Box<tokio::time::Sleep>>> = None;
        std::future::poll_fn(|cx| {
            loop {
                // Finished requests first: a timed-out one stops the taking before anything new is taken.
                while let Poll::Ready(Some(done)) = requests.poll_next_unpin(cx) {
                    match done {
                        Ok(Served::Answered) => {}
                        Ok(Served::Expired) => healthy = false,
                        Err(trap) => return Poll::Ready(Err(trap)),
                    }
                }
                let callable = accessor.poll_ready_for_concurrent_call(handler, cx).is_ready();
                // A retired pool still serves what was queued before it retired; it takes nothing after.
                let open = !pool.retired.load(Ordering::Acquire) || pool.has_queued();
                let can_take = healthy && callable && open && served < reuse.max_requests;
                let room = can_take
                    && requests.len() < reuse.max_concurrent as usize
                    && (requests.is_empty() || take_more.load(Ordering::Relaxed));
                available.set(room);
                if room {
                    let listen = listening.get_or_insert_with(|| Box::pin(pool.wake.notified()));
                    listen.as_mut().enable();
                    if let Some(job) = pool.pop() {
                        // Dropping the listener passes on a wake-up it took, to a worker that can use it.
                        listening = None;
                        idle = None;
                        take(job, &mut requests, &mut served);
                        continue;
                    }
                    if listen.as_mut().poll(cx).is_ready() {
                        listening = None;
                        continue;
                    }
                } else {
                    listening = None;
                }
                if !requests.is_empty() {
                    return Poll::Pending;
                }
                // Nothing answering; what the instance still does (bodies being written) keeps it alive.
                if accessor.poll_no_interesting_tasks(cx).is_pending() {
                    if !healthy {
                        let grace = expired_grace.get_or_insert_with(|| Box::pin(tokio::time::sleep(timeout)));
                        if grace.as_mut().poll(cx).is_ready() {
                            return Poll::Ready(Ok(()));
                        }
                    }
                    return Poll::Pending;
                }
                if !can_take {
                    return Poll::Ready(Ok(()));
                }
                // Idle, with room: until `idle_ms` passes without work, or the pool retires.
                let timer = idle.get_or_insert_with(|| Box::pin(tokio::time::sleep(reuse.idle)));
                if timer.as_mut().poll(cx).is_ready() {
                    return Poll::Ready(Ok(()));
                }
                if !retire_seen && retiring.as_mut().poll(cx).is_ready() {
                    retire_seen = true;
                    continue;
                }
                return Poll::Pending;
            }
        })
        .await
    });
    let ran = {
        let mut run = pin!(run);
        let timed = std::future::poll_fn(|cx| {
            let polled_at = Instant::now();
            let mut polled = run.as_mut().poll(cx);
            // The instance has nothing to do for now: it may take another request beside those it runs.
            if polled.is_pending() && !take_more.swap(true, Ordering::Relaxed) {
                polled = run.as_mut().poll(cx);
            }
            in_flight.bill(polled_at.elapsed());
            if polled.is_pending() {
                pace.pending();
            }
            polled
        });
        tokio::time::timeout(lifetime + crate::runtime::HARD_DEADLINE_SLACK, timed).await
    };
    drop(available);
    let outcome = phases::ended(ran.ok().map(|ran| ran.and_then(|ran| ran)), lifetime, runtime.budget_state(&store));
    let _ = ended.set(outcome.as_ref().map(|_| ()).map_err(ToString::to_string));
    let peak = store.data().limits.peak;
    crate::runtime::phases::release(store, slot, peak);
    outcome
}

/// This worker's place in its pool's count of workers that could take a request now.
struct Available<'a> {
    pool: &'a Arc<Pool>,
    counted: bool,
}

impl Available<'_> {
    fn set(&mut self, available: bool) {
        if available == self.counted {
            return;
        }
        self.counted = available;
        if available {
            self.pool.available.fetch_add(1, Ordering::AcqRel);
        } else {
            let before = self.pool.available.fetch_sub(1, Ordering::AcqRel);
            // The last worker with room just lost it: a request queued meanwhile (its `push` saw room) must not wait
            // for nobody, so a new worker takes it.
            if before == 1 && self.pool.has_queued() {
                start_worker(self.pool.clone(), None);
            }
        }
    }
}

impl Drop for Available<'_> {
    fn drop(&mut self) {
        self.set(false);
    }
}
