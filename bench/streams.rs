//! Stream figures: records per second through a stream, put to handled, with 1 and 4 shards, against a raw SQLite
//! loop doing the same durable work in the same run. In process, on a real data dir.
//!
//! ```sh
//! cargo build --release --target wasm32-wasip2 -p bench-sink
//! cargo bench -p edgefn-host --bench streams
//! ```
//!
//! - edgefn: 100,000 records (48-byte JSON bodies, 1,000 keys) put in batches of 100 by one producer task, while
//!   bench-sink's consumer (`stream_sink1` on the 1-shard stream `bench1`, `stream_sink4` on the 4-shard `bench4`;
//!   batch size 100, no batching wait) handles them: the clock runs from the first put until every record is
//!   checkpointed. Each put is one transaction (hash to shards, sequence numbers, rows); each delivery reads its
//!   batch, runs the function in a fresh instance from its snapshot, and moves the checkpoint in a transaction.
//! - raw: the same records through the same SQL shape with no host around it: in a fresh database file on the same
//!   disk (WAL, synchronous = NORMAL, as the host), a loop inserts them in transactions of 100 (hashing each key to
//!   its shard and taking the shard's next sequence, as the host does), then, shard by shard, reads them 100 at a
//!   time in sequence order and writes the checkpoint after each read. No guest call: the ratio is what the host's
//!   consumer machinery (an invocation per batch included) costs over bare SQLite.
//!
//! Median of 3 rounds each.

#[path = "support.rs"]
mod support;

use edgefn_host::config::{HostConfig, StreamConfig};
use rusqlite::params;
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

const RECORDS: u64 = 100_000;
const BATCH: u64 = 100;
const KEYS: u64 = 1_000;
const ROUNDS: usize = 3;

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

