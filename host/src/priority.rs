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

/// Moves the calling thread to the idle scheduling class (`SCHED_IDLE`): it runs only on cycles no other thread
/// wants, and a thread of the normal class that wakes takes its core at once. A high nice value is not enough for
/// that: the kernel's scheduler (EEVDF) lets a running thread of any weight finish its time slice (about a
/// millisecond or more) before a woken one takes over, which is a millisecond added to a neighbour's request.
/// Logs at debug level if the system refuses.
pub fn idle_this_thread(what: &str) {
    let param = libc::sched_param { sched_priority: 0 };
    // SAFETY: sched_setscheduler reads `param` for the duration of the call only; pid 0 is the calling thread on
    // Linux, and SCHED_IDLE needs no privilege.
    let result = unsafe { libc::sched_setscheduler(0, libc::SCHED_IDLE, &param) };
    if result != 0 {
        tracing::debug!(error = %std::io::Error::last_os_error(), "could not move {what} to the idle class");
    }
}
