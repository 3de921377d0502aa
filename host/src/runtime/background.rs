//! Deploy work (taking a snapshot, compiling ahead of time) is CPU-heavy and never urgent next to a request: it
//! runs at a lower scheduling priority than serving, so a deploy on a busy host slows itself, not the functions
//! already live.
//!
//! On Linux, a thread's nice value is its own (`setpriority(PRIO_PROCESS, 0, n)` changes only the calling
//! thread). The work runs on a thread started for it, niced, which ends with it; wasmtime compiles functions in
//! parallel on rayon's global pool, whose threads are niced as they start.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, LazyLock, Once};
use tokio::sync::Semaphore;

/// How much deploy work runs at once: one piece per core. `edgefn up` with a thousand components prepares them
/// all together; unbounded, that was a thousand threads compiling at once, and rayon threads waiting inside one
/// compilation stole jobs of the others onto their own stacks until one overflowed.
static DEPLOY_WORK_SLOTS: LazyLock<Arc<Semaphore>> =
    LazyLock::new(|| Arc::new(Semaphore::new(std::thread::available_parallelism().map_or(2, usize::from))));

/// Stack of rayon's compile threads: Cranelift recurses on large functions, and a thread waiting on a parallel
/// join runs other compile jobs on top of its own.
const COMPILE_THREAD_STACK_BYTES: usize = 16 << 20;

/// The nice value of deploy work: a nice-10 thread gets about a tenth of a core that a nice-0 thread competes for.
const DEPLOY_NICE: libc::c_int = 10;

fn lower_this_threads_priority() {
    crate::priority::lower_this_thread(DEPLOY_NICE, "deploy work");
}

/// Makes rayon's global pool (where wasmtime compiles in parallel) run at the deploy priority. The pool serves
/// nothing else in the host.
pub(super) fn configure_compile_pool() {
    static CONFIGURED: Once = Once::new();
    CONFIGURED.call_once(|| {
        let built = rayon::ThreadPoolBuilder::new()
            .thread_name(|index| format!("edgefn-compile-{index}"))
            .stack_size(COMPILE_THREAD_STACK_BYTES)
            .start_handler(|_| lower_this_threads_priority())
            .build_global();
        if let Err(error) = built {
            tracing::debug!(%error, "rayon's global pool was already built; compiling at its priority");
        }
    });
}

/// Runs `work` on a thread of its own at the deploy priority and returns its result.
/// At most one piece of deploy work per core runs at once; the rest wait their turn here. Never call it from
/// inside such work (it would wait for a slot it holds).
pub async fn run<R: Send + 'static>(work: impl FnOnce() -> R + Send + 'static) -> R {
    // Counted from here, waiting included: the count is zero only once every queued piece has run.
    let pending = PendingWork::enter();
    // The semaphore is never closed, so acquiring only waits. The slot goes with the work, so it is held until
    // the work ends even if the caller stops waiting.
    let slot = DEPLOY_WORK_SLOTS.clone().acquire_owned().await.ok();
    let (sender, receiver) = tokio::sync::oneshot::channel();
    let spawned = std::thread::Builder::new().name("edgefn-deploy".into()).spawn(move || {
        lower_this_threads_priority();
        let _ = sender.send(work());
        drop(slot);
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
/// returns the free pages to the kernel. Called once a burst of deploy work is over, on the deploy thread.
fn release_freed_heap() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only walks glibc's own arenas, under their locks; it may be called from any thread at
    // any time.
    unsafe {
        libc::malloc_trim(0);
    }
}
