#!/usr/bin/env bash
# Issue 18's figures, WASI 0.3: every server on 127.0.0.1, release builds, each side with its defaults unless said.
#   1. hello with a fresh instance per request: the WASI 0.3 build of the hello example vs its WASI 0.2 build (the
#      same crate, the SDK's `wasip3` feature on or off), both on edgefn, wrk rounds alternating.
#   2. hello with instance reuse: the WASI 0.3 build on edgefn with `reuse = {}` (128 requests, 16 at once, 1 s
#      idle) vs `wasmtime serve` on the same .wasm with the same settings passed explicitly, vs the native ceiling.
#   3. streaming proxy throughput: 1 GiB from a native origin through the edge-proxy example (its body forwarded)
#      vs through a native axum streaming proxy of the same origin (bench/ceiling), curl to /dev/null, MB/s.
#   4. time to the first byte of a server-sent event stream: the live-feed example's clock vs a native axum SSE
#      answer, curl's time_starttransfer, median of 200 each.
#   5. three fetches at once of a 50 ms origin, timed inside the guest (the streaming test guest's /s/fanout).
#
#   bash bench/wasip3.sh [rounds] [seconds-per-run] [connections]
#
# Needs: wrk (apt-get install wrk), curl, and wasmtime-cli 48.0.8 (cargo install wasmtime-cli --version 48.0.8).
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/lib.sh
rounds=${1:-3}
seconds=${2:-10}
connections=${3:-16}
threads=2

require_wrk
require_wasmtime
build_release "edgefn-host bench-ceiling" "hello edge-proxy live-feed streaming"
# The WASI 0.3 build of hello goes to a target dir of its own, so it does not replace the WASI 0.2 one.
CARGO_TARGET_DIR=target/wasip3 cargo build --release --target wasm32-wasip2 -p hello --features edgefn/wasip3 >&2
hello2=target/wasm32-wasip2/release/hello.wasm
hello3=target/wasip3/wasm32-wasip2/release/hello.wasm
release=target/wasm32-wasip2/release

data=$(mktemp -d)
p2_port=18300
p3_port=18301
reuse_port=18302
wasmtime_port=18303
native_port=18304
origin_port=18305
examples_port=18306
origin=http://127.0.0.1:$origin_port

cat >"$data/reuse.toml" <<EOF
[components.hello]
reuse = {}
EOF
cat >"$data/examples.toml" <<EOF
[components.edge-proxy]
env = { ORIGIN_URL = "$origin" }
allowed_outbound_hosts = ["127.0.0.1:$origin_port"]

[components.streaming]
allowed_outbound_hosts = ["127.0.0.1:$origin_port"]
EOF

pids=()
start() { "$@" >/dev/null 2>>"$data/servers.log" & pids+=($!); }
trap 'kill "${pids[@]}" 2>/dev/null || true; rm -rf "$data"' EXIT
start ./target/release/edgefn up --listen 127.0.0.1:$p2_port --admin-listen 127.0.0.1:0 --data "$data/p2" "$hello2"
start ./target/release/edgefn up --listen 127.0.0.1:$p3_port --admin-listen 127.0.0.1:0 --data "$data/p3" "$hello3"
start ./target/release/edgefn up --listen 127.0.0.1:$reuse_port --admin-listen 127.0.0.1:0 --data "$data/reuse" \
    --config "$data/reuse.toml" "$hello3"
start wasmtime serve -Scli --addr 127.0.0.1:$wasmtime_port --max-instance-reuse-count 128 \
    --max-instance-concurrent-reuse-count 16 --idle-instance-timeout 1s "$hello3"
start env ORIGIN=$origin ./target/release/bench-ceiling 127.0.0.1:$native_port
start ./target/release/bench-ceiling 127.0.0.1:$origin_port
start ./target/release/edgefn up --listen 127.0.0.1:$examples_port --admin-listen 127.0.0.1:0 --data "$data/examples" \
    --config "$data/examples.toml" "$release/edge_proxy.wasm" "$release/live_feed.wasm" "$release/streaming.wasm"
for port in $p2_port $p3_port $reuse_port $wasmtime_port $native_port $origin_port; do
    wait_for "http://127.0.0.1:$port/hello/bench"
