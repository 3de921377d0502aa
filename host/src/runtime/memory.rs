//! Memory the host never runs out of: every instance's linear memory counts against one host-wide budget.
//!
//! Each function has its own cap (`memory_mb`), but 64 instances of 128 MiB are 8 GiB; the budget bounds their
//! sum. An instance's [`Limiter`] reserves from the [`MemoryBudget`] as its memory grows (instantiation included)
//! and gives everything back when the invocation ends. A growth past the function's cap or past the budget fails
//! inside the guest (its allocator sees no memory, as on any machine that is full); new work waits a little for
//! room before it starts, then gets a 503. The host's own memory stays out of reach of its guests.
//!
//! One function's instances together may hold at most half the budget ([`SHARE_DIVISOR`]): a function that hogs
//! memory runs out of it before its neighbours do.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;
use tokio::sync::Notify;

/// Elements a guest table may grow to: enough for any real program, far from exhausting the host.
const MAX_TABLE_ELEMENTS: usize = 1 << 20;

/// Room a new invocation waits for before it starts: its memory image and first pages.
pub const ADMISSION_HEADROOM: usize = 8 << 20;

/// One function may hold at most the budget divided by this.
pub const SHARE_DIVISOR: usize = 2;

/// What one function's instances hold together.
#[derive(Debug, Default)]
pub struct FunctionUsage(AtomicUsize);

/// See the module docs.
#[derive(Debug)]
pub struct MemoryBudget {
    limit: usize,
    used: AtomicUsize,
    freed: Notify,
    functions: std::sync::Mutex<std::collections::HashMap<String, Arc<FunctionUsage>>>,
}

impl MemoryBudget {
    pub fn new(limit: usize) -> Arc<Self> {
        Arc::new(Self { limit, used: AtomicUsize::new(0), freed: Notify::new(), functions: Default::default() })
    }

    /// The most one function may hold.
    pub fn share(&self) -> usize {
        self.limit / SHARE_DIVISOR
    }

    /// The usage counter of function `label` (`component/function`).
    pub fn function(&self, label: &str) -> Arc<FunctionUsage> {
        let mut functions = self.functions.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        functions.entry(label.to_owned()).or_default().clone()
    }

    pub fn limit(&self) -> usize {
        self.limit
    }

    /// Bytes reserved by running instances now.
    pub fn used(&self) -> usize {
        self.used.load(Ordering::Relaxed)
    }

    /// Reserves `bytes` for `function`, within its share and the budget.
    fn try_reserve(&self, function: &FunctionUsage, bytes: usize) -> bool {
        let share = self.share();
        let reserve = |counter: &AtomicUsize, limit: usize| {
            counter
                .fetch_update(Ordering::AcqRel, Ordering::Acquire, |used| {
                    used.checked_add(bytes).filter(|total| *total <= limit)
                })
                .is_ok()
        };
        if !reserve(&function.0, share) {
            return false;
        }
        if !reserve(&self.used, self.limit) {
            function.0.fetch_sub(bytes, Ordering::AcqRel);
            return false;
        }
        true
    }

    fn release(&self, function: &FunctionUsage, bytes: usize) {
        if bytes > 0 {
            function.0.fetch_sub(bytes, Ordering::AcqRel);
            self.used.fetch_sub(bytes, Ordering::AcqRel);
            self.freed.notify_waiters();
        }
    }

    /// Waits up to `timeout` (forever with `None`) until `bytes` fit, in the budget and in `function`'s share;
    /// false if they never did.
    pub async fn wait_for_room(&self, function: &FunctionUsage, bytes: usize, timeout: Option<Duration>) -> bool {
        let wait = async {
            loop {
                let freed = self.freed.notified();
                let fits_budget = self.used().saturating_add(bytes) <= self.limit;
                let fits_share = function.0.load(Ordering::Acquire).saturating_add(bytes) <= self.share();
                if fits_budget && fits_share {
                    return;
                }
                freed.await;
            }
        };
        match timeout {
            Some(timeout) => tokio::time::timeout(timeout, wait).await.is_ok(),
            None => {
                wait.await;
                true
            }
        }
    }
}

