//! Deploy work (taking a snapshot, compiling ahead of time) is CPU-heavy and never urgent next to a request: it
//! runs at a lower scheduling priority than serving, so a deploy on a busy host slows itself, not the functions
//! already live.
//!
//! On Linux, a thread's nice value is its own (`setpriority(PRIO_PROCESS, 0, n)` changes only the calling
//! thread). The work runs on a thread started for it, niced, which ends with it; wasmtime compiles functions in
//! parallel on rayon's global pool, whose threads are niced as they start.

use std::sync::Once;

/// The nice value of deploy work: a nice-10 thread gets about a tenth of a core that a nice-0 thread competes for.
const DEPLOY_NICE: libc::c_int = 10;

fn lower_this_threads_priority() {
    // SAFETY: setpriority only reads its integer arguments; `who = 0` is the calling thread on Linux.
    let result = unsafe { libc::setpriority(libc::PRIO_PROCESS, 0, DEPLOY_NICE) };
    if result != 0 {
        tracing::debug!(error = %std::io::Error::last_os_error(), "could not lower the priority of deploy work");
    }
}

/// Makes rayon's global pool (where wasmtime compiles in parallel) run at the deploy priority. The pool serves
/// nothing else in the host.
pub(super) fn configure_compile_pool() {
    static CONFIGURED: Once = Once::new();
    CONFIGURED.call_once(|| {
        let built = rayon::ThreadPoolBuilder::new()
            .thread_name(|index| format!("edgefn-compile-{index}"))
            .start_handler(|_| lower_this_threads_priority())
            .build_global();
        if let Err(error) = built {
            tracing::debug!(%error, "rayon's global pool was already built; compiling at its priority");
        }
    });
}

/// Runs `work` on a thread of its own at the deploy priority and returns its result.
pub async fn run<R: Send + 'static>(work: impl FnOnce() -> R + Send + 'static) -> R {
    let (sender, receiver) = tokio::sync::oneshot::channel();
    let spawned = std::thread::Builder::new().name("edgefn-deploy".into()).spawn(move || {
        lower_this_threads_priority();
        let _ = sender.send(work());
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
