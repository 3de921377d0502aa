//! A guest's stdout and stderr: masked, capped, and never able to block the host.
//!
//! - **Masked**: each secret value is replaced by `[secret NAME]`. Output is cut into lines (or 8 KiB pieces) and
//!   a piece cut mid-line keeps back its last bytes, as many as the longest secret but one, so a secret that
//!   straddles the cut is still seen whole.
//! - **Capped**: an invocation prints at most `limits.max_output_bytes`; the rest is dropped, and its output says
//!   so once.
//! - **Never blocking**: pieces go to one writer thread through a bounded queue. When the host's own output cannot
//!   keep up (a full pipe, a slow terminal), pieces are dropped and counted, and the writer says how much it
//!   dropped when it can write again. A guest's write always returns at once.
//! - **Cheap when unused**: a stream is a shared, synchronous buffer, with no task of its own. (wasmtime's
//!   `AsyncStdoutStream` spawns a task per stream, which every invocation would pay twice whether it prints or
//!   not.)

use super::fairness::Pace;
use super::redact::mask_bytes;
use crate::telemetry::{Telemetry, Trace};
use std::io::Write as _;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, mpsc};
use std::task::{Context, Poll};
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::p2::{OutputStream, Pollable, StreamResult};

/// Cut a partial line once it is this long.
const MAX_PIECE: usize = 8 << 10;
/// Pieces the writer thread may have queued: at most 8 MiB of output waits for the host's streams.
const QUEUE_PIECES: usize = 1024;
/// The writer thread's nice value, as the log writer's (telemetry's `WRITER_NICE`).
const OUTPUT_NICE: libc::c_int = 5;

/// Where a piece goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Target {
    Stdout,
    Stderr,
}

struct Writer {
    queue: mpsc::SyncSender<(Target, Vec<u8>)>,
    dropped: Arc<AtomicU64>,
}

/// The one writer thread, started on first use.
fn writer() -> &'static Writer {
    static WRITER: OnceLock<Writer> = OnceLock::new();
    WRITER.get_or_init(|| {
        let (queue, pieces) = mpsc::sync_channel::<(Target, Vec<u8>)>(QUEUE_PIECES);
        let dropped = Arc::new(AtomicU64::new(0));
        let counted = dropped.clone();
        std::thread::Builder::new()
            .name("edgefn-guest-output".into())
            .spawn(move || {
                // Serving comes first: a tenant that prints without end makes this thread busy, and what it does
                // (copying into the host's own output) must not take the cores that answer the neighbours. Its
                // queue holds (then drops and counts) what it cannot write meanwhile.
                crate::priority::lower_this_thread(OUTPUT_NICE, "the guest output writer");
                for (target, piece) in pieces {
                    let lost = counted.swap(0, Ordering::Relaxed);
                    // The host's own streams: a write that fails has nowhere to be reported.
                    let write = |bytes: &[u8]| {
                        let _ = match target {
                            Target::Stdout => std::io::stdout().lock().write_all(bytes),
                            Target::Stderr => std::io::stderr().lock().write_all(bytes),
                        };
                    };
                    if lost > 0 {
                        write(format!("[edgefn: {lost} bytes of function output dropped: the host's output could not keep up]\n").as_bytes());
                    }
                    write(&piece);
                }
            })
            .expect("failed to start the guest output thread");
        Writer { queue, dropped }
    })
}

/// Hands `piece` to the writer thread, or drops and counts it if the queue is full.
fn send(target: Target, piece: Vec<u8>) {
    let writer = writer();
    let len = piece.len() as u64;
    if writer.queue.try_send((target, piece)).is_err() {
        writer.dropped.fetch_add(len, Ordering::Relaxed);
    }
}

/// Bytes of guest output dropped because the host's output could not keep up, since start (not yet reported).
pub fn dropped_pending() -> u64 {
    writer().dropped.load(Ordering::Relaxed)
}

