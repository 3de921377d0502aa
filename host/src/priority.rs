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

/// The scheduler slice of a thread that answers requests (see [`shorten_this_threads_slice`]).
pub const SERVING_SLICE: std::time::Duration = std::time::Duration::from_micros(100);

/// Asks the scheduler for a short slice (`slice`, at least 0.1 ms) for the calling thread, keeping its policy
/// (normal) and nice value (0). Since Linux 6.12 the EEVDF scheduler lets a waking thread with a shorter slice
/// preempt the running one; before, a woken request thread waited for a running deploy compile or long-running
/// guest (niced, but running) to finish its slice of up to 3 ms. Needs no privilege. On older kernels the call is
/// refused and nothing changes: logged at debug level.
pub fn shorten_this_threads_slice(slice: std::time::Duration) {
    let attributes = libc::sched_attr {
        size: std::mem::size_of::<libc::sched_attr>() as u32,
        sched_policy: libc::SCHED_OTHER as u32,
        sched_flags: 0,
        sched_nice: 0,
        sched_priority: 0,
        sched_runtime: u64::try_from(slice.as_nanos()).unwrap_or(u64::MAX),
        sched_deadline: 0,
        sched_period: 0,
    };
    // SAFETY: sched_setattr reads `size` bytes of the struct passed by pointer, which lives across the call and
    // whose `size` field is its own size; pid 0 is the calling thread; flags 0.
    let result = unsafe { libc::syscall(libc::SYS_sched_setattr, 0, &raw const attributes, 0) };
    if result != 0 {
        tracing::debug!(error = %std::io::Error::last_os_error(), "could not shorten the scheduler slice of a serving thread");
    }
}
