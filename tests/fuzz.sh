#!/usr/bin/env bash
# Fuzzes the code that reads untrusted bytes, each target for a bounded time
# (libFuzzer through cargo fuzz). Not part of CI: `npm test` only replays the
# kept inputs (fuzz/regressions), which is fast and deterministic.
#
#   bash tests/fuzz.sh                 # every target, FUZZ_SECONDS (default 60) each
#   FUZZ_SECONDS=600 bash tests/fuzz.sh reassembly hub_sequence
#
# Targets (bodies in src/fuzzing.rs and server/src/fuzzing.rs):
#   broker_message  the broker's JSON message decoder (client and server messages)
#   peer_frame      the peer-to-peer frame decoder and channel labels
#   reassembly      the chunk reassembler: hostile frames, and interleaved real messages
#   rest_codec      rest URLs, queries, request/response heads, routing
#   hub_sequence    the broker hub under arbitrary connections, requests, relays, drops and clock jumps
#   relay_frame     the relay frame codec and the hub forwarding any binary frame between a relay pair
#   stun_packet     the broker's STUN codec: any datagram, answered only if a binding request, briefly
#
# A crash is copied into fuzz/regressions/<target>/ (commit it with the fix:
# the replay test then keeps it fixed) and the script exits non-zero.
set -uo pipefail
cd "$(dirname "$0")/.."
SECONDS_EACH=${FUZZ_SECONDS:-60}
TARGETS=("$@")
[ ${#TARGETS[@]} -eq 0 ] && TARGETS=(broker_message peer_frame reassembly rest_codec hub_sequence relay_frame stun_packet)

# cargo fuzz instruments with -Z flags: nightly if installed, otherwise the
# stable compiler with RUSTC_BOOTSTRAP=1 (the flags it needs exist there).
if rustup run nightly rustc --version >/dev/null 2>&1; then
  FUZZ=(cargo +nightly fuzz)
else
  export RUSTC_BOOTSTRAP=1
  FUZZ=(cargo fuzz)
fi
command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked --version 0.13.2

failed=()
for t in "${TARGETS[@]}"; do
  mkdir -p "fuzz/corpus/$t" "fuzz/regressions/$t"
  echo "== $t: ${SECONDS_EACH}s"
  rm -rf "fuzz/artifacts/$t"
  # The kept inputs seed the corpus; new finds go to fuzz/corpus (ignored by git).
  "${FUZZ[@]}" run -O "$t" "fuzz/corpus/$t" "fuzz/regressions/$t" -- \
    -max_total_time="$SECONDS_EACH" -max_len=4096 -rss_limit_mb=2048 -print_final_stats=1 2>&1 \
    | grep -E "^#[0-9]+ +DONE|^Done|stat::number_of_executed_units|panicked|SUMMARY|Test unit written"
  for crash in fuzz/artifacts/"$t"/*; do
    [ -f "$crash" ] || continue
    cp "$crash" "fuzz/regressions/$t/"
    echo "   kept $crash as fuzz/regressions/$t/$(basename "$crash")"
    failed+=("$t")
  done
done
if [ ${#failed[@]} -gt 0 ]; then
  echo "fuzzing found crashes in: ${failed[*]} (inputs kept under fuzz/regressions; fix, then commit them)"
  exit 1
fi
echo "fuzzing: no crashes in ${TARGETS[*]}"
