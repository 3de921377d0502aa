#!/usr/bin/env bash
# Benchmark (a): hello-world HTTP. edgefn and `wasmtime serve` serve the SAME .wasm, and a native axum server
# (bench/ceiling: the same answer from a plain handler, HTTP alone) is the ceiling; the three alternate in one run
# at a fixed concurrency with wrk, each with its defaults. All bind to 127.0.0.1 only.
#
#   bash bench/http-vs-wasmtime.sh [rounds] [seconds-per-run] [connections]
#
# Needs: wrk (apt-get install wrk) and wasmtime-cli 48.0.8 (cargo install wasmtime-cli --version 48.0.8 --locked).
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/lib.sh
rounds=${1:-3}
seconds=${2:-10}
connections=${3:-16}
threads=2

require_wrk
require_wasmtime

build_release "edgefn-host bench-ceiling" hello
wasm=target/wasm32-wasip2/release/hello.wasm
data=$(mktemp -d)
edgefn_port=18180
wasmtime_port=18181
native_port=18182

./target/release/edgefn up --listen 127.0.0.1:$edgefn_port --data "$data" "$wasm" >/dev/null 2>"$data/edgefn.log" &
edgefn_pid=$!
wasmtime serve -Scli --addr 127.0.0.1:$wasmtime_port "$wasm" >/dev/null 2>"$data/wasmtime.log" &
wasmtime_pid=$!
./target/release/bench-ceiling 127.0.0.1:$native_port >/dev/null 2>"$data/native.log" &
native_pid=$!
trap 'kill $edgefn_pid $wasmtime_pid $native_pid 2>/dev/null || true; rm -rf "$data"' EXIT

for port in $edgefn_port $wasmtime_port $native_port; do
    wait_for "http://127.0.0.1:$port/hello/bench"
done
[ "$(curl -s http://127.0.0.1:$edgefn_port/hello/bench)" = "Hello, bench!" ] || { echo "edgefn is not answering" >&2; exit 1; }
[ "$(curl -s http://127.0.0.1:$wasmtime_port/hello/bench)" = "Hello, bench!" ] || { echo "wasmtime serve is not answering" >&2; exit 1; }
[ "$(curl -s http://127.0.0.1:$native_port/hello/bench)" = "Hello, bench!" ] || { echo "the native ceiling is not answering" >&2; exit 1; }

echo "hello-world HTTP, $connections connections, $threads wrk threads, ${seconds}s per run, $rounds rounds, same .wasm"
for round in $(seq 1 "$rounds"); do
    wrk_round edgefn $edgefn_port
    wrk_round wasmtime $wasmtime_port
    wrk_round native $native_port
done
awk '{sum[$1]+=$2; n[$1]++} END {e=sum["edgefn"]/n["edgefn"]; w=sum["wasmtime"]/n["wasmtime"]; c=sum["native"]/n["native"];
     printf "mean: edgefn %.0f req/s, wasmtime serve %.0f req/s, native axum %.0f req/s\n", e, w, c;
     printf "edgefn vs wasmtime serve %.2fx, edgefn vs native %.3fx\n", e/w, e/c;
     printf "figure: hello_vs_wasmtime %.3f\nfigure: hello_vs_native %.3f\n", e/w, e/c}' "$data/rps"
