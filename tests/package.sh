#!/usr/bin/env bash
# Builds the npm package as users get it and packs it:
#   tests/package.sh OUT_DIR     -> prints the path of peerwire-<version>.tgz
# Size profile (`wasm-release`: opt-level z, LTO, stripped), then a modern
# wasm-opt from npm (Debian's binaryen corrupts current wasm-bindgen output).
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
OUT=$(mkdir -p "${1:?usage: tests/package.sh OUT_DIR}" && cd "$1" && pwd)
cd "$ROOT"
bash tests/setup.sh >&2
export PATH="$HOME/.cargo/bin:$PATH"

wasm-pack build --profile wasm-release --target web --out-dir "$OUT" >&2 2>&1 | grep -v '^\[INFO\]' >&2 || true
[ -f "$OUT/peerwire_bg.wasm" ] || { echo "[package] error: wasm-pack build failed" >&2; exit 1; }

TOOLS="$HOME/.cache/peerwire-tools"
"$TOOLS/node_modules/.bin/wasm-opt" -Oz \
  --enable-bulk-memory --enable-nontrapping-float-to-int --enable-sign-ext \
  --enable-mutable-globals --enable-reference-types --enable-multivalue \
  "$OUT/peerwire_bg.wasm" -o "$OUT/peerwire_bg.wasm"

# An `exports` map (types first) and the repository's files beside the code.
node -e '
  const fs = require("fs"), p = process.argv[1] + "/package.json";
  const pkg = JSON.parse(fs.readFileSync(p, "utf8"));
  pkg.exports = { ".": { types: "./peerwire.d.ts", default: "./peerwire.js" }, "./package.json": "./package.json" };
  pkg.module = "peerwire.js";
  pkg.files = [...new Set([...(pkg.files || []), "README.md", "LICENSE"])];
  fs.writeFileSync(p, JSON.stringify(pkg, null, 2) + "\n");
' "$OUT"
rm -f "$OUT/.gitignore"
(cd "$OUT" && npm pack --silent --pack-destination "$OUT" | tail -n 1 | sed "s|^|$OUT/|")
