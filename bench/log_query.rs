//! Benchmark (r): how long `edgefn logs` queries take over 1 million stored records, on a real SQLite file with
//! the log's own schema, written the way the host writes it (transactions of 8,192).
//!
//! ```sh
//! cargo bench -p edgefn-host --bench log_query
//! ```
//!
//! The records model a busy host: 500,000 requests spread over 20 functions and the last 24 hours, each one
//! invocation record plus one printed line, under a time-ordered id (as edgefn's own ids are); 1% fail (an error
//! record). Each query runs 20 times; the figure is the median, in milliseconds, including reading the rows.

use edgefn_host::storage::telemetry::{self, Level, LogKind, LogQuery, LogRecord};
use std::time::{Duration, Instant};

const REQUESTS: usize = 500_000;
const FUNCTIONS: usize = 20;
const RUNS: usize = 20;

fn main() {
    let dir = tempfile::tempdir().expect("temp dir");
    let db = telemetry::open(dir.path()).expect("open the telemetry database");
    let now = edgefn_host::storage::now_ms();
    let day = 86_400_000i64;
    let ids: Vec<String> = (0..REQUESTS).map(|_| edgefn_host::telemetry::correlation::new_id()).collect();
    let started = Instant::now();
    let mut batch = Vec::with_capacity(8192);
    for (request, id) in ids.iter().enumerate() {
        let at = now - day + (request as i64 * day / REQUESTS as i64);
        let function = format!("shop/fn{}", request % FUNCTIONS);
        let failed = request % 100 == 7;
        let record = |kind, level, message: String, duration_us| LogRecord {
            at,
            level,
            kind,
            correlation_id: Some(id.clone()),
            function: Some(function.clone()),
            version: Some(3),
            trigger: Some("http".into()),
            message,
            duration_us,
        };
        batch.push(record(
            LogKind::Stdout,
            Level::Info,
            format!("handling order {request} for customer {}", request % 977),
            None,
        ));
        let outcome = if failed { "error 500" } else { "ok 200" };
        let level = if failed { Level::Error } else { Level::Info };
        let message = format!(
            "http POST /orders: {outcome} in 1.23 ms (billed 2 ms at 128 MB, cpu 0.40 ms, peak memory 1088 KiB)"
        );
        batch.push(record(LogKind::Invocation, level, message, Some(1230)));
        if batch.len() >= 8192 {
            db.with_blocking(|conn| telemetry::insert_logs(conn, std::mem::take(&mut batch))).expect("insert");
        }
    }
    db.with_blocking(|conn| telemetry::insert_logs(conn, std::mem::take(&mut batch))).expect("insert");
    let stored = REQUESTS * 2;
    let elapsed = started.elapsed();
    let bytes = std::fs::metadata(dir.path().join(telemetry::TELEMETRY_FILE)).map(|m| m.len()).unwrap_or(0);
    println!(
        "stored {stored} records in {:.1} s ({:.0} records/s, one thread), file {} MiB",
        elapsed.as_secs_f64(),
        stored as f64 / elapsed.as_secs_f64(),
        bytes >> 20
    );

    // `expect`: how many records the query must find (checked on every run).
    let median = |name: &str, query: LogQuery, expect: usize| {
        let mut times: Vec<Duration> = (0..RUNS)
            .map(|_| {
                let started = Instant::now();
                let found = db.with_blocking(|conn| telemetry::query_logs(conn, &query)).expect("query");
                let took = started.elapsed();
                assert_eq!(found.len(), expect, "{name}");
                took
            })
            .collect();
        times.sort_unstable();
        let ms = times[RUNS / 2].as_secs_f64() * 1000.0;
        println!("{name:<52} {ms:>8.3} ms (median of {RUNS}, {expect} records)");
        println!("figure: log_query_{} {ms:.3}", name.split(':').next().unwrap_or(name).replace(' ', "_"));
    };
    let q = LogQuery { limit: 100, ..LogQuery::default() };
    median(
        "by id: --id (the newest request)",
        LogQuery { correlation_id: Some(ids[REQUESTS - 1].clone()), ..q.clone() },
        2,
    );
    median(
        "by id old: --id (a request 23 h ago)",
        LogQuery { correlation_id: Some(ids[1000].clone()), ..q.clone() },
        2,
    );
    median("newest: no filter, last 100", q.clone(), 100);
    median("function: --function shop/fn7, last 100", LogQuery { function: Some("shop/fn7".into()), ..q.clone() }, 100);
    median("level: --level error, last 100 (1% of requests)", LogQuery { level: Some(Level::Error), ..q.clone() }, 100);
    // The last 10 minutes hold 600,000 / 172.8 ms = 3,472 requests, a twentieth of them of fn3, two records each.
    let recent = (ids.len() as i64 - 1 - (600_000 * REQUESTS as i64 / day)).max(0) as usize..REQUESTS;
    let fn3 = recent.filter(|request| request % FUNCTIONS == 3).count() * 2;
    median(
        "since: --since 10m --function shop/fn3",
        LogQuery { since: Some(now - 600_000), function: Some("shop/fn3".into()), limit: 10_000, ..q.clone() },
        fn3,
    );
    median("page: --after (a page of 100, mid-log)", LogQuery { after: Some(500_000), ..q.clone() }, 100);
}