/// One invocation's memory: its function's cap, reserved from the budget as it grows. See the module docs.
#[derive(Debug)]
pub struct Limiter {
    max_memory: usize,
    budget: Arc<MemoryBudget>,
    function: Arc<FunctionUsage>,
    reserved: usize,
    /// The growth reserved last, given back if the growth itself fails.
    last_growth: usize,
    /// Set once a growth was refused because the host's budget (not the function's cap) was full.
    pub refused_by_budget: bool,
    /// The largest linear memory granted, in bytes.
    pub peak: usize,
}

impl Limiter {
    pub fn new(max_memory: usize, budget: Arc<MemoryBudget>, function: Arc<FunctionUsage>) -> Self {
        Self { max_memory, budget, function, reserved: 0, last_growth: 0, refused_by_budget: false, peak: 0 }
    }
}

impl wasmtime::ResourceLimiter for Limiter {
    fn memory_growing(&mut self, current: usize, desired: usize, _maximum: Option<usize>) -> wasmtime::Result<bool> {
        if desired > self.max_memory {
            return Ok(false);
        }
        let growth = desired.saturating_sub(current);
        if !self.budget.try_reserve(&self.function, growth) {
            self.refused_by_budget = true;
            return Ok(false);
        }
        self.reserved += growth;
        self.last_growth = growth;
        self.peak = self.peak.max(desired);
        Ok(true)
    }

    fn memory_grow_failed(&mut self, _error: wasmtime::Error) -> wasmtime::Result<()> {
        self.budget.release(&self.function, self.last_growth);
        self.reserved -= self.last_growth;
        self.last_growth = 0;
        Ok(())
    }

    fn table_growing(&mut self, _current: usize, desired: usize, _maximum: Option<usize>) -> wasmtime::Result<bool> {
        Ok(desired <= MAX_TABLE_ELEMENTS)
    }
}

impl Drop for Limiter {
    fn drop(&mut self) {
        self.budget.release(&self.function, self.reserved);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use wasmtime::ResourceLimiter as _;

    fn limiter(budget: &Arc<MemoryBudget>, function: &str, cap: usize) -> Limiter {
        Limiter::new(cap, budget.clone(), budget.function(function))
    }

    #[test]
    fn growth_is_refused_past_the_cap_the_share_or_the_budget_and_given_back_at_the_end() {
        let budget = MemoryBudget::new(20 << 20);
        let mut first = limiter(&budget, "a/hog", 8 << 20);
        assert!(first.memory_growing(0, 6 << 20, None).unwrap());
        assert!(!first.memory_growing(6 << 20, 9 << 20, None).unwrap(), "past the function's own cap");
        assert!(!first.refused_by_budget);
        // The same function again: 6 + 6 MiB would pass its half of the budget (10 MiB).
        let mut second = limiter(&budget, "a/hog", 8 << 20);
        assert!(!second.memory_growing(0, 6 << 20, None).unwrap(), "past the function's share");
        assert!(second.refused_by_budget);
        // A neighbour still has room.
        let mut neighbour = limiter(&budget, "b/ok", 12 << 20);
        assert!(neighbour.memory_growing(0, 10 << 20, None).unwrap());
        let mut third = limiter(&budget, "c/other", 8 << 20);
        assert!(!third.memory_growing(0, 5 << 20, None).unwrap(), "past the host's budget");
        assert_eq!(budget.used(), 16 << 20);
        drop(first);
        drop(neighbour);
        assert_eq!(budget.used(), 0);
        assert!(second.memory_growing(0, 6 << 20, None).unwrap());
    }

    #[tokio::test]
    async fn new_work_waits_for_room_then_gives_up() {
        let budget = MemoryBudget::new(20 << 20);
        let usage = budget.function("a/f");
        let mut holder = limiter(&budget, "b/g", 20 << 20);
        assert!(holder.memory_growing(0, 9 << 20, None).unwrap());
        let mut other = limiter(&budget, "c/h", 20 << 20);
        assert!(other.memory_growing(0, 9 << 20, None).unwrap());
        assert!(!budget.wait_for_room(&usage, 4 << 20, Some(Duration::from_millis(20))).await);
        let waiter = tokio::spawn({
            let (budget, usage) = (budget.clone(), usage.clone());
            async move { budget.wait_for_room(&usage, 8 << 20, Some(Duration::from_secs(10))).await }
        });
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(!waiter.is_finished(), "8 MiB do not fit next to 18");
        drop(holder);
        assert!(waiter.await.unwrap(), "room freed by the end of an invocation wakes the waiter");
        drop(other);
    }
}
