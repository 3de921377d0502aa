//! Request and response bodies, bounded so that no client can hold the host's memory or its instances.
//!
//! - A request body is read into memory before the function runs, under three bounds: its own size
//!   (`max_body_bytes`, 413), the time it may take to arrive (`body_read_timeout_ms`, 408), and the bytes every
//!   request buffers together ([`BodyBudget`], `max_buffered_body_mb`: new uploads wait for room, then get 503).
//! - A response the function has written whole by the time it answers (the common case) goes out as one piece,
//!   with its `content-length` ([`hand_over`]): one write to the socket, no task, no chunked encoding.
//! - Any other response is taken from the function ahead of the client, up to `response_buffer_kib` ([`pump`]), so
//!   that a function is done, and its instance free, as soon as it has answered, whatever the client's reading
//!   speed.
//!   A client that reads nothing for `response_write_timeout_ms` while that buffer is full loses the response:
//!   the connection is cut, and the function, if it is still writing, sees its output stream closed.

use bytes::Bytes;
use http_body::Frame;
use http_body_util::BodyExt as _;
use std::collections::VecDeque;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The bytes all request bodies in memory may take together, counted in KiB.
#[derive(Debug, Clone)]
pub struct BodyBudget {
    kib: Arc<Semaphore>,
}

impl BodyBudget {
    pub fn new(bytes: usize) -> Self {
        Self { kib: Arc::new(Semaphore::new((bytes >> 10).clamp(1, Semaphore::MAX_PERMITS))) }
    }
}

/// Why a request body was not read.
#[derive(Debug)]
pub enum BodyError {
    TooLarge,
    /// It did not arrive in time.
    Timeout,
    /// The budget for buffered bodies stayed full.
    Busy,
    /// The client's stream failed.
    Read(String),
}

/// Bounds for reading one request body.
#[derive(Debug, Clone, Copy)]
pub struct BodyLimits {
    pub max_bytes: usize,
    pub read_timeout: Duration,
    /// How long to wait for room in the budget.
    pub queue_timeout: Duration,
}

/// Reads `body` whole, within `limits` and `budget`. The permit keeps its bytes counted: hold it until the body
/// is gone (the invocation ended).
pub async fn read(
    body: axum::body::Body,
    limits: BodyLimits,
    budget: &BodyBudget,
) -> Result<(Bytes, Option<OwnedSemaphorePermit>), BodyError> {
    let read = async {
        let mut body = body;
        let mut collected: Vec<u8> = Vec::new();
        let mut held: Option<OwnedSemaphorePermit> = None;
        let mut held_kib: usize = 0;
        while let Some(frame) = body.frame().await {
            let frame = frame.map_err(|e| BodyError::Read(e.to_string()))?;
            let Ok(data) = frame.into_data() else { continue };
            if collected.len() + data.len() > limits.max_bytes {
                return Err(BodyError::TooLarge);
            }
            let needed_kib = (collected.len() + data.len()).div_ceil(1024);
            if needed_kib > held_kib {
                let more = u32::try_from(needed_kib - held_kib).map_err(|_| BodyError::TooLarge)?;
                let acquire = budget.kib.clone().acquire_many_owned(more);
                let permit = match tokio::time::timeout(limits.queue_timeout, acquire).await {
                    Ok(Ok(permit)) => permit,
                    _ => return Err(BodyError::Busy),
                };
                held_kib = needed_kib;
                match &mut held {
                    Some(held) => held.merge(permit),
                    None => held = Some(permit),
                }
            }
            collected.extend_from_slice(&data);
        }
        Ok((Bytes::from(collected), held))
    };
    match tokio::time::timeout(limits.read_timeout, read).await {
        Ok(result) => result,
        Err(_elapsed) => Err(BodyError::Timeout),
    }
}

