//! Moving object bytes over HTTP, for the signed URLs (`triggers::http`) and the admin API alike: a request body
//! streamed into an upload in batches written off the async threads, a file streamed out as a response body in
//! chunks read off them, and `Range` headers.

use crate::storage::StorageError;
use crate::storage::objects::{ObjectInfo, Upload};
use axum::body::Body;
use http_body_util::BodyExt as _;
use std::sync::Arc;
use std::time::Duration;

/// Bytes gathered before one write to the object's file.
const WRITE_BATCH: usize = 1 << 20;
/// Bytes read from the file per chunk of a download.
const READ_CHUNK: u64 = 256 << 10;

/// Why an upload's body was not all stored.
#[derive(Debug)]
pub enum Received {
    TooLarge(u64),
    Client(String),
    Storage(StorageError),
}

/// Streams `body` into `upload`, in batches written off the async threads; the upload (not yet stored), or why not.
pub async fn receive(mut upload: Upload, mut body: Body, idle: Duration) -> Result<Upload, Received> {
    let mut batch = Vec::with_capacity(WRITE_BATCH);
    loop {
        let frame = match tokio::time::timeout(idle, body.frame()).await {
            Err(_quiet) => return Err(Received::Client(format!("the upload was quiet for {} ms", idle.as_millis()))),
            Ok(None) => None,
            Ok(Some(Err(error))) => return Err(Received::Client(format!("the upload failed: {error}"))),
            Ok(Some(Ok(frame))) => Some(frame),
        };
        let last = frame.is_none();
        if let Some(data) = frame.as_ref().and_then(|f| f.data_ref()) {
            batch.extend_from_slice(data);
        }
        if batch.len() >= WRITE_BATCH || (last && !batch.is_empty()) {
            let chunk = std::mem::replace(&mut batch, Vec::with_capacity(WRITE_BATCH));
            let (returned, written) = tokio::task::spawn_blocking(move || {
                let written = upload.write(&chunk);
                (upload, written)
            })
            .await
            .map_err(|join| Received::Storage(StorageError::Task(join.to_string())))?;
            upload = returned;
            match written {
                Ok(Ok(())) => {}
                Ok(Err(_refusal)) => return Err(Received::TooLarge(upload.written())),
                Err(error) => return Err(Received::Storage(error)),
            }
        }
        if last {
            return Ok(upload);
        }
    }
}

/// The bytes `start..end` of `file`, read in chunks off the async threads as the client takes them.
pub fn stream_file(info: ObjectInfo, file: std::fs::File, start: u64, end: u64) -> Body {
    let file = Arc::new(file);
    let stream = futures_util::stream::unfold(start, move |at| {
        let file = file.clone();
        let key = info.key.clone();
        async move {
            if at >= end {
                return None;
            }
            let length = READ_CHUNK.min(end - at) as usize;
            let read = tokio::task::spawn_blocking(move || {
                use std::os::unix::fs::FileExt as _;
                let mut chunk = vec![0; length];
                file.read_exact_at(&mut chunk, at).map(|()| chunk)
            })
            .await;
            match read {
                Ok(Ok(chunk)) => Some((Ok::<_, std::io::Error>(bytes::Bytes::from(chunk)), at + length as u64)),
                Ok(Err(error)) => {
                    tracing::warn!(%error, %key, "reading an object for a download failed");
                    Some((Err(error), end))
                }
                Err(join) => Some((Err(std::io::Error::other(join.to_string())), end)),
            }
        }
    });
    Body::from_stream(stream)
}

/// A `Range` that lies outside the object (416).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Unsatisfiable;

/// One `bytes=` range of an object of `size` bytes, as `start..end`; `Ok(None)` for a header this does not
/// serve as a range (several ranges: the whole object, as RFC 9110 allows); `Err` when it is unsatisfiable.
pub fn parse_range(text: &str, size: u64) -> Result<Option<(u64, u64)>, Unsatisfiable> {
    // RFC 9110: a Range header that does not parse is ignored (the whole object), and so are several ranges.
    let Some(spec) = text.trim().strip_prefix("bytes=") else { return Ok(None) };
    if spec.contains(',') {
        return Ok(None);
    }
    let Some((first, last)) = spec.split_once('-') else { return Ok(None) };
    let (first, last) = (first.trim(), last.trim());
    if first.is_empty() {
        let Ok(suffix) = last.parse::<u64>() else { return Ok(None) };
        if suffix == 0 || size == 0 {
            return Err(Unsatisfiable);
        }
        return Ok(Some((size.saturating_sub(suffix), size)));
    }
    let Ok(start) = first.parse::<u64>() else { return Ok(None) };
    let end = if last.is_empty() {
        size
    } else {
        match last.parse::<u64>() {
            Ok(last) if last >= start => last.saturating_add(1).min(size),
            _ => return Ok(None),
        }
    };
    if start >= size { Err(Unsatisfiable) } else { Ok(Some((start, end))) }
}

#[cfg(test)]
mod tests {
    use super::{Unsatisfiable, parse_range};

    #[test]
    fn ranges_are_parsed_as_rfc_9110_says() {
        assert_eq!(parse_range("bytes=0-9", 100), Ok(Some((0, 10))));
        assert_eq!(parse_range("bytes=90-", 100), Ok(Some((90, 100))));
        assert_eq!(parse_range("bytes=-5", 100), Ok(Some((95, 100))));
        assert_eq!(parse_range("bytes=50-500", 100), Ok(Some((50, 100))));
        assert_eq!(parse_range("bytes=100-", 100), Err(Unsatisfiable));
        assert_eq!(parse_range("bytes=0-1,5-6", 100), Ok(None));
        assert_eq!(parse_range("items=0-1", 100), Ok(None));
        // Invalid specs are ignored, not refused.
        assert_eq!(parse_range("bytes=5-3", 100), Ok(None));
        assert_eq!(parse_range("bytes=abc-", 100), Ok(None));
    }
}
