//! Benchmarks (f) and (g): queue throughput end to end, against a raw SQLite loop doing the same work in the same
//! run, and enqueue-to-handler latency on an idle host. In process, on a real SQLite file.
//!
//! ```sh
//! cargo build --release --target wasm32-wasip2 -p bench-sink
//! cargo bench -p edgefn-host --bench queue
//! ```
//!
//! - (f) `bench-sink` has no-op consumers (concurrency 4) of `batch1`, `batch10` and `batch100`: each acks its whole
//!   batch by returning `Ok`. Throughput counts from the first send until every message is acked: enqueue (through
//!   `Queues::send_many`, 1,000 per transaction, as the admin API's bulk send does), lease, invoke, settle. The
//!   ceiling runs the same SQL on a database with the same schema (table, indexes, size-keeping triggers), with
//!   the same transactions, on one thread with nothing else: insert in transactions of 1,000, then per batch one
//!   transaction that checks readiness and leases B messages, and one that deletes them.
//! - (g) `bench-sink`'s `latency` consumer stops the clock at its first statement: the body of each message is
//!   the wall-clock time of its send, and the consumer sends the difference to `latency_results`. The benchmark
//!   waits for each message between sends (sleeping, not spinning) and reads the results at the end.

#[path = "support.rs"]
mod support;

use edgefn_host::storage::backends::{BatchPolicy, NewMessage};
use rusqlite::params;
use std::path::Path;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

const MESSAGES: usize = 50_000;

fn main() {
    let bench = support::start();
    let (queues, consumers) = (&bench.node.queues, &bench.node.queue_trigger);
    let send = |queue: &str, messages: Vec<NewMessage>| {
        bench.tokio.block_on(queues.send_many(queue, messages)).expect("send");
    };
    let message = |body: String| NewMessage {
        body: body.into_bytes(),
        delay_ms: 0,
        priority: 0,
        correlation_id: None,
        parent_span: 0,
    };
    let mut raw = Vec::new();
    println!("raw SQLite, same work (insert by 1,000, lease B, delete B; same schema, indexes and triggers):");
    for batch in [1usize, 10, 100] {
        let ceiling = tempfile::tempdir().expect("temp dir");
        let rate = raw_sqlite(ceiling.path(), batch);
        println!("  B = {batch:>3}: {rate:>9.0} msg/s");
        raw.push(rate);
    }
    println!("edgefn end to end (send -> consumer -> ack), {MESSAGES} messages:");
    let mut ratio_100 = 0.0;
    for ((queue, batch), ceiling) in [("batch1", 1), ("batch10", 10), ("batch100", 100)].into_iter().zip(&raw) {
        let started = Instant::now();
        for chunk in 0..MESSAGES / 1000 {
            send(queue, (0..1000).map(|n| message(format!("{{\"n\":{}}}", chunk * 1000 + n))).collect());
        }
        while consumers.acked(queue) < MESSAGES as u64 {
            std::thread::sleep(Duration::from_millis(1));
        }
        let seconds = started.elapsed().as_secs_f64();
        let rate = MESSAGES as f64 / seconds;
        println!("  batch_size = {batch:>3}: {rate:>9.0} msg/s ({seconds:.2} s), {:.2}x the raw loop", rate / ceiling);
        ratio_100 = rate / ceiling;
    }
    println!("figure: queue_batch100_vs_raw {ratio_100:.3}");

    let sends = 200;
    println!("enqueue -> handler's first statement, idle host, batch_size = 1, {sends} sends one at a time:");
    for n in 0..sends {
        let before = consumers.acked("latency");
        send("latency", vec![message(now_ns().to_string())]);
        let deadline = Instant::now() + Duration::from_secs(10);
        while consumers.acked("latency") == before {
            assert!(Instant::now() < deadline, "message {n} was not handled within 10 s");
            std::thread::sleep(Duration::from_millis(1));
        }
        // Idle between sends: each message finds the consumer waiting.
        std::thread::sleep(Duration::from_millis(5));
    }
    let all = BatchPolicy { batch_size: 10_000, max_wait_ms: 0, lease_ms: 3_600_000 };
    let results = bench.tokio.block_on(queues.backend().lease_if_due("latency_results", all));
    let mut latencies: Vec<Duration> = results
        .expect("read latency_results")
        .unwrap_or_default()
        .iter()
        .map(|m| Duration::from_nanos(serde_json::from_slice::<u64>(&m.body).expect("a latency in ns")))
        .collect();
    assert_eq!(latencies.len(), sends, "every handled message reported its latency");
    latencies.sort();
    let (p50, p99) = (support::quantile(&latencies, 0.5), support::quantile(&latencies, 0.99));
    println!("  p50 {p50:?}  p99 {p99:?}");
    println!("figure: enqueue_to_handler_p50_ms {:.3}", p50.as_secs_f64() * 1000.0);
    println!("figure: enqueue_to_handler_p99_ms {:.3}", p99.as_secs_f64() * 1000.0);
}

