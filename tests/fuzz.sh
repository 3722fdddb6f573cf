#!/usr/bin/env bash
# Fuzzes the code that reads untrusted bytes, each target for a bounded time
# or number of executions (libFuzzer through cargo fuzz). Not part of CI:
# `npm test` only replays the kept inputs (fuzz/regressions), which is fast
# and deterministic.
#
#   bash tests/fuzz.sh                         # every target, FUZZ_SECONDS (default 60) each
#   FUZZ_SECONDS=600 bash tests/fuzz.sh reassembly hub_sequence
#   FUZZ_RUNS=10000000 nice -n 19 bash tests/fuzz.sh hub_sequence   # 10 M executions
#   FUZZ_SANITIZER=none FUZZ_SECONDS=3600 bash tests/fuzz.sh hub_sequence   # the hour run, fast
#
# FUZZ_RUNS=N runs each target for N executions (libFuzzer -runs=N) instead
# of FUZZ_SECONDS; with both set, until either is reached. Inputs are at most 4096 bytes (FUZZ_MAX_LEN), except
# hub_sequence's, 1024 bytes: 341 steps over 4 connections whose queues,
# rooms and keys fill after 2 or 3 requests reach every limit many times,
# and an execution's time grows with its steps (libFuzzer lengthens its
# inputs up to the limit). Every run uses -rss_limit_mb=2048 and a
# per-input timeout of FUZZ_TIMEOUT seconds (default 10: every target
# handles an input in well under a millisecond, so a hang is a finding).
# FUZZ_SANITIZER=none builds without AddressSanitizer and without
# comparison tracing (in their own target directory, fuzz/target-fast):
# the hub targets are safe Rust, where ASan finds nothing a panic would not,
# and its allocator plus the comparison hooks took over half of
# hub_sequence's time (about 860 executions/s with them, 3 700 without, on
# the development machine under load); a long run this way reaches 10 M
# executions well within an hour.
# AddressSanitizer runs without allocation stack traces, without fake
# stacks for use-after-return and with a 16 MiB quarantine (ASAN_OPTIONS
# below): that took a third of the hub targets' time, and a finding still
# reports where it crashed. To see where a leaked or freed block was
# allocated, replay the kept input with `ASAN_OPTIONS= cargo fuzz run -O
# <target> <input>`.
# The whole libFuzzer output of each target goes to fuzz/logs/<target>.log
# (ignored by git); the script ends with a table of executions, seconds and
# executions per second per target.
#
# Targets (bodies in src/fuzzing.rs and server/src/fuzzing.rs):
#   broker_message  the broker's JSON message decoder (client and server messages)
#   peer_frame      the peer-to-peer frame decoder and channel labels
#   reassembly      the chunk reassembler: hostile frames, and interleaved real messages
#   rest_codec      rest URLs, queries, request/response heads, routing
#   hub_sequence    the broker hub under arbitrary connections, requests, relays, drops and clock jumps
#   relay_frame     the relay frame codec and the hub forwarding any binary frame between a relay pair
#   stun_packet     the broker's STUN codec: any datagram, answered only if a binding request, briefly
#   frontend_frame  the PeerJS and signaller front-ends: any client or hub frame, carried as sent
#   ws_frame        the broker's WebSocket reader: any client bytes, cut anywhere, read alike
#   signal_path     the broker's signal fast path: takes only what the general decoder reads the same
#
# A crash, leak, timeout or out-of-memory input is copied into
# fuzz/regressions/<target>/ (commit it with the fix: the replay test then
# keeps it fixed) and the script exits non-zero.
set -uo pipefail
cd "$(dirname "$0")/.."
SECONDS_EACH=${FUZZ_SECONDS:-60}
RUNS=${FUZZ_RUNS:-}
TIMEOUT=${FUZZ_TIMEOUT:-10}
export ASAN_OPTIONS=${ASAN_OPTIONS-malloc_context_size=0:detect_stack_use_after_return=0:quarantine_size_mb=16}
TARGETS=("$@")
[ ${#TARGETS[@]} -eq 0 ] && TARGETS=(broker_message peer_frame reassembly rest_codec hub_sequence relay_frame stun_packet frontend_frame ws_frame signal_path)

# cargo fuzz instruments with -Z flags: nightly if installed, otherwise the
# stable compiler with RUSTC_BOOTSTRAP=1 (the flags it needs exist there).
if rustup run nightly rustc --version >/dev/null 2>&1; then
  FUZZ=(cargo +nightly fuzz)
else
  export RUSTC_BOOTSTRAP=1
  FUZZ=(cargo fuzz)
fi
command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked --version 0.13.2

# Both set: whichever comes first.
BOUND=()
what=()
if [ -n "$RUNS" ]; then
  BOUND+=(-runs="$RUNS")
  what+=("$RUNS executions")
fi
if [ -z "$RUNS" ] || [ -n "${FUZZ_SECONDS:-}" ]; then
  BOUND+=(-max_total_time="$SECONDS_EACH")
  what+=("${SECONDS_EACH}s")
fi
what=$(IFS=,; echo "${what[*]}" | sed 's/,/ or /')

# Build first, so that the times below are fuzzing time only.
BUILD=(-O)
if [ "${FUZZ_SANITIZER:-address}" = none ]; then
  BUILD+=(-s none --no-trace-compares --target-dir fuzz/target-fast)
fi
"${FUZZ[@]}" build "${BUILD[@]}" || exit 1

mkdir -p fuzz/logs
failed=()
summary=()
for t in "${TARGETS[@]}"; do
  mkdir -p "fuzz/corpus/$t" "fuzz/regressions/$t"
  log="fuzz/logs/$t.log"
  max_len=${FUZZ_MAX_LEN:-4096}
  [ "$t" = hub_sequence ] && max_len=${FUZZ_MAX_LEN:-1024}
  echo "== $t: $what (log: $log)"
  rm -rf "fuzz/artifacts/$t"
  started=$(date +%s)
  # The kept inputs seed the corpus; new finds go to fuzz/corpus (ignored by git).
  "${FUZZ[@]}" run "${BUILD[@]}" "$t" "fuzz/corpus/$t" "fuzz/regressions/$t" -- \
    "${BOUND[@]}" -max_len="$max_len" -rss_limit_mb=2048 -timeout="$TIMEOUT" -print_final_stats=1 >"$log" 2>&1
  took=$(( $(date +%s) - started ))
  grep -E "^#[0-9]+ +DONE|^Done|panicked|SUMMARY|Test unit written|ERROR: libFuzzer" "$log"
  # Executions: the final stats, or the last status line if libFuzzer died
  # before printing them.
  execs=$(grep -oE "stat::number_of_executed_units: [0-9]+" "$log" | grep -oE "[0-9]+$" | tail -1)
  [ -n "$execs" ] || execs=$(grep -oE "^#[0-9]+" "$log" | tr -d '#' | tail -1)
  execs=${execs:-0}
  rate=$(grep -oE "stat::average_exec_per_sec: [0-9]+" "$log" | grep -oE "[0-9]+$" | tail -1)
  [ -n "$rate" ] || rate=$(( took > 0 ? execs / took : execs ))
  summary+=("$(printf '%-15s %12s %8s %10s' "$t" "$execs" "$took" "$rate")")
  for finding in fuzz/artifacts/"$t"/*; do
    [ -f "$finding" ] || continue
    cp "$finding" "fuzz/regressions/$t/"
    echo "   kept $finding as fuzz/regressions/$t/$(basename "$finding")"
    failed+=("$t")
  done
done

echo
printf '%-15s %12s %8s %10s\n' target executions seconds "exec/s"
printf '%s\n' "${summary[@]}"
if [ ${#failed[@]} -gt 0 ]; then
  echo "fuzzing found crashes in: ${failed[*]} (inputs kept under fuzz/regressions; fix, then commit them)"
  exit 1
fi
echo "fuzzing: no crashes in ${TARGETS[*]}"
