#!/usr/bin/env bash
# Benchmarks: figures and ratios measured in one run on this machine, not
# pass/fail. Loopback only; bounded in clients and time.
#   1. connect time and 64 MiB throughput in headless Chromium: raw WebRTC,
#      peerwire (the npm package as users get it), PeerJS with its server;
#   2. the broker under N WebSocket clients (server/examples/loadgen.rs), and
#      the PeerJS server under the same load;
#   3. bundle size.
# PEERWIRE_BENCH_RUNS (connect runs, default 20), PEERWIRE_BENCH_CLIENTS
# (default "1000 10000 19000": issue 17 sets the memory target at 19 000) tune it.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
bash tests/setup.sh --browser
export PATH="$HOME/.cargo/bin:$PATH"
WORK=$(mktemp -d)
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  rm -rf "$WORK"
}
trap cleanup EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_port() { for _ in $(seq 100); do (exec 3<>/dev/tcp/127.0.0.1/"$1") 2>/dev/null && return 0; sleep 0.1; done; return 1; }

echo "machine: $(nproc) cores, $(free -g | awk '/Mem:/ {print $2}') GiB, $(uname -m); $(/usr/bin/chromium --version 2>/dev/null); node $(node --version)"
cargo build -q --release -p peerwire-broker --bins --examples
TGZ=$(bash tests/package.sh "$WORK/package")
mkdir -p "$WORK/bench"
cp tests/bench/bench.html tests/bench/bench.mjs tests/bench/peerjs-server.mjs tests/bench/package.json "$WORK/bench/"
(cd "$WORK/bench" && npm install --no-audit --no-fund --silent && npm install --no-audit --no-fund --silent --no-save "$TGZ")

BROKER_PORT=$(free_port)
# No STUN (--stun-port 0): the baselines get no ICE servers either, and
# udp/3478 may be taken by another broker or coturn.
target/release/peerwire-broker --port "$BROKER_PORT" --static "$WORK/bench" --max-connections-per-ip 10000 \
  --ip-rate-limit 100000 --ip-rate-burst 100000 --stun-port 0 >/dev/null 2>&1 &
BROKER_PID=$!; PIDS+=("$BROKER_PID")
PEERJS_PORT=$(free_port)
(cd "$WORK/bench" && exec node peerjs-server.mjs "$PEERJS_PORT" >/dev/null 2>&1) &
PEERJS_PID=$!; PIDS+=("$PEERJS_PID")
wait_port "$BROKER_PORT" && wait_port "$PEERJS_PORT"

echo; echo "== 1. browser: connect and throughput"
(cd "$WORK/bench" && BENCH_URL="http://127.0.0.1:$BROKER_PORT/bench.html" BROKER_WS="ws://127.0.0.1:$BROKER_PORT/ws" \
  PEERJS_PORT="$PEERJS_PORT" node bench.mjs)

echo; echo "== 2. signalling servers under load (loadgen; open-file limit $(ulimit -n))"
for n in ${PEERWIRE_BENCH_CLIENTS:-1000 10000 19000}; do
  # Fresh servers per size, so memory per connection starts from idle.
  kill "$BROKER_PID" "$PEERJS_PID" 2>/dev/null || true; sleep 0.5
  # The load comes from one address and far above a browser's rate: the
  # per-connection and per-address limits are lifted for the measurement.
  target/release/peerwire-broker --port "$BROKER_PORT" --static /nonexistent --max-connections-per-ip 100000 \
    --rate-limit 1000000 --rate-burst 1000000 --ip-rate-limit 10000000 --ip-rate-burst 10000000 --stun-port 0 >/dev/null 2>&1 &
  BROKER_PID=$!; PIDS+=("$BROKER_PID")
  (cd "$WORK/bench" && exec node peerjs-server.mjs "$PEERJS_PORT" >/dev/null 2>&1) &
  PEERJS_PID=$!; PIDS+=("$PEERJS_PID")
  wait_port "$BROKER_PORT" && wait_port "$PEERJS_PORT"
  target/release/examples/loadgen --url "ws://127.0.0.1:$BROKER_PORT/ws" --protocol peerwire --clients "$n" --pairs 100 --seconds 10 --pid "$BROKER_PID" | tee "$WORK/load-peerwire-$n"
  target/release/examples/loadgen --url "ws://127.0.0.1:$PEERJS_PORT/peerjs" --protocol peerjs --clients "$n" --pairs 100 --seconds 10 --pid "$PEERJS_PID" | tee "$WORK/load-peerjs-$n"
  # Each figure against the PeerJS server's in the same run.
  python3 - "$n" "$WORK/load-peerwire-$n" "$WORK/load-peerjs-$n" <<'PY'
