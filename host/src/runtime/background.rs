//! Deploy work (taking a snapshot, compiling ahead of time) is CPU-heavy and never urgent next to a request: it
//! runs at a lower scheduling priority than serving, so a deploy on a busy host slows itself, not the functions
//! already live.
//!
//! On Linux, a thread's nice value is its own (`setpriority(PRIO_PROCESS, 0, n)` changes only the calling
//! thread). The work runs on a thread started for it, niced, which ends with it; wasmtime compiles functions in
//! parallel on a rayon pool, whose threads are niced as they start.
//!
//! A lower priority alone did not keep deploys off the requests' cores: a running thread keeps its slice whatever
//! its nice value, and on 2 cores a deploy compiling on both took serving to 0.80x. So deploy work that starts
//! while the host is serving requests (one began in the last [`SERVING_WINDOW`]) has a budget: every core but one
//! ([`serving_budget`]). It runs inside a pool of that many threads, and no more pieces run at once, so serving
//! always has a core no deploy work runs on. Deploy work that starts on an idle host (`edgefn up` preparing a
//! thousand components) uses every core.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, LazyLock, Once};
use std::time::{Duration, Instant};
use tokio::sync::Semaphore;

/// How much deploy work runs at once: one piece per core. `edgefn up` with a thousand components prepares them
/// all together; unbounded, that was a thousand threads compiling at once, and rayon threads waiting inside one
/// compilation stole jobs of the others onto their own stacks until one overflowed.
static DEPLOY_WORK_SLOTS: LazyLock<Arc<Semaphore>> = LazyLock::new(|| Arc::new(Semaphore::new(cores())));

/// How much deploy work runs at once while the host serves: [`serving_budget`] pieces (each also holds one of
/// [`DEPLOY_WORK_SLOTS`]).
static SERVING_WORK_SLOTS: LazyLock<Arc<Semaphore>> = LazyLock::new(|| Arc::new(Semaphore::new(serving_budget())));

/// The pool deploy work runs in while the host serves: [`serving_budget`] threads, at the deploy priority. The
/// piece itself runs on one of its threads (the deploy thread waits, asleep), and wasmtime's parallel compile
/// inside it uses this pool, not the global one.
static SERVING_POOL: LazyLock<Option<rayon::ThreadPool>> = LazyLock::new(|| {
    compile_pool_builder("edgefn-compile-budget", serving_budget())
        .build()
        .inspect_err(
            |error| tracing::warn!(%error, "could not start the deploy pool for busy times; using the global one"),
        )
        .ok()
});

/// A request started this recently means the host is serving.
const SERVING_WINDOW: Duration = Duration::from_secs(1);

/// When the last request began, in milliseconds since [`CLOCK_ORIGIN`] (0: none yet).
static LAST_REQUEST_MS: AtomicU64 = AtomicU64::new(0);
static CLOCK_ORIGIN: LazyLock<Instant> = LazyLock::new(Instant::now);

fn now_ms() -> u64 {
    // At least 1, so that 0 keeps meaning "no request yet".
    u64::try_from(CLOCK_ORIGIN.elapsed().as_millis()).unwrap_or(u64::MAX).max(1)
}

/// Notes that a request (someone waiting on a function) has just begun: deploy work starting in the next
/// [`SERVING_WINDOW`] keeps to the serving budget. One relaxed store.
pub(crate) fn note_request() {
    LAST_REQUEST_MS.store(now_ms(), Ordering::Relaxed);
}

/// Whether a request began within [`SERVING_WINDOW`].
fn serving() -> bool {
    served_recently(LAST_REQUEST_MS.load(Ordering::Relaxed), now_ms())
}

/// Whether a request that began at `last_ms` (0: none yet) is within [`SERVING_WINDOW`] of `now_ms`.
fn served_recently(last_ms: u64, now_ms: u64) -> bool {
    last_ms != 0 && now_ms.saturating_sub(last_ms) < SERVING_WINDOW.as_millis() as u64
}

fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, usize::from)
}

/// Every core but one, and at least one: what deploy work may keep busy while the host serves.
fn serving_budget() -> usize {
    cores().saturating_sub(1).max(1)
}

/// Stack of rayon's compile threads: Cranelift recurses on large functions, and a thread waiting on a parallel
/// join runs other compile jobs on top of its own.
const COMPILE_THREAD_STACK_BYTES: usize = 16 << 20;

/// The nice value of deploy work: a nice-10 thread gets about a tenth of a core that a nice-0 thread competes for.
const DEPLOY_NICE: libc::c_int = 10;