fn body(i: u64) -> Vec<u8> {
    format!(r#"{{"user":"u{:05}","page":"/p/{:06}","n":{i:06}}}"#, i % KEYS, i % 999_983).into_bytes()
}

/// The raw loop: records/s for `shards` shards.
fn raw(dir: &std::path::Path, round: usize, shards: u32) -> f64 {
    let path = dir.join(format!("raw-{shards}-{round}.db"));
    let mut conn = rusqlite::Connection::open(&path).expect("open");
    conn.pragma_update(None, "journal_mode", "WAL").expect("wal");
    conn.pragma_update(None, "synchronous", "NORMAL").expect("sync");
    conn.execute_batch(
        "CREATE TABLE records (id INTEGER PRIMARY KEY, shard INTEGER, seq INTEGER, key TEXT, body BLOB, at INTEGER);
         CREATE UNIQUE INDEX records_by_position ON records (shard, seq);
         CREATE TABLE shards (shard INTEGER PRIMARY KEY, next_seq INTEGER);
         CREATE TABLE checkpoints (shard INTEGER PRIMARY KEY, seq INTEGER);",
    )
    .expect("schema");
    for shard in 0..shards {
        conn.execute("INSERT INTO shards VALUES (?, 1)", [shard]).expect("shard");
        conn.execute("INSERT INTO checkpoints VALUES (?, 0)", [shard]).expect("checkpoint");
    }
    let started = Instant::now();
    for from in (0..RECORDS).step_by(BATCH as usize) {
        let tx = conn.transaction().expect("tx");
        let mut next: BTreeMap<u32, u64> = BTreeMap::new();
        for i in from..from + BATCH {
            let key = format!("u{:05}", i % KEYS);
            let shard = edgefn_host::storage::streams::shard_of(&key, shards);
            let seq = *next.entry(shard).or_insert_with(|| {
                tx.query_row("SELECT next_seq FROM shards WHERE shard = ?", [shard], |row| row.get(0)).expect("next")
            });
            tx.prepare_cached("INSERT INTO records (shard, seq, key, body, at) VALUES (?, ?, ?, ?, ?)")
                .expect("prepare")
                .execute(params![shard, seq, key, body(i), 0])
                .expect("insert");
            next.insert(shard, seq + 1);
        }
        for (shard, seq) in next {
            tx.execute("UPDATE shards SET next_seq = ? WHERE shard = ?", params![seq, shard]).expect("next");
        }
        tx.commit().expect("commit");
    }
    let mut read = 0u64;
    for shard in 0..shards {
        let mut checkpoint: u64 = 0;
        loop {
            let batch: Vec<(u64, Vec<u8>)> = conn
                .prepare_cached("SELECT seq, body FROM records WHERE shard = ? AND seq > ? ORDER BY seq LIMIT ?")
                .expect("prepare")
                .query_map(params![shard, checkpoint, BATCH], |row| Ok((row.get(0)?, row.get(1)?)))
                .expect("read")
                .collect::<Result<_, _>>()
                .expect("rows");
            let Some((last, _)) = batch.last() else { break };
            checkpoint = *last;
            read += batch.len() as u64;
            conn.execute("UPDATE checkpoints SET seq = ? WHERE shard = ?", params![checkpoint, shard]).expect("ckpt");
        }
    }
    assert_eq!(read, RECORDS);
    RECORDS as f64 / started.elapsed().as_secs_f64()
}

fn main() {
    let mut config = HostConfig::default();
    // Retention as large as the whole run: nothing is dropped while a round runs.
    let stream = |shards| StreamConfig { shards, retention_hours: 24, max_mb: 4096 };
    config.streams = BTreeMap::from([("bench1".to_owned(), stream(1)), ("bench4".to_owned(), stream(4))]);
    let bench = support::start_with(config);
    let streams = bench.node.streams.clone();
    let trigger = bench.node.stream_trigger.clone();
    let mut figures = Vec::new();
    for shards in [1u32, 4] {
        let name = format!("bench{shards}");
        let (mut edgefn, mut bare) = (Vec::new(), Vec::new());
        for round in 0..ROUNDS {
            let (handled_before, _) = trigger.counts();
            let started = Instant::now();
            let producer = {
                let (streams, name) = (streams.clone(), name.clone());
                bench.tokio.spawn(async move {
                    for from in (0..RECORDS).step_by(BATCH as usize) {
                        let records = (from..from + BATCH).map(|i| (format!("u{:05}", i % KEYS), body(i))).collect();
                        streams.put(&name, records, None).await.expect("put");
                    }
                })
            };
            bench.tokio.block_on(producer).expect("producer");
            let put_done = started.elapsed();
            let handled_at_put_done = trigger.counts().0 - handled_before;
            let deadline = started + Duration::from_secs(300);
            while trigger.counts().0 - handled_before < RECORDS {
                assert!(Instant::now() < deadline, "{name}: not every record was handled within 300 s");
                std::thread::sleep(Duration::from_millis(1));
            }
            let all_done = started.elapsed();
            println!(
                "  round {round}: puts done after {put_done:?} ({handled_at_put_done} handled by then), every record \
                 handled after {all_done:?}"
            );
            edgefn.push(RECORDS as f64 / all_done.as_secs_f64());
            bare.push(raw(bench.data.path(), round, shards));
        }
        let (edgefn, bare) = (median(edgefn), median(bare));
        println!("{RECORDS} records, {shards} shard(s), put in batches of {BATCH} and handled, median of {ROUNDS}:");
        println!("  raw SQLite loop (insert, read, checkpoint):   {bare:>9.0} records/s");
        println!("  edgefn stream (put, deliver to a function):   {edgefn:>9.0} records/s, {:.2}x", edgefn / bare);
        figures.push((shards, edgefn, bare));
    }
    for (shards, edgefn, bare) in figures {
        println!("figure: stream_records_per_s_{shards}_shards {edgefn:.0}");
        println!("figure: stream_vs_raw_sqlite_{shards}_shards {:.3}", edgefn / bare);
    }
}
