//! Long-running guests compute on threads of their own, at a lower scheduling priority than the threads that
//! answer requests.
//!
//! The governor (`fairness`) already keeps long-running guests to a few lanes, but on the executor's own threads:
//! the kernel still sees a thread computing a hog (and taking its page faults) as the equal of one answering a
//! short request, and on a busy machine a woken request thread can wait a whole scheduler slice behind it. A
//! guest's run is therefore wrapped in a [`Migrating`] future: polled in place while it is short, and handed to
//! the long-running threads (one per core, niced to [`LONG_RUNNING_NICE`]) the first time it computes through an
//! epoch tick (1 ms) without a pause. There the lanes still decide how many compute at once; the nice value makes
//! the kernel put the threads answering short requests first. Its timers and sockets keep working there: tokio's
//! resources stay bound to the runtime that created them, whichever thread polls them. A store dropped there (a
//! big one is dropped on the blocking pool: `phases::release`) is reset on those niced threads too.

use super::InvokeError;
use super::fairness::Pace;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll, ready};

/// The nice value of the long-running guests' threads: a nice-10 thread gets about a tenth of a core a nice-0
/// thread competes for, and a woken nice-0 thread preempts it.
const LONG_RUNNING_NICE: libc::c_int = 10;

/// A guest that computes through this many epoch ticks without a pause moves (1 ms: a hello-world request never
/// does; a hog spends at most this long on the request threads).
const MIGRATE_AFTER_TICKS: u32 = 1;

/// The long-running guests' runtime: one per process, started with the first guest that needs it and never
/// dropped (a runtime may not be dropped from async code, and the host's lives as long as the process).
static LONG_RUNNING: OnceLock<tokio::runtime::Runtime> = OnceLock::new();

fn long_running_runtime() -> &'static tokio::runtime::Runtime {
    LONG_RUNNING.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(std::thread::available_parallelism().map_or(2, usize::from))
            .thread_name("edgefn-long-running")
            .on_thread_start(|| crate::priority::lower_this_thread(LONG_RUNNING_NICE, "long-running guests"))
            .enable_all()
            .build()
            .unwrap_or_else(|error| panic!("failed to start the long-running guests' threads: {error}"))
    })
}

/// A guest's run (see the module docs): in place until its pace says it is long-running, then on the long-running
/// threads. Dropping it stops the run wherever it is.
pub(super) struct Migrating<T> {
    stage: Stage<T>,
    pace: Arc<Pace>,
}

enum Stage<T> {
    Here(Pin<Box<dyn Future<Output = Result<T, InvokeError>> + Send>>),
    There(tokio::task::JoinHandle<Result<T, InvokeError>>),
    Done,
}

impl<T: Send + 'static> Migrating<T> {
    /// `run`, governed by `pace`, moving to the long-running threads if it computes long.
    pub(super) fn new(run: impl Future<Output = Result<T, InvokeError>> + Send + 'static, pace: Arc<Pace>) -> Self {
        Self { stage: Stage::Here(Box::pin(run)), pace }
    }
}

impl<T: Send + 'static> Future for Migrating<T> {
    type Output = Result<T, InvokeError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        loop {
            match &mut this.stage {
                Stage::Here(run) => {
                    if let Poll::Ready(outcome) = run.as_mut().poll(cx) {
                        this.stage = Stage::Done;
                        return Poll::Ready(outcome);
                    }
                    if this.pace.ticks() < MIGRATE_AFTER_TICKS {
                        return Poll::Pending;
                    }
                    let Stage::Here(run) = std::mem::replace(&mut this.stage, Stage::Done) else { unreachable!() };
                    this.stage = Stage::There(long_running_runtime().spawn(run));
                    // Polled once there, so that its end wakes this task.
                }
                Stage::There(task) => {
                    let outcome = ready!(Pin::new(task).poll(cx))
                        .unwrap_or_else(|join| Err(InvokeError::Host(format!("a long-running guest's run: {join}"))));
                    this.stage = Stage::Done;
                    return Poll::Ready(outcome);
                }
                Stage::Done => return Poll::Ready(Err(InvokeError::Host("a guest's run was polled again".into()))),
            }
        }
    }
}

impl<T> Drop for Migrating<T> {
    fn drop(&mut self) {
        if let Stage::There(task) = &self.stage {
            task.abort();
        }
    }
}
