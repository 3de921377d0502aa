#!/usr/bin/env bash
# Issue 9's reliability run (about 3 minutes): neighbour latency and host RSS under each attack of a hostile
# tenant, 256 connections for 60 s, and 5 SIGKILLs during 10,000 queued messages. See bench/reliability.rs.
#   bash bench/reliability.sh
# Needs wrk (apt-get install wrk).
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/lib.sh
require_wrk
rustup target add wasm32-wasip2 >/dev/null 2>&1 || true
cargo bench -p edgefn-host --bench reliability 2>&1 | grep -v "^ *\(Compiling\|Finished\|Running\)"
