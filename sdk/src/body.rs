//! Bodies that arrive or leave in pieces: [`BodyStream`] (a request body read as it arrives, or a fetched response
//! body) and [`BodyWriter`] (a response body written as it is made).
//!
//! In a WASI 0.3 component both are the component model's `stream<u8>`: reading waits for the client, writing waits
//! for the client to take what was written (so a slow client slows the writer down, and nothing piles up in
//! memory). Natively (unit tests) they are in-memory chunks and a channel.

use crate::Error;
use std::collections::VecDeque;

/// The error a writer gets once nobody reads what it writes: the client hung up.
pub(crate) fn client_gone() -> Error {
    Error::new(499, "the client went away: the response body is no longer read")
}

/// A body read chunk by chunk as it arrives: `while let Some(chunk) = body.next().await { let chunk = chunk?; .. }`.
///
/// A request body over the host's `max_body_bytes` ends with an error (a 413 when returned with `?`), whatever
/// was read before it.
pub struct BodyStream {
    source: Source,
    /// Bytes handed out so far.
    read: u64,
}

enum Source {
    /// Whole already: handed out as one chunk.
    Bytes(Option<Vec<u8>>),
    /// In-memory chunks (native tests).
    Chunks(VecDeque<Vec<u8>>),
    /// What a [`BodyWriter`] writes, natively.
    Channel(futures::channel::mpsc::Receiver<Result<Vec<u8>, Error>>),
    #[cfg(edgefn_p3)]
    Wasi(crate::abi::body::Incoming),
}

impl std::fmt::Debug for BodyStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kind = match &self.source {
            Source::Bytes(_) => "bytes",
            Source::Chunks(_) => "chunks",
            Source::Channel(_) => "channel",
            #[cfg(edgefn_p3)]
            Source::Wasi(_) => "wasi stream",
        };
        f.debug_struct("BodyStream").field("source", &kind).field("read", &self.read).finish()
    }
}

impl BodyStream {
    /// A body that is all here already.
    pub fn from_bytes(bytes: impl Into<Vec<u8>>) -> Self {
        Self { source: Source::Bytes(Some(bytes.into())), read: 0 }
    }

    /// A body that arrives in these chunks (for tests: the chunks are handed out one by one, as a client would
    /// send them).
    pub fn from_chunks<I, C>(chunks: I) -> Self
    where
        I: IntoIterator<Item = C>,
        C: Into<Vec<u8>>,
    {
        Self { source: Source::Chunks(chunks.into_iter().map(Into::into).collect()), read: 0 }
    }

    #[cfg(edgefn_p3)]
    pub(crate) fn wasi(incoming: crate::abi::body::Incoming) -> Self {
        Self { source: Source::Wasi(incoming), read: 0 }
    }

    /// The next chunk, `None` at the end. An error ends the body: a client that stopped sending in the middle, a
    /// body over the host's limit.
    pub async fn next(&mut self) -> Option<Result<Vec<u8>, Error>> {
        let chunk = match &mut self.source {
            Source::Bytes(bytes) => bytes.take().filter(|b| !b.is_empty()).map(Ok),
            Source::Chunks(chunks) => chunks.pop_front().map(Ok),
            Source::Channel(receiver) => futures::StreamExt::next(receiver).await,
            #[cfg(edgefn_p3)]
            Source::Wasi(incoming) => incoming.next().await,
        };
        if let Some(Ok(chunk)) = &chunk {
            self.read += chunk.len() as u64;
        }
        chunk
    }

    /// Bytes handed out so far.
    pub fn bytes_read(&self) -> u64 {
        self.read
    }

    /// Everything that is left, in one piece.
    pub async fn bytes(mut self) -> Result<Vec<u8>, Error> {
        if let Source::Bytes(bytes) = &mut self.source {
            return Ok(bytes.take().unwrap_or_default());
        }
        let mut all = Vec::new();
        while let Some(chunk) = self.next().await {
            all.extend_from_slice(&chunk?);
        }
        Ok(all)
    }

