#!/usr/bin/env bash
# Builds the npm package as users get it and packs it:
#   tests/package.sh OUT_DIR     -> prints the path of peerwire-<version>.tgz
# and prints each entry's size (gzip of the .wasm and every .js it loads) on
# stderr. Two builds of the crate go into one package:
#   peerwire        the default features (Node, hubs, sockets, rest)
#   peerwire/lite   --no-default-features (peers, connections, streams, rooms)
# Each is the size profile (`wasm-release`) built by a pinned nightly with
# std rebuilt for size (see below), wasm-bindgen --target web, then
# a modern wasm-opt from npm (Debian's binaryen corrupts current wasm-bindgen
# output), which also strips what wasm-bindgen needed to read (the
# target_features section) and what users do not need (names, producers).
# Beside wasm-bindgen's glue (renamed peerwire_glue.js) go the hand-written
# files in npm/: entries that instantiate the module at import, their types,
# package.json, and peerwire/signaller (signaller.js, no wasm).
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
OUT=$(mkdir -p "${1:?usage: tests/package.sh OUT_DIR}" && cd "$1" && pwd)
cd "$ROOT"
bash tests/setup.sh >&2
export PATH="$HOME/.cargo/bin:$PATH"
say() { printf '[package] %s\n' "$*" >&2; }

WASM_OPT="$HOME/.cache/peerwire-tools/node_modules/.bin/wasm-opt"
ESBUILD="$HOME/.cache/peerwire-tools/node_modules/.bin/esbuild"
TARGET_DIR=$(cargo metadata --format-version 1 --no-deps | node -e 'let s = ""; process.stdin.on("data", (d) => s += d).on("end", () => console.log(JSON.parse(s).target_directory))')
# The pinned nightly (tests/setup.sh installs it with rust-src) rebuilds std
# with the crate: `-Cpanic=immediate-abort` drops the panic machinery and
# its message formatting (a panic traps, as it does with panic=abort), and
# std's optimize_for_size picks its smaller code. 14 KB gzip off the full
# entry, 10 KB off lite; the throughput is unchanged (tests/bench.sh). Its
# own target directory: the stable builds (tests, clippy) keep theirs.
# PEERWIRE_NIGHTLY=stable builds with the stable toolchain instead (bigger).
# Without the reference-types and multi-value features (std is rebuilt
# without them too), wasm-bindgen keeps JS values in the glue's heap array
# instead of an externref table, and the wasm loses a table shim and a
# multi-value shim per exported method: 1.4 KB gzip off the full entry,
# 0.8 KB off lite, glue included. `-Zlocation-detail=none`: no file names
# and lines for panic locations, which an immediate abort never shows
# (0.5 KB gzip). tests/bench.sh reads these flags from here.
NIGHTLY=${PEERWIRE_NIGHTLY:-nightly-2026-05-20}
NIGHTLY_RUSTFLAGS="-Zunstable-options -Cpanic=immediate-abort -Zlocation-detail=none -Ctarget-feature=-reference-types,-multivalue"
if [ "$NIGHTLY" = stable ]; then
  CARGO=(cargo)
  export CARGO_TARGET_DIR="$TARGET_DIR/wasm-stable"
else
  CARGO=(cargo "+$NIGHTLY" -Zbuild-std=std,panic_abort -Zbuild-std-features=optimize_for_size)
  export CARGO_TARGET_DIR="$TARGET_DIR/wasm-size"
  export RUSTFLAGS="$NIGHTLY_RUSTFLAGS"
fi
WASM="$CARGO_TARGET_DIR/wasm32-unknown-unknown/wasm-release/peerwire.wasm"
VERSION=$(cargo metadata --format-version 1 --no-deps | node -e 'let s = ""; process.stdin.on("data", (d) => s += d).on("end", () => console.log(JSON.parse(s).packages.find((p) => p.name === "peerwire").version))')

# Old contents would be packed too (a stale lite/ or glue).
rm -rf "$OUT/lite" "$OUT/snippets" "$OUT"/peerwire* "$OUT"/signaller* "$OUT/package.json"

