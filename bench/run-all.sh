#!/usr/bin/env bash
# Runs every benchmark of BENCHMARKS.md, (a) to (p), in order. Takes about 12 minutes on the 2-core machine.
#   bash bench/run-all.sh
# Needs wrk (apt-get install wrk) and wasmtime-cli 48.0.8 (cargo install wasmtime-cli --version 48.0.8 --locked).
set -euo pipefail
cd "$(dirname "$0")/.."
echo "== (a) hello-world HTTP, edgefn vs wasmtime serve"
bash bench/http-vs-wasmtime.sh 3 8 16
echo "== (b) init-heavy function: snapshot, no snapshot, wasmtime serve"
bash bench/heavy-init.sh 8 8
echo "== (c) in-process invocation (criterion)"
cargo build --release --target wasm32-wasip2 -p misbehave >&2
cargo bench -p edgefn-host --bench invoke 2>&1 | grep -A3 "^invoke"
echo "== (d) cold start over 100 functions (default keep_resident_kib, then 0)"
bash bench/cold-start.sh 100
EDGEFN_EXTRA_ARGS="--keep-resident-kib 0" bash bench/cold-start.sh 100
echo "== (e) density: 1,000 functions (default keep_resident_kib, then 0)"
bash bench/cold-start.sh 1000
EDGEFN_EXTRA_ARGS="--keep-resident-kib 0" bash bench/cold-start.sh 1000
echo "== (f) queue throughput and (g) enqueue-to-handler latency"
cargo build --release --target wasm32-wasip2 -p bench-sink >&2
cargo bench -p edgefn-host --bench queue 2>&1 | grep -v "^ *\(Compiling\|Finished\|Running\)"
echo "== (h) cron fire jitter, ten per-second jobs for a minute"
cargo bench -p edgefn-host --bench cron_jitter 2>&1 | tail -1
echo "== (i) deploy-to-live latency and (j) req/s during 10 back-to-back deploys"
bash bench/deploy.sh 10 16
echo "== (k) to (n) tenants that cannot hurt each other"
bash bench/reliability.sh
echo "== (o) KV from a guest and (p) JWT verification cost"
bash bench/kv-jwt.sh 5000 10 16
