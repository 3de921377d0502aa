//! Bodies as `stream<u8>`: [`Incoming`] reads one (a request body, a fetched response body), [`Outgoing`] writes
//! one (a response body). Each read and write waits for the other side, so a slow client slows the writer and
//! nothing piles up in the component's memory.

use crate::Error;
use wasip3::http::types::{ErrorCode, Fields};
use wasip3::wit_bindgen::{FutureReader, StreamReader, StreamResult, StreamWriter};

/// The most one read takes at once.
const READ_CHUNK: usize = 64 << 10;

/// The trailers future every `wasi:http` body carries; its `Err` says the body did not arrive whole.
pub(crate) type Trailers = FutureReader<Result<Option<Fields>, ErrorCode>>;

/// A body arriving as a `stream<u8>`, and the future that says how it ended.
pub(crate) struct Incoming {
    reader: Option<StreamReader<u8>>,
    trailers: Option<Trailers>,
}

impl Incoming {
    pub(crate) fn new(reader: StreamReader<u8>, trailers: Trailers) -> Self {
        Self { reader: Some(reader), trailers: Some(trailers) }
    }

    /// The stream and its trailers, unread: passed on whole to a response, which the host then pipes itself.
    pub(crate) fn into_parts(self) -> Option<(StreamReader<u8>, Trailers)> {
        Some((self.reader?, self.trailers?))
    }

    /// The next chunk; `None` once the body ended whole, an error when it did not.
    pub(crate) async fn next(&mut self) -> Option<Result<Vec<u8>, Error>> {
        let reader = self.reader.as_mut()?;
        loop {
            let (result, chunk) = reader.read(Vec::with_capacity(READ_CHUNK)).await;
            match result {
                StreamResult::Complete(_) if chunk.is_empty() => continue,
                StreamResult::Complete(_) => return Some(Ok(chunk)),
                StreamResult::Dropped | StreamResult::Cancelled => break,
            }
        }
        // The writer is done: its trailers say whether the body arrived whole.
        self.reader = None;
        match self.trailers.take()?.await {
            Ok(_) => None,
            Err(code) => Some(Err(body_error(code))),
        }
    }
}

/// What a body that ended with `code` means to the function.
pub(crate) fn body_error(code: ErrorCode) -> Error {
    match code {
        ErrorCode::HttpRequestBodySize(limit) => Error::new(
            413,
            match limit {
                Some(bytes) => format!("the request body is larger than this host's max_body_bytes ({bytes} bytes)"),
                None => "the request body is larger than this host's max_body_bytes".to_owned(),
            },
        ),
        ErrorCode::HttpResponseBodySize(_) => {
            Error::new(502, "the fetched response body is not the length its content-length says")
        }
        other => Error::new(400, format!("the body did not arrive whole: {other:?}")),
    }
}

/// A response body being written as a `stream<u8>`.
pub(crate) struct Outgoing {
    writer: StreamWriter<u8>,
}

impl Outgoing {
    pub(crate) fn new(writer: StreamWriter<u8>) -> Self {
        Self { writer }
    }

    /// Writes all of `bytes`, waiting for the client to take them; an error once the client has gone.
    pub(crate) async fn write(&mut self, bytes: Vec<u8>) -> Result<(), Error> {
        let left = self.writer.write_all(bytes).await;
        if left.is_empty() { Ok(()) } else { Err(crate::body::client_gone()) }
    }
}
