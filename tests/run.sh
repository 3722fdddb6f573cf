#!/usr/bin/env bash
# Runs every test layer (the README's test command, `npm test`, calls this):
#   0. cargo fmt --check and clippy with warnings denied, for the native and
#      the wasm32 target (Cargo.toml denies significant_drop_in_scrutinee);
#   1. cargo test --workspace: protocol, core, and the broker's integration
#      tests (real WebSocket clients against a real broker on loopback);
#   2. wasm-pack test --headless --chrome: the SDK in real headless Chromium,
#      against a real broker process this script starts (and a test restarts);
#   3. the package built by wasm-pack, loaded in separate Chromium pages by
#      Playwright, talking through a real broker (the examples too); its
#      TypeScript definitions checked by tsc and turned into the API
#      reference by TypeDoc.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
bash tests/setup.sh --browser
export PATH="$HOME/.cargo/bin:$PATH"

step() { printf '\n==== %s\n' "$*"; }
LOG=$(mktemp)
# Every runner's "test result:" line is also summed into one closing line.
total() {
  awk '/test result:/ { for (i = 1; i <= NF; i++) { if ($(i+1) ~ /^passed/) p += $i; if ($(i+1) ~ /^failed/) f += $i } }
       /^# pass / { p += $3 } /^# fail / { f += $3 }
       END { printf "total: %d passed, %d failed\n", p, f }' "$LOG"
}

step "layer 0: cargo fmt --check, clippy -D warnings (native and wasm32)"
cargo fmt --all --check
cargo clippy --workspace --all-targets -- -D warnings
cargo clippy -p peerwire --target wasm32-unknown-unknown --all-targets -- -D warnings

step "layer 1: cargo test --workspace (protocol, core, broker)"
cargo test --workspace 2>&1 | tee -a "$LOG"

step "layer 2: browser tests in headless Chromium against a real broker"
cargo build -q -p peerwire-broker
WORK=$(mktemp -d)
BROKER_PID=""
cleanup() {
  [ -n "$BROKER_PID" ] && kill "$BROKER_PID" 2>/dev/null && wait "$BROKER_PID" 2>/dev/null
  rm -rf "$WORK" "$LOG"
}
trap cleanup EXIT
# The broker runs under a small control server so that a test can kill and
# restart it (tests/broker_ctl.py).
# Every test peer connects from 127.0.0.1: the per-address limits are raised
# for the suite, and so is the per-connection message rate, which the stress
# test's 80 connects a second exceed (the broker's own tests check the
# limits themselves).
# Rendezvous deadlines are short so that a test can watch them pass.
python3 tests/broker_ctl.py target/debug/peerwire-broker --static "$ROOT/www" \
  --max-connections-per-ip 10000 --ip-rate-limit 100000 --ip-rate-burst 100000 --rate-limit 100000 --rate-burst 100000 \
  --listen-timeout-ms 3000 --pipe-timeout-ms 5000 >"$WORK/broker.out" 2>"$WORK/broker.err" &
BROKER_PID=$!
for _ in $(seq 100); do
  grep -q '^broker ' "$WORK/broker.out" 2>/dev/null && break
  sleep 0.1
done
read -r _ PEERWIRE_TEST_BROKER _ PEERWIRE_TEST_CTL <"$WORK/broker.out" \
  || { cat "$WORK/broker.err" >&2; echo "the broker did not start" >&2; exit 1; }
export PEERWIRE_TEST_BROKER PEERWIRE_TEST_CTL
echo "broker for browser tests: $PEERWIRE_TEST_BROKER (control: $PEERWIRE_TEST_CTL)"
export WASM_BINDGEN_TEST_WEBDRIVER_JSON="$ROOT/tests/webdriver.json"
export WASM_BINDGEN_TEST_TIMEOUT=${WASM_BINDGEN_TEST_TIMEOUT:-60}
wasm-pack test --headless --chrome --chromedriver /usr/bin/chromedriver \
  --test browser_webrtc --test browser_sdk --test browser_reentry --test browser_node --test browser_restart --test browser_stress 2>&1 | tee -a "$LOG"

step "layer 3: page-level tests (the npm package in separate Chromium pages, plain and Vite-bundled, via Playwright)"
# The package as users get it: built, packed, and npm-installed into scratch
# apps outside the repository (a plain page, and a Vite build).
TGZ=$(bash tests/package.sh "$WORK/package")
APP="$WORK/app"
mkdir -p "$APP" && cp tests/e2e/app/index.html "$APP/"
(cd "$APP" && npm init -y >/dev/null && npm install --no-audit --no-fund --silent "$TGZ")
VITE_APP="$WORK/vite-app"
cp -r tests/e2e/vite-app "$VITE_APP"
(cd "$VITE_APP" && npm install --no-audit --no-fund --silent "$TGZ" vite@8.3.4 && npx --no-install vite build >/dev/null)
[ -f "$VITE_APP/dist/index.html" ] || { echo "the Vite build failed" >&2; exit 1; }
# The demo, with the same package.
SITE="$WORK/site"
mkdir -p "$SITE/pkg" && cp -r "$WORK/package/"* "$SITE/pkg/" && cp www/index.html "$SITE/"
(cd tests/e2e && npm install --no-audit --no-fund --silent)
# The API reference from the package's definitions (TypeDoc; any warning,
# such as an undocumented export or a broken link, fails it).
bash tests/docs.sh "$WORK/api-docs" "$WORK/package" >/dev/null
PEERWIRE_BROKER_BIN="$ROOT/target/debug/peerwire-broker" PEERWIRE_APP="$APP" PEERWIRE_VITE_DIST="$VITE_APP/dist" PEERWIRE_SITE="$SITE" \
  npm --prefix tests/e2e test 2>&1 | tee -a "$LOG"

step "all test layers passed"
total
