#!/usr/bin/env bash
# Builds the web UI into ui/dist/ (index.html, style.css, pkg/, vendor/), which the server
# serves at `/`.
#
# Usage: scripts/build-ui.sh [release|debug]   (default: release)
# Respects CARGO_TARGET_DIR. Installs the wasm32 target and wasm-bindgen-cli only when missing;
# the CLI version is read from ui/Cargo.toml, where wasm-bindgen is pinned with `=`, so the two
# always match. Third-party browser code (Leaflet) is pinned in ui/vendor/package-lock.json:
# `npm ci` runs there only when its node_modules is missing or the lock changed, and the files
# the page loads are copied into dist/vendor/ (served by us: no CDN). Safe to run again: it
# rebuilds incrementally and replaces ui/dist/ as a whole.
set -euo pipefail

profile="${1:-release}"
# Release builds use the size-optimised `wasm-release` profile (root Cargo.toml).
case "$profile" in
  # …and drop the wasm's name section (function names for stack traces: half the file).
  release) cargo_profile_flag=(--profile wasm-release); profile_dir=wasm-release
    bindgen_flags=(--remove-name-section) ;;
  debug) cargo_profile_flag=(); profile_dir=debug; bindgen_flags=() ;;
  *) echo "usage: $0 [release|debug]" >&2; exit 64 ;;
esac

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

# The exact version pinned in ui/Cargo.toml, e.g. `wasm-bindgen = "=0.2.130"`.
bindgen_version="$(sed -n 's/^wasm-bindgen *= *"=\([0-9.]*\)".*/\1/p' ui/Cargo.toml)"
if [[ -z "$bindgen_version" ]]; then
  echo "ui/Cargo.toml must pin wasm-bindgen with \"=x.y.z\"" >&2
  exit 1
fi

if ! rustup target list --installed | grep -qx wasm32-unknown-unknown; then
  rustup target add wasm32-unknown-unknown
fi

if ! command -v wasm-bindgen >/dev/null 2>&1 \
  || [[ "$(wasm-bindgen --version)" != "wasm-bindgen $bindgen_version" ]]; then
  # Not --locked: one of the CLI's locked dependencies is not served by our registry.
  cargo install wasm-bindgen-cli --version "$bindgen_version"
fi

# Leaflet from npm, installed from the lock; the lock's copy inside node_modules marks what is
# installed, so a changed lock reinstalls and an unchanged one costs nothing.
vendor="ui/vendor"
if ! cmp -s "$vendor/package-lock.json" "$vendor/node_modules/.porchlight-installed-lock"; then
  (cd "$vendor" && npm ci --no-audit --no-fund)
  cp "$vendor/package-lock.json" "$vendor/node_modules/.porchlight-installed-lock"
fi

cargo build -p porchlight-ui --target wasm32-unknown-unknown "${cargo_profile_flag[@]}"

target_dir="${CARGO_TARGET_DIR:-$(cargo metadata --format-version 1 --no-deps \
  | sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p')}"
wasm="$target_dir/wasm32-unknown-unknown/$profile_dir/porchlight_ui.wasm"

# Build into a fresh folder next to dist and swap, so a server never sees a half-written dist.
staging="ui/dist.tmp"
rm -rf "$staging"
mkdir -p "$staging"
wasm-bindgen --target web --no-typescript "${bindgen_flags[@]}" --out-dir "$staging/pkg" "$wasm"
cp ui/index.html ui/style.css ui/maps.css "$staging/"
leaflet="$vendor/node_modules/leaflet/dist"
mkdir -p "$staging/vendor/leaflet"
cp "$leaflet/leaflet.js" "$leaflet/leaflet.css" "$staging/vendor/leaflet/"
cp -r "$leaflet/images" "$staging/vendor/leaflet/"
rm -rf ui/dist
mv "$staging" ui/dist

echo "UI built ($profile): $root/ui/dist"
