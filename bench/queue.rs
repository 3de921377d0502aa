//! Issue 3, section 7: queue throughput end to end and enqueue-to-handler latency, in process, on a real SQLite
//! file; a raw SQLite insert+delete loop on the same database settings, in the same run, is the ceiling.
//!
//! ```sh
//! cargo build --release --target wasm32-wasip2 -p bench-sink
//! cargo bench -p edgefn-host --bench queue
//! ```
//!
//! `bench-sink` (tests/guests/bench-sink) has no-op consumers (concurrency 4) of `batch1`, `batch10` and `batch100`: each acks its
//! whole batch by returning `Ok`. Throughput counts from the first send until every message is acked: enqueue
//! (through `Queues::send_many`, 1,000 per transaction, as the admin API's bulk send does), lease, invoke, settle.

#[path = "support.rs"]
mod support;

use edgefn_host::storage::queue::NewMessage;
use std::path::Path;
use std::time::{Duration, Instant};

const MESSAGES: usize = 50_000;

fn main() {
    let bench = support::start();
    let (queues, consumers) = (&bench.node.queues, &bench.node.queue_trigger);
    let send = |queue: &str, messages: Vec<NewMessage>| {
        bench.tokio.block_on(queues.send_many(queue, messages)).expect("send");
    };
    println!("raw SQLite ceiling (insert N, then delete N, transactions of B, same pragmas):");
    for batch in [1usize, 10, 100] {
        let rate = raw_sqlite(bench.data.path(), batch);
        println!("  B = {batch:>3}: {rate:>9.0} msg/s");
    }
    println!("edgefn end to end (send -> consumer -> ack), {MESSAGES} messages:");
    for (queue, batch) in [("batch1", 1), ("batch10", 10), ("batch100", 100)] {
        let started = Instant::now();
        for chunk in 0..MESSAGES / 1000 {
            let messages = (0..1000)
                .map(|n| NewMessage {
                    body: format!("{{\"n\":{}}}", chunk * 1000 + n).into_bytes(),
                    delay_ms: 0,
                    priority: 0,
                })
                .collect();
            send(queue, messages);
        }
        while consumers.acked(queue) < MESSAGES as u64 {
            std::thread::sleep(Duration::from_millis(1));
        }
        let seconds = started.elapsed().as_secs_f64();
        println!("  batch_size = {batch:>3}: {:>9.0} msg/s ({seconds:.2} s)", MESSAGES as f64 / seconds);
    }
    println!("enqueue -> ack latency, idle host, batch_size = 1, 200 sends one at a time:");
    let mut latencies = Vec::new();
    for n in 0..200 {
        let before = consumers.acked("batch1");
        let started = Instant::now();
        send("batch1", vec![NewMessage { body: format!("{{\"n\":{n}}}").into_bytes(), delay_ms: 0, priority: 0 }]);
        while consumers.acked("batch1") == before {
            std::hint::spin_loop();
        }
        latencies.push(started.elapsed());
        std::thread::sleep(Duration::from_millis(5));
    }
    latencies.sort();
    println!("  p50 {:?}  p99 {:?}", support::quantile(&latencies, 0.5), support::quantile(&latencies, 0.99));
}

fn raw_sqlite(dir: &Path, batch: usize) -> f64 {
    let db = edgefn_host::storage::Database::connect(dir).expect("connect");
    db.with_blocking(|conn| Ok(raw_sqlite_loop(conn, batch))).expect("raw loop")
}

fn raw_sqlite_loop(conn: &mut rusqlite::Connection, batch: usize) -> f64 {
    conn.execute_batch(
        "CREATE TABLE IF NOT EXISTS ceiling (id INTEGER PRIMARY KEY AUTOINCREMENT, queue TEXT, body BLOB)",
    )
    .expect("table");
    let started = Instant::now();
    let mut ids = Vec::with_capacity(MESSAGES);
    for chunk in (0..MESSAGES).collect::<Vec<_>>().chunks(batch) {
        conn.execute_batch("BEGIN").expect("begin");
        for n in chunk {
            conn.prepare_cached("INSERT INTO ceiling (queue, body) VALUES ('q', ?1)")
                .expect("prepare")
                .execute([format!("{{\"n\":{n}}}")])
                .expect("insert");
            ids.push(conn.last_insert_rowid());
        }
        conn.execute_batch("COMMIT").expect("commit");
    }
    for chunk in ids.chunks(batch) {
        conn.execute_batch("BEGIN").expect("begin");
        for id in chunk {
            conn.prepare_cached("DELETE FROM ceiling WHERE id = ?1").expect("prepare").execute([id]).expect("delete");
        }
        conn.execute_batch("COMMIT").expect("commit");
    }
    MESSAGES as f64 / started.elapsed().as_secs_f64()
}