import re, sys
n, ours, theirs = sys.argv[1], open(sys.argv[2]).read(), open(sys.argv[3]).read()
def num(pattern, text):
    m = re.search(pattern, text)
    return float(m.group(1)) if m else None
for label, pattern, unit in [
    ("RSS per idle connection", r"([0-9.]+) KiB per idle connection", "KiB"),
    ("signals relayed / s", r"([0-9.]+) signals/s relayed", ""),
    ("latency p50", r"p50 ([0-9.]+) ms", "ms"),
    ("latency p99", r"p99 ([0-9.]+) ms", "ms"),
    ("server CPU per signal", r"server ([0-9.]+) µs", "µs"),
    ("load generator CPU per signal", r"load generator ([0-9.]+) µs", "µs"),
]:
    a, b = num(pattern, ours), num(pattern, theirs)
    ratio = f"{a / b:.2f}" if a is not None and b else "n/a"
    print(f"RATIO {n} clients, {label}: peerwire {a} {unit} / PeerJS {b} {unit} = {ratio}")
PY
done

echo; echo "== 3. bundle size (release package: wasm-opt -Oz)"
size() { printf '%-28s %8d bytes raw, %8d gzip\n' "$1" "$(wc -c <"$2")" "$(gzip -9 -c "$2" | wc -c)"; }
# Each entry: its .wasm, and every .js it loads (entry, glue, snippets), each
# file gzipped on its own as a server sends them.
sizes() { # label, files...
  local label=$1 raw=0 gz=0 f; shift
  for f in "$@"; do raw=$((raw + $(wc -c <"$f"))); gz=$((gz + $(gzip -9 -c "$f" | wc -c))); done
  printf '%-28s %8d bytes raw, %8d gzip\n' "$label" "$raw" "$gz"
}
for entry in "" lite/; do
  dir="$WORK/package/$entry"
  size "${entry}peerwire_bg.wasm" "$dir/peerwire_bg.wasm"
  sizes "${entry}peerwire JS (all files)" "$dir/peerwire.js" "$dir/peerwire_glue.js" $(find "$dir/snippets" -name '*.js' | sort)
  sizes "${entry}peerwire total" "$dir/peerwire_bg.wasm" "$dir/peerwire.js" "$dir/peerwire_glue.js" $(find "$dir/snippets" -name '*.js' | sort)
done
size "peerjs.min.js (comparison)" "$WORK/bench/node_modules/peerjs/dist/peerjs.min.js"
# twiggy (from crates.io) reads the wasm's code by crate.
command -v twiggy >/dev/null || cargo install -q twiggy --version 0.8.0 >&2 || true
if command -v twiggy >/dev/null; then
  echo "code by crate (twiggy over a build that keeps names; before wasm-bindgen and wasm-opt):"
  # The full entry's build as tests/package.sh makes it (the pinned nightly,
  # std rebuilt for size), into that script's target directory.
  NIGHTLY=$(sed -n 's/^NIGHTLY=\${PEERWIRE_NIGHTLY:-\(.*\)}$/\1/p' tests/package.sh)
  NIGHTLY_RUSTFLAGS=$(sed -n 's/^NIGHTLY_RUSTFLAGS="\(.*\)"$/\1/p' tests/package.sh)
  SIZE_DIR="$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')/wasm-size"
  CARGO_TARGET_DIR="$SIZE_DIR" RUSTFLAGS="$NIGHTLY_RUSTFLAGS" \
    cargo "+$NIGHTLY" -Zbuild-std=std,panic_abort -Zbuild-std-features=optimize_for_size \
    build -q --lib --target wasm32-unknown-unknown --profile wasm-release
  twiggy top -n 100000 --format csv "$SIZE_DIR/wasm32-unknown-unknown/wasm-release/peerwire.wasm" | python3 tests/bench/size-by-crate.py
else
  echo "(twiggy did not install: no bytes-by-crate breakdown)"
fi
