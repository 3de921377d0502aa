#!/usr/bin/env bash
# Runs every benchmark of BENCHMARKS.md in order, then prints one table: each figure with a target, the target,
# the result, met or missed, and the machine it ran on. Takes about 60 minutes on the 2-core machine.
#   bash bench/run-all.sh
# Needs wrk (apt-get install wrk) and wasmtime-cli 48.0.8 (cargo install wasmtime-cli --version 48.0.8 --locked).
# Every script prints its own figures as it goes; lines starting with `figure:` feed the table.
set -euo pipefail
cd "$(dirname "$0")/.."
log=$(mktemp)
trap 'rm -f "$log"' EXIT
section() { echo "== $*" | tee -a "$log"; }

section "(a) hello-world HTTP: edgefn vs wasmtime serve vs a native axum handler"
bash bench/http-vs-wasmtime.sh 3 8 16 | tee -a "$log"
section "(b) init-heavy function: snapshot, no snapshot, wasmtime serve"
bash bench/heavy-init.sh 8 8 | tee -a "$log"
section "(c) in-process invocation (criterion)"
cargo build --release --target wasm32-wasip2 -p misbehave -p bench-sink >&2
cargo bench -p edgefn-host --bench invoke 2>&1 | grep -A3 "^invoke" | tee -a "$log"
echo "== (c) per phase (issue 25): bench/phases.rs" | tee -a "$log"
cargo bench -p edgefn-host --bench phases 2>&1 | grep -A1 "^phases/" | grep -E "phases/|time:" | tee -a "$log"
section "(d) cold start over 100 functions, defaults"
bash bench/cold-start.sh 100 | tee -a "$log"
section "(e) density: 1,000 functions, defaults (at most 256 loaded at once), then all 1,000 kept loaded"
bash bench/cold-start.sh 1000 | tee -a "$log"
EDGEFN_EXTRA_ARGS="--max-loaded 1001" bash bench/cold-start.sh 1000 | sed 's/^figure: rss_mib_1000/figure: rss_mib_1000_all_loaded/' \
    | tee -a "$log"
section "(f) queue throughput and (g) enqueue-to-handler latency"
cargo bench -p edgefn-host --bench queue 2>&1 | grep -v "^ *\(Compiling\|Finished\|Running\)" | tee -a "$log"
section "(h) cron fire jitter, ten per-second jobs for a minute"
cargo bench -p edgefn-host --bench cron_jitter 2>&1 | grep -v "^ *\(Compiling\|Finished\|Running\)" | tee -a "$log"
section "(i) deploy-to-live latency and (j) req/s during 10 back-to-back deploys"
bash bench/deploy.sh 10 16 | tee -a "$log"
section "(k) to (n) tenants that cannot hurt each other"
bash bench/reliability.sh | tee -a "$log"
section "(o) KV from a guest and (p) JWT verification cost"
bash bench/kv-jwt.sh 5000 10 16 | tee -a "$log"
section "(q) hello with logs, metering and metrics on vs off"
bash bench/observability.sh 5 10 16 | tee -a "$log"
section "(r) log queries over a million stored records"
cargo bench -p edgefn-host --bench log_query 2>&1 | grep -v "^ *\(Compiling\|Finished\|Running\)" | tee -a "$log"
section "(s) JetStream queue throughput on one and two nodes vs SQLite, (t) enqueue to handler"
cargo bench -p edgefn-host --bench cluster 2>&1 | grep -v "^ *\(Compiling\|Finished\|Running\)" | tee -a "$log"
section "(w) object storage: put and get vs raw file I/O, put to trigger"
cargo build --release --target wasm32-wasip2 -p bench-sink -p object-probe >&2
cargo bench -p edgefn-host --bench objects 2>&1 | grep -v "^ *\(Compiling\|Finished\|Running\)" | tee -a "$log"
section "(x) streams: records/s with 1 and 4 shards vs a raw SQLite loop"
cargo bench -p edgefn-host --bench streams 2>&1 | grep -v "^ *\(Compiling\|Finished\|Running\)" | tee -a "$log"
section "(z) durable workflows: per-step overhead vs a raw SQLite loop, runs/s, resume after a restart"
cargo build --release --target wasm32-wasip2 -p workflow-probe >&2
cargo bench -p edgefn-host --bench workflows 2>&1 | grep -v "^ *\(Compiling\|Finished\|Running\)" | tee -a "$log"
section "(y) the gateway: static files vs ServeDir, cached vs uncached, WebSocket broadcast to 1,000"
bash bench/gateway.sh 3 10 16 | tee -a "$log"
section "(u) WASI 0.3: fresh vs WASI 0.2, reuse vs wasmtime serve and native, streaming proxy, SSE, fan-out"
bash bench/wasip3.sh 3 10 16 | tee -a "$log"

