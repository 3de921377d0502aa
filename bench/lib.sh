# Sourced by the benchmark scripts (`. bench/lib.sh` from the workspace root): the tools they need, the release
# builds they run, and waiting for a server to answer.

# require COMMAND HOW-TO-INSTALL: stops the benchmark, saying how to get COMMAND, when it is missing.
require() {
    command -v "$1" >/dev/null || { echo "$1 is not installed: $2" >&2; exit 1; }
}
require_wrk() { require wrk "apt-get install wrk"; }
require_wasmtime() { require wasmtime "cargo install wasmtime-cli --version 48.0.8 --locked"; }

# build_release "NATIVE CRATES" ["GUEST CRATES"]: release builds of the host-side crates, then of the guests for
# wasm32-wasip2.
build_release() {
    rustup target add wasm32-wasip2 >/dev/null 2>&1 || true
    local crate guests=()
    # One crate per build: cargo unifies the features of every crate it builds at once, so `-p edgefn-host -p
    # bench-ceiling` would give the host a feature set of its own, and the next script's `-p edgefn-host` would
    # rebuild it (4-5 minutes here) and measure a different binary.
    for crate in $1; do cargo build --release -p "$crate" >&2; done
    for crate in ${2:-}; do guests+=(-p "$crate"); done
    if [ ${#guests[@]} -gt 0 ]; then cargo build --release --target wasm32-wasip2 "${guests[@]}" >&2; fi
}

# wait_for URL: until URL answers 2xx; stops the benchmark if it has not within 30 s.
wait_for() {
    for _ in $(seq 1 300); do
        curl -fs -o /dev/null "$1" 2>/dev/null && return 0
        sleep 0.1
    done
    echo "$1 did not answer within 30 s" >&2
    exit 1
}

# wrk_url NAME URL: one wrk run against URL with the caller's $threads, $connections and $seconds; prints NAME, the
# caller's $round, req/s, p50 and p99, and appends "NAME req/s" to $data/rps for the caller's summary.
wrk_url() {
    local out rps p50 p99
    out=$(wrk -t"$threads" -c"$connections" -d"${seconds}s" --latency "$2")
    rps=$(awk '/Requests\/sec/ {print $2}' <<<"$out")
    p50=$(awk '$1=="50%" {print $2}' <<<"$out")
    p99=$(awk '$1=="99%" {print $2}' <<<"$out")
    printf '%-9s round %s  %10s req/s  p50 %8s  p99 %8s\n' "$1" "$round" "$rps" "$p50" "$p99"
    echo "$1 $rps" >>"$data/rps"
}

# wrk_round NAME PORT: wrk_url against http://127.0.0.1:PORT/hello/bench.
wrk_round() {
    wrk_url "$1" "http://127.0.0.1:$2/hello/bench"
}
