#!/usr/bin/env bash
# Soak test for the broker, or for a network of brokers sharing one Redis.
# Loopback only, bounded: SOAK_CLIENTS clients (default 2000) register, join
# and leave rooms, signal and disconnect (clean, away, eof, hard; some
# resuming inside the grace window) at random for SOAK_SECONDS (default 120,
# at most 900). Then every signal is accounted for (delivered exactly once and
# in order, or refused with an error the sender got, or lost in a way the
# broker cannot see: see the header of server/examples/soak.rs), every
# broker's /metrics gauges must read 0 and its RSS be back near its baseline.
# Exit status: the soak's (0 = no violation).
#
# SOAK_BROKERS=N (default 1): N broker processes joined by a redis-server
# (Debian's; `tests/setup.sh --browser` installs it) on a free loopback port;
# clients start spread over them and a reconnect moves to another broker
# some of the time (resumes across brokers); Redis must hold nothing of the
# run at the end. tests/run.sh runs a small one of these in CI.
#
#   bash tests/soak.sh                       # 2000 clients, 120 s, one broker
#   SOAK_BROKERS=3 bash tests/soak.sh        # three brokers and Redis
#   SOAK_CLIENTS=5000 SOAK_SECONDS=300 bash tests/soak.sh
#   SOAK_GRACE_MS (default 5000), SOAK_ARGS (extra soak flags, e.g. "--seed 7"),
#   SOAK_PROFILE=debug (use the debug builds, e.g. those `cargo test` left)
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
export PATH="$HOME/.cargo/bin:$PATH"
CLIENTS=${SOAK_CLIENTS:-2000}
SECONDS_=${SOAK_SECONDS:-120}
GRACE_MS=${SOAK_GRACE_MS:-5000}
BROKERS=${SOAK_BROKERS:-1}
PROFILE=${SOAK_PROFILE:-release}
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
case "$PROFILE" in
  release) BUILD_FLAGS=(--release) ;;
  debug) BUILD_FLAGS=() ;;
  *) echo "SOAK_PROFILE is release or debug" >&2; exit 2 ;;
esac
[ "$BROKERS" -ge 1 ] || { echo "SOAK_BROKERS must be at least 1" >&2; exit 2; }

# Each client holds one socket here and one in a broker, plus reconnects
# in flight; every process inherits the limit.
want=$((CLIENTS * 2 + 1024))
hard=$(ulimit -Hn)
if [ "$hard" != unlimited ] && [ "$hard" -lt "$want" ]; then want=$hard; fi
ulimit -n "$want"
echo "open-file limit $(ulimit -n) for $CLIENTS clients on $BROKERS broker(s)"

cargo build -q "${BUILD_FLAGS[@]}" -p peerwire-broker --bins --examples

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_port() { for _ in $(seq 100); do (exec 3<>/dev/tcp/127.0.0.1/"$1") 2>/dev/null && return 0; sleep 0.1; done; return 1; }

WORK=$(mktemp -d)
PIDS=()
cleanup() {
  local p
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
  rm -rf "$WORK"
}
trap cleanup EXIT

NETWORK=()
SOAK_NET=()
if [ "$BROKERS" -gt 1 ]; then
  command -v redis-server >/dev/null || { echo "SOAK_BROKERS=$BROKERS needs redis-server (tests/setup.sh --browser installs it)" >&2; exit 1; }
  REDIS_PORT=$(free_port)
  redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save "" --appendonly no --protected-mode no \
    >"$WORK/redis.log" 2>&1 &
  PIDS+=($!)
  wait_port "$REDIS_PORT" || { cat "$WORK/redis.log" >&2; echo "redis-server did not start" >&2; exit 1; }
  NETWORK=(--redis "redis://127.0.0.1:$REDIS_PORT")
  SOAK_NET=(--redis "redis://127.0.0.1:$REDIS_PORT")
fi

# All clients come from 127.0.0.1: the per-address connection cap and
# message budget are lifted. The per-connection limits stay at their
# defaults (50/s, burst 200): each soak client stays far below them.
URLS=() BROKER_PIDS=()
for b in $(seq "$BROKERS"); do
  port=$(free_port)
  "$TARGET/$PROFILE/peerwire-broker" --port "$port" --static /nonexistent \
    --grace-ms "$GRACE_MS" "${NETWORK[@]}" \
    --max-connections-per-ip 1000000 --ip-rate-limit 100000000 --ip-rate-burst 100000000 \
    --stun-port 0 >"$WORK/broker$b.log" 2>&1 &
  PIDS+=($!) BROKER_PIDS+=($!)
  wait_port "$port" || { cat "$WORK/broker$b.log" >&2; echo "broker $b did not start" >&2; exit 1; }
  URLS+=("ws://127.0.0.1:$port/ws")
done
# In a network, each broker has joined Redis before the soak starts.
if [ "$BROKERS" -gt 1 ]; then
  for u in "${URLS[@]}"; do
    hp=${u#ws://}; hp=${hp%%/*}
    for _ in $(seq 100); do
      curl -fsS "http://$hp/healthz" >/dev/null 2>&1 && break
      sleep 0.1
    done
    curl -fsS "http://$hp/healthz" >/dev/null || { echo "the broker at $hp did not reach Redis" >&2; exit 1; }
  done
fi
sleep 1 # let the baseline RSS settle

status=0
# shellcheck disable=SC2086 # SOAK_ARGS is a list of flags
"$TARGET/$PROFILE/examples/soak" --url "$(IFS=,; echo "${URLS[*]}")" --pid "$(IFS=,; echo "${BROKER_PIDS[*]}")" \
  "${SOAK_NET[@]}" --clients "$CLIENTS" --seconds "$SECONDS_" ${SOAK_ARGS:-} || status=$?
for b in $(seq "$BROKERS"); do
  pid=${BROKER_PIDS[$((b - 1))]}
  if ! kill -0 "$pid" 2>/dev/null; then
    echo "broker $b died during the soak:" >&2; cat "$WORK/broker$b.log" >&2; status=1
  fi
  if grep -qi panic "$WORK/broker$b.log"; then
    echo "broker $b logged a panic:" >&2; grep -i -A5 panic "$WORK/broker$b.log" >&2; status=1
  fi
done
exit "$status"
