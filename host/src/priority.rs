//! Thread priorities: work that must never slow serving (deploy compiles, the log writer) runs on threads with a
//! higher nice value. On Linux a thread's nice value is its own: `setpriority(PRIO_PROCESS, 0, n)` changes only the
//! calling thread.

/// Lowers the calling thread's priority to nice `nice` (a nice-10 thread gets about a tenth of a core a nice-0
/// thread competes for, a nice-5 one about a third). Logs at debug level if the system refuses.
pub fn lower_this_thread(nice: libc::c_int, what: &str) {
    // SAFETY: setpriority only reads its integer arguments; `who = 0` is the calling thread on Linux.
    let result = unsafe { libc::setpriority(libc::PRIO_PROCESS, 0, nice) };
    if result != 0 {
        tracing::debug!(error = %std::io::Error::last_os_error(), "could not lower the priority of {what}");
    }
}
