#!/usr/bin/env bash
# Runs every test layer (the README's test command, `npm test`, calls this):
#   0. cargo fmt --check and clippy with warnings denied, for the native and
#      the wasm32 target, full and lite (Cargo.toml denies
#      significant_drop_in_scrutinee);
#   1. cargo test --workspace: protocol, core, and the broker's integration
#      tests (real WebSocket clients against a real broker on loopback);
#      then a small soak of three brokers sharing a Redis (tests/soak.sh
#      with SOAK_BROKERS=3, on the debug builds layer 1 made): 400 clients
#      spread over the brokers and moving between them, every signal
#      accounted for, every broker's gauges and memory back, Redis empty;
#   2. wasm-pack test --headless --chrome: the SDK in real headless Chromium,
#      against a real broker process this script starts (and a test restarts);
#   3. the packages users install: the npm package built and packed by
#      tests/package.sh and checked by `npm publish --dry-run`, the crates by
#      `cargo publish --workspace --dry-run`, the broker by `cargo install`;
#      then the npm package in scratch apps (a plain page, Vite dev server and
#      build, webpack build, Node.js, the examples, a Node.js bot with
#      node-datachannel and ws) loaded in separate Chromium pages by
#      Playwright, talking through the installed broker; its TypeScript
#      definitions checked by tsc and turned into the API reference by TypeDoc;
#   4. the NAT lab (tests/netlab, root): Chromium in client network namespaces
#      behind nftables NAT routers, the broker and coturn in a public one;
#      direct, TURN (UDP and TCP) paths and a client moving mid-session.
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
       /^RESULT: PASS/ { p += 1 } /^RESULT: FAIL/ { f += 1 }
       END { printf "total: %d passed, %d failed\n", p, f }' "$LOG"
}

step "layer 0: cargo fmt --check, clippy -D warnings (native and wasm32)"
cargo fmt --all --check
cargo clippy --workspace --all-targets -- -D warnings
cargo clippy -p peerwire --target wasm32-unknown-unknown --all-targets -- -D warnings
# The lite build (peerwire/lite: no Node, hubs, sockets or rest) too.
cargo clippy -p peerwire --target wasm32-unknown-unknown --no-default-features --all-targets -- -D warnings

step "layer 1: cargo test --workspace (protocol, core, broker)"
cargo test --workspace 2>&1 | tee -a "$LOG"

step "layer 1: a soak of three brokers on Redis (400 clients, 40 s, debug builds)"
# The debug builds `cargo test` just made (broker and examples): a release
# build would add minutes to CI for no more coverage at this size.
t=$SECONDS
SOAK_BROKERS=3 SOAK_CLIENTS=400 SOAK_SECONDS=40 SOAK_PROFILE=debug bash tests/soak.sh 2>&1 | tee -a "$LOG"
printf '[layer 1] three-broker soak: %ds\n' $((SECONDS - t))

step "layer 2: browser tests in headless Chromium against a real broker"
# Each JavaScript file the SDK imports (`#[wasm_bindgen(module = ...)]`) is a
# module the test page fetches in parallel with the others. The test runner's
# file server (tiny_http's task pool) can leave a connection unserved when
# Chromium opens more than three at once, and the page then hangs until
# Chromium drops an idle connection (300 s). Keep the count low.
modules=$(grep -rhoE 'module = "/[^"]+"' src tests --include=*.rs | sort -u | wc -l)
[ "$modules" -le 3 ] || { echo "the SDK imports $modules JavaScript modules; keep it to 3 or fewer (see the comment above this check in tests/run.sh)" >&2; exit 1; }
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
  --test browser_webrtc --test browser_sdk --test browser_reentry --test browser_node --test browser_restart --test browser_failover --test browser_stress 2>&1 | tee -a "$LOG"

step "layer 3: the packages users install (npm, crates.io) and page tests of the npm package (plain page, Vite dev and build, webpack, Node.js) through a real broker"
since() { printf '[layer 3] %s: %ds\n' "$1" $((SECONDS - $2)); }
t=$SECONDS
# The npm package as users get it (both entries: peerwire, peerwire/lite),
# packed, and checked by npm the way `npm publish` would take it.
TGZ=$(bash tests/package.sh "$WORK/package")
npm publish --dry-run "$TGZ" >"$WORK/npm-publish.log" 2>&1 || { cat "$WORK/npm-publish.log" >&2; echo "npm publish --dry-run failed" >&2; exit 1; }
if grep -i 'auto-corrected\|errors corrected' "$WORK/npm-publish.log" >&2; then echo "npm publish --dry-run had to fix package.json (npm/package.json)" >&2; exit 1; fi
grep 'total files\|package size' "$WORK/npm-publish.log"
since "npm package built, packed, publish --dry-run" "$t"; t=$SECONDS
# The crates as crates.io would take them (each packaged crate is built;
# the broker's build is cached from layer 2), and the broker installed the
# way the README says (--debug here, to reuse that build): the page tests
# below run against the installed binary. (--allow-dirty: what is checked is
# the crates' contents, also in a working copy with uncommitted edits.)
# The broker's verify build takes the packaged peerwire from a temporary
# registry, and cargo holds a registry crate of a given name and version
# immutable: the copy an earlier run unpacked (under $CARGO_HOME/registry/src)
# and built (in target/debug) would be used again, whatever changed since
# (seen here: a module added on main "was missing"). Both are forgotten
# first; nothing else is touched.
rm -rf "${CARGO_HOME:-$HOME/.cargo}"/registry/src/*/peerwire-[0-9]*
for depinfo in $(grep -l "registry/src/[^/]*/peerwire-[0-9]" target/debug/deps/*.d 2>/dev/null); do
  rm -rf "target/debug/.fingerprint/$(basename "$depinfo" .d)"
