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

use std::sync::{Arc, Mutex};
use std::time::Instant;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use wasmtime::{Store, Trap, UpdateDeadline};

/// A guest yields (and, long-running, gives up its lane) every this many epoch ticks: 5 ms slices. Short requests
/// (well under a slice) almost never yield, and a thread waits at most a slice for a computing guest.
pub const SLICE_TICKS: u32 = 5;

/// A guest that has run through this many epoch ticks (about 10 ms of computing) is long-running.
pub const LONG_RUNNING_TICKS: u32 = 10;

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

    /// Makes `store` yield at every epoch tick, trap at `deadline`, and queue for a lane once long-running.
    pub fn govern<T>(&self, store: &mut Store<T>, deadline: Instant) {
        let lanes = self.lanes.clone();
        let mut ticks: u32 = 0;
        // The lane this guest holds, if any: taken by the wait below, given back at the next tick so that guests
        // take turns, and dropped with the store at the end of the invocation.
        let held: Arc<Mutex<Option<OwnedSemaphorePermit>>> = Arc::default();
        store.set_epoch_deadline(u64::from(SLICE_TICKS));
        store.epoch_deadline_callback(move |_store| {
            if Instant::now() >= deadline {
                return Err(Trap::Interrupt.into());
            }
            ticks = ticks.saturating_add(SLICE_TICKS);
            if ticks < LONG_RUNNING_TICKS {
                return Ok(UpdateDeadline::Yield(u64::from(SLICE_TICKS)));
            }
            held.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).take();
            let (lanes, held) = (lanes.clone(), held.clone());
            Ok(UpdateDeadline::YieldCustom(
                1,
                Box::pin(async move {
                    // At the deadline the wait ends without a lane; the next tick traps.
                    let acquired = tokio::time::timeout_at(deadline.into(), lanes.acquire_owned()).await;
                    if let Ok(Ok(permit)) = acquired {
                        *held.lock().unwrap_or_else(|poisoned| poisoned.into_inner()) = Some(permit);
                    }
                }),
            ))
        });
    }
}
