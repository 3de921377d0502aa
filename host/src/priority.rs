//! Thread priorities: work that must never slow serving (deploy compiles, the log writer) runs on threads with a
//! higher nice value. On Linux a thread's nice value is its own: `setpriority(PRIO_PROCESS, 0, n)` changes only the
//! calling thread.

/// Lowers the calling thread's priority to nice `nice` (a nice-10 thread gets about a tenth of a core a nice-0
/// thread competes for, a nice-5 one about a third), with the kernel's default scheduler slice: a thread inherits
/// its creator's, and one started from a request thread would otherwise keep the short slice meant for requests.
/// Logs at debug level if the system refuses.
pub fn lower_this_thread(nice: libc::c_int, what: &str) {
    // SAFETY: setpriority only reads its integer arguments; `who = 0` is the calling thread on Linux.
    let result = unsafe { libc::setpriority(libc::PRIO_PROCESS, 0, nice) };
    if result != 0 {
        tracing::debug!(error = %std::io::Error::last_os_error(), "could not lower the priority of {what}");
    }
    if let Err(error) = set_this_threads_slice(None, nice) {
        tracing::debug!(%error, "could not give {what} the default scheduler slice");
    }
}

/// The scheduler slice of a thread that answers requests (see [`give_this_thread_a_serving_slice`]).
pub const SERVING_SLICE: std::time::Duration = std::time::Duration::from_micros(100);

/// Asks the scheduler for a short slice ([`SERVING_SLICE`]) for the calling thread, a thread that answers
/// requests, keeping its policy (normal) and nice value. Since Linux 6.12 the EEVDF scheduler lets a waking
/// thread with a shorter slice preempt the running one; before, a woken request thread waited for a running deploy
/// compile or long-running guest (niced, but running) to finish its slice of up to 3 ms. Needs no privilege. On
/// older kernels the call is refused and nothing changes: logged at debug level.
pub fn give_this_thread_a_serving_slice() {
    if let Err(error) = set_this_threads_slice(Some(SERVING_SLICE), this_threads_nice()) {
        tracing::debug!(%error, "could not shorten the scheduler slice of a serving thread");
    }
}

/// The calling thread's nice value (an operator may have started the host niced: that is kept).
fn this_threads_nice() -> libc::c_int {
    // SAFETY: getpriority only reads its integer arguments; `who = 0` is the calling thread on Linux.
    unsafe { libc::getpriority(libc::PRIO_PROCESS, 0) }
}

/// Sets the calling thread's scheduler slice (`None`: the kernel's default) with `sched_setattr`, its policy
/// normal and its nice value `nice`.
fn set_this_threads_slice(slice: Option<std::time::Duration>, nice: libc::c_int) -> std::io::Result<()> {
    let attributes = libc::sched_attr {
        size: std::mem::size_of::<libc::sched_attr>() as u32,
        sched_policy: libc::SCHED_OTHER as u32,
        sched_flags: 0,
        sched_nice: nice,
        sched_priority: 0,
        // 0 asks for the default slice.
        sched_runtime: slice.map_or(0, |slice| u64::try_from(slice.as_nanos()).unwrap_or(u64::MAX)),
        sched_deadline: 0,
        sched_period: 0,
    };
    // SAFETY: sched_setattr reads `size` bytes of the struct passed by pointer, which lives across the call and
    // whose `size` field is its own size; pid 0 is the calling thread; flags 0.
    let result = unsafe { libc::syscall(libc::SYS_sched_setattr, 0, &raw const attributes, 0) };
    if result == 0 { Ok(()) } else { Err(std::io::Error::last_os_error()) }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The calling thread's slice and nice value as the kernel reports them.
    fn this_threads_slice_and_nice() -> (u64, i64) {
        let sched = std::fs::read_to_string("/proc/thread-self/sched").expect("/proc/thread-self/sched");
        let field = |name: &str| {
            sched
                .lines()
                .find(|line| line.split_whitespace().next() == Some(name))
                .and_then(|line| line.rsplit(':').next())
                .map(|value| value.trim().to_owned())
                .unwrap_or_else(|| panic!("no {name} in:\n{sched}"))
        };
        (field("se.slice").parse().expect("se.slice"), i64::from(this_threads_nice()))
    }

    /// Whether this kernel predates custom slices (Linux 6.12).
    fn kernel_before_custom_slices() -> bool {
        let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").expect("kernel release");
        let mut numbers = release.trim().split(|c: char| !c.is_ascii_digit()).map(|n| n.parse::<u32>().unwrap_or(0));
        (numbers.next().unwrap_or(0), numbers.next().unwrap_or(0)) < (6, 12)
    }

    #[test]
    fn a_request_thread_gets_the_short_slice_and_a_niced_thread_started_from_it_the_default_one() {
        std::thread::spawn(|| {
            if kernel_before_custom_slices() {
                // No custom slices here: asking changes nothing, the nice value included, whatever it answers.
                let nice = this_threads_nice();
                let _ = set_this_threads_slice(Some(SERVING_SLICE), nice);
                assert_eq!(this_threads_nice(), nice);
                return;
            }
            let (default_slice, nice) = this_threads_slice_and_nice();
            let set = set_this_threads_slice(Some(SERVING_SLICE), this_threads_nice());
            assert!(set.is_ok(), "refused on a kernel with custom slices: {set:?}");
            assert_eq!(this_threads_slice_and_nice(), (100_000, nice), "the slice changed, not the nice value");
            // A thread started here inherits the short slice until it lowers its priority.
            let lowered = (nice + 10).min(19);
            let inherited = std::thread::spawn(move || {
                let inherited = this_threads_slice_and_nice();
                lower_this_thread(lowered as libc::c_int, "the test's niced thread");
                (inherited, this_threads_slice_and_nice())
            })
            .join()
            .expect("niced thread");
            assert_eq!(inherited, ((100_000, nice), (default_slice, lowered)));
        })
        .join()
        .expect("test thread");
    }
}