done
cargo publish --workspace --dry-run --allow-dirty >"$WORK/cargo-publish.log" 2>&1 \
  || { cat "$WORK/cargo-publish.log" >&2; echo "cargo publish --workspace --dry-run failed" >&2; exit 1; }
grep 'Packaged' "$WORK/cargo-publish.log"
cargo install --path server --locked --debug --root "$WORK/install" >"$WORK/cargo-install.log" 2>&1 \
  || { cat "$WORK/cargo-install.log" >&2; echo "cargo install --path server failed" >&2; exit 1; }
BROKER_BIN="$WORK/install/bin/peerwire-broker"
since "cargo publish --dry-run, cargo install" "$t"; t=$SECONDS
# Scratch apps outside the repository, each npm-installing the .tgz: a plain
# page (and Node.js), a Vite 8 app, the same app on Vite 7 with the config
# line the README gives for it, a webpack app (installed side by side).
APP="$WORK/app" VITE_APP="$WORK/vite-app" VITE7_APP="$WORK/vite7-app" WEBPACK_APP="$WORK/webpack-app"
# A Node.js app: the bot example with WebRTC (node-datachannel) and WebSocket (ws) from npm.
NODE_APP="$WORK/node-app"
mkdir -p "$NODE_APP" && cp examples/node-bot/bot.mjs "$NODE_APP/" && (cd "$NODE_APP" && npm init -y >/dev/null)
mkdir -p "$APP" && cp tests/e2e/app/*.html "$APP/"
cp -r tests/e2e/vite-app "$VITE_APP"
cp -r tests/e2e/vite-app "$VITE7_APP" && cp tests/e2e/vite7-app/vite.config.js "$VITE7_APP/"
cp -r tests/e2e/webpack-app "$WEBPACK_APP"
npm_install_in() { # dir, packages...
  local log="$WORK/npm-install-$(basename "$1").log"
  (cd "$1" && shift && npm install --no-audit --no-fund --silent "$@") >"$log" 2>&1 \
    || { cat "$log" >&2; echo "npm install in $1 failed" >&2; return 1; }
}
(cd "$APP" && npm init -y >/dev/null)
npm_install_in "$APP" "$TGZ" & installs=($!)
npm_install_in "$VITE_APP" "$TGZ" vite@8.3.4 & installs+=($!)
npm_install_in "$VITE7_APP" "$TGZ" vite@7.3.8 & installs+=($!)
npm_install_in "$WEBPACK_APP" "$TGZ" webpack@5.113.0 webpack-cli@7.3.1 & installs+=($!)
npm_install_in "$NODE_APP" "$TGZ" node-datachannel@0.33.4 ws@8.23.0 & installs+=($!)
npm_install_in tests/e2e & installs+=($!)
failed=0
for pid in "${installs[@]}"; do wait "$pid" || failed=1; done
[ "$failed" = 0 ] || exit 1
since "npm installs" "$t"; t=$SECONDS
# The production builds, with no bundler config.
(cd "$VITE_APP" && npx --no-install vite build >/dev/null)
[ -f "$VITE_APP/dist/index.html" ] || { echo "the Vite build failed" >&2; exit 1; }
(cd "$WEBPACK_APP" && npx --no-install webpack --mode production --no-stats)
[ -f "$WEBPACK_APP/dist/main.js" ] && ls "$WEBPACK_APP"/dist/*.wasm >/dev/null || { echo "the webpack build failed" >&2; exit 1; }
# The demo, with the same package.
SITE="$WORK/site"
mkdir -p "$SITE/pkg" && cp -r "$WORK/package/"* "$SITE/pkg/" && cp www/index.html "$SITE/"
since "Vite and webpack builds" "$t"; t=$SECONDS
# The API reference from the package's definitions (TypeDoc; any warning,
# such as an undocumented export or a broken link, fails it).
bash tests/docs.sh "$WORK/api-docs" "$WORK/package" >/dev/null
since "API reference" "$t"; t=$SECONDS
# tests/e2e's `npm test` gives each test 300 s (the longest takes under 20):
# a page that waits forever fails with its test's name instead of holding
# CI to its 90-minute limit (a netflux join through /sigver once hung).
PEERWIRE_BROKER_BIN="$BROKER_BIN" PEERWIRE_APP="$APP" PEERWIRE_VITE_APP="$VITE_APP" PEERWIRE_VITE7_APP="$VITE7_APP" PEERWIRE_WEBPACK_APP="$WEBPACK_APP" PEERWIRE_SITE="$SITE" PEERWIRE_NODE_APP="$NODE_APP" \
  npm --prefix tests/e2e test 2>&1 | tee -a "$LOG"
since "page and Node.js tests" "$t"

step "layer 4: the NAT lab: Chromium behind NAT routers in network namespaces, coturn and the broker in a public one"
# Root only (CI is root): each scenario builds its network (tests/netlab/lab.sh),
# connects two pages of the npm package through it and checks the path ICE took.
NETLAB_PREFIX="pwl$$"
trap 'bash tests/netlab/lab.sh down "$NETLAB_PREFIX"; cleanup' EXIT
t=$SECONDS
PEERWIRE_BROKER_BIN="$BROKER_BIN" PEERWIRE_APP="$APP" NETLAB_PREFIX="$NETLAB_PREFIX" \
  node --test --test-concurrency=1 --test-timeout=300000 tests/netlab/ 2>&1 | tee -a "$LOG"
printf "[layer 4] NAT lab: %ds\n" $((SECONDS - t))

step "all test layers passed"
total