/// A request body for a function that reads it as it arrives (a WASI 0.3 component): at most `max_bytes` of it
/// (past that it ends with the `max_body_bytes` error, which the function sees as a 413), and never quiet for
/// longer than `idle_timeout` between two chunks (a client that stops sending ends it with a read timeout).
pub fn streaming(body: axum::body::Body, max_bytes: usize, idle_timeout: Duration) -> wasmtime_wasi_http::WasiBody {
    use wasmtime_wasi_http::Error as WasiError;
    let limit = max_bytes as u64;
    let stream = futures_util::stream::unfold((body, 0u64, false), move |(mut body, read, done)| async move {
        if done {
            return None;
        }
        let frame = match tokio::time::timeout(idle_timeout, body.frame()).await {
            Err(_quiet) => return Some((Err(WasiError::ConnectionReadTimeout), (body, read, true))),
            Ok(None) => return None,
            Ok(Some(Err(error))) => {
                tracing::debug!("a request body failed while it streamed: {error}");
                return Some((Err(WasiError::ConnectionTerminated), (body, read, true)));
            }
            Ok(Some(Ok(frame))) => frame,
        };
        let read = read + frame.data_ref().map_or(0, |data| data.len() as u64);
        if read > limit {
            return Some((Err(WasiError::HttpRequestBodySize(Some(limit))), (body, read, true)));
        }
        Some((Ok(frame), (body, read, false)))
    });
    http_body_util::BodyExt::boxed_unsync(http_body_util::StreamBody::new(stream))
}

/// Hands the function's `body` to the client: whole, with its length, if the function has already written all
/// of it and it fits `buffer` bytes, or if it said its length and that fits (a WASI 0.3 function writes its body
/// from a task of its own, just after it answered: waiting for it costs less than a pump); otherwise through
/// [`pump`], starting with what was already written.
pub async fn hand_over<B>(mut body: B, buffer: usize, write_timeout: Duration) -> axum::body::Body
where
    B: http_body::Body<Data = Bytes> + Send + Unpin + 'static,
    B::Error: Into<BoxError> + Send + 'static,
{
    let mut written: Vec<Bytes> = Vec::new();
    let mut bytes = 0;
    // The frame that stopped the gathering, if it is not data: trailers or an error, passed on as they are.
    let stopped_at = loop {
        let small = body.size_hint().exact().is_some_and(|left| bytes + left as usize <= buffer);
        let next = if small {
            // A known length that fits: wait for it, within the write timeout (then the pump takes over).
            tokio::time::timeout(write_timeout, body.frame()).await.ok()
        } else {
            // What the function has written so far, without waiting for more.
            std::future::poll_fn(|cx| match Pin::new(&mut body).poll_frame(cx) {
                Poll::Ready(frame) => Poll::Ready(Some(frame)),
                Poll::Pending => Poll::Ready(None),
            })
            .await
        };
        match next {
            Some(None) => return axum::body::Body::from(concat(written)),
            Some(Some(Ok(frame))) => match frame.into_data() {
                Ok(data) => {
                    bytes += data.len();
                    written.push(data);
                    if bytes > buffer {
                        break None;
                    }
                }
                Err(trailers) => break Some(Ok(trailers)),
            },
            Some(Some(Err(error))) => break Some(Err(error.into())),
            // Not finished yet: the function is still writing.
            None => break None,
        }
    };
    let taken = written.into_iter().map(|data| Ok(Frame::data(data))).chain(stopped_at).collect();
    pump(taken, body, buffer, write_timeout)
}

/// `pieces` in one piece (without a copy when there is one).
fn concat(mut pieces: Vec<Bytes>) -> Bytes {
    match pieces.len() {
        0 => Bytes::new(),
        1 => pieces.swap_remove(0),
        _ => Bytes::from(pieces.concat()),
    }
}

