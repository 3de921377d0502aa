//! Ordered streams: the host side of `edgefn:function/streams` over the embedded store
//! ([`crate::storage::streams`]), and the wake-ups that tell a stream's consumers a record arrived.
//!
//! Puts count against the invocation's send allowance (`limits.max_sends_per_invocation`,
//! `max_send_bytes_per_invocation`), as sends and publishes do; a record's size is bounded by
//! `limits.max_message_bytes`; what a stream keeps is bounded by its `max_mb` and `retention_hours`.

use crate::capabilities::bindings::p2::edgefn::function::streams as wit;
use crate::capabilities::invoke::Caller;
use crate::capabilities::messaging::SendAllowance;
use crate::capabilities::unavailable;
use crate::storage::StorageError;
use crate::storage::backends::streams::StreamStore;
use crate::storage::streams::{Position, StreamRefusal};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use tokio::sync::Notify;
use wasmtime::component::{HasData, Linker};

/// The most records one put carries.
pub const MAX_RECORDS_PER_PUT: usize = 1_000;

/// Why a put failed.
#[derive(Debug, thiserror::Error)]
pub enum StreamError {
    #[error("{0}")]
    Refused(#[from] StreamRefusal),
    #[error("{count} records in one put to stream `{stream}`; the most is {MAX_RECORDS_PER_PUT}")]
    TooMany { stream: String, count: usize },
    #[error("failed to put to stream `{stream}`: {source}")]
    Storage {
        stream: String,
        #[source]
        source: Box<StorageError>,
    },
}

/// The node's streams: what functions, the admin API and the stream trigger share.
#[derive(Debug)]
pub struct Streams {
    pub db: StreamStore,
    /// One wake-up per stream, notified after each put (on a cluster, also after each put on another node).
    wakers: Mutex<HashMap<String, Arc<Notify>>>,
}

impl Streams {
    pub fn new(db: StreamStore) -> Self {
        Self { db, wakers: Mutex::default() }
    }

    /// Notified (every waiter) after each put to `stream`.
    pub fn waker(&self, stream: &str) -> Arc<Notify> {
        let mut wakers = self.wakers.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(waker) = wakers.get(stream) {
            return waker.clone();
        }
        let waker = Arc::new(Notify::new());
        self.db.forward_wakes(stream, waker.clone());
        wakers.insert(stream.to_owned(), waker.clone());
        waker
    }

    /// Appends `records` to `stream`, all or none, and wakes its consumers.
    pub async fn put(
        &self,
        stream: &str,
        records: Vec<(String, Vec<u8>)>,
        correlation_id: Option<String>,
    ) -> Result<Vec<Position>, StreamError> {
        if records.len() > MAX_RECORDS_PER_PUT {
            return Err(StreamError::TooMany { stream: stream.to_owned(), count: records.len() });
        }
        let stored = self.db.put(stream, records, correlation_id).await;
        let positions =
            stored.map_err(|source| StreamError::Storage { stream: stream.to_owned(), source: Box::new(source) })??;
        self.waker(stream).notify_waiters();
        Ok(positions)
    }
}

/// Sweeps every stream's expired records once a minute.
pub fn spawn_sweeper(streams: Arc<Streams>) {
    tokio::spawn(async move {
        let mut every = tokio::time::interval(std::time::Duration::from_secs(60));
        loop {
            every.tick().await;
            match streams.db.sweep().await {
                Ok(0) => {}
                Ok(removed) => tracing::info!(records = removed, "swept stream records past their retention"),
                Err(error) => {
                    tracing::warn!(%error, "failed to sweep expired stream records; trying again in a minute")
                }
            }
        }
    });
}

/// What the stream imports of one invocation act on, borrowed from its store.
pub struct StreamsView<'a> {
    /// The streams; `None` where there are none yet (a component's init at deploy).
    pub streams: Option<&'a Arc<Streams>>,
    /// Who puts, and the work it does (each record carries that correlation id).
    pub caller: &'a Caller,
    /// What it may still send.
    pub sends: &'a mut SendAllowance,
}

impl std::fmt::Debug for StreamsView<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StreamsView").field("caller", &self.caller).finish_non_exhaustive()
    }
}

/// The [`HasData`] of the stream imports.
#[derive(Debug)]
pub struct StreamsHost;

impl HasData for StreamsHost {
    type Data<'a> = StreamsView<'a>;
}

/// Links `edgefn:function/streams`, each call getting its view of the store's data from `view`.
pub fn add_to_linker<T: Send + 'static>(
    linker: &mut Linker<T>,
    view: fn(&mut T) -> StreamsView<'_>,
) -> wasmtime::Result<()> {
    wit::add_to_linker::<T, StreamsHost>(linker, view)
}

impl StreamsView<'_> {
    async fn put_records(
        &mut self,
        stream: String,
        records: Vec<(String, Vec<u8>)>,
    ) -> Result<Vec<wit::Position>, String> {
        let streams = self.streams.cloned().ok_or_else(|| {
            format!("{}; nor on a cluster yet (streams are SQLite on one node)", unavailable("stream put"))
        })?;
        if records.len() > MAX_RECORDS_PER_PUT {
            return Err(StreamError::TooMany { stream, count: records.len() }.to_string());
        }
        // The whole put counts against the allowance before anything is stored; a refusal stores nothing.
        let mut allowance = *self.sends;
        for (key, body) in &records {
            allowance.take(key.len() + body.len()).inspect_err(|error| {
                tracing::warn!(function = ?self.caller.chain.last(), %stream, "a stream put was refused: {error}");
            })?;
        }
        let correlation_id = (!self.caller.correlation_id.is_empty()).then(|| self.caller.correlation_id.to_string());
        let positions = streams.put(&stream, records, correlation_id).await.map_err(|e| e.to_string())?;
        *self.sends = allowance;
        Ok(positions.into_iter().map(|p| wit::Position { shard: p.shard, sequence: p.seq }).collect())
    }
}

impl wit::Host for StreamsView<'_> {
    async fn put(&mut self, stream: String, partition_key: String, body: Vec<u8>) -> Result<wit::Position, String> {
        let mut positions = self.put_records(stream, vec![(partition_key, body)]).await?;
        positions.pop().ok_or_else(|| "the stream stored no record".to_owned())
    }

    async fn put_batch(
        &mut self,
        stream: String,
        records: Vec<(String, Vec<u8>)>,
    ) -> Result<Vec<wit::Position>, String> {
        self.put_records(stream, records).await
    }
}
