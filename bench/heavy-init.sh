#!/usr/bin/env bash
# Benchmark (b) of issue 4: a function whose #[init] is expensive (examples/heavy-init), served three ways:
# edgefn with its snapshot, edgefn with --no-snapshot (init in every instance), and `wasmtime serve` (init in
# every instance, since it never calls wizer-initialize). Reports the first request's latency after start and the
# steady req/s, all on the same .wasm. Binds to 127.0.0.1 only.
#
#   bash bench/heavy-init.sh [seconds-per-wrk-run] [connections]
#
# Needs: wrk (apt-get install wrk) and wasmtime-cli 48.0.8 (cargo install wasmtime-cli --version 48.0.8 --locked).
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/lib.sh
seconds=${1:-8}
connections=${2:-8}
require_wrk
require_wasmtime

build_release edgefn-host heavy-init
wasm=target/wasm32-wasip2/release/heavy_init.wasm
work=$(mktemp -d)
pid=
trap 'kill $pid 2>/dev/null || true; rm -rf "$work"' EXIT
port=18195
url="http://127.0.0.1:$port/heavy/lookup/7"

wait_listening() {
    for _ in $(seq 1 600); do
        (exec 3<>/dev/tcp/127.0.0.1/$port) 2>/dev/null && return 0
        sleep 0.05
    done
    echo "server did not start" >&2; exit 1
}

measure() { # name, then the server command
    local name=$1; shift
    "$@" >/dev/null 2>"$work/$name.log" &
    pid=$!
    wait_listening
    local first
    first=$(curl -s -o /dev/null -w '%{time_total}' "$url")
    local out
    out=$(wrk -t2 -c"$connections" -d"${seconds}s" --latency "$url")
    printf '%-22s first request %8.2f ms   %9s req/s   p50 %8s   p99 %8s\n' "$name" \
        "$(awk -v t="$first" 'BEGIN {print t * 1000}')" "$(awk '/Requests\/sec/ {print $2}' <<<"$out")" \
        "$(awk '$1=="50%" {print $2}' <<<"$out")" "$(awk '$1=="99%" {print $2}' <<<"$out")"
    kill $pid; wait $pid 2>/dev/null || true
}

echo "heavy-init: $connections connections, ${seconds}s per wrk run, same .wasm"
measure "edgefn (snapshot)" ./target/release/edgefn up --listen 127.0.0.1:$port --data "$work/snap" "$wasm"
measure "edgefn --no-snapshot" ./target/release/edgefn up --no-snapshot --listen 127.0.0.1:$port --data "$work/nosnap" "$wasm"
measure "wasmtime serve" wasmtime serve -Scli --addr 127.0.0.1:$port "$wasm"
grep -h "ran init and took the snapshot" "$work/edgefn (snapshot).log" | sed 's/^/  edgefn log: /' || true
