//! Building requests in native unit tests, without wasm and without a host.
//!
//! ```
//! use edgefn::prelude::*;
//!
//! #[function(trigger = http("/hello/{name}"))]
//! fn hello(req: Request) -> Response {
//!     Response::text(format!("Hello, {}!", req.param("name").unwrap_or("world")))
//! }
//!
//! // The path is matched against the crate's routes, so `req.param("name")` works in the test.
//! assert_eq!(hello(edgefn::testing::get("/hello/ada")).text_body(), "Hello, ada!");
//! // Or go through the dispatcher, as the host does: routing, 404 and 405 included.
//! assert_eq!(edgefn::testing::call(edgefn::testing::get("/nowhere")).status(), 404);
//! ```

use crate::{Request, Response, dispatch};
use serde::Serialize;

/// Builds a request; finish it with [`TestRequest::build`] or pass it where a `Request` is expected.
#[derive(Debug)]
pub struct TestRequest {
    builder: http::request::Builder,
    body: Vec<u8>,
    claims: Option<serde_json::Value>,
    /// A body that arrives in pieces.
    #[cfg(edgefn_async)]
    chunks: Option<Vec<Vec<u8>>>,
}

impl TestRequest {
    /// A request with any method and path (with optional query).
    pub fn new(method: &str, uri: &str) -> Self {
        Self {
            builder: http::Request::builder().method(method).uri(uri),
            body: Vec::new(),
            claims: None,
            #[cfg(edgefn_async)]
            chunks: None,
        }
    }

    /// The claims of a verified token, as the host passes them to a route with `auth = "..."`: e.g.
    /// `json!({"sub": "ada", "scope": "todos:write"})`. [`call`] then decides as the host does: a protected route
    /// without claims is a 401, and claims without one of the route's `scopes` (in `scope`, space-separated, or
    /// `scp`) a 403 with the same `WWW-Authenticate` challenge, so scope rules can be unit-tested. (Calling a
    /// handler function directly skips both checks, as calling any function does.)
    pub fn claims(mut self, claims: serde_json::Value) -> Self {
        self.claims = Some(claims);
        self
    }

    /// Adds a header.
    pub fn header(mut self, name: &str, value: &str) -> Self {
        self.builder = self.builder.header(name, value);
        self
    }

    /// Sets a raw body.
    pub fn body(mut self, body: impl Into<Vec<u8>>) -> Self {
        self.body = body.into();
        self
    }

    /// Sets a body that arrives in these chunks, as a client would send them: an async handler reads it with
    /// `Request::body_stream` (a sync one gets it whole, as on the host).
    #[cfg(edgefn_async)]
    pub fn body_chunks<I, C>(mut self, chunks: I) -> Self
    where
        I: IntoIterator<Item = C>,
        C: Into<Vec<u8>>,
    {
        self.chunks = Some(chunks.into_iter().map(Into::into).collect());
        self
    }

    /// Sets a JSON body and its content type.
    pub fn json<T: Serialize + ?Sized>(self, value: &T) -> Self {
        let body = serde_json::to_vec(value).expect("test value serializes as JSON");
        self.header("content-type", "application/json").body(body)
    }

    /// The request, with route parameters filled from the crate's registered routes.
    ///
    /// # Panics
    /// On an invalid method, URI or header: a broken test should fail loudly.
    pub fn build(self) -> Request {
        let request = self.builder.body(self.body).expect("valid test request");
        let params = dispatch::route_params(request.method().as_str(), request.uri().path());
        let request = Request::with_params(request, params).with_claims(self.claims);
        #[cfg(edgefn_async)]
        if let Some(chunks) = self.chunks {
            return request.with_body_stream(crate::body::BodyStream::from_chunks(chunks));
        }
        request
    }
}

impl From<TestRequest> for Request {
    fn from(test: TestRequest) -> Self {
        test.build()
    }
}

/// A `GET` request.
pub fn get(uri: &str) -> Request {
    TestRequest::new("GET", uri).build()
}

/// A `POST` request with a raw body.
pub fn post(uri: &str, body: impl Into<Vec<u8>>) -> Request {
    TestRequest::new("POST", uri).body(body).build()
}

/// A `POST` request with a JSON body.
pub fn post_json<T: Serialize + ?Sized>(uri: &str, value: &T) -> Request {
    TestRequest::new("POST", uri).json(value).build()
}

/// A request builder for anything else: other methods, headers.
pub fn request(method: &str, uri: &str) -> TestRequest {
    TestRequest::new(method, uri)
}

/// Sends a request through the component's dispatcher, exactly as the host would: routing, 404, 405, error bodies.
/// An async handler runs to its end here (and gets a body set with [`TestRequest::body_chunks`] as it arrives).
pub fn call(request: impl Into<Request>) -> Response {
    let request = request.into();
    let claims = request
        .claims()
        .map(|claims| base64::Engine::encode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, claims.to_string()));
    #[cfg(edgefn_async)]
    let body = request.body_is_unread().then(|| request.body_stream());
    #[cfg(not(edgefn_async))]
    let body = None;
    let mut inner = request.into_inner();
    // The host's way of passing claims, so `call` takes the dispatcher's path exactly.
    if let Some(value) = claims.and_then(|encoded| http::HeaderValue::try_from(encoded).ok()) {
        inner.headers_mut().insert(edgefn_manifest::record::CLAIMS_HEADER, value);
    }
    dispatch::dispatch_streamed(inner, body)
}

