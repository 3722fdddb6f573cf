#!/usr/bin/env bash
# Benchmarks (figures and ratios measured in one run, not pass/fail):
# peerwire against raw WebRTC in the same headless Chromium, release build,
# through a release broker on loopback. PEERWIRE_BENCH_RUNS sets the number
# of connect runs (default 20).
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
bash tests/setup.sh --browser
export PATH="$HOME/.cargo/bin:$PATH"
cargo build -q --release -p peerwire-broker
WORK=$(mktemp -d)
BROKER_PID=""
cleanup() {
  [ -n "$BROKER_PID" ] && kill "$BROKER_PID" 2>/dev/null && wait "$BROKER_PID" 2>/dev/null
  rm -rf "$WORK"
}
trap cleanup EXIT
python3 tests/broker_ctl.py target/release/peerwire-broker --static /nonexistent >"$WORK/broker.out" &
BROKER_PID=$!
for _ in $(seq 100); do grep -q '^broker ' "$WORK/broker.out" 2>/dev/null && break; sleep 0.1; done
read -r _ PEERWIRE_TEST_BROKER _ PEERWIRE_TEST_CTL <"$WORK/broker.out"
export PEERWIRE_TEST_BROKER PEERWIRE_TEST_CTL
export WASM_BINDGEN_TEST_WEBDRIVER_JSON="$ROOT/tests/webdriver.json" WASM_BINDGEN_TEST_TIMEOUT=600
echo "machine: $(nproc) cores, $(free -g | awk '/Mem:/ {print $2}') GiB; $(/usr/bin/chromium --version 2>/dev/null)"
wasm-pack test --release --headless --chrome --chromedriver /usr/bin/chromedriver --test bench_sdk -- --nocapture 2>&1 \
  | grep -E 'BENCH|test result|panicked'
