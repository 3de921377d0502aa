//! Benchmarks (s) and (t): queues on NATS JetStream, one node and two, against SQLite in the same run.
//!
//! ```sh
//! cargo build --release --target wasm32-wasip2 -p bench-sink
//! cargo bench -p edgefn-host --bench cluster
//! ```
//!
//! Every configuration runs real `edgefn up` processes (this build's release binary) serving `bench-sink`, with
//! default settings, on 127.0.0.1, and a real `nats-server -js` (PATH or /usr/sbin) with its store in a temporary
//! directory:
//! - `sqlite`: one host, no `--nats`;
//! - `jetstream x1`: one host with `--nats`;
//! - `jetstream x2`: two hosts with `--nats`, both consuming; the sends go through the first.
//!
//! - (s) throughput: `MESSAGES` messages to `batch1`, `batch10`, `batch100` (no-op consumers, concurrency 4 per
//!   node), sent through the admin API 1,000 per request; the clock runs from the first send until the admin API
//!   says the queue is empty (nothing ready, in flight or delayed), polled every 10 ms.
//! - (t) enqueue to handler: 200 messages to `latency`, one at a time, each waited for; a message's body is the
//!   wall-clock time just before its admin API request, and the handler's first statement takes the time again.
//!   So the figure includes the admin API's HTTP round trip, on both backends.

use serde_json::{Value, json};
use std::io::{BufRead as _, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

const MESSAGES: usize = 20_000;
const LATENCY_SENDS: usize = 200;

/// A running host, killed on drop.
struct Host {
    child: Child,
    admin: String,
    token: String,
    data: tempfile::TempDir,
}

impl Host {
    fn start(wasm: &Path, nats: Option<(&str, &str)>) -> Self {
        let data = tempfile::tempdir().expect("temp dir");
        let mut command = Command::new(env!("CARGO_BIN_EXE_edgefn"));
        command
            .args(["up", "--exit-on-stdin-close", "--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0"])
            .arg("--data")
            .arg(data.path())
            .arg(wasm);
        if let Some((url, node)) = nats {
            command.args(["--nats", url, "--node", node]);
        }
        let mut child =
            command.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::null()).spawn().expect("spawn edgefn");
        let mut stdout = BufReader::new(child.stdout.take().expect("stdout"));
        let mut admin = String::new();
        loop {
            let mut line = String::new();
            assert!(stdout.read_line(&mut line).expect("read") > 0, "the host exited before it listened");
            if let Some(address) = line.trim().strip_prefix("edgefn admin API on ") {
                admin = address.to_owned();
            }
            if line.starts_with("edgefn listening on ") {
                break;
            }
        }
        std::thread::spawn(move || std::io::copy(&mut stdout, &mut std::io::sink()));
        let token = std::fs::read_to_string(data.path().join("admin-token")).expect("token").trim().to_owned();
        Self { child, admin, token, data }
    }

    fn call(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        let request = ureq::request(method, &format!("{}{path}", self.admin))
            .set("authorization", &format!("Bearer {}", self.token));
        let response = match body {
            Some(body) => request.send_string(&body.to_string()),
            None => request.call(),
        }
        .unwrap_or_else(|error| panic!("{method} {path}: {error}"));
        serde_json::from_str(&response.into_string().expect("body")).expect("json")
    }

    /// Ready + in flight + delayed of `queue`.
    fn held(&self, queue: &str) -> u64 {
        let stats = self.call("GET", "/v1/queues", None);
        let queues = stats["queues"].as_array().cloned().unwrap_or_default();
        let Some(stats) = queues.iter().find(|q| q["queue"] == queue) else { return 0 };
        ["ready", "in_flight", "delayed"].iter().map(|k| stats[k].as_u64().unwrap_or(0)).sum()
    }
}

impl Drop for Host {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A `nats-server -js`, killed on drop.
struct Nats {
    child: Child,
    url: String,
    _store: tempfile::TempDir,
}

impl Nats {
    fn start() -> Self {
        let program = std::env::var_os("PATH")
            .and_then(|path| std::env::split_paths(&path).map(|dir| dir.join("nats-server")).find(|p| p.is_file()))
            .or_else(|| Some(PathBuf::from("/usr/sbin/nats-server")).filter(|p| p.is_file()))
            .expect("nats-server (apt-get install nats-server)");
        let store = tempfile::tempdir().expect("temp dir");
        let port = std::net::TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port();
        let mut child = Command::new(program)
            .args(["-js", "-a", "127.0.0.1", "-p", &port.to_string(), "-sd"])
            .arg(store.path())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn nats-server");
        let mut stderr = BufReader::new(child.stderr.take().expect("stderr"));
        loop {
            let mut line = String::new();
            assert!(stderr.read_line(&mut line).expect("read") > 0, "nats-server exited");
            if line.contains("Server is ready") {
                break;
            }
        }
        std::thread::spawn(move || std::io::copy(&mut stderr, &mut std::io::sink()));
        Self { child, url: format!("nats://127.0.0.1:{port}"), _store: store }
    }
}

impl Drop for Nats {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn now_ns() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_nanos() as u64).unwrap_or(0)
}

/// (s): messages per second through `queue`, sent to `hosts[0]`, consumed by every host.
fn throughput(hosts: &[Host], queue: &str) -> f64 {
    let started = Instant::now();
    for chunk in 0..MESSAGES / 1000 {
        let messages: Vec<Value> = (0..1000).map(|n| json!({ "body": { "n": chunk * 1000 + n } })).collect();
        hosts[0].call("POST", &format!("/v1/queues/{queue}/messages"), Some(json!({ "messages": messages })));
    }
    let deadline = Instant::now() + Duration::from_secs(600);
    while hosts[0].held(queue) > 0 {
        assert!(Instant::now() < deadline, "{queue} did not drain in 10 minutes");
        std::thread::sleep(Duration::from_millis(10));
    }
    MESSAGES as f64 / started.elapsed().as_secs_f64()
}