/// The whole body of `response`: a streamed one ([`Response::stream`], [`Response::sse`], [`Response::forward`])
/// is made here, to its end; an error that cut it short is the `Err`.
#[cfg(edgefn_async)]
pub fn read_body(response: Response) -> crate::Result<Vec<u8>> {
    use crate::response::{Outgoing, Streamed};
    let (_parts, body) = response.into_outgoing();
    let streamed = match body {
        Outgoing::Bytes(bytes) => return Ok(bytes),
        Outgoing::Streamed(streamed) => streamed,
    };
    crate::rt::block_on(async move {
        let (mut writer, reader) = crate::body::BodyWriter::channel(16);
        let produce = async move {
            match streamed {
                Streamed::Writer(write) => write(writer).await,
                Streamed::Sse { handler, keep_alive } => {
                    let (events, frames) = crate::sse::channel();
                    let (outcome, ()) =
                        futures::join!(handler(events), crate::sse::pump(frames, &mut writer, keep_alive));
                    outcome
                }
                Streamed::Forward(mut stream) => {
                    while let Some(chunk) = stream.next().await {
                        writer.write(chunk?).await?;
                    }
                    Ok(())
                }
            }
        };
        let (produced, read) = futures::join!(produce, reader.bytes());
        produced?;
        read
    })
}

/// The events of a [`Response::sse`] response, as a browser would parse them, once the handler is done.
#[cfg(edgefn_async)]
pub fn sse_events(response: Response) -> crate::Result<Vec<crate::sse::Event>> {
    let wire = read_body(response)?;
    Ok(crate::sse::Event::parse_all(&String::from_utf8_lossy(&wire)))
}

/// A batch of messages with these bodies, as a queue consumer would receive it (first delivery, ids `1`, `2`, ...).
pub fn batch<T: Serialize + crate::queue::MessageBody>(bodies: &[T]) -> crate::Batch<T> {
    let raw = bodies
        .iter()
        .enumerate()
        .map(|(index, body)| crate::queue::RawMessage {
            id: (index + 1).to_string(),
            body: serde_json::to_vec(body).expect("a test message body serializes"),
            attempts: 1,
            priority: 0,
            enqueued_at_ms: 0,
            correlation_id: String::new(),
        })
        .collect();
    crate::Batch::decode("test".to_owned(), raw)
}

#[cfg(not(target_family = "wasm"))]
pub use crate::host::imp::Sent;

/// Takes what the functions of this thread sent to queues and published to topics so far.
#[cfg(not(target_family = "wasm"))]
pub fn outbox() -> Vec<Sent> {
    crate::host::imp::OUTBOX.with(|outbox| std::mem::take(&mut *outbox.borrow_mut()))
}

/// Takes the messages settled on this thread so far (acked, retried or dead-lettered), by id.
#[cfg(not(target_family = "wasm"))]
pub fn settlements() -> Vec<(String, crate::queue::Settled)> {
    crate::host::imp::SETTLED.with(|settled| std::mem::take(&mut *settled.borrow_mut()))
}

#[cfg(not(target_family = "wasm"))]
pub use crate::trace::imp::FinishedSpan;

/// Takes the spans (`edgefn::trace::span`) finished on this thread so far, in the order they closed.
#[cfg(not(target_family = "wasm"))]
pub fn spans() -> Vec<FinishedSpan> {
    crate::trace::imp::FINISHED.with(|finished| std::mem::take(&mut *finished.borrow_mut()))
}

/// Empties this thread's in-memory key-value stores (what [`crate::kv::Store`] uses natively).
#[cfg(not(target_family = "wasm"))]
pub fn kv_clear() {
    crate::kv::imp::STORES.with(|stores| *stores.borrow_mut() = Default::default());
}

#[cfg(not(target_family = "wasm"))]
/// Empties every object bucket of this thread (natively, `edgefn::objects` keeps them in memory per thread).
pub fn objects_clear() {
    crate::objects::imp::clear();
}

/// The records put to `stream` on this thread so far, as (partition key, body) in put order (natively,
/// `edgefn::stream` keeps them in memory per thread).
#[cfg(not(target_family = "wasm"))]
pub fn stream_records(stream: &str) -> Vec<(String, Vec<u8>)> {
    crate::stream::imp::STREAMS.with(|streams| streams.borrow().get(stream).cloned().unwrap_or_default())
}

/// What this thread's functions sent over WebSockets so far, as (connection id, bytes) in order (natively,
/// `edgefn::websocket` keeps them in memory per thread).
#[cfg(not(target_family = "wasm"))]
pub fn websocket_sent() -> Vec<(String, Vec<u8>)> {
    crate::websocket::sent()
}