/// Takes `body` from the function ahead of the client, up to `buffer` bytes, after the frames already `taken` from
/// it; see the module docs.
pub fn pump<B>(
    taken: VecDeque<Result<Frame<Bytes>, BoxError>>,
    body: B,
    buffer: usize,
    write_timeout: Duration,
) -> axum::body::Body
where
    B: http_body::Body<Data = Bytes> + Send + Unpin + 'static,
    B::Error: Into<BoxError> + Send + 'static,
{
    let (frames, received) = mpsc::channel::<Result<Frame<Bytes>, BoxError>>(64);
    let room = Arc::new(Semaphore::new(buffer.clamp(1, Semaphore::MAX_PERMITS)));
    let abandoned = Arc::new(AtomicBool::new(false));
    let (pump_room, pump_abandoned) = (room.clone(), abandoned.clone());
    tokio::spawn(async move {
        let mut body = body;
        let mut taken = taken;
        loop {
            let frame = match taken.pop_front() {
                Some(frame) => frame,
                None => match body.frame().await {
                    Some(frame) => frame.map_err(Into::into),
                    None => break,
                },
            };
            let frame = match frame {
                Ok(frame) => frame,
                Err(error) => {
                    let _ = frames.send(Err(error)).await;
                    return;
                }
            };
            let len = frame.data_ref().map_or(0, Bytes::len).clamp(1, buffer.max(1));
            let handed_over = async {
                let permit = pump_room.clone().acquire_many_owned(u32::try_from(len).unwrap_or(u32::MAX)).await;
                // The client's side gives the room back as it takes each frame.
                permit.map(OwnedSemaphorePermit::forget).is_ok() && frames.send(Ok(frame)).await.is_ok()
            };
            match tokio::time::timeout(write_timeout, handed_over).await {
                Ok(true) => {}
                // The client went away: nothing more to send.
                Ok(false) => return,
                Err(_elapsed) => {
                    tracing::warn!(
                        timeout_ms = write_timeout.as_millis() as u64,
                        "a client did not read its response; the response is abandoned"
                    );
                    pump_abandoned.store(true, Ordering::Release);
                    return;
                }
            }
        }
        // Dropping the function's body here closes its output stream: a function still writing stops.
    });
    axum::body::Body::new(Pumped { received, room, abandoned, buffer: buffer.max(1) })
}

/// The client's side of [`pump`].
struct Pumped {
    received: mpsc::Receiver<Result<Frame<Bytes>, BoxError>>,
    room: Arc<Semaphore>,
    abandoned: Arc<AtomicBool>,
    buffer: usize,
}