/// (t): each latency in µs, measured by the handler.
fn latencies(host: &Host, results: impl Fn(&Host) -> Vec<u64>) -> Vec<u64> {
    for n in 0..LATENCY_SENDS {
        host.call("POST", "/v1/queues/latency/messages", Some(json!({ "body": now_ns() })));
        let deadline = Instant::now() + Duration::from_secs(10);
        while results(host).len() <= n {
            assert!(Instant::now() < deadline, "latency message {n} was not handled in 10 s");
            std::thread::sleep(Duration::from_millis(1));
        }
        // Idle between sends: each message finds the consumer waiting.
        std::thread::sleep(Duration::from_millis(5));
    }
    let mut latencies: Vec<u64> = results(host).into_iter().map(|ns| ns / 1_000).collect();
    latencies.sort_unstable();
    latencies
}

/// What the `latency` handler sent to `latency_results` on a SQLite host: read from its data dir's database.
fn sqlite_results(host: &Host) -> Vec<u64> {
    let db = rusqlite::Connection::open(host.data.path().join("edgefn.db")).expect("open the host's database");
    let mut statement =
        db.prepare("SELECT body FROM queue_messages WHERE queue = 'latency_results' ORDER BY id").expect("prepare");
    let rows = statement.query_map([], |row| row.get::<_, Vec<u8>>(0)).expect("query");
    rows.filter_map(Result::ok).filter_map(|body| serde_json::from_slice(&body).ok()).collect()
}

/// The same on a JetStream host: read from the stream directly (nothing consumes `latency_results`).
fn jetstream_results(url: &str) -> impl Fn(&Host) -> Vec<u64> {
    let tokio = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("tokio");
    let stream = tokio.block_on(async {
        let client = async_nats::connect(url).await.expect("connect");
        async_nats::jetstream::new(client).get_stream("EDGEFN_QUEUES").await.expect("stream")
    });
    move |_host| {
        tokio.block_on(async {
            let mut results = Vec::new();
            let mut after = 0;
            while let Ok(message) =
                stream.direct_get_next_for_subject("edgefn.q.latency_results.mid.-", Some(after + 1)).await
            {
                after = message.sequence;
                results.extend(serde_json::from_slice::<u64>(&message.payload).ok());
            }
            results
        })
    }
}

fn quantile(sorted: &[u64], q: f64) -> u64 {
    sorted[(((sorted.len() as f64) - 1.0) * q).round() as usize]
}

fn main() {
    let wasm = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/wasm32-wasip2/release/bench_sink.wasm");
    assert!(wasm.is_file(), "build it first: cargo build --release --target wasm32-wasip2 -p bench-sink");
    let queues = [("batch1", 1), ("batch10", 10), ("batch100", 100)];
    let mut rates: Vec<(&str, Vec<f64>)> = Vec::new();
    println!("(s) throughput, {MESSAGES} messages per batch size, sends through the admin API 1,000 at a time:");
    {
        let host = [Host::start(&wasm, None)];
        rates.push(("sqlite", queues.iter().map(|(queue, _)| throughput(&host, queue)).collect()));
    }
    for nodes in [1, 2] {
        let nats = Nats::start();
        let hosts: Vec<Host> =
            (0..nodes).map(|n| Host::start(&wasm, Some((&nats.url, &format!("bench{n}"))))).collect();
        let label = if nodes == 1 { "jetstream x1" } else { "jetstream x2" };
        rates.push((label, queues.iter().map(|(queue, _)| throughput(&hosts, queue)).collect()));
    }
    println!("  {:14} {:>10} {:>10} {:>10}", "", "batch 1", "batch 10", "batch 100");
    for (label, rates) in &rates {
        println!("  {label:14} {:>10.0} {:>10.0} {:>10.0}  msg/s", rates[0], rates[1], rates[2]);
    }
    for (index, (_, batch)) in queues.iter().enumerate() {
        let (sqlite, one, two) = (rates[0].1[index], rates[1].1[index], rates[2].1[index]);
        println!("  batch {batch:>3}: jetstream x1 / sqlite {:.2}x, jetstream x2 / x1 {:.2}x", one / sqlite, two / one);
        println!("figure: jetstream_batch{batch}_msgs_per_s {one:.0}");
        println!("figure: jetstream_two_node_scaling_batch{batch} {:.3}", two / one);
    }
    println!("(t) enqueue -> handler's first statement, idle host, {LATENCY_SENDS} sends one at a time (admin API):");
    let sqlite = {
        let host = Host::start(&wasm, None);
        latencies(&host, sqlite_results)
    };
    let jetstream = {
        let nats = Nats::start();
        let host = Host::start(&wasm, Some((&nats.url, "latency")));
        latencies(&host, jetstream_results(&nats.url))
    };
    for (label, sorted) in [("sqlite", &sqlite), ("jetstream", &jetstream)] {
        let (p50, p99) = (quantile(sorted, 0.5), quantile(sorted, 0.99));
        println!("  {label:10} p50 {:.3} ms  p99 {:.3} ms", p50 as f64 / 1000.0, p99 as f64 / 1000.0);
        println!("figure: {label}_enqueue_to_handler_p50_ms {:.3}", p50 as f64 / 1000.0);
        println!("figure: {label}_enqueue_to_handler_p99_ms {:.3}", p99 as f64 / 1000.0);
    }
}
