#!/usr/bin/env bash
# Benchmark (q): what seeing everything costs. Two edgefn hosts serve the same hello.wasm: one with its defaults
# (logs with a record per invocation, metering, Prometheus metrics: all on), one with `[logs] enabled = false` and
# `[metrics] enabled = false`. They alternate, one at a time, at a fixed concurrency with wrk. Target: on >= 0.97x
# off. All bind to 127.0.0.1 only.
#
#   bash bench/observability.sh [rounds] [seconds-per-run] [connections]
#
# Needs: wrk (apt-get install wrk).
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/lib.sh
rounds=${1:-5}
seconds=${2:-10}
connections=${3:-16}
threads=2

require_wrk
build_release "edgefn-host" hello
wasm=target/wasm32-wasip2/release/hello.wasm
data=$(mktemp -d)
on_port=18190
off_port=18191
printf '[logs]\nenabled = false\n\n[metrics]\nenabled = false\n' >"$data/off.toml"

./target/release/edgefn up --listen 127.0.0.1:$on_port --admin-listen 127.0.0.1:18192 --data "$data/on" "$wasm" \
    >/dev/null 2>"$data/on.log" &
on_pid=$!
./target/release/edgefn up --listen 127.0.0.1:$off_port --admin-listen 127.0.0.1:18193 --data "$data/off" \
    --config "$data/off.toml" "$wasm" >/dev/null 2>"$data/off.log" &
off_pid=$!
trap 'kill $on_pid $off_pid 2>/dev/null || true; rm -rf "$data"' EXIT
for port in $on_port $off_port; do
    wait_for "http://127.0.0.1:$port/hello/bench"
done

echo "hello-world HTTP, logs+metering+metrics on vs off, $connections connections, ${seconds}s per run, $rounds rounds"
for round in $(seq 1 "$rounds"); do
    # Alternate which goes first, so neither always runs on a warmer (or hotter) machine.
    if [ $((round % 2)) -eq 1 ]; then wrk_round on $on_port; wrk_round off $off_port; else wrk_round off $off_port; wrk_round on $on_port; fi
done
# Everything the "on" host served is in its log: one invocation record per request.
records=$(curl -fs -H "authorization: Bearer $(cat "$data/on/admin-token")" \
    "http://127.0.0.1:18192/v1/usage?since=1h" | python3 -c 'import json,sys; print(sum(r["invocations"] for r in json.load(sys.stdin)["usage"]))')
echo "the on host metered $records invocations"
awk '{sum[$1]+=$2; n[$1]++} END {a=sum["on"]/n["on"]; b=sum["off"]/n["off"];
     printf "mean: on %.0f req/s, off %.0f req/s, on/off %.3fx (target >= 0.97x)\n", a, b, a/b;
     printf "figure: observability_on_vs_off %.3f\n", a/b}' "$data/rps"
