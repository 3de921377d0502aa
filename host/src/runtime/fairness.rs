//! Fair CPU: a guest that computes can neither freeze the host nor starve its neighbours.
//!
//! Guests run on the async worker threads, which also accept connections and answer `/healthz` and the admin API.
//! wasmtime only interrupts a guest at epoch ticks (every millisecond), so at each tick of every invocation the
//! [`Governor`]:
//!
//! - traps the guest once its wall-clock deadline has passed (what `epoch_deadline_trap` did before);
//! - otherwise yields to the executor, so every other task on that thread gets its turn;
//! - and once a guest has computed for [`LONG_RUNNING_TICKS`] ticks, it counts as long-running: from then on it
//!   runs only while it holds one of a few *lanes* (by default half the worker threads, at least one), handed out
//!   in turn, one tick at a time. However many guests spin, at most that many compute at once; the other threads
//!   stay free for the short requests of every other function, for `/healthz` and for the admin API. A guest
//!   waiting for a lane uses no CPU, and is still killed at its deadline.
//!
//! Long-running means computing without a pause. Whoever drives the store tells its [`Pace`] when the store's future
//! returned `Pending` for a reason other than the governor's own yield (the guest awaits the network, a timer, or
//! has nothing to do, as a reused instance between requests): the guest then gives its lane back at once and counts
//! as short again. Without that, a guest that once computed 3 ms would keep a lane through every wait after it,
//! and an idle reused instance would hold one until it retired, stalling every other long-running guest.

use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use wasmtime::{Store, Trap, UpdateDeadline};

/// A guest yields (and, long-running, gives up its lane) every this many epoch ticks: 1 ms slices. Short requests
/// (well under a slice) almost never yield, and a thread waits at most a slice for a computing guest. (5 ms slices
/// let a tenant churning 120 MiB take a neighbour's p99 to 21x its value at rest; see BENCHMARKS.md (k).)
pub const SLICE_TICKS: u32 = 1;

/// A guest that has run through this many epoch ticks (about 3 ms of computing without a pause) is long-running.
/// Every new instance computes this long before a lane holds it: the shorter, the less two newly started hogs can
/// take both threads from short requests.
pub const LONG_RUNNING_TICKS: u32 = 3;

/// Hands lanes to long-running guests. Shared by every invocation of a runtime.
#[derive(Debug, Clone)]
pub struct Governor {
    lanes: Arc<Semaphore>,
    count: usize,
}

impl Governor {
    /// A governor with `lanes` lanes (at least one).
    pub fn new(lanes: usize) -> Self {
        let count = lanes.max(1);
        Self { lanes: Arc::new(Semaphore::new(count)), count }
    }

    /// Half the machine's cores, at least one: the default number of lanes.
    pub fn default_lanes() -> usize {
        std::thread::available_parallelism().map(|n| n.get() / 2).unwrap_or(1).max(1)
    }

    pub fn lanes(&self) -> usize {
        self.count
    }

    /// Makes `store` yield at every epoch tick, trap at `deadline`, and queue for a lane once long-running, keeping
    /// count in `pace`, which whoever drives the store tells when it is pending (see the module docs). The pace is
    /// made before the store, so that what the store holds (its output streams) can mark their own yields.
    pub fn govern<T>(&self, store: &mut Store<T>, deadline: Instant, pace: &Arc<Pace>) {
        let lanes = self.lanes.clone();
        store.set_epoch_deadline(u64::from(SLICE_TICKS));
        let governed = pace.clone();
        store.epoch_deadline_callback(move |_store| {
            if Instant::now() >= deadline {
                return Err(Trap::Interrupt.into());
            }
            let pace = &governed;
            let ticks = pace.ticks.fetch_add(SLICE_TICKS, Ordering::Relaxed).saturating_add(SLICE_TICKS);
            if ticks < LONG_RUNNING_TICKS {
                // The store's next `Pending` is this yield, not the guest pausing.
                pace.yielding.store(true, Ordering::Relaxed);
                return Ok(UpdateDeadline::Yield(u64::from(SLICE_TICKS)));
            }
            // A guest that may hold a lane from here on is marked only while it waits for one, never by a flag
            // that an idle `Pending` would have to clear first: its first pause gives the lane back.
            pace.yielding.store(false, Ordering::Relaxed);
            pace.give_back_lane();
            pace.waiting_for_lane.store(true, Ordering::Relaxed);
            let (lanes, pace) = (lanes.clone(), pace.clone());
            Ok(UpdateDeadline::YieldCustom(
                1,
                Box::pin(async move {
                    // At the deadline the wait ends without a lane; the next tick traps.
                    let acquired = tokio::time::timeout_at(deadline.into(), lanes.acquire_owned()).await;
                    if let Ok(Ok(permit)) = acquired {
                        *pace.lane() = Some(permit);
                    }
                    pace.waiting_for_lane.store(false, Ordering::Relaxed);
                }),
            ))
        });
    }
}

