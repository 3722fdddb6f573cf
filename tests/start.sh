#!/usr/bin/env bash
# Runs the product (the README's run command, `npm start`, calls this):
# installs what is missing, builds the wasm package into www/pkg, builds the
# broker, and starts it serving www/ on a printed URL. Extra arguments go to
# the broker, e.g. `npm start -- --port 9000 --host 0.0.0.0`. The broker
# answers STUN on udp/3478 as it does for users (if that port is taken it
# says so and runs without; `-- --stun-port 0` turns STUN off).
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
bash tests/setup.sh
export PATH="$HOME/.cargo/bin:$PATH"

echo "[start] building the npm package (tests/package.sh) into www/pkg"
bash tests/package.sh www/pkg >/dev/null
echo "[start] building the broker"
cargo build --release -q -p peerwire-broker
echo "[start] starting the broker; open the URL it prints (Ctrl-C stops it)"
exec target/release/peerwire-broker --static "$ROOT/www" "$@"
