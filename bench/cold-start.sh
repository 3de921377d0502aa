#!/usr/bin/env bash
# Benchmarks (d) cold start and (e) density of issue 4.
#
#   bash bench/cold-start.sh [functions]      # default 100: cold start p50/p99; 1000: density (RSS, total time)
#   EDGEFN_EXTRA_ARGS="--max-loaded 1001" bash bench/cold-start.sh 1000   # all 1,000 kept loaded at once
#
# The host runs with its defaults unless EDGEFN_EXTRA_ARGS says otherwise (with the defaults, at most 256
# components stay loaded: the least recently used is unloaded first).
# Generates N distinct components from one plain wasi:http component (each gets a unique custom section, so each
# has its own sha256, artifact and cache entry), deploys them all on one host (compiled ahead of time at deploy,
# kept loaded while the host has room, `max_loaded`), hits each once (its first request after its deploy) and
# stops the host. Then it restarts the host on the same data (nothing compiles, nothing is loaded) and hits each
# once (a cold start: load on demand + fresh instance) and once more (warm). Reports client-side latency, the
# host's own per-request durations, host RSS and total time. Binds to 127.0.0.1 only.
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/lib.sh
count=${1:-100}
extra_args=${EDGEFN_EXTRA_ARGS:-}   # e.g. EDGEFN_EXTRA_ARGS="--keep-resident-kib 0"
port=18190

build_release edgefn-host plain
work=$(mktemp -d)
trap 'kill $host_pid 2>/dev/null || true; rm -rf "$work"' EXIT
host_pid=

python3 - "$count" "$work" target/wasm32-wasip2/release/plain.wasm <<'PY'
import sys
count, work, base = int(sys.argv[1]), sys.argv[2], open(sys.argv[3], "rb").read()
def leb(n):
    out = bytearray()
    while True:
        b = n & 0x7F; n >>= 7
        out.append(b | (0x80 if n else 0))
        if not n: return bytes(out)
name = b"edgefn-bench-variant"
for i in range(count):
    payload = bytes([len(name)]) + name + str(i).encode()
    open(f"{work}/fn{i}.wasm", "wb").write(base + b"\x00" + leb(len(payload)) + payload)
PY

args=()
for i in $(seq 0 $((count - 1))); do args+=(--mount "/fn$i=$work/fn$i.wasm"); done
# start_host LOG: the host with the mounts on $work/data, until it listens.
start_host() {
    # Emptied here, not by the redirection below: that one runs in the background child, and the wait could read
    # the previous run's "edgefn listening" before the child got to it.
    : >"$work/stdout"
    ./target/release/edgefn up --listen 127.0.0.1:$port --data "$work/data" $extra_args \
        "${args[@]}" >"$work/stdout" 2>"$1" &
    host_pid=$!
    until grep -q "edgefn listening" "$work/stdout" 2>/dev/null; do
        kill -0 $host_pid 2>/dev/null || { cat "$1" >&2; exit 1; }
        sleep 0.2
    done
}
# hit KIND: each function once, in order, its client-side time appended to $work/times as KIND.
hit() {
    for i in $(seq 0 $((count - 1))); do
        curl -s -o /dev/null -w "$1 %{time_total}\n" "http://127.0.0.1:$port/fn$i/x" >>"$work/times"
    done
}

# First run: deploy all (each is compiled), then each function's first request after its deploy.
deploy_start=$(date +%s.%N)
start_host "$work/deploy.log"
deploy_end=$(date +%s.%N)
# CPU time the host spent deploying (user + system, in clock ticks): how many cores the compiles kept busy.
deploy_ticks=$(awk '{print $14 + $15}' /proc/$host_pid/stat)
hit first
kill $host_pid
wait $host_pid 2>/dev/null || true

