//! The async runtime under `async fn` handlers: waiting on a future from sync code, timers, and futures polled
//! under their own correlation id.
//!
//! In a WASI 0.3 component the executor is the component model's own (wit-bindgen's, one per export call, where
//! tasks run concurrently on the component's one thread). Natively (unit tests) it is `futures`' single-threaded
//! executor, with timers on helper threads.

use std::future::Future;
use std::pin::Pin;
#[cfg(edgefn_async)]
use std::task::{Context, Poll};
#[cfg(edgefn_async)]
use std::time::Duration;

/// A boxed future the executor polls on the component's one thread.
pub type LocalBoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + 'a>>;

/// Runs `future` to its end from sync code: in a sync handler, or in a sync accessor such as `Request::json` of a
/// body not read yet. In a WASI 0.3 component, this blocks the component's other tasks until it is done: in async
/// code, `.await` instead.
#[cfg(edgefn_async)]
pub fn block_on<T>(future: impl Future<Output = T>) -> T {
    imp::block_on(future)
}

/// Waits `duration` without blocking other tasks.
#[cfg(edgefn_async)]
pub async fn sleep(duration: Duration) {
    imp::sleep(duration).await
}

/// What [`timeout`] returns when the time ran out first.
#[cfg(edgefn_async)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Elapsed(pub Duration);

#[cfg(edgefn_async)]
impl std::fmt::Display for Elapsed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "timed out after {:?}", self.0)
    }
}

#[cfg(edgefn_async)]
impl std::error::Error for Elapsed {}

/// Runs `future` for at most `duration`. When the time runs out, `future` is dropped: an outbound call it was
/// waiting on is cancelled.
#[cfg(edgefn_async)]
pub async fn timeout<T>(duration: Duration, future: impl Future<Output = T>) -> Result<T, Elapsed> {
    use futures::future::{Either, select};
    let future = std::pin::pin!(future);
    let timer = std::pin::pin!(sleep(duration));
    match select(future, timer).await {
        Either::Left((value, _)) => Ok(value),
        Either::Right(((), _)) => Err(Elapsed(duration)),
    }
}

/// A future polled under its own correlation id: every poll sets it and puts the previous one back, so code in
/// it (and `edgefn::correlation_id()`) sees its own work's id whatever else the instance runs meanwhile.
#[cfg(edgefn_async)]
pub(crate) struct Scoped<F> {
    id: String,
    future: Pin<Box<F>>,
}

#[cfg(edgefn_async)]
impl<F: Future> Scoped<F> {
    pub(crate) fn new(id: String, future: F) -> Self {
        Self { id, future: Box::pin(future) }
    }
}

#[cfg(edgefn_async)]
impl<F: Future> Future for Scoped<F> {
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let this = self.get_mut();
        let previous = crate::dispatch::set_correlation_id(&this.id);
        let polled = this.future.as_mut().poll(cx);
        crate::dispatch::set_correlation_id(&previous);
        polled
    }
}

/// Runs `future` in the background of the current export call, under the current correlation id: the call stays
/// alive (and the instance with it) until it ends. Used to write a response body after `handle` has returned it.
#[cfg(edgefn_p3)]
pub(crate) fn spawn(future: impl Future<Output = ()> + 'static) {
    let scoped = Scoped::new(crate::correlation_id(), future);
    // The join handle is dropped: the task runs detached, to its end.
    drop(wasip3::spawn_local(scoped));
}

#[cfg(edgefn_p3)]
mod imp {
    use std::time::Duration;

    pub(super) fn block_on<T>(future: impl Future<Output = T>) -> T {
        wasip3::wit_bindgen::block_on(future)
    }

    pub(super) async fn sleep(duration: Duration) {
        let nanos = u64::try_from(duration.as_nanos()).unwrap_or(u64::MAX);
        wasip3::clocks::monotonic_clock::wait_for(nanos).await;
    }
}

#[cfg(not(target_family = "wasm"))]
mod imp {
    use std::sync::{Arc, Mutex};
    use std::task::{Poll, Waker};
    use std::time::{Duration, Instant};

    pub(super) fn block_on<T>(future: impl Future<Output = T>) -> T {
        futures::executor::block_on(future)
    }

    /// A timer for native tests: a thread sleeps and then wakes the task.
    pub(super) async fn sleep(duration: Duration) {
        let deadline = Instant::now() + duration;
        let waker: Arc<Mutex<Option<Waker>>> = Arc::default();
        let mut started = false;
        std::future::poll_fn(|cx| {
            if Instant::now() >= deadline {
                return Poll::Ready(());
            }
            *waker.lock().unwrap_or_else(|poisoned| poisoned.into_inner()) = Some(cx.waker().clone());
            if !started {
                started = true;
                let waker = waker.clone();
                std::thread::spawn(move || {
                    std::thread::sleep(deadline.saturating_duration_since(Instant::now()));
                    if let Some(waker) = waker.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).take() {
                        waker.wake();
                    }
                });
            }
            Poll::Pending
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_timeout_drops_what_is_too_slow_and_lets_the_rest_finish() {
        let slow = timeout(Duration::from_millis(20), sleep(Duration::from_secs(30)));
        assert_eq!(block_on(slow), Err(Elapsed(Duration::from_millis(20))));
        let quick = timeout(Duration::from_secs(30), async { 7 });
        assert_eq!(block_on(quick), Ok(7));
    }

    #[test]
    fn a_scoped_future_sees_its_own_correlation_id_and_puts_the_outer_one_back() {
        crate::dispatch::set_correlation_id("outer");
        let inner = Scoped::new("inner".to_owned(), async { crate::correlation_id() });
        assert_eq!(block_on(inner), "inner");
        assert_eq!(crate::correlation_id(), "outer");
    }
}
