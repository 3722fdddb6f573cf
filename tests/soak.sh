#!/usr/bin/env bash
# Soak test for the broker (NOT part of CI; tests/run.sh does not call it).
# Loopback only, bounded: SOAK_CLIENTS clients (default 2000) register, join
# and leave rooms, signal and disconnect (clean, away, eof, hard; some
# resuming inside the grace window) at random for SOAK_SECONDS (default 120,
# at most 900). Then every signal is accounted for (delivered exactly once and
# in order, or refused with an error the sender got, or lost in a way the
# broker cannot see: see the header of server/examples/soak.rs), the broker's
# /metrics gauges must read 0 and its RSS be back near its baseline.
# Exit status: the soak's (0 = no violation).
#
#   bash tests/soak.sh                       # 2000 clients, 120 s
#   SOAK_CLIENTS=5000 SOAK_SECONDS=300 bash tests/soak.sh
#   SOAK_GRACE_MS (default 5000), SOAK_ARGS (extra soak flags, e.g. "--seed 7")
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
export PATH="$HOME/.cargo/bin:$PATH"
CLIENTS=${SOAK_CLIENTS:-2000}
SECONDS_=${SOAK_SECONDS:-120}
GRACE_MS=${SOAK_GRACE_MS:-5000}
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}

# Each client holds one socket here and one in the broker, plus reconnects
# in flight; both processes inherit the limit.
want=$((CLIENTS * 2 + 1024))
hard=$(ulimit -Hn)
if [ "$hard" != unlimited ] && [ "$hard" -lt "$want" ]; then want=$hard; fi
ulimit -n "$want"
echo "open-file limit $(ulimit -n) for $CLIENTS clients"

cargo build -q --release -p peerwire-broker --bins --examples

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_port() { for _ in $(seq 100); do (exec 3<>/dev/tcp/127.0.0.1/"$1") 2>/dev/null && return 0; sleep 0.1; done; return 1; }

PORT=$(free_port)
LOG=$(mktemp)
BROKER_PID=""
cleanup() {
  if [ -n "$BROKER_PID" ]; then kill "$BROKER_PID" 2>/dev/null || true; wait "$BROKER_PID" 2>/dev/null || true; fi
  rm -f "$LOG"
}
trap cleanup EXIT
# All clients come from 127.0.0.1: the per-address connection cap and
# message budget are lifted. The per-connection limits stay at their
# defaults (50/s, burst 200): each soak client stays far below them.
"$TARGET/release/peerwire-broker" --port "$PORT" --static /nonexistent \
  --grace-ms "$GRACE_MS" \
  --max-connections-per-ip 1000000 --ip-rate-limit 100000000 --ip-rate-burst 100000000 \
  --stun-port 0 >"$LOG" 2>&1 &
BROKER_PID=$!
wait_port "$PORT" || { cat "$LOG" >&2; echo "the broker did not start" >&2; exit 1; }
sleep 1 # let the baseline RSS settle

status=0
# shellcheck disable=SC2086 # SOAK_ARGS is a list of flags
"$TARGET/release/examples/soak" --url "ws://127.0.0.1:$PORT/ws" --clients "$CLIENTS" \
  --seconds "$SECONDS_" --pid "$BROKER_PID" ${SOAK_ARGS:-} || status=$?
if ! kill -0 "$BROKER_PID" 2>/dev/null; then
  echo "the broker died during the soak:" >&2; cat "$LOG" >&2; status=1
fi
if grep -qi panic "$LOG"; then
  echo "the broker logged a panic:" >&2; grep -i -A5 panic "$LOG" >&2; status=1
fi
exit "$status"