# Second run, the same data: every artifact is reused and nothing is loaded until its request.
start_host "$work/host.log"
rss_before=$(awk '/VmRSS/ {print $2}' /proc/$host_pid/status)
hit_start=$(date +%s.%N)
hit cold
hit_end=$(date +%s.%N)
hit warm
rss_after=$(awk '/VmRSS/ {print $2}' /proc/$host_pid/status)
sleep 0.5

python3 - "$work" "$count" "$deploy_start" "$deploy_end" "$hit_start" "$hit_end" "$rss_before" "$rss_after" \
    "$deploy_ticks" "$(getconf CLK_TCK)" "$(nproc)" <<'PY'
import re, sys
work, count = sys.argv[1], int(sys.argv[2])
deploy_s = float(sys.argv[4]) - float(sys.argv[3])
hit_s = float(sys.argv[6]) - float(sys.argv[5])
rss_before, rss_after = int(sys.argv[7]) / 1024, int(sys.argv[8]) / 1024
def pct(values, p):
    values = sorted(values)
    return values[min(len(values) - 1, int(round(p / 100 * (len(values) - 1))))]
client = {"first": [], "cold": [], "warm": []}
for line in open(f"{work}/times"):
    kind, t = line.split()
    client[kind].append(float(t) * 1000)
server = {"first": [], "cold": [], "warm": []}
# The first run's requests are each function's first after its deploy, warm or cold: whatever the host had room
# to keep loaded. The second run's are split by what the host says each was.
first_starts = {"cold": 0, "warm": 0}
for line in open(f"{work}/deploy.log"):
    m = re.search(r"start=(cold|warm) .* status=(\d+) duration_ms=([\d.]+)", line)
    if m:
        assert m.group(2) == "200", line
        first_starts[m.group(1)] += 1
        server["first"].append(float(m.group(3)))
for line in open(f"{work}/host.log"):
    m = re.search(r"start=(cold|warm) .* status=(\d+) duration_ms=([\d.]+)", line)
    if m:
        assert m.group(2) == "200", line
        server[m.group(1)].append(float(m.group(3)))
print(f"{count} functions: each hit once after its deploy; then, the host restarted, once cold then once warm "
      "(curl, sequential)")
busy = int(sys.argv[9]) / int(sys.argv[10]) / deploy_s
cores = int(sys.argv[11])
print(f"deploy (validate + store + snapshot + compile ahead of time, all {count}): {deploy_s:.1f} s, "
      f"{busy:.2f} of {cores} cores busy")
print(f"figure: deploy_cores_busy_{count} {busy / cores:.2f}")
print(f"first request after the deploy: {first_starts['warm']} warm (kept loaded at deploy), "
      f"{first_starts['cold']} cold")
for kind in ("first", "cold", "warm"):
    c, s = client[kind], server[kind]
    if not s:
        # With more functions than max_loaded, the second hit finds its component unloaded again: cold too.
        print(f"{kind}: none (every hit was a cold start: more functions than limits.max_loaded)")
        continue
    print(f"{kind}: client p50 {pct(c, 50):.3f} ms p99 {pct(c, 99):.3f} ms | host p50 {pct(s, 50):.3f} ms "
          f"p99 {pct(s, 99):.3f} ms ({len(s)} requests)")
print(f"first hit of all {count}: {hit_s:.2f} s total")
print(f"host RSS: {rss_before:.0f} MiB after the restart, {rss_after:.0f} MiB after all {count} were hit")
cold = pct(server["cold"], 50)
print(f"figure: cold_p50_ms_{count} {cold:.3f}")
print(f"figure: first_after_deploy_p50_ms_{count} {pct(server['first'], 50):.3f}")
if server["warm"]:
    warm = pct(server["warm"], 50)
    print(f"figure: cold_vs_warm_p50_{count} {cold / warm:.2f}")
    print(f"figure: first_vs_warm_p50_{count} {pct(server['first'], 50) / warm:.2f}")
print(f"figure: rss_mib_{count} {rss_after:.0f}")
PY
