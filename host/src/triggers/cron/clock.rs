//! A precise wake-up for cron ticks. tokio's timer has a 1 ms wheel and is driven by the I/O driver's parking, so
//! a tokio sleep typically wakes 1–3 ms late on a busy host; this clock is one thread that waits on a condition
//! variable with a timeout (futex + high-resolution timer: tens of µs late) and wakes each waiting schedule
//! through a oneshot channel.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::sync::{Arc, Condvar, Mutex, OnceLock};
use std::time::{Duration, SystemTime};
use tokio::sync::oneshot;

struct Waiter {
    at: SystemTime,
    sequence: u64,
    wake: oneshot::Sender<()>,
}

impl PartialEq for Waiter {
    fn eq(&self, other: &Self) -> bool {
        (self.at, self.sequence) == (other.at, other.sequence)
    }
}
impl Eq for Waiter {}
impl PartialOrd for Waiter {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Waiter {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        (self.at, self.sequence).cmp(&(other.at, other.sequence))
    }
}

#[derive(Default)]
struct Queue {
    waiters: BinaryHeap<Reverse<Waiter>>,
    sequence: u64,
}

struct Clock {
    queue: Mutex<Queue>,
    changed: Condvar,
}

fn clock() -> &'static Arc<Clock> {
    static CLOCK: OnceLock<Arc<Clock>> = OnceLock::new();
    CLOCK.get_or_init(|| {
        let clock = Arc::new(Clock { queue: Mutex::new(Queue::default()), changed: Condvar::new() });
        let ticking = clock.clone();
        std::thread::Builder::new()
            .name("edgefn-cron-clock".into())
            .spawn(move || run(&ticking))
            .expect("failed to spawn the cron clock thread");
        clock
    })
}

fn run(clock: &Clock) {
    let mut queue = clock.queue.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    loop {
        let now = SystemTime::now();
        while queue.waiters.peek().is_some_and(|Reverse(first)| first.at <= now) {
            if let Some(Reverse(due)) = queue.waiters.pop() {
                // The schedule may be gone (host shutting down): nothing to wake then.
                let _ = due.wake.send(());
            }
        }
        let wait = match queue.waiters.peek() {
            Some(Reverse(first)) => first.at.duration_since(now).unwrap_or_default(),
            // Re-check now and then even when idle: the wall clock may have been set.
            None => Duration::from_secs(1),
        };
        queue =
            clock.changed.wait_timeout(queue, wait.min(Duration::from_secs(1))).unwrap_or_else(|p| p.into_inner()).0;
    }
}

/// Resolves at wall-clock time `at` (at once if it has passed).
pub(super) async fn sleep_until(at: SystemTime) {
    let (wake, woken) = oneshot::channel();
    let clock = clock();
    {
        let mut queue = clock.queue.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        queue.sequence += 1;
        let sequence = queue.sequence;
        queue.waiters.push(Reverse(Waiter { at, sequence, wake }));
    }
    clock.changed.notify_one();
    let _ = woken.await;
}