impl http_body::Body for Pumped {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        match self.received.poll_recv(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                let len = frame.data_ref().map_or(0, Bytes::len).clamp(1, self.buffer);
                self.room.add_permits(len);
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(error))) => Poll::Ready(Some(Err(error))),
            // An abandoned response must not look complete to the client: end it with an error, which cuts the
            // connection.
            Poll::Ready(None) if self.abandoned.load(Ordering::Acquire) => {
                Poll::Ready(Some(Err("the response was abandoned: the client did not read it in time".into())))
            }
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A body that yields its frames and ends, or, stalled, never yields anything.
    struct TestBody {
        frames: VecDeque<Bytes>,
        stalled: bool,
    }

    impl TestBody {
        fn of(frames: usize, len: usize) -> Self {
            Self { frames: (0..frames).map(|_| Bytes::from(vec![b'x'; len])).collect(), stalled: false }
        }
    }

    impl http_body::Body for TestBody {
        type Data = Bytes;
        type Error = std::io::Error;

        fn poll_frame(
            mut self: Pin<&mut Self>,
            _cx: &mut Context<'_>,
        ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
            if self.stalled {
                return Poll::Pending;
            }
            Poll::Ready(self.frames.pop_front().map(|data| Ok(Frame::data(data))))
        }
    }

    fn limits(read_timeout: Duration) -> BodyLimits {
        BodyLimits { max_bytes: 4 << 10, read_timeout, queue_timeout: Duration::from_millis(20) }
    }

    #[tokio::test]
    async fn a_body_over_its_limit_or_the_budget_is_refused() {
        let limits = limits(Duration::from_secs(5));
        let budget = BodyBudget::new(6 << 10);
        let body = |kib: usize| axum::body::Body::new(TestBody::of(kib, 1024));
        assert!(matches!(read(body(5), limits, &budget).await, Err(BodyError::TooLarge)));
        let (first, held) = read(body(4), limits, &budget).await.expect("fits");
        assert_eq!(first.len(), 4 << 10);
        // 4 KiB held: another 4 KiB body does not fit the 6 KiB budget until the first is released.
        assert!(matches!(read(body(4), limits, &budget).await, Err(BodyError::Busy)));
        drop(held);
        assert!(read(body(4), limits, &budget).await.is_ok());
    }

    #[tokio::test]
    async fn a_body_that_does_not_arrive_in_time_is_refused() {
        let stalled = TestBody { frames: VecDeque::new(), stalled: true };
        let result =
            read(axum::body::Body::new(stalled), limits(Duration::from_millis(50)), &BodyBudget::new(1 << 20)).await;
        assert!(matches!(result, Err(BodyError::Timeout)));
    }

    #[tokio::test]
    async fn a_response_read_in_time_arrives_whole() {
        let mut client = pump(VecDeque::new(), TestBody::of(8, 1024), 2048, Duration::from_secs(5));
        let mut got = 0;
        while let Some(frame) = client.frame().await {
            got += frame.expect("no error").data_ref().map_or(0, Bytes::len);
        }
        assert_eq!(got, 8 * 1024);
    }

    /// A body still being written whose length is known and fits: what a WASI 0.3 function answers with.
    struct Pending {
        left: VecDeque<Bytes>,
        ready: bool,
        len: u64,
    }

    impl http_body::Body for Pending {
        type Data = Bytes;
        type Error = std::io::Error;

        fn poll_frame(
            mut self: Pin<&mut Self>,
            cx: &mut Context<'_>,
        ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
            if !self.ready {
                // Written a moment later.
                self.ready = true;
                cx.waker().wake_by_ref();
                return Poll::Pending;
            }
            let frame = self.left.pop_front();
            if let Some(data) = &frame {
                self.len -= data.len() as u64;
            }
            Poll::Ready(frame.map(|data| Ok(Frame::data(data))))
        }

        fn size_hint(&self) -> http_body::SizeHint {
            http_body::SizeHint::with_exact(self.len)
        }
    }

    #[tokio::test]
    async fn a_body_of_known_length_that_fits_is_waited_for_and_goes_out_whole() {
        use http_body::Body as _;
        let pending = Pending { left: VecDeque::from([Bytes::from_static(b"hello")]), ready: false, len: 5 };
        let whole = hand_over(pending, 1024, Duration::from_secs(5)).await;
        assert_eq!(whole.size_hint().exact(), Some(5), "sent with its length, not pumped");
        assert_eq!(whole.collect().await.expect("body").to_bytes(), "hello");
    }

    #[tokio::test]
    async fn a_body_written_whole_goes_out_with_its_length_and_a_streaming_one_through_the_pump() {
        use http_body::Body as _;
        let whole = hand_over(TestBody::of(3, 100), 1024, Duration::from_secs(5)).await;
        assert_eq!(whole.size_hint().exact(), Some(300), "a finished body has a known length");
        assert_eq!(whole.collect().await.expect("body").to_bytes().len(), 300);
        // Larger than the buffer: it is pumped, and arrives whole all the same.
        let large = hand_over(TestBody::of(8, 1024), 2048, Duration::from_secs(5)).await;
        assert_eq!(large.size_hint().exact(), None);
        assert_eq!(large.collect().await.expect("body").to_bytes().len(), 8 * 1024);
        // Not finished yet (the function is still writing): pumped, nothing is waited for here.
        let stalled = TestBody { frames: VecDeque::new(), stalled: true };
        let pumped = hand_over(stalled, 1024, Duration::from_secs(5)).await;
        assert_eq!(pumped.size_hint().exact(), None);
    }

    #[tokio::test]
    async fn a_response_nobody_reads_is_abandoned_after_the_write_timeout() {
        // 4 frames of 1 KiB, a buffer of 1 KiB: the pump takes one frame ahead, then waits for the client.
        let mut client = pump(VecDeque::new(), TestBody::of(4, 1024), 1024, Duration::from_millis(50));
        tokio::time::sleep(Duration::from_millis(300)).await;
        // The client reads at last: it gets what was buffered, then an error, never a clean end.
        let mut got = 0;
        loop {
            match client.frame().await {
                Some(Ok(frame)) => got += frame.data_ref().map_or(0, Bytes::len),
                Some(Err(error)) => {
                    assert!(error.to_string().contains("abandoned"), "{error}");
                    break;
                }
                None => panic!("an abandoned response ended as if complete after {got} bytes"),
            }
        }
        assert!(got < 4 * 1024, "all {got} bytes arrived: nothing was abandoned");
    }
}