fn lower_this_threads_priority() {
    crate::priority::lower_this_thread(DEPLOY_NICE, "deploy work");
}

fn compile_pool_builder(name: &'static str, threads: usize) -> rayon::ThreadPoolBuilder {
    rayon::ThreadPoolBuilder::new()
        .thread_name(move |index| format!("{name}-{index}"))
        .num_threads(threads)
        .stack_size(COMPILE_THREAD_STACK_BYTES)
        .start_handler(|_| lower_this_threads_priority())
}

/// Makes rayon's global pool (where wasmtime compiles in parallel when the host is idle) run at the deploy
/// priority, one thread per core. The pool serves nothing else in the host.
pub(super) fn configure_compile_pool() {
    static CONFIGURED: Once = Once::new();
    CONFIGURED.call_once(|| {
        if let Err(error) = compile_pool_builder("edgefn-compile", cores()).build_global() {
            tracing::debug!(%error, "rayon's global pool was already built; compiling at its priority");
        }
    });
}

/// Runs `work` on a thread of its own at the deploy priority and returns its result. At most one piece of deploy
/// work per core runs at once, and while the host serves, at most [`serving_budget`] on as many threads (see the
/// module docs); the rest wait their turn here. Never call it from inside such work (it would wait for a slot it
/// holds).
pub async fn run<R: Send + 'static>(work: impl FnOnce() -> R + Send + 'static) -> R {
    // Counted from here, waiting included: the count is zero only once every queued piece has run.
    let pending = PendingWork::enter();
    // The semaphores are never closed, so acquiring only waits. The slots go with the work, so they are held
    // until the work ends even if the caller stops waiting.
    let budgeted = if serving() { SERVING_WORK_SLOTS.clone().acquire_owned().await.ok() } else { None };
    let slot = DEPLOY_WORK_SLOTS.clone().acquire_owned().await.ok();
    let (sender, receiver) = tokio::sync::oneshot::channel();
    let spawned = std::thread::Builder::new().name("edgefn-deploy".into()).spawn(move || {
        lower_this_threads_priority();
        let result = match (&budgeted, SERVING_POOL.as_ref()) {
            (Some(_), Some(pool)) => pool.install(work),
            _ => work(),
        };
        let _ = sender.send(result);
        drop((slot, budgeted));
        drop(pending);
    });
    if let Err(error) = spawned {
        panic!("failed to start a deploy thread: {error}");
    }
    match receiver.await {
        Ok(result) => result,
        // The thread panicked: let the caller's task see the same panic.
        Err(_) => panic!("a deploy thread panicked"),
    }
}

/// Deploy work queued or running. When the last piece ends, the heap it grew is handed back to the system.
static PENDING_WORK: AtomicUsize = AtomicUsize::new(0);

/// One piece of deploy work, counted in [`PENDING_WORK`] while it lives.
struct PendingWork;

impl PendingWork {
    fn enter() -> Self {
        PENDING_WORK.fetch_add(1, Ordering::AcqRel);
        Self
    }
}

impl Drop for PendingWork {
    fn drop(&mut self) {
        if PENDING_WORK.fetch_sub(1, Ordering::AcqRel) == 1 {
            release_freed_heap();
        }
    }
}

/// Snapshotting and compiling allocate and free hundreds of MiB; glibc's allocator keeps what was freed in its
/// arenas, so a host that deployed a thousand components held about 290 MiB it no longer used. `malloc_trim`
/// returns the free pages to the kernel. Called once a burst of deploy work is over, on the deploy thread, and by
/// `edgefn up` once its deploys are done (a restart links every unchanged component again on the async threads,
/// which left a host with a thousand of them holding 170 MiB more than it used).
pub fn release_freed_heap() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only walks glibc's own arenas, under their locks; it may be called from any thread at
    // any time.
    unsafe {
        libc::malloc_trim(0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_host_is_serving_for_a_second_after_a_request_began() {
        assert!(!served_recently(0, 5_000), "no request yet");
        assert!(served_recently(4_000, 4_000));
        assert!(served_recently(4_000, 4_999));
        assert!(!served_recently(4_000, 5_000));
    }

    #[tokio::test]
    async fn deploy_work_that_starts_while_requests_are_served_runs_in_the_pool_of_every_core_but_one() {
        note_request();
        let thread = run(|| std::thread::current().name().map(str::to_owned)).await;
        let thread = thread.expect("a named thread");
        assert!(thread.starts_with("edgefn-compile-budget-"), "{thread}");
        let pool = SERVING_POOL.as_ref().expect("the pool for busy times");
        assert_eq!(pool.current_num_threads(), cores().saturating_sub(1).max(1));
    }
}
