#!/usr/bin/env bash
# Broker memory under memory-amplification attacks from one address (issue
# 16, item 4): for each attack of server/examples/memattack.rs, a fresh
# release broker with default flags on loopback, its resident memory idle
# and at its peak, and the peak's growth per byte the attacker sent; the
# same against a baseline broker (main's code unless told otherwise).
#
#   bash tests/bench/memory.sh                 # baseline: built from main
#   BASELINE_BIN=/path/to/peerwire-broker bash tests/bench/memory.sh
#   BASELINE_BIN=none bash tests/bench/memory.sh   # this branch only
#
# Each attack stops at MEMORY_CAP_MIB (1024) of broker memory or 12 s, so a
# broker without byte budgets cannot take the machine down: a baseline
# figure marked ">" hit the cap. Not part of npm test.
set -euo pipefail
cd "$(dirname "$0")/../.."
root=$(pwd)
out=target/memory-bench
mkdir -p "$out"
cap=${MEMORY_CAP_MIB:-1024}
attacks=${MEMORY_ATTACKS:-broadcast snapshot state grace signals}

baseline=${BASELINE_BIN:-}
if [ -z "$baseline" ]; then
  # main's code, built in a worktree of its own into this target directory
  # (its crates get artifacts of their own there; nothing is rebuilt twice).
  wt=$(mktemp -d /tmp/peerwire-main.XXXXXX)
  git worktree add --detach "$wt" main >/dev/null
  trap 'git worktree remove --force "$wt" >/dev/null 2>&1 || true' EXIT
  CARGO_TARGET_DIR="$root/target" cargo build --release --quiet \
    --manifest-path "$wt/Cargo.toml" -p peerwire-broker --bin peerwire-broker
  cp target/release/peerwire-broker "$out/baseline-broker"
  baseline_rev=$(git -C "$wt" rev-parse --short HEAD)
  baseline="$out/baseline-broker"
else
  baseline_rev=given
fi
cargo build --release --quiet -p peerwire-broker --bin peerwire-broker --example memattack
cp target/release/peerwire-broker "$out/broker"
attacker=target/release/examples/memattack
this_rev=$(git rev-parse --short HEAD)

broker_pid=
stop_broker() {
  if [ -n "$broker_pid" ]; then
    kill "$broker_pid" 2>/dev/null || true
    wait "$broker_pid" 2>/dev/null || true
    broker_pid=
  fi
}
trap 'stop_broker; git worktree remove --force "${wt:-/nonexistent}" >/dev/null 2>&1 || true' EXIT

# Runs one attack on a fresh broker; prints memattack's line.
attack() {
  local bin=$1 name=$2 log="$out/broker.log"
  "$bin" --port 0 --stun-port 0 --static /nonexistent-static >"$log" 2>&1 &
  broker_pid=$!
  local url=
  for _ in $(seq 100); do
    url=$(grep -o 'ws://127\.0\.0\.1:[0-9]*/ws' "$log" | head -1 || true)
    [ -n "$url" ] && break
    sleep 0.1
  done
  [ -n "$url" ] || { echo "the broker did not start: $(cat "$log")" >&2; exit 1; }
  # Let the idle figure settle (allocator, runtime threads).
  sleep 0.5
  "$attacker" --url "$url" --pid "$broker_pid" --attack "$name" --cap-mib "$cap"
  stop_broker
}

field() { sed -n "s/.* $1=\([^ ]*\).*/\1/p"; }

row() {
  local line=$1
  local sent idle peak stopped
  sent=$(echo "$line" | field sent)
  idle=$(echo "$line" | field idle_kib)
  peak=$(echo "$line" | field peak_kib)
  stopped=$(echo "$line" | field stopped)
  awk -v s="$sent" -v i="$idle" -v p="$peak" -v w="$stopped" 'BEGIN {
    mark = (w == "cap") ? ">" : "";
    ratio = (s > 0) ? (p - i) * 1024 / s : 0;
    printf "%s%.0f MiB (idle %.0f), sent %.1f MiB, x%s%.2f", mark, p / 1024, i / 1024, s / 1048576, mark, ratio
  }'
}

echo "broker RSS peak per attack from one address, default flags (cap ${cap} MiB)"
printf '%-10s | %-52s | %s\n' attack "baseline ($baseline_rev)" "this branch ($this_rev)"
for name in $attacks; do
  if [ "$baseline" = none ]; then
    before="—"
  else
    before=$(row "$(attack "$baseline" "$name")")
  fi
  after=$(row "$(attack "$out/broker" "$name")")
  printf '%-10s | %-52s | %s\n' "$name" "$before" "$after"
done
echo "xN: growth of the broker's resident memory per byte the attacker sent"
