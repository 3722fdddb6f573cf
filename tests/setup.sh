#!/usr/bin/env bash
# Installs what building and testing peerwire needs on a fresh Debian 12
# machine, and skips whatever is already there (a second run takes seconds).
#
#   tests/setup.sh            toolchain for building the package and the broker
#   tests/setup.sh --browser  ... plus Chromium, chromedriver and test tools
#
# Versions are pinned here; wasm-bindgen-cli follows the `=` pin in Cargo.toml.
set -euo pipefail

WASM_PACK_VERSION=0.15.1
ROOT=$(cd "$(dirname "$0")/.." && pwd)
WASM_BINDGEN_VERSION=$(sed -n 's/^wasm-bindgen = "=\([0-9.]*\)"/\1/p' "$ROOT/Cargo.toml")
BROWSER=0
[ "${1:-}" = "--browser" ] && BROWSER=1

say() { printf '[setup] %s\n' "$*"; }
die() { printf '[setup] error: %s\n' "$*" >&2; exit 1; }

[ -n "$WASM_BINDGEN_VERSION" ] || die "cannot read the pinned wasm-bindgen version from Cargo.toml"
command -v cargo >/dev/null || die "cargo is missing: install Rust with rustup first (https://rustup.rs)"
export PATH="$HOME/.cargo/bin:$PATH"

# Debian packages.
packages=()
command -v curl >/dev/null || packages+=(curl)
command -v openssl >/dev/null || packages+=(openssl)
command -v pkg-config >/dev/null || packages+=(pkg-config)
if [ "$BROWSER" = 1 ]; then
  [ -x /usr/bin/chromium ] || packages+=(chromium)
  [ -x /usr/bin/chromedriver ] || packages+=(chromium-driver)
  # The NAT lab (tests/netlab): namespaces, NAT and a TURN server.
  command -v ip >/dev/null && command -v ss >/dev/null || packages+=(iproute2)
  command -v nft >/dev/null || packages+=(nftables)
  command -v turnserver >/dev/null || packages+=(coturn)
  # The broker network's tests (server/tests/cluster.rs) start their own.
  command -v redis-server >/dev/null || packages+=(redis-server)
  # `nginx -t` on deploy/nginx.conf (server/tests/deploy.rs; without nginx
  # the test checks the file with its own parser only). nginx-light takes
  # about 3 s; apt starts its service unless policy-rc.d forbids it, as in
  # containers.
  command -v nginx >/dev/null || [ -x /usr/sbin/nginx ] || packages+=(nginx-light)
fi
if [ ${#packages[@]} -gt 0 ]; then
  say "installing Debian packages: ${packages[*]}"
  SUDO=""
  if [ "$(id -u)" != 0 ]; then
    command -v sudo >/dev/null || die "need root (or sudo) to apt-get install ${packages[*]}"
    SUDO=sudo
  fi
  $SUDO apt-get update -qq || die "apt-get update failed (no network to Debian's mirrors?)"
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${packages[@]}" >/dev/null \
    || die "apt-get install ${packages[*]} failed"
fi
if [ "$BROWSER" = 1 ]; then
  chromium_major=$(/usr/bin/chromium --version 2>/dev/null | grep -o '[0-9]*' | head -1)
  driver_major=$(/usr/bin/chromedriver --version | grep -o '[0-9]*' | head -1)
  [ "$chromium_major" = "$driver_major" ] \
    || die "chromium $chromium_major and chromedriver $driver_major differ: apt-get install --only-upgrade chromium chromium-driver"
fi

# The wasm target.
if ! rustup target list --installed | grep -qx wasm32-unknown-unknown; then
  say "adding the wasm32-unknown-unknown target"
  rustup target add wasm32-unknown-unknown || die "rustup target add wasm32-unknown-unknown failed"
fi

# The package's wasm is built with a pinned nightly (tests/package.sh): its
# `-Zbuild-std` rebuilds std for the size profile with `panic=immediate-abort`
# (no panic formatting; a panic traps, as with panic=abort) and the std's
# optimize_for_size code: 14 KB gzip off the full entry, 10 KB off lite. It
# needs the toolchain's own std sources (rust-src); nothing else.
# PEERWIRE_NIGHTLY in tests/package.sh names the same toolchain.
NIGHTLY=nightly-2026-05-20
if ! rustup run "$NIGHTLY" rustc --version >/dev/null 2>&1 \
  || ! rustup component list --installed --toolchain "$NIGHTLY" 2>/dev/null | grep -q '^rust-src'; then
  say "installing Rust $NIGHTLY (minimal, with rust-src) for the package build"
  rustup toolchain install "$NIGHTLY" --profile minimal --component rust-src >/dev/null \
    || die "rustup toolchain install $NIGHTLY --component rust-src failed"
fi

# Cargo-installed tools at pinned versions.
install_tool() { # binary, crate, version
  local have
  have=$("$1" --version 2>/dev/null | awk '{print $2}' || true)
  if [ "$have" != "$3" ]; then
    say "installing $2 $3 (found: ${have:-none}); this takes a few minutes once"
    # No --locked: the tools' own lockfiles pin crates the registry here may not serve.
    cargo install "$2" --version "$3" --force >/dev/null 2>&1 || die "cargo install $2 --version $3 failed"
  fi
}
install_tool wasm-pack wasm-pack "$WASM_PACK_VERSION"
install_tool wasm-bindgen wasm-bindgen-cli "$WASM_BINDGEN_VERSION"

# A modern wasm-opt for release packages (npm's binaryen; not Debian's).
TOOLS="$HOME/.cache/peerwire-tools"
if [ "$("$TOOLS/node_modules/.bin/wasm-opt" --version 2>/dev/null | awk '{print $3}')" != "132" ]; then
  command -v npm >/dev/null || die "npm is missing: install Node.js 20 and npm"
  say "installing binaryen 132 (wasm-opt) from npm into $TOOLS"
  mkdir -p "$TOOLS"
  (cd "$TOOLS" && npm install --silent --no-audit --no-fund binaryen@132.0.0 >/dev/null) || die "npm install binaryen@132.0.0 failed"
fi
# esbuild minifies wasm-bindgen's glue for the package (half its gzip size).
if [ "$("$TOOLS/node_modules/.bin/esbuild" --version 2>/dev/null)" != "0.25.12" ]; then
  say "installing esbuild 0.25.12 from npm into $TOOLS"
  mkdir -p "$TOOLS"
  (cd "$TOOLS" && npm install --silent --no-audit --no-fund binaryen@132.0.0 esbuild@0.25.12 >/dev/null) || die "npm install esbuild@0.25.12 failed"
fi

say "ready: $(wasm-pack --version), wasm-bindgen $WASM_BINDGEN_VERSION$([ "$BROWSER" = 1 ] && echo ", $(/usr/bin/chromium --version 2>/dev/null)")"
