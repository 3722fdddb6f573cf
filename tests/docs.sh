#!/usr/bin/env bash
# Builds the API reference from the package's TypeScript definitions with
# TypeDoc (pinned in tests/e2e/package.json):
#   tests/docs.sh OUT_DIR [PACKAGE_DIR]
# PACKAGE_DIR is a package tests/package.sh built (default: build one now).
# Warnings are errors: an export without a doc comment, a broken {@link} or
# a type the pages refer to but do not include fails the build. The pages
# start at docs/API.md and include docs/ERRORS.md. `npm run docs` writes
# them to docs/api/ (not committed).
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
OUT=$(mkdir -p "${1:?usage: tests/docs.sh OUT_DIR [PACKAGE_DIR]}" && cd "$1" && pwd)
cd "$ROOT"
SCRATCH=$(mktemp -d)
trap 'rm -rf "$SCRATCH"' EXIT
if [ -n "${2:-}" ]; then
  PKG=$(cd "$2" && pwd)
else
  PKG="$SCRATCH/package"
  bash tests/package.sh "$PKG" >/dev/null
fi
[ -x tests/e2e/node_modules/.bin/typedoc ] || (cd tests/e2e && npm install --no-audit --no-fund --silent)

# The definitions users get: the `types` of the package's main export, and
# peerwire/signaller's (a module of its own in the pages).
ENTRY=$(node -e '
  const pkg = require(process.argv[1] + "/package.json");
  const main = pkg.exports?.["."];
  console.log(((typeof main === "object" && main.types) || pkg.types || pkg.typings).replace(/^\.\//, ""));
' "$PKG")
[ -f "$PKG/$ENTRY" ] || { echo "[docs] no definitions at $PKG/$ENTRY" >&2; exit 1; }

# Compiled as a user's project would: strict, lib es2020 + dom.
cat >"$SCRATCH/tsconfig.json" <<JSON
{ "compilerOptions": { "strict": true, "target": "es2020", "lib": ["es2020", "dom"],
  "module": "es2022", "moduleResolution": "bundler", "noEmit": true },
  "files": ["$PKG/$ENTRY", "$PKG/signaller.d.ts"] }
JSON

tests/e2e/node_modules/.bin/typedoc \
  --tsconfig "$SCRATCH/tsconfig.json" --entryPoints "$PKG/$ENTRY" "$PKG/signaller.d.ts" --out "$OUT" \
  --name peerwire --readme docs/API.md --projectDocuments docs/ERRORS.md \
  --plugin "$ROOT/tests/e2e/typedoc-plugin.mjs" --disableSources \
  --validation.notExported --validation.invalidLink --validation.notDocumented \
  --treatWarningsAsErrors --treatValidationWarningsAsErrors --logLevel Warn >&2
[ -f "$OUT/index.html" ] || { echo "[docs] typedoc wrote no index.html" >&2; exit 1; }
echo "$OUT"