/// What one invocation may still print, shared by its stdout and stderr.
#[derive(Debug, Clone)]
pub(crate) struct Allowance {
    remaining: Arc<std::sync::atomic::AtomicUsize>,
    cap: usize,
}

impl Allowance {
    pub(crate) fn new(cap: usize) -> Self {
        Self { remaining: Arc::new(std::sync::atomic::AtomicUsize::new(cap)), cap }
    }

    /// The whole allowance again: a reused instance's next request may print as much as the first.
    pub(crate) fn reset(&self) {
        self.remaining.store(self.cap, Ordering::Release);
    }

    /// Takes up to `wanted` bytes of the allowance; returns how many were granted.
    fn take(&self, wanted: usize) -> usize {
        let mut granted = 0;
        let _ = self.remaining.fetch_update(Ordering::AcqRel, Ordering::Acquire, |left| {
            granted = wanted.min(left);
            Some(left - granted)
        });
        granted
    }

    fn exhausted(&self) -> bool {
        self.remaining.load(Ordering::Acquire) == 0
    }
}

/// The work an instance's output is logged under: one invocation's trace, or, for a reused instance, the trace of
/// the request it took last.
#[derive(Debug, Clone)]
pub(crate) struct CurrentWork(Arc<Mutex<Arc<Trace>>>);

impl CurrentWork {
    pub(crate) fn new(trace: Arc<Trace>) -> Self {
        Self(Arc::new(Mutex::new(trace)))
    }

    pub(crate) fn set(&self, trace: Arc<Trace>) {
        *self.0.lock().unwrap_or_else(|poisoned| poisoned.into_inner()) = trace;
    }

    fn get(&self) -> Arc<Trace> {
        self.0.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).clone()
    }
}

/// A WASI output stream for one invocation's `target`: see the module docs. `label` names the function in the
/// host's log when its output is cut. With `log`, each piece is also logged there, under the current work's trace.
/// `pace` is the guest's (`fairness`): the turns its printing gives are no pause in its computing.
pub(crate) fn stream(
    target: Target,
    secrets: Arc<Vec<(String, String)>>,
    allowance: Allowance,
    label: &str,
    log: Option<(Telemetry, CurrentWork)>,
    pace: &Arc<Pace>,
) -> GuestOutput {
    let keep_back = secrets.iter().map(|(_, value)| value.len()).max().unwrap_or(0).saturating_sub(1);
    let capture = Capture {
        target,
        secrets,
        pending: Vec::new(),
        keep_back,
        allowance,
        over_cap: 0,
        label: label.to_owned(),
        sink: match log {
            None => Arc::new(send),
            Some((telemetry, work)) => Arc::new(move |target, piece: Vec<u8>| {
                telemetry.guest_output(&work.get(), target == Target::Stderr, &piece);
                send(target, piece);
            }),
        },
    };
    GuestOutput::new(capture, pace.clone())
}

/// One invocation's stdout or stderr, as WASI sees it: every handle the guest opens writes to the same [`Capture`],
/// which is flushed when the last handle (the store's) is dropped.
pub(crate) struct GuestOutput {
    capture: Arc<Mutex<Capture>>,
    /// Bytes this handle took since it last let the thread go.
    since_yield: usize,
    /// The guest's pace, told that those turns are no pause.
    pace: Arc<Pace>,
}

impl Clone for GuestOutput {
    fn clone(&self) -> Self {
        Self { capture: self.capture.clone(), since_yield: 0, pace: self.pace.clone() }
    }
}

impl GuestOutput {
    fn new(capture: Capture, pace: Arc<Pace>) -> Self {
        Self { capture: Arc::new(Mutex::new(capture)), since_yield: 0, pace }
    }

    fn absorb(&mut self, buf: &[u8]) {
        self.since_yield += buf.len();
        self.capture.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).absorb(buf);
    }
}

impl IsTerminal for GuestOutput {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for GuestOutput {
    fn p2_stream(&self) -> Box<dyn OutputStream> {
        Box::new(self.clone())
    }