/// Nanoseconds since the Unix epoch, by the wall clock (the one the guest reads).
fn now_ns() -> u64 {
    let since_epoch = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or(Duration::ZERO);
    u64::try_from(since_epoch.as_nanos()).unwrap_or(u64::MAX)
}

fn raw_sqlite(dir: &Path, batch: usize) -> f64 {
    // The host's own schema and connection settings.
    drop(edgefn_host::storage::Database::open(dir).expect("open"));
    let db = edgefn_host::storage::Database::connect(dir).expect("connect");
    db.with_blocking(|conn| Ok(raw_sqlite_loop(conn, batch))).expect("raw loop")
}

/// The statements of `storage/queue.rs` (send, lease_if_due, settle), without the host around them.
fn raw_sqlite_loop(conn: &mut rusqlite::Connection, batch: usize) -> f64 {
    let limit = u32::try_from(batch).expect("batch");
    let started = Instant::now();
    let now = 1_i64;
    for chunk in (0..MESSAGES).collect::<Vec<_>>().chunks(1000) {
        let tx = conn.transaction().expect("begin");
        {
            let mut insert = tx
                .prepare_cached(
                    "INSERT INTO queue_messages (queue, body, priority, enqueued_at, visible_at)
                     VALUES (?1, ?2, ?3, ?4, ?5)",
                )
                .expect("prepare");
            for n in chunk {
                insert.execute(params!["q", format!("{{\"n\":{n}}}").into_bytes(), 0, now, now]).expect("insert");
            }
        }
        tx.commit().expect("commit");
    }
    let mut handled = 0;
    let lease_until = 1_000_000_i64;
    while handled < MESSAGES {
        let tx = conn.transaction().expect("begin");
        let ready: u32 = tx
            .prepare_cached(
                "SELECT COUNT(*), MIN(visible_at) FROM (SELECT visible_at FROM queue_messages
                 WHERE queue = ?1 AND visible_at <= ?2 LIMIT ?3)",
            )
            .expect("prepare")
            .query_row(params!["q", now, limit], |row| row.get(0))
            .expect("readiness");
        assert!(ready > 0, "the raw loop ran out of messages");
        let leased: Vec<(i64, Vec<u8>)> = tx
            .prepare_cached(
                "UPDATE queue_messages SET visible_at = ?4, attempts = attempts + 1, leased = 1
                 WHERE id IN (SELECT id FROM queue_messages WHERE queue = ?1 AND visible_at <= ?2
                              ORDER BY priority DESC, id LIMIT ?3)
                 RETURNING id, body, attempts, priority, enqueued_at",
            )
            .expect("prepare")
            .query_map(params!["q", now, limit, lease_until], |row| Ok((row.get(0)?, row.get(1)?)))
            .expect("lease")
            .collect::<rusqlite::Result<_>>()
            .expect("leased rows");
        tx.commit().expect("commit");
        let tx = conn.transaction().expect("begin");
        {
            let mut ack = tx
                .prepare_cached("DELETE FROM queue_messages WHERE id = ?1 AND leased = 1 AND visible_at = ?2")
                .expect("prepare");
            for (id, _body) in &leased {
                ack.execute(params![id, lease_until]).expect("delete");
            }
        }
        tx.commit().expect("commit");
        handled += leased.len();
    }
    MESSAGES as f64 / started.elapsed().as_secs_f64()
}
