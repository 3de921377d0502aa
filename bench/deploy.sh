#!/usr/bin/env bash
# Issue 8: live deploys. (i) deploy-to-live latency of examples/hello: from the start of `edgefn deploy` (upload)
# to the first 200 from the new version, split into compile (snapshot + ahead-of-time compile, as the host reports
# it) and switch; the same for a rollback (cached artifact, nothing compiles). (ii) hello req/s while 10 deploys run
# back to back, against steady state, in the same run, with the error count.
#
#   bash bench/deploy.sh [deploys] [connections]
#
# Every deploy gives hello a new configuration (--env DEPLOY=n): a new version, whose snapshot and artifact are
# keyed by the new config hash, so each one runs init and compiles, as a code change would. Needs wrk and curl.
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/lib.sh
deploys=${1:-10}
connections=${2:-16}
threads=2
require_wrk

build_release edgefn-host hello
wasm=target/wasm32-wasip2/release/hello.wasm
data=$(mktemp -d)
port=18190
admin_port=18191
url="http://127.0.0.1:$port/hello/bench"

./target/release/edgefn up --listen 127.0.0.1:$port --admin-listen 127.0.0.1:$admin_port --data "$data" \
    >/dev/null 2>"$data/host.log" &
host_pid=$!
trap 'kill $host_pid 2>/dev/null || true; rm -rf "$data"' EXIT
wait_for "http://127.0.0.1:$port/healthz"
edgefn() { ./target/release/edgefn "$@" --admin "http://127.0.0.1:$admin_port" --data "$data"; }
edgefn deploy "$wasm" --name hello >/dev/null
[ "$(curl -s "$url")" = "Hello, bench!" ] || { echo "hello is not answering" >&2; exit 1; }

now_ns() { date +%s%N; }
# The version the host's log says served the last request to /hello/bench.
served_by() { grep ' request ' "$data/host.log" | grep 'path=/hello/bench' | tail -1 | sed -n 's/.*version=\([0-9]*\).*/\1/p'; }

echo "(i) deploy-to-live latency, examples/hello, each deploy a new version (new config: init runs, it compiles)"
n=0
for i in $(seq 1 5); do
    n=$((n + 1))
    start=$(now_ns)
    out=$(edgefn deploy "$wasm" --name hello --env "DEPLOY=$n")
    until curl -fs -o /dev/null "$url"; do :; done
    end=$(now_ns)
    version=$(sed -n 's/.*version \([0-9]*\) .*/\1/p' <<<"$out")
    [ "$(served_by)" = "$version" ] || { echo "the first 200 came from version $(served_by), not $version" >&2; exit 1; }
    compile=$(sed -n 's/.*compiled in \([0-9]*\) ms.*/\1/p' <<<"$out")
    switch=$(sed -n 's/.*live in \([0-9.]*\) ms.*/\1/p' <<<"$out")
    printf '  deploy %d -> version %s: upload to first 200 from it %6.1f ms (compile %s ms, switch %s ms)\n' \
        "$i" "$version" "$(( (end - start) / 1000 ))e-3" "$compile" "$switch"
done
for i in $(seq 1 3); do
    start=$(now_ns)
    out=$(edgefn rollback hello)
    until curl -fs -o /dev/null "$url"; do :; done
    end=$(now_ns)
    version=$(sed -n 's/.*version \([0-9]*\) is live.*/\1/p' <<<"$out")
    [ "$(served_by)" = "$version" ] || { echo "the first 200 came from version $(served_by), not $version" >&2; exit 1; }
    printf '  rollback %d -> version %s: command to first 200 from it %6.1f ms (no compile; %s)\n' \
        "$i" "$version" "$(( (end - start) / 1000 ))e-3" "$(sed -n 's/.*(\([0-9.]* ms\)).*/\1/p' <<<"$out")"
done

echo "(ii) req/s, $connections connections, $threads wrk threads: steady vs during $deploys back-to-back deploys"
# How long the deploys take unloaded decides the length of both runs.
start=$(now_ns)
for i in $(seq 1 "$deploys"); do n=$((n + 1)); edgefn deploy "$wasm" --name hello --env "DEPLOY=$n" >/dev/null; done
seconds=$(( ( $(now_ns) - start ) / 1000000000 + 1 ))
run() { # label -> "req/s errors"
    local out rps errors
    out=$(wrk -t$threads -c"$connections" -d"${seconds}s" --latency "$url")
    rps=$(awk '/Requests\/sec/ {print $2}' <<<"$out")
    errors=$(awk '/Non-2xx|Socket errors/ {print}' <<<"$out")
    printf '  %-34s %10s req/s  p99 %8s  errors: %s\n' "$1" "$rps" "$(awk '$1=="99%" {print $2}' <<<"$out")" \
        "${errors:-none}"
    echo "$rps" >>"$data/rps"
    # Every failed request as one number: non-2xx responses plus socket errors of any kind.
    awk '/Non-2xx/ {n += $NF} /Socket errors/ {gsub(",", ""); n += $4 + $6 + $8 + $10} END {print n + 0}' <<<"$out" \
        >>"$data/errors"
}
run "steady, before (${seconds}s)"
( sleep 0.2; for i in $(seq 1 "$deploys"); do n=$((n + 1000)); edgefn deploy "$wasm" --name hello --env "DEPLOY=$n" >/dev/null; done ) &
deploying=$!
deploy_start=$(now_ns)
run "during $deploys deploys (${seconds}s)"
wait $deploying
echo "  the $deploys deploys took $(( ( $(now_ns) - deploy_start ) / 1000000 )) ms under load"
# The same with deploys whose artifacts are cached (two configurations alternating: each deploy is a new version,
# nothing compiles): what the switch itself costs.
edgefn deploy "$wasm" --name hello --env "CACHED=a" >/dev/null
edgefn deploy "$wasm" --name hello --env "CACHED=b" >/dev/null
( sleep 0.2; for i in $(seq 1 "$deploys"); do edgefn deploy "$wasm" --name hello --env "CACHED=$([ $((i % 2)) = 0 ] && echo b || echo a)" >/dev/null; done ) &
deploying=$!
run "during $deploys cached deploys (${seconds}s)"
wait $deploying
run "steady, after (${seconds}s)"
# Steady state is the mean of the runs before and after, which brackets any drift of the machine.
awk '{r[NR]=$1} END {s=(r[1]+r[4])/2; printf "  ratio to steady (%.0f req/s): during deploys %.2fx, during cached deploys %.2fx\n", s, r[2]/s, r[3]/s;
     printf "figure: deploys_vs_steady %.3f\n", r[2]/s}' "$data/rps"
# Failed requests while the compiling deploys ran (the second run).
echo "figure: deploys_errors $(sed -n 2p "$data/errors")"
