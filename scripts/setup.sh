#!/usr/bin/env bash
# Installs what building (and, with `test`, testing) Porchlight needs on Debian 12, skipping
# what is present. Idempotent; safe to run on every CI run.
#
# Usage: scripts/setup.sh [run|test]   (default: test)
#   run   what building and running the headless server needs: a C toolchain (SQLite and the
#         TLS library are compiled from source), the wasm32 target and wasm-bindgen-cli for the
#         web UI, Node.js and npm (the UI's Leaflet comes from npm, see ui/vendor). Nothing
#         else: no browser, no WebKitGTK, no display server.
#   test  all of `run`, plus the test toolchain: WebKitGTK (desktop build), Mosquitto and its
#         clients, Xvfb and ImageMagick (desktop window test), Chromium and playwright-core
#         (browser test), zbar-tools (decodes the onboarding QR code in the browser test),
#         openssl and python3 (peers that check the built-in CA's certificates).
set -euo pipefail
cd "$(dirname "$0")/.."

mode="${1:-test}"
case "$mode" in
  run | test) ;;
  *) echo "usage: $0 [run|test]" >&2; exit 64 ;;
esac

apt_packages=(
  # Compiling bundled SQLite and aws-lc (rustls) needs a C compiler.
  build-essential pkg-config
)
if [ "$mode" = test ]; then
  apt_packages+=(
    # Tauri desktop shell (WebKitGTK)
    libwebkit2gtk-4.1-dev libxdo-dev libssl-dev libayatana-appindicator3-dev
    librsvg2-dev libsoup-3.0-dev libjavascriptcoregtk-4.1-dev
    # Peers for tests: Debian's Mosquitto broker and clients; a display and screenshots
    mosquitto mosquitto-clients openssl python3 xvfb imagemagick x11-utils
    # A real browser for the UI test (driven by playwright-core from npm); zbarimg reads the
    # device onboarding QR code the UI shows
    chromium zbar-tools
  )
fi

need_apt=()
for p in "${apt_packages[@]}"; do
  dpkg -s "$p" >/dev/null 2>&1 || need_apt+=("$p")
done
# Node.js: npm installs the UI's Leaflet (scripts/build-ui.sh) and runs the browser test; use
# the machine's if it has one (it may not be Debian's).
command -v node >/dev/null 2>&1 || need_apt+=(nodejs)
command -v npm >/dev/null 2>&1 || need_apt+=(npm)
if [ ${#need_apt[@]} -gt 0 ]; then
  echo "== installing apt packages: ${need_apt[*]}"
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need_apt[@]}" >/dev/null
fi

# The browser tests' npm packages (playwright-core: no browser download, Debian's chromium is
# used; axe-core), from the lock; reinstalled whenever the lock changed (a copy of the lock
# inside node_modules marks what is installed).
bt=ui/browser-test
if [ "$mode" = test ] && ! cmp -s "$bt/package-lock.json" "$bt/node_modules/.porchlight-installed-lock"; then
  echo "== installing the browser tests' npm packages (playwright-core, axe-core)"
  (cd "$bt" && npm ci --no-audit --no-fund)
  cp "$bt/package-lock.json" "$bt/node_modules/.porchlight-installed-lock"
fi

if ! rustup target list --installed | grep -qx wasm32-unknown-unknown; then
  echo "== adding the wasm32 target"
  rustup target add wasm32-unknown-unknown
fi

# wasm-bindgen-cli must match the wasm-bindgen version in Cargo.lock exactly.
wb_version=$(awk '/^name = "wasm-bindgen"$/ {getline; gsub(/"/, "", $3); print $3; exit}' Cargo.lock)
if [ -n "$wb_version" ] && ! wasm-bindgen --version 2>/dev/null | grep -q " $wb_version\$"; then
  echo "== installing wasm-bindgen-cli $wb_version"
  # Not --locked: one of the CLI's locked dependencies is not served by the registry here.
  cargo install wasm-bindgen-cli --version "$wb_version" --force
fi
