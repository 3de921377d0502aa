//! Object storage figures: put and get throughput of the host's object store against raw file I/O doing the same
//! work on the same disk in the same run, and put-to-trigger latency. In process, on a real data dir.
//!
//! ```sh
//! cargo build --release --target wasm32-wasip2 -p bench-sink -p object-probe
//! cargo bench -p edgefn-host --bench objects
//! ```
//!
//! - Put: one 256 MiB object written in 1 MiB pieces through the store's upload (temporary file, SHA-256 of every
//!   byte for the ETag, sync, rename, one SQLite transaction with the change's outbox row, old file removed), against
//!   the raw loop: the same 1 MiB writes to a temporary file, sync, rename. The raw loop computes no hash: the ETag's
//!   cost is part of what the figure measures. Median of 5 rounds each.
//! - Get: the object read back in 256 KiB pieces (what a download does: look up the row, open the file, `pread`),
//!   against the raw loop reading the same file in the same pieces. Page cache warm for both. Median of 5.
//! - Put to trigger: a 1-byte object put under `uploads/` of bucket `photos`, which the object-probe's `on_upload`
//!   follows; the clock stops when the host counts its delivery acked (the handler has run: it writes two KV keys).
//!   200 puts one at a time, idle between them.

#[path = "support.rs"]
mod support;

use edgefn_host::config::ComponentConfig;
use edgefn_host::deployments::DeployRequest;
use edgefn_host::storage::objects::PutOptions;
use std::io::Write as _;
use std::os::unix::fs::FileExt as _;
use std::path::Path;
use std::time::{Duration, Instant};

const OBJECT_MIB: usize = 256;
const ROUNDS: usize = 5;

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

fn main() {
    let bench = support::start();
    let probe = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/wasm32-wasip2/release/object_probe.wasm");
    let wasm = std::fs::read(&probe).unwrap_or_else(|e| {
        panic!("{}: {e}; build it first: cargo build --release --target wasm32-wasip2 -p object-probe", probe.display())
    });
    let overrides = ComponentConfig {
        object_buckets: vec!["photos".into(), "docs".into()],
        key_value_stores: vec!["seen".into()],
        ..ComponentConfig::default()
    };
    let request = DeployRequest {
        name: "probe".into(),
        wasm,
        source: probe.display().to_string(),
        deployed_by: "bench".into(),
        overrides,
        mount: None,
        canary_percent: None,
        assets: None,
    };
    bench.tokio.block_on(bench.node.deployments.deploy(request)).expect("deploy object-probe");
    let store = &bench.node.objects.db;
    let piece = vec![0x5a_u8; 1 << 20];
    let mib = OBJECT_MIB as f64;

    let raw_dir = bench.data.path().join("raw");
    std::fs::create_dir_all(&raw_dir).expect("raw dir");
    let mut raw_put = Vec::new();
    let mut edgefn_put = Vec::new();
    for round in 0..ROUNDS {
        let started = Instant::now();
        let temp = raw_dir.join(format!("tmp-{round}"));
        let mut file = std::fs::File::create(&temp).expect("create");
        for _ in 0..OBJECT_MIB {
            file.write_all(&piece).expect("write");
        }
        file.sync_all().expect("sync");
        std::fs::rename(&temp, raw_dir.join("object")).expect("rename");
        raw_put.push(mib / started.elapsed().as_secs_f64());

        let started = Instant::now();
        let mut upload = store.begin("docs", "big", PutOptions::default()).expect("begin").expect("valid");
        for _ in 0..OBJECT_MIB {
            upload.write(&piece).expect("write").expect("room");
        }
        bench.tokio.block_on(store.finish(upload, 0)).expect("finish").expect("room");
        edgefn_put.push(mib / started.elapsed().as_secs_f64());
    }
    let (raw_put, edgefn_put) = (median(raw_put), median(edgefn_put));
    println!("put {OBJECT_MIB} MiB in 1 MiB writes, median of {ROUNDS}:");
    println!("  raw file (write, sync, rename):                 {raw_put:>8.0} MB/s");
    println!(
        "  edgefn store (+ SHA-256 ETag, SQLite row, event): {edgefn_put:>6.0} MB/s, {:.2}x",
        edgefn_put / raw_put
    );
    println!("figure: objects_put_vs_raw {:.3}", edgefn_put / raw_put);

    let chunk = 256 << 10;
    let mut buffer = vec![0; chunk];
    let mut raw_get = Vec::new();
    let mut edgefn_get = Vec::new();
    let size = (OBJECT_MIB as u64) << 20;
    for _ in 0..ROUNDS {
        let started = Instant::now();
        let file = std::fs::File::open(raw_dir.join("object")).expect("open");
        let mut at = 0;
        while at < size {
            file.read_exact_at(&mut buffer, at).expect("read");
            at += chunk as u64;
        }
        raw_get.push(mib / started.elapsed().as_secs_f64());

        let started = Instant::now();
        let (info, file) = bench.tokio.block_on(store.open_object("docs", "big")).expect("open").expect("there");
        let mut at = 0;
        while at < info.size {
            file.read_exact_at(&mut buffer, at).expect("read");
            at += chunk as u64;
        }
        edgefn_get.push(mib / started.elapsed().as_secs_f64());
    }
    let (raw_get, edgefn_get) = (median(raw_get), median(edgefn_get));
    println!("get {OBJECT_MIB} MiB in 256 KiB reads (page cache warm), median of {ROUNDS}:");
    println!("  raw file:     {raw_get:>8.0} MB/s");
    println!("  edgefn store: {edgefn_get:>8.0} MB/s, {:.2}x", edgefn_get / raw_get);
    println!("figure: objects_get_vs_raw {:.3}", edgefn_get / raw_get);

    let queue = "objects.photos@probe.on_upload";
    let consumers = &bench.node.queue_trigger;
    let puts = 200;
    let mut latencies = Vec::new();
    for n in 0..puts {
        let before = consumers.acked(queue);
        let started = Instant::now();
        let key = format!("uploads/{n}.png");
        bench.tokio.block_on(async {
            store.put_bytes("photos", &key, b"x", PutOptions::default()).await.expect("put").expect("room");
            bench.node.objects.changed.notify_one();
        });
        let deadline = started + Duration::from_secs(10);
        while consumers.acked(queue) == before {
            assert!(Instant::now() < deadline, "the trigger of put {n} did not run within 10 s");
            std::thread::sleep(Duration::from_micros(200));
        }
        latencies.push(started.elapsed());
        std::thread::sleep(Duration::from_millis(5));
    }
    latencies.sort();
    let (p50, p99) = (support::quantile(&latencies, 0.5), support::quantile(&latencies, 0.99));
    println!("put -> trigger handled and acked, {puts} puts one at a time: p50 {p50:?}  p99 {p99:?}");
    println!("figure: object_put_to_trigger_p50_ms {:.3}", p50.as_secs_f64() * 1000.0);
    println!("figure: object_put_to_trigger_p99_ms {:.3}", p99.as_secs_f64() * 1000.0);
}