    /// Everything that is left, as UTF-8 text; invalid UTF-8 is a 400.
    pub async fn text(self) -> Result<String, Error> {
        String::from_utf8(self.bytes().await?)
            .map_err(|e| Error::bad_request(format!("the body is not valid UTF-8: {e}")))
    }

    /// The WASI stream behind this body, if it is one: handed to a response unread, the host forwards it without
    /// the guest touching a byte.
    #[cfg(edgefn_p3)]
    pub(crate) fn into_wasi(self) -> Result<crate::abi::body::Incoming, Self> {
        match self.source {
            Source::Wasi(incoming) if self.read == 0 => Ok(incoming),
            source => Err(Self { source, read: self.read }),
        }
    }
}

/// Where a streamed response body is written: `body.write("chunk").await?`. Each write waits until the client has
/// room for it; once the client has gone, writes fail (and `?` ends the function's work there).
pub struct BodyWriter {
    sink: Sink,
    written: u64,
}

enum Sink {
    /// Natively: into a channel a test reads.
    Channel(futures::channel::mpsc::Sender<Result<Vec<u8>, Error>>),
    #[cfg(edgefn_p3)]
    Wasi(crate::abi::body::Outgoing),
}

impl std::fmt::Debug for BodyWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BodyWriter").field("written", &self.written).finish_non_exhaustive()
    }
}

impl BodyWriter {
    /// A writer and the body a reader takes from it, through a channel of `capacity` chunks. Its sender end is
    /// returned too, to end the body with an error (what a failed writer does).
    pub(crate) fn channel(capacity: usize) -> (Self, BodyStream) {
        let (sender, receiver) = futures::channel::mpsc::channel(capacity);
        let writer = Self { sink: Sink::Channel(sender), written: 0 };
        (writer, BodyStream { source: Source::Channel(receiver), read: 0 })
    }

    #[cfg(edgefn_p3)]
    pub(crate) fn wasi(outgoing: crate::abi::body::Outgoing) -> Self {
        Self { sink: Sink::Wasi(outgoing), written: 0 }
    }

    /// Writes `bytes`, waiting until the client has taken them in (or has room for them). Fails once the client has
    /// gone.
    pub async fn write(&mut self, bytes: impl Into<Vec<u8>>) -> Result<(), Error> {
        let bytes = bytes.into();
        if bytes.is_empty() {
            return Ok(());
        }
        let len = bytes.len() as u64;
        match &mut self.sink {
            Sink::Channel(sender) => {
                futures::SinkExt::send(sender, Ok(bytes)).await.map_err(|_| client_gone())?;
            }
            #[cfg(edgefn_p3)]
            Sink::Wasi(outgoing) => outgoing.write(bytes).await?,
        }
        self.written += len;
        Ok(())
    }

    /// Bytes written so far.
    pub fn bytes_written(&self) -> u64 {
        self.written
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rt::block_on;

    #[test]
    fn a_stream_hands_out_its_chunks_in_order_and_counts_them() {
        let mut body = BodyStream::from_chunks(["ab", "cd", "e"]);
        let mut seen = Vec::new();
        block_on(async {
            while let Some(chunk) = body.next().await {
                seen.push(String::from_utf8(chunk.expect("chunk")).expect("utf-8"));
            }
        });
        assert_eq!(seen, ["ab", "cd", "e"]);
        assert_eq!(body.bytes_read(), 5);
    }

    #[test]
    fn what_a_writer_writes_arrives_at_its_reader() {
        let (mut writer, body) = BodyWriter::channel(4);
        block_on(async {
            writer.write("hello ").await.expect("write");
            writer.write(String::from("world")).await.expect("write");
        });
        drop(writer);
        assert_eq!(block_on(body.bytes()).expect("body"), b"hello world");
    }

    #[test]
    fn a_writer_whose_reader_has_gone_fails() {
        let (mut writer, body) = BodyWriter::channel(1);
        drop(body);
        let error = block_on(writer.write("nobody reads this")).expect_err("the reader is gone");
        assert_eq!(error.status(), 499);
    }
}