done
wait_for "http://127.0.0.1:$examples_port/s/hello"
for port in $p2_port $p3_port $reuse_port $wasmtime_port $native_port; do
    [ "$(curl -s "http://127.0.0.1:$port/hello/bench")" = "Hello, bench!" ] || { echo "port $port is not answering" >&2; exit 1; }
done

echo "== 1. hello, a fresh instance per request: WASI 0.3 vs WASI 0.2 ($connections connections, ${seconds}s, $rounds rounds)"
for round in $(seq 1 "$rounds"); do
    wrk_round p2 $p2_port
    wrk_round p3 $p3_port
done
echo "== 2. hello with instance reuse (128 requests, 16 at once, 1 s idle) vs wasmtime serve, same settings, vs native"
for round in $(seq 1 "$rounds"); do
    wrk_round reuse $reuse_port
    wrk_round wasmtime $wasmtime_port
    wrk_round native $native_port
done
awk '{sum[$1]+=$2; n[$1]++} END {
    p2=sum["p2"]/n["p2"]; p3=sum["p3"]/n["p3"]; r=sum["reuse"]/n["reuse"]; w=sum["wasmtime"]/n["wasmtime"]; c=sum["native"]/n["native"];
    printf "mean: p2 fresh %.0f, p3 fresh %.0f, p3 reuse %.0f, wasmtime serve reuse %.0f, native %.0f req/s\n", p2, p3, r, w, c;
    printf "p3 fresh vs p2 fresh %.3fx; p3 reuse vs native %.3fx; p3 reuse vs wasmtime serve %.2fx\n", p3/p2, r/c, r/w;
    printf "figure: p3_fresh_vs_p2 %.3f\nfigure: p3_reuse_vs_native %.3f\nfigure: p3_reuse_vs_wasmtime %.3f\n", p3/p2, r/c, r/w}' "$data/rps"

echo "== 3. streaming proxy throughput, 1 GiB from a native origin, $rounds rounds"
gib=1073741824
for round in $(seq 1 "$rounds"); do
    for side in edgefn native; do
        if [ $side = edgefn ]; then url="http://127.0.0.1:$examples_port/edge/bytes/$gib"; else url="http://127.0.0.1:$native_port/proxy/bytes/$gib"; fi
        out=$(curl -s -o /dev/null -w '%{size_download} %{time_total}' "$url")
        read -r size total <<<"$out"
        [ "$size" = "$gib" ] || { echo "$side proxied $size bytes, not $gib" >&2; exit 1; }
        mbs=$(awk -v s="$size" -v t="$total" 'BEGIN {printf "%.0f", s/t/1048576}')
        printf '%-8s round %s  %6s MB/s\n' $side "$round" "$mbs"
        echo "$side $mbs" >>"$data/proxy"
    done
done
awk '{sum[$1]+=$2; n[$1]++} END {e=sum["edgefn"]/n["edgefn"]; c=sum["native"]/n["native"];
    printf "mean: edgefn %.0f MB/s, native proxy %.0f MB/s: %.3fx\nfigure: proxy_vs_native %.3f\n", e, c, e/c, e/c}' "$data/proxy"

echo "== 4. time to the first byte of an event stream, median of 200"
ttfb() { for _ in $(seq 1 200); do curl -s -o /dev/null -w '%{time_starttransfer}\n' "$1"; done | sort -n | awk '{v[NR]=$1} END {printf "%.3f", v[int(NR/2)+1]*1000}'; }
edge_ttfb=$(ttfb "http://127.0.0.1:$examples_port/feed/clock?count=1")
native_ttfb=$(ttfb "http://127.0.0.1:$native_port/sse")
awk -v e="$edge_ttfb" -v n="$native_ttfb" 'BEGIN {printf "edgefn %.3f ms, native %.3f ms: +%.3f ms\nfigure: sse_ttfb_extra_ms %.3f\n", e, n, e-n, e-n}'

echo "== 5. three fetches at once of a 50 ms origin, timed in the guest, 50 runs"
fanout="http://127.0.0.1:$examples_port/s/fanout?url=$origin/delay/50&url=$origin/delay/50&url=$origin/delay/50"
for _ in $(seq 1 50); do curl -s "$fanout" | sed -E 's/.*"elapsed_ms":([0-9]+).*/\1/'; echo; done | sort -n |
    awk '{v[NR]=$1} END {printf "p50 %d ms, max %d ms\nfigure: fanout_3x50_ms %d\n", v[int(NR/2)+1], v[NR], v[int(NR/2)+1]}'
