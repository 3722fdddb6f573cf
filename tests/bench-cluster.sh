#!/usr/bin/env bash
# Benchmark (figures, not pass/fail): a network of three brokers on Redis
# against one broker alone, in the same run on this machine
# (server/examples/cluster_bench.rs says what is measured):
#   1. broker memory per idle registered connection;
#   2. signals relayed per second and p50/p99 latency: one broker, network
#      pairs on one broker, network pairs across two brokers;
#   3. failover: a broker with N clients killed with SIGKILL, until all are
#      registered again on the others with their resume tokens.
# Loopback only; bounded in clients and time (about 2 minutes). Every
# process it starts is stopped by pid on exit, also on failure.
#   BENCH_IDLE (default 3000), BENCH_PAIRS (60), BENCH_SECONDS (8),
#   BENCH_FAILOVER (1500) tune it.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
export PATH="$HOME/.cargo/bin:$PATH"
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
command -v redis-server >/dev/null || { echo "needs redis-server (tests/setup.sh --browser installs it)" >&2; exit 1; }
ulimit -n "$(ulimit -Hn)"

echo "machine: $(nproc) cores, $(free -g | awk '/Mem:/ {print $2}') GiB, $(uname -m), load $(cut -d' ' -f1-3 /proc/loadavg); $(redis-server --version | cut -d' ' -f1-3)"
cargo build -q --release -p peerwire-broker --bins --examples

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

REDIS_PORT=$(free_port)
redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save "" --appendonly no --protected-mode no >"$WORK/redis.log" 2>&1 &
REDIS_PID=$!; PIDS+=("$REDIS_PID")
wait_port "$REDIS_PORT" || { cat "$WORK/redis.log" >&2; exit 1; }

# The load comes from one address and far above a browser's rate: the
# per-connection and per-address limits are lifted, as in tests/bench.sh.
LIMITS=(--static /nonexistent --stun-port 0 --max-connections-per-ip 100000 --rate-limit 1000000 --rate-burst 1000000
  --ip-rate-limit 10000000 --ip-rate-burst 10000000)
start_broker() { # log name, extra flags...
  local name=$1 port; shift
  port=$(free_port)
  "$TARGET/release/peerwire-broker" --port "$port" "${LIMITS[@]}" "$@" >"$WORK/$name.log" 2>&1 &
  PIDS+=($!)
  STARTED_PID=$! STARTED_URL="ws://127.0.0.1:$port/ws"
  wait_port "$port" || { cat "$WORK/$name.log" >&2; echo "$name did not start" >&2; exit 1; }
}
start_broker single
SINGLE_PID=$STARTED_PID SINGLE_URL=$STARTED_URL
NET_URLS=() NET_PIDS=()
for b in 0 1 2; do
  start_broker "net$b" --redis "redis://127.0.0.1:$REDIS_PORT"
  NET_URLS+=("$STARTED_URL") NET_PIDS+=("$STARTED_PID")
done
for u in "${NET_URLS[@]}"; do
  hp=${u#ws://}; hp=${hp%%/*}
  for _ in $(seq 100); do curl -fsS "http://$hp/healthz" >/dev/null 2>&1 && break; sleep 0.1; done
  curl -fsS "http://$hp/healthz" >/dev/null || { echo "the broker at $hp did not reach Redis" >&2; exit 1; }
done
sleep 1 # let the baseline RSS settle

"$TARGET/release/examples/cluster_bench" --single "$SINGLE_URL" --single-pid "$SINGLE_PID" \
  --network "$(IFS=,; echo "${NET_URLS[*]}")" --network-pids "$(IFS=,; echo "${NET_PIDS[*]}")" \
  --redis-pid "$REDIS_PID" --idle "${BENCH_IDLE:-3000}" --pairs "${BENCH_PAIRS:-60}" \
  --seconds "${BENCH_SECONDS:-8}" --failover "${BENCH_FAILOVER:-1500}"
for name in single net0 net1; do
  if grep -qi panic "$WORK/$name.log"; then echo "$name logged a panic:" >&2; grep -i -A5 panic "$WORK/$name.log" >&2; exit 1; fi
done