echo
python3 - "$log" <<'PY'
import platform, re, sys, os
text = open(sys.argv[1]).read()
figures = {}
for line in text.splitlines():
    m = re.match(r"figure: (\S+) (\S+)", line)
    if m:
        figures[m.group(1)] = float(m.group(2))
# Criterion prints the invocation time as "time: [low mid high]" with its unit.
m = re.search(r"time:\s+\[\S+ \S+ (\S+) (\S+) \S+ \S+\]", text)
if m:
    figures["invoke_us"] = float(m.group(1)) * {"ns": 0.001, "µs": 1.0, "us": 1.0, "ms": 1000.0}[m.group(2)]
cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "unknown CPU")
print(f"machine: {cpu}, {os.cpu_count()} cores, Linux {platform.release()}")
rows = [
    ("1", "hello req/s, edgefn / native axum handler (defaults)", "hello_vs_native", ">=", 0.5, "x"),
    ("1", "hello req/s, edgefn / wasmtime serve (defaults)", "hello_vs_wasmtime", ">=", 3.0, "x"),
    ("2", "in-process invocation: instantiate + call + response", "invoke_us", "<=", 10.0, " us"),
    ("3", "cold start p50 over 100 functions (host)", "cold_p50_ms_100", "<=", 1.0, " ms"),
    ("3", "cold p50 / warm p50 over 100 functions (after a restart: nothing loaded)", "cold_vs_warm_p50_100", "<=", 2.0, "x"),
    ("3", "first request after its deploy p50 / warm p50, 100 functions", "first_vs_warm_p50_100", "<=", 2.0, "x"),
    ("4", "RSS, 1,000 functions each hit once, defaults (512 MB = 488 MiB)", "rss_mib_1000", "<=", 488.0, " MiB"),
    ("4", "RSS, 1,000 functions all kept loaded (--max-loaded 1001)", "rss_mib_1000_all_loaded", "<=", 488.0, " MiB"),
    ("5", "deploying 1,000 components: share of the cores busy compiling", "deploy_cores_busy_1000", ">=", 0.9, ""),
    ("6", "queue msg/s at batch 100 / raw SQLite loop doing the same work", "queue_batch100_vs_raw", ">=", 0.5, "x"),
    ("6", "enqueue -> handler p99, idle host", "enqueue_to_handler_p99_ms", "<=", 2.0, " ms"),
    ("h", "cron tick -> guest's first statement p99", "cron_tick_to_guest_p99_ms", "<=", 5.0, " ms"),
    ("j", "hello req/s during 10 back-to-back deploys / steady", "deploys_vs_steady", ">=", 0.9, "x"),
    ("j", "failed requests during those deploys", "deploys_errors", "<=", 0, ""),
    ("q", "hello req/s, logs+metering+metrics on / off", "observability_on_vs_off", ">=", 0.97, "x"),
    ("u", "hello req/s, WASI 0.3 fresh / WASI 0.2 fresh", "p3_fresh_vs_p2", ">=", 1.0, "x"),
    ("u", "hello req/s, WASI 0.3 with reuse / native axum handler", "p3_reuse_vs_native", ">=", 0.5, "x"),
    ("u", "hello req/s, WASI 0.3 with reuse / wasmtime serve, same reuse settings", "p3_reuse_vs_wasmtime", ">=", 1.5, "x"),
    ("u", "streaming proxy MB/s, 1 GiB / native axum streaming proxy", "proxy_vs_native", ">=", 0.8, "x"),
    ("u", "SSE time to first byte, extra over native", "sse_ttfb_extra_ms", "<=", 1.0, " ms"),
    ("u", "three concurrent fetches of a 50 ms origin, wall in the guest", "fanout_3x50_ms", "<=", 60.0, " ms"),
    ("w", "object put MB/s, 256 MiB / raw file write, sync, rename", "objects_put_vs_raw", ">=", 0.7, "x"),
    ("w", "object get MB/s, 256 MiB / raw file read", "objects_get_vs_raw", ">=", 0.7, "x"),
    ("x", "stream records/s, 1 shard / raw SQLite loop", "stream_vs_raw_sqlite_1_shards", ">=", 0.5, "x"),
    ("x", "stream records/s, 4 shards / raw SQLite loop", "stream_vs_raw_sqlite_4_shards", ">=", 0.5, "x"),
    ("y", "static file req/s, 4 KiB / axum ServeDir of the same folder", "static_vs_servedir", ">=", 0.8, "x"),
]
print(f"| target | figure | wanted | result | |")
print(f"|---|---|---|---|---|")
for number, what, key, op, target, unit in rows:
    if key not in figures:
        print(f"| {number} | {what} | {op} {target:g}{unit} | not measured | MISSING |")
        continue
    value = figures[key]
    met = value >= target if op == ">=" else value <= target
    print(f"| {number} | {what} | {op} {target:g}{unit} | {value:g}{unit} | {'met' if met else 'MISSED'} |")
PY