/// How one store's guest has been computing: its ticks since it last paused, and the lane it holds, if any. Shared
/// by the store's epoch callback and whoever drives the store.
#[derive(Debug, Default)]
pub struct Pace {
    /// The lane this guest holds: taken by the wait in the callback, given back at the next tick so that guests take
    /// turns, when the guest pauses, and with the store at the end.
    held: Mutex<Option<OwnedSemaphorePermit>>,
    /// Epoch ticks the guest has computed through since it last paused.
    ticks: AtomicU32,
    /// A tick asked the guest to yield; cleared by the `Pending` that yield causes.
    yielding: AtomicBool,
    /// The guest waits in the callback for a lane.
    waiting_for_lane: AtomicBool,
}

impl Pace {
    /// The store's future returned `Pending`. Unless the governor caused it (a yield, or the wait for a lane), the
    /// guest has paused: it gives its lane back and counts as short again.
    pub fn pending(&self) {
        if self.yielding.swap(false, Ordering::Relaxed) || self.waiting_for_lane.load(Ordering::Relaxed) {
            return;
        }
        self.ticks.store(0, Ordering::Relaxed);
        self.give_back_lane();
    }

    /// The store's next `Pending` is the guest taking turns while it goes on computing (a guest that prints lets
    /// its thread's other tasks run every few KiB: `output`), not a pause: it keeps its ticks and its lane, so one
    /// that prints without end becomes long-running like any other hog, and moves off the request threads.
    pub fn yield_without_pausing(&self) {
        self.yielding.store(true, Ordering::Relaxed);
    }

    /// Sets the ticks computed so far, for tests of what reads them.
    #[cfg(test)]
    pub(crate) fn computed_for(&self, ticks: u32) {
        self.ticks.store(ticks, Ordering::Relaxed);
    }

    /// Epoch ticks the guest has computed through since it last paused.
    pub fn ticks(&self) -> u32 {
        self.ticks.load(Ordering::Relaxed)
    }

    fn give_back_lane(&self) {
        self.lane().take();
    }

    fn lane(&self) -> std::sync::MutexGuard<'_, Option<OwnedSemaphorePermit>> {
        self.held.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_guest_that_pauses_gives_its_lane_back_and_counts_as_short_but_a_yield_is_no_pause() {
        let lanes = Arc::new(Semaphore::new(1));
        let pace = Pace::default();
        *pace.lane() = Some(lanes.clone().try_acquire_owned().expect("a free lane"));
        pace.ticks.store(LONG_RUNNING_TICKS, Ordering::Relaxed);

        // The `Pending` of the governor's own yield: the guest is still computing.
        pace.yielding.store(true, Ordering::Relaxed);
        pace.pending();
        assert_eq!((lanes.available_permits(), pace.ticks.load(Ordering::Relaxed)), (0, LONG_RUNNING_TICKS));

        // Nor is a turn the guest gives while it goes on computing.
        pace.yield_without_pausing();
        pace.pending();
        assert_eq!((lanes.available_permits(), pace.ticks.load(Ordering::Relaxed)), (0, LONG_RUNNING_TICKS));

        // Waiting for a lane is no pause either.
        pace.waiting_for_lane.store(true, Ordering::Relaxed);
        pace.pending();
        assert_eq!(lanes.available_permits(), 0);
        pace.waiting_for_lane.store(false, Ordering::Relaxed);

        // Any other `Pending`: the guest waits for something; the lane is free for others.
        pace.pending();
        assert_eq!((lanes.available_permits(), pace.ticks.load(Ordering::Relaxed)), (1, 0));
    }
}
