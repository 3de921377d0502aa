//! A test guest for ordered streams, its findings in key-value store `seen`:
//!
//! - `feed` (invoke) puts `count` records from `from` to a stream in one batch: record `i` has key `k{i % keys}` and
//!   is that key's record number `i / keys + 1`, so each key's numbers count up from 1 in put order;
//! - `ordered` consumes stream `clicks` and checks each key's numbers arrive in order: a number at most the last
//!   one seen is a redelivery (at least once), the next one moves on, and anything else is a violation, recorded;
//!   `complete` counts keys that reached `expect` (the number the test feeds each key);
//! - `strict` consumes stream `poison` and fails any batch holding a poison record; `failed` consumes its
//!   on-failure queue `poison-failed`;
//! - `tally_a` and `tally_b` both consume stream `tally`, counting records (and keeping the partition keys seen).

use edgefn::kv::Store;
use edgefn::prelude::*;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Rec {
    key: String,
    number: u64,
    #[serde(default)]
    poison: bool,
}

#[derive(Debug, Deserialize)]
struct Feed {
    stream: String,
    from: u64,
    count: u64,
    keys: u64,
    #[serde(default)]
    poison: Vec<u64>,
}

fn seen() -> Result<Store> {
    Store::open("seen")
}

// ANCHOR: feed
#[function(trigger = invoke)]
fn feed(feed: Feed) -> Result<u64> {
    let records: Vec<(String, Rec)> = (feed.from..feed.from + feed.count)
        .map(|i| {
            let key = format!("k{}", i % feed.keys);
            (key.clone(), Rec { key, number: i / feed.keys + 1, poison: feed.poison.contains(&i) })
        })
        .collect();
    let positions = edgefn::stream::put_batch(&feed.stream, &records)?;
    Ok(positions.len() as u64)
}
// ANCHOR_END: feed

// ANCHOR: ordered
#[function(trigger = stream("clicks", batch_size = 100, max_wait_ms = 50, start = "oldest"))]
fn ordered(batch: Batch<Rec>) -> Result<()> {
    let seen = seen()?;
    let expect: u64 = seen.get_json("expect")?.unwrap_or(u64::MAX);
    for message in batch.iter() {
        let record = message.body();
        let last_key = format!("last/{}", record.key);
        let last: u64 = seen.get_json(&last_key)?.unwrap_or(0);
        if record.number <= last {
            continue; // delivered again after a crash: at least once
        }
        if record.number != last + 1 {
            seen.add("violations", 1)?;
            seen.set(&format!("violation/{}", record.key), format!("{last} then {}", record.number))?;
        }
        seen.set_json(&last_key, &record.number)?;
        if record.number == expect {
            seen.add("complete", 1)?;
        }
    }
    Ok(())
}
// ANCHOR_END: ordered

#[function(trigger = stream("poison", batch_size = 10, max_wait_ms = 20, start = "oldest", max_retries = 2, backoff_ms = 20, on_failure = "poison-failed"))]
fn strict(batch: Batch<Rec>) -> Result<()> {
    if let Some(poison) = batch.iter().find(|m| m.body().poison) {
        return Err(Error::internal(format!("record {} is poison", poison.body().number)));
    }
    let seen = seen()?;
    for message in batch.iter() {
        seen.set(&format!("strict/{}/{}", message.body().key, message.body().number), "ok")?;
    }
    Ok(())
}

#[function(trigger = queue("poison-failed"))]
fn failed(batch: Batch<Rec>) -> Result<()> {
    let seen = seen()?;
    for message in batch.iter() {
        seen.set(&format!("failed/{}/{}", message.body().key, message.body().number), "ok")?;
    }
    Ok(())
}

fn tally(name: &str, batch: &Batch<Rec>) -> Result<()> {
    let seen = seen()?;
    for message in batch.iter() {
        let key = message.partition_key().unwrap_or("none");
        if key != message.body().key {
            return Err(Error::internal(format!("partition key {key} for a record of {}", message.body().key)));
        }
    }
    seen.add(name, batch.len() as i64)?;
    Ok(())
}

#[function(trigger = stream("tally", batch_size = 10, max_wait_ms = 20, start = "oldest"))]
fn tally_a(batch: Batch<Rec>) -> Result<()> {
    tally("tally_a", &batch)
}

#[function(trigger = stream("tally", batch_size = 10, max_wait_ms = 20, start = "oldest"))]
fn tally_b(batch: Batch<Rec>) -> Result<()> {
    tally("tally_b", &batch)
}