# build DIR [cargo flags]: one entry's wasm and glue into DIR; wasm-opt runs
# in the background while the next cargo build goes on.
OPT_PIDS=()
build() {
  local dir=$1; shift
  say "cargo +$NIGHTLY build --profile wasm-release${*:+ $*} -> $dir"
  "${CARGO[@]}" build -q --lib --target wasm32-unknown-unknown --profile wasm-release "$@" >&2
  mkdir -p "$dir"
  wasm-bindgen "$WASM" --target web --out-dir "$dir" >&2
  # Short names for the wasm's imports and exports, in the .wasm and the
  # glue alike (wasm-bindgen's are hashed and long: 3 KB gzip).
  node tests/short-names.mjs "$dir"
  # The glue minified, as the .wasm is optimised: what users download is
  # what is measured. The exported classes get their own names back
  # (tests/class-names.mjs: `Peer {…}` in the console); esbuild's
  # --keep-names would name every one of the glue's functions (1 KB gzip).
  # (wasm-bindgen names a snippet module once per extern block importing it;
  # the repeated key holds the same namespace, so esbuild's warning is off.)
  "$ESBUILD" --minify --format=esm --log-level=warning --log-override:duplicate-object-key=silent "$dir/peerwire.js" --outfile="$dir/peerwire_glue.js"
  node tests/class-names.mjs "$dir/peerwire_glue.js"
  rm "$dir/peerwire.js"
  for f in $(find "$dir/snippets" -name '*.js'); do
    "$ESBUILD" --minify --format=esm --log-level=warning --allow-overwrite "$f" --outfile="$f"
  done
  mv "$dir/peerwire.d.ts" "$dir/peerwire_glue.d.ts"
  # Classes written in JavaScript and re-exported (Database, Query from
  # src/web/helpers_full.js) get `export let Name: unknown;` from wasm-bindgen;
  # their real declarations are in the crate's custom TypeScript section.
  sed -i '/^export let [A-Za-z]*: unknown;$/d' "$dir/peerwire_glue.d.ts"
  # createPeer takes an id and options, or options alone: two overloads, so
  # that `createPeer('alice')` (no broker) fails to compile instead of at
  # run time. wasm-bindgen writes one signature with a union.
  node -e '
    const fs = require("fs"), f = process.argv[1], s = fs.readFileSync(f, "utf8");
    const one = "export function createPeer(id_or_options: string | PeerOptions, options?: PeerOptions | null): Promise<Peer>;";
    if (!s.includes(one)) { console.error("package.sh: the declaration of createPeer changed: " + f); process.exit(1); }
    fs.writeFileSync(f, s.replace(one, "export function createPeer(id: string, options: PeerOptions): Promise<Peer>;\n" +
      "/** `createPeer({ broker })`: the broker assigns an id; or `createPeer({ broker, id })`. */\n" +
      "export function createPeer(options: PeerOptions): Promise<Peer>;"));
  ' "$dir/peerwire_glue.d.ts"
  rm -f "$dir/peerwire_bg.wasm.d.ts"
  # The entries ship without their comments (they count in the package size).
  for f in peerwire.js peerwire.node.js peerwire.d.ts; do sed "/^\/\//d" "npm/$f" >"$dir/$f"; done
  # --converge repeats -Oz while it still shrinks the module (0.7 KB gzip).
  # --low-memory-unused lets it fold constant address arithmetic into load
  # and store offsets, which it may only do when nothing lives below 1 KB:
  # Rust's wasm32 stack comes first and grows down from 1 MiB to 0 (data
  # starts at 1 MiB), so those bytes are used only by a stack 1023 KB deep,
  # which our code never reaches (0.8 KB gzip off lite, 1.4 KB off full).
  "$WASM_OPT" -Oz --converge --low-memory-unused \
    --enable-bulk-memory --enable-nontrapping-float-to-int --enable-sign-ext \
    --enable-mutable-globals --enable-reference-types --enable-multivalue \
    --strip-debug --strip-producers --strip-target-features \
    "$dir/peerwire_bg.wasm" -o "$dir/peerwire_bg.wasm" &
  OPT_PIDS+=($!)
}
build "$OUT"
build "$OUT/lite" --no-default-features
# peerwire/signaller: plain JavaScript with no wasm, shipped as written
# (without its comment lines, like the entries).
for f in signaller.js signaller.d.ts; do sed "/^\/\//d" "npm/$f" >"$OUT/$f"; done
for pid in "${OPT_PIDS[@]}"; do wait "$pid" || { say "error: wasm-opt failed"; exit 1; }; done

node -e '
  const fs = require("fs"), [template, out, version] = process.argv.slice(1);
  const pkg = JSON.parse(fs.readFileSync(template, "utf8"));
  pkg.version = version;
  fs.writeFileSync(out + "/package.json", JSON.stringify(pkg, null, 2) + "\n");
' npm/package.json "$OUT" "$VERSION"
cp README.md LICENSE "$OUT/"

# What a page downloads for each entry: the .wasm and every .js it imports.
size() {
  local dir=$1 name=$2 wasm js
  wasm=$(gzip -9 -c "$dir/peerwire_bg.wasm" | wc -c)
  js=0
  for f in "$dir/peerwire.js" "$dir/peerwire_glue.js" $(find "$dir/snippets" -name '*.js' | sort); do
    js=$((js + $(gzip -9 -c "$f" | wc -c)))
  done
  say "$(printf '%-14s %7d bytes gzip = wasm %d + js %d  (raw wasm %d)' "$name" $((wasm + js)) "$wasm" "$js" "$(wc -c <"$dir/peerwire_bg.wasm")")"
}
size "$OUT" peerwire
size "$OUT/lite" peerwire/lite

(cd "$OUT" && npm pack --silent --pack-destination "$OUT" | tail -n 1 | sed "s|^|$OUT/|")
