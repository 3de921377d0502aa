#!/usr/bin/env bash
# Benchmarks of the gateway (issue 24), each pair alternating in one run with wrk, defaults against defaults, all on
# 127.0.0.1:
#
# - static: a 4 KiB file (`/app.css`) served by edgefn from a component's static files vs tower-http's `ServeDir`
#   of the same folder in a native axum server (bench/ceiling with STATIC_DIR);
# - websocket: 1,000 connections to the same guest's `/ws/{room}`, a broadcast from a function to all of them, the
#   time until the last has it (bench/websocket.rs, median of 5 rounds);
# - cache: a function's cacheable GET (`/cached/ada` of the gateway-probe guest, `Cache-Control: public,
#   max-age=60`) from a host with the response cache on (the default: hits) vs the same host config with
#   `[cache] enabled = false` (every request runs the function).
#
#   bash bench/gateway.sh [rounds] [seconds-per-run] [connections]
#
# Needs: wrk (apt-get install wrk).
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/lib.sh
rounds=${1:-3}
seconds=${2:-10}
connections=${3:-16}
threads=2

require_wrk
build_release "edgefn-host bench-ceiling" gateway-probe
# The WebSocket client, built now so that nothing compiles while the servers are measured.
cargo bench --no-run -q -p edgefn-host --bench websocket >&2
wasm=target/wasm32-wasip2/release/gateway_probe.wasm
data=$(mktemp -d)
mkdir -p "$data/site" "$data/on" "$data/off"
head -c 4096 /dev/urandom | base64 -w 100 | head -c 4096 >"$data/site/app.css"
echo '<!doctype html><title>bench</title>' >"$data/site/index.html"
printf '[components.gateway_probe]\nkey_value_stores = ["default"]\n[components.gateway_probe.assets]\ndir = "%s"\n' \
    "$data/site" >"$data/on.toml"
printf '[cache]\nenabled = false\n' >"$data/off.toml"

static_port=18183
native_port=18184
uncached_port=18185
./target/release/edgefn up --listen 127.0.0.1:$static_port --admin-listen 127.0.0.1:0 --data "$data/on" \
    --config "$data/on.toml" "$wasm" >/dev/null 2>"$data/on.log" &
on_pid=$!
./target/release/edgefn up --listen 127.0.0.1:$uncached_port --admin-listen 127.0.0.1:0 --data "$data/off" \
    --config "$data/off.toml" "$wasm" >/dev/null 2>"$data/off.log" &
off_pid=$!
STATIC_DIR="$data/site" ./target/release/bench-ceiling 127.0.0.1:$native_port >/dev/null 2>"$data/native.log" &
native_pid=$!
trap 'kill $on_pid $off_pid $native_pid 2>/dev/null || true; rm -rf "$data"' EXIT
for url in "http://127.0.0.1:$static_port/app.css" "http://127.0.0.1:$native_port/app.css" \
    "http://127.0.0.1:$uncached_port/cached/ada"; do
    wait_for "$url"
done
cmp <(curl -s "http://127.0.0.1:$static_port/app.css") "$data/site/app.css" || { echo "edgefn serves another app.css" >&2; exit 1; }
cmp <(curl -s "http://127.0.0.1:$native_port/app.css") "$data/site/app.css" || { echo "ServeDir serves another app.css" >&2; exit 1; }
curl -s -o /dev/null "http://127.0.0.1:$static_port/cached/ada"
[ "$(curl -s -D - -o /dev/null "http://127.0.0.1:$static_port/cached/ada" | tr -d '\r' | awk -F': ' '$1=="x-edgefn-cache" {print $2}')" = hit ] \
    || { echo "the cached host does not answer /cached/ada from its cache" >&2; exit 1; }
[ "$(curl -s -D - -o /dev/null "http://127.0.0.1:$uncached_port/cached/ada" | tr -d '\r' | awk -F': ' '$1=="x-edgefn-cache" {print $2}')" = "" ] \
    || { echo "the uncached host has a cache" >&2; exit 1; }


echo "gateway, $connections connections, $threads wrk threads, ${seconds}s per run, $rounds rounds"
for round in $(seq 1 "$rounds"); do
    wrk_url static "http://127.0.0.1:$static_port/app.css"
    wrk_url servedir "http://127.0.0.1:$native_port/app.css"
    wrk_url cached "http://127.0.0.1:$static_port/cached/ada"
    wrk_url uncached "http://127.0.0.1:$uncached_port/cached/ada"
done
awk '{sum[$1]+=$2; n[$1]++} END {
     s=sum["static"]/n["static"]; d=sum["servedir"]/n["servedir"]; c=sum["cached"]/n["cached"]; u=sum["uncached"]/n["uncached"];
     printf "mean: static %.0f req/s, ServeDir %.0f req/s; cached %.0f req/s, uncached %.0f req/s\n", s, d, c, u;
     printf "static vs ServeDir %.3fx, cached vs uncached %.2fx\n", s/d, c/u;
     printf "figure: static_vs_servedir %.3f\nfigure: cached_vs_uncached %.3f\n", s/d, c/u}' "$data/rps"
cargo bench -q -p edgefn-host --bench websocket -- "http://127.0.0.1:$static_port" 1000 5 2>&1 | grep -v "^ *\(Compiling\|Finished\|Running\)"
