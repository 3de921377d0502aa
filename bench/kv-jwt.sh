#!/usr/bin/env bash
# Issue 11: state and identity.
#  (o) KV get/set ops/s and latency from inside a guest: kv-probe's `bench` op times N sets, then N gets of the
#      same keys, one after another, in one invocation, with the guest's own monotonic clock. Each set is one
#      committed SQLite write (WAL) on the host's blocking pool; each get one indexed read.
#  (p) JWT verification cost: req/s of two identical functions of one component (tests/guests/auth-bench), `/open`
#      and `/protected` (auth = "bench"), in the same run, with a token of each algorithm. The authorizer holds
#      tests/fixtures/jwt/jwks-1.json (RSA 2048, P-256, Ed25519) and an HS256 secret. wrk repeats one token per
#      run, so after its first request the host answers from its cache of verified tokens.
#
#   bash bench/kv-jwt.sh [kv-ops] [seconds] [connections]
#
# Needs wrk and curl.
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/lib.sh
ops=${1:-5000}
seconds=${2:-10}
connections=${3:-16}
threads=2
require_wrk

build_release edgefn-host "kv-probe auth-bench"
data=$(mktemp -d)
port=18192
admin_port=18193
fixtures=$PWD/tests/fixtures/jwt
cat >"$data/edgefn.toml" <<TOML
[authorizers.bench]
issuer = "https://auth.bench.test/"
audiences = ["bench"]
jwks_file = "$fixtures/jwks-1.json"
hs256_secret = "bench-only-hs256-secret-0123456789abcdef"
TOML

./target/release/edgefn up --config "$data/edgefn.toml" --listen 127.0.0.1:$port \
    --admin-listen 127.0.0.1:$admin_port --data "$data/state" >/dev/null 2>"$data/host.log" &
host_pid=$!
trap 'kill $host_pid 2>/dev/null || true; rm -rf "$data"' EXIT
wait_for "http://127.0.0.1:$port/healthz"
edgefn() { ./target/release/edgefn "$@" --admin "http://127.0.0.1:$admin_port" --data "$data/state"; }
edgefn deploy target/wasm32-wasip2/release/kv_probe.wasm --name kv-probe --kv-store bench-100 --kv-store bench-10000 >/dev/null
edgefn deploy target/wasm32-wasip2/release/auth_bench.wasm --name auth-bench >/dev/null

echo "(o) KV from a guest: $ops sets then $ops gets, one invocation, sequential"
for value_bytes in 100 10000; do
    # A fresh store per size: every set inserts a new key.
    out=$(edgefn invoke kv "{\"op\":\"bench\",\"store\":\"bench-$value_bytes\",\"ops\":$ops,\"value_bytes\":$value_bytes}")
    python3 - "$value_bytes" "$out" <<'PY'
import json, sys
size, r = sys.argv[1], json.loads(sys.argv[2])
print(f"  {int(size):>6} B values  set {r['set_ops_per_s']:>9,.0f} ops/s  p50 {r['set_p50_us']:7.1f} us  p99 {r['set_p99_us']:7.1f} us"
      f"   get {r['get_ops_per_s']:>9,.0f} ops/s  p50 {r['get_p50_us']:7.1f} us  p99 {r['get_p99_us']:7.1f} us")
PY
done

echo "(p) req/s, $connections connections, $threads wrk threads, ${seconds}s each: open vs protected, same host"
mint() { ./target/release/edgefn token mint --config "$data/edgefn.toml" --authorizer bench --sub bench --ttl 1h "$@"; }
hs256=$(mint)
rs256=$(mint --key "$fixtures/rsa-1.pem" --kid rsa-1)
es256=$(mint --key "$fixtures/ec-1.pem" --kid ec-1)
eddsa=$(mint --key "$fixtures/ed-1.pem" --kid ed-1)
[ "$(curl -s "http://127.0.0.1:$port/open")" = ok ] || { echo "/open is not answering" >&2; exit 1; }
[ "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$port/protected")" = 401 ] \
    || { echo "/protected answers without a token" >&2; exit 1; }
for token in "$hs256" "$rs256" "$es256" "$eddsa"; do
    [ "$(curl -s -H "authorization: Bearer $token" "http://127.0.0.1:$port/protected")" = ok ] \
        || { echo "/protected refuses a minted token" >&2; exit 1; }
done
run() { # label path [header]
    local out rps errors header=()
    [ -n "${3:-}" ] && header=(-H "$3")
    out=$(wrk -t$threads -c"$connections" -d"${seconds}s" --latency "${header[@]}" "http://127.0.0.1:$port$2")
    rps=$(awk '/Requests\/sec/ {print $2}' <<<"$out")
    errors=$(awk '/Non-2xx|Socket errors/ {print}' <<<"$out")
    printf '  %-24s %10s req/s  p50 %8s  p99 %8s  errors: %s\n' "$1" "$rps" \
        "$(awk '$1=="50%" {print $2}' <<<"$out")" "$(awk '$1=="99%" {print $2}' <<<"$out")" "${errors:-none}"
}
wrk -t$threads -c"$connections" -d2s "http://127.0.0.1:$port/open" >/dev/null   # warm up
run "open" /open
run "protected, HS256" /protected "authorization: Bearer $hs256"
run "protected, RS256 (2048)" /protected "authorization: Bearer $rs256"
run "protected, ES256" /protected "authorization: Bearer $es256"
run "protected, EdDSA" /protected "authorization: Bearer $eddsa"
run "open (again)" /open
