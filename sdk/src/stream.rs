//! Ordered streams: append records with a partition key ([`put`], [`put_batch`]) and consume them in order per key
//! with `#[function(trigger = stream("clicks", batch_size = 100, start = "oldest"))] fn count(batch:
//! Batch<Click>) -> Result<()>`.
//!
//! ```no_run
//! # #[derive(serde::Serialize)] struct Click { user: String }
//! # fn run() -> edgefn::Result<()> {
//! let at = edgefn::stream::put("clicks", "user-17", &Click { user: "user-17".into() })?;
//! println!("stored in shard {} at {}", at.shard, at.sequence);
//! # Ok(()) }
//! ```
//!
//! A stream has a fixed number of shards (the host's `[streams.NAME] shards`); a key always lands in the same
//! shard, so the records of one key arrive in put order. Each consumer function reads every shard, one batch in
//! flight per shard, and the host checkpoints a shard after the batch succeeds. When the function returns `Err`
//! (or traps, or times out), the batch is retried; with `bisect` (the default) it is split in halves to find the
//! record that fails. A record that still fails after `max_retries`, or that a function dead-letters
//! ([`crate::Message::dead_letter`]), goes to the on-failure queue (`<stream>-failed` unless `on_failure` names
//! one) and the shard moves on. [`crate::Message::retry`] of a record retries from that record: the ones before it
//! are checkpointed.
//!
//! Natively (unit tests), a stream is an in-memory list per thread: [`crate::testing::stream_records`] reads it.

use crate::{Error, Result};
use serde::Serialize;

/// The most records one [`put_batch`] stores.
pub const MAX_BATCH: usize = 1_000;

/// Where a record was stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Position {
    /// The shard its key maps to.
    pub shard: u32,
    /// Its sequence number in the shard: increasing, never reused.
    pub sequence: u64,
}

/// Appends `value` as JSON with `partition_key` to `stream`; durable when this returns.
pub fn put<T: Serialize + ?Sized>(stream: &str, partition_key: &str, value: &T) -> Result<Position> {
    put_bytes(stream, partition_key, encode(value)?)
}

/// Appends raw bytes (consume them with `Batch<Raw>`).
pub fn put_bytes(stream: &str, partition_key: &str, body: Vec<u8>) -> Result<Position> {
    imp::put(stream, partition_key, body)
}

/// Appends `(partition key, value)` records as JSON in one transaction: all are stored, in this order, or none.
pub fn put_batch<K: AsRef<str>, T: Serialize>(stream: &str, records: &[(K, T)]) -> Result<Vec<Position>> {
    if records.len() > MAX_BATCH {
        return Err(Error::bad_request(format!("{} records in one put_batch; the most is {MAX_BATCH}", records.len())));
    }
    let encoded =
        records.iter().map(|(key, value)| Ok((key.as_ref().to_owned(), encode(value)?))).collect::<Result<Vec<_>>>()?;
    imp::put_batch(stream, encoded)
}

fn encode<T: Serialize + ?Sized>(value: &T) -> Result<Vec<u8>> {
    serde_json::to_vec(value).map_err(|e| Error::internal(format!("failed to encode the stream record: {e}")))
}

#[cfg(target_family = "wasm")]
mod imp {
    use super::Position;
    use crate::abi::bindings::edgefn::function::streams;
    use crate::{Error, Result};

    fn position(position: streams::Position) -> Position {
        Position { shard: position.shard, sequence: position.sequence }
    }

    pub(super) fn put(stream: &str, key: &str, body: Vec<u8>) -> Result<Position> {
        streams::put(stream, key, &body).map(position).map_err(Error::internal)
    }

    pub(super) fn put_batch(stream: &str, records: Vec<(String, Vec<u8>)>) -> Result<Vec<Position>> {
        let positions = streams::put_batch(stream, &records).map_err(Error::internal)?;
        Ok(positions.into_iter().map(position).collect())
    }
}

/// Natively: one in-memory list per stream and thread, in one shard, so unit tests of producers run without a host.
#[cfg(not(target_family = "wasm"))]
pub(crate) mod imp {
    use super::Position;
    use crate::Result;
    use std::cell::RefCell;
    use std::collections::BTreeMap;

    /// A stream's records: (partition key, body), in put order.
    pub(crate) type Records = Vec<(String, Vec<u8>)>;

    thread_local! {
        pub(crate) static STREAMS: RefCell<BTreeMap<String, Records>> = RefCell::default();
    }

    pub(super) fn put(stream: &str, key: &str, body: Vec<u8>) -> Result<Position> {
        Ok(put_batch(stream, vec![(key.to_owned(), body)])?[0])
    }

    pub(super) fn put_batch(stream: &str, records: Vec<(String, Vec<u8>)>) -> Result<Vec<Position>> {
        STREAMS.with(|streams| {
            let mut streams = streams.borrow_mut();
            let list = streams.entry(stream.to_owned()).or_default();
            let first = list.len() as u64 + 1;
            let count = records.len() as u64;
            list.extend(records);
            Ok((first..first + count).map(|sequence| Position { shard: 0, sequence }).collect())
        })
    }
}