    fn async_stream(&self) -> Box<dyn tokio::io::AsyncWrite + Send + Sync> {
        Box::new(self.clone())
    }
}

#[async_trait::async_trait]
impl Pollable for GuestOutput {
    /// A write never waits for room. But a guest that prints in a loop spends its time in host calls, where
    /// epochs do not interrupt it: every [`MAX_PIECE`] bytes, it lets the other tasks of its thread run first
    /// (the neighbours' requests), as if its output had to wait for the writer. That turn is no pause: the guest
    /// keeps counting as computing, so one that prints without end becomes long-running, moves to the niced
    /// threads and waits for a lane like any hog (it used to look short forever, and print on the request threads).
    async fn ready(&mut self) {
        if self.since_yield >= MAX_PIECE {
            self.since_yield = 0;
            self.pace.yield_without_pausing();
            tokio::task::yield_now().await;
        }
    }
}

impl OutputStream for GuestOutput {
    fn write(&mut self, bytes: bytes::Bytes) -> StreamResult<()> {
        self.absorb(&bytes);
        Ok(())
    }

    fn flush(&mut self) -> StreamResult<()> {
        Ok(())
    }

    fn check_write(&mut self) -> StreamResult<usize> {
        Ok(MAX_PIECE)
    }
}

impl tokio::io::AsyncWrite for GuestOutput {
    fn poll_write(mut self: Pin<&mut Self>, _cx: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        self.absorb(buf);
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

/// Where a capture passes its pieces: the writer thread, or a test's buffer.
type Sink = Arc<dyn Fn(Target, Vec<u8>) + Send + Sync>;

struct Capture {
    target: Target,
    secrets: Arc<Vec<(String, String)>>,
    /// What was written and not passed on yet: the current line, or the kept-back tail of a cut piece.
    pending: Vec<u8>,
    /// Bytes held back at a cut that is not at a line end.
    keep_back: usize,
    /// What this invocation may still print.
    allowance: Allowance,
    /// Bytes this stream dropped past the cap.
    over_cap: u64,
    label: String,
    sink: Sink,
}

impl Capture {
    /// Passes on `pending[..upto]`, masked, within the cap.
    fn emit(&mut self, upto: usize) {
        if upto == 0 {
            return;
        }
        let piece: Vec<u8> = self.pending.drain(..upto).collect();
        let mut masked = if self.secrets.is_empty() { piece } else { mask_bytes(&piece, &self.secrets) };
        let granted = self.allowance.take(masked.len());
        if granted < masked.len() {
            let cut = masked.len() - granted;
            masked.truncate(granted);
            if self.over_cap == 0 {
                let cap = self.allowance.cap;
                masked.extend_from_slice(
                    format!("\n[edgefn: output truncated: the function printed over {cap} bytes]\n").as_bytes(),
                );
            }
            self.over_cap += cut as u64;
        }
        if !masked.is_empty() {
            (self.sink)(self.target, masked);
        }
    }

    fn absorb(&mut self, buf: &[u8]) {
        if self.allowance.exhausted() && self.over_cap > 0 {
            // Past the cap: nothing more is masked or kept, only counted.
            self.over_cap += buf.len() as u64;
            return;
        }
        self.pending.extend_from_slice(buf);
        while let Some(newline) = self.pending.iter().position(|b| *b == b'\n') {
            self.emit(newline + 1);
        }
        if self.pending.len() >= MAX_PIECE {
            // Cut mid-line: keep back what could be the start of a secret that continues in the next write.
            let mut upto = self.pending.len() - self.keep_back.min(self.pending.len());
            while upto > 0 && upto < self.pending.len() && (self.pending[upto] & 0b1100_0000) == 0b1000_0000 {
                upto -= 1; // not in the middle of a UTF-8 character
            }
            self.emit(upto);
        }
    }
}

impl Drop for Capture {
    fn drop(&mut self) {
        let len = self.pending.len();
        self.emit(len);
        if self.over_cap > 0 {
            tracing::warn!(function = %self.label, cap = self.allowance.cap, dropped = self.over_cap,
                "function output over limits.max_output_bytes was dropped");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    /// A capture whose pieces land in the returned buffer.
    fn capture(secrets: &[(&str, &str)], cap: usize) -> (Capture, Arc<Mutex<Vec<u8>>>) {
        let secrets: Vec<(String, String)> = secrets.iter().map(|(n, v)| ((*n).to_owned(), (*v).to_owned())).collect();
        let keep_back = secrets.iter().map(|(_, v)| v.len()).max().unwrap_or(0).saturating_sub(1);
        let out: Arc<Mutex<Vec<u8>>> = Arc::default();
        let into = out.clone();
        let capture = Capture {
            target: Target::Stdout,
            secrets: Arc::new(secrets),
            pending: Vec::new(),
            keep_back,
            allowance: Allowance::new(cap),
            over_cap: 0,
            label: "test".into(),
            sink: Arc::new(move |_, piece| into.lock().expect("lock").extend(piece)),
        };
        (capture, out)
    }

    #[test]
    fn a_secret_across_the_cut_of_a_long_line_is_still_masked() {
        let secret = "s3cr3t-value-that-is-long";
        for split in 1..secret.len() {
            // A line of exactly MAX_PIECE bytes whose last bytes start the secret; the next write ends it.
            let mut first = vec![b'x'; MAX_PIECE - split];
            first.extend_from_slice(&secret.as_bytes()[..split]);
            let second = [&secret.as_bytes()[split..], b" and more\n"].concat();
            let (mut capture, out) = capture(&[("API", secret)], usize::MAX);
            capture.absorb(&first);
            capture.absorb(&second);
            drop(capture);
            let out = String::from_utf8(out.lock().expect("lock").clone()).expect("utf-8");
            assert!(!out.contains(secret), "the secret leaked across a cut after {split} bytes");
            assert!(out.ends_with("x[secret API] and more\n"), "split {split}: {}", &out[out.len() - 40..]);
            assert_eq!(out.len(), MAX_PIECE - split + "[secret API] and more\n".len());
        }
    }

    #[test]
    fn output_past_the_cap_is_dropped_and_said_once() {
        let (mut capture, out) = capture(&[], 10);
        capture.absorb(b"0123456789abcdef\n");
        capture.absorb(b"more\n");
        assert_eq!((capture.allowance.exhausted(), capture.over_cap), (true, 7 + 5));
        drop(capture);
        let out = String::from_utf8(out.lock().expect("lock").clone()).expect("utf-8");
        assert_eq!(out, "0123456789\n[edgefn: output truncated: the function printed over 10 bytes]\n");
    }

    #[test]
    fn a_guest_printing_without_end_takes_turns_but_keeps_counting_as_computing() {
        use futures_util::FutureExt as _;
        let pace = Arc::new(Pace::default());
        pace.computed_for(crate::runtime::fairness::LONG_RUNNING_TICKS);
        let (capture, _out) = capture(&[], 1 << 20);
        let mut output = GuestOutput::new(capture, pace.clone());
        // Under a piece since the last turn: no turn.
        output.write(bytes::Bytes::from(vec![b'x'; MAX_PIECE - 1])).expect("write");
        assert!(output.ready().now_or_never().is_some(), "a turn before a whole piece was printed");
        // A whole piece: the stream gives its thread's other tasks a turn (its future is pending once)...
        output.write(bytes::Bytes::from_static(b"x")).expect("write");
        assert!(output.ready().now_or_never().is_none(), "no turn after a whole piece");
        // ...and whoever drives the store, seeing that `Pending`, does not count it as the guest pausing.
        pace.pending();
        assert_eq!(pace.ticks(), crate::runtime::fairness::LONG_RUNNING_TICKS, "the turn reset the guest's ticks");
        // A `Pending` of any other kind still is a pause.
        pace.pending();
        assert_eq!(pace.ticks(), 0);
    }
}
