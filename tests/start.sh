#!/usr/bin/env bash
# Runs the product (the README's run command, `npm start`, calls this):
# installs what is missing, builds the wasm package into www/pkg, builds the
# broker, and starts it serving www/ on a printed URL. Extra arguments go to
# the broker, e.g. `npm start -- --port 9000 --host 0.0.0.0`.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
bash tests/setup.sh
export PATH="$HOME/.cargo/bin:$PATH"

echo "[start] building the wasm package (wasm-pack build --target web) into www/pkg"
wasm-pack build --release --target web --out-dir www/pkg --no-pack 2>&1 | grep -v '^\[INFO\]' || true
[ -f www/pkg/peerwire_bg.wasm ] || { echo "[start] error: wasm-pack build failed" >&2; exit 1; }
echo "[start] building the broker"
cargo build --release -q -p peerwire-broker
echo "[start] starting the broker; open the URL it prints (Ctrl-C stops it)"
exec target/release/peerwire-broker --static "$ROOT/www" "$@"
