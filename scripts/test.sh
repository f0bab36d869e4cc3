#!/usr/bin/env bash
# The whole test suite: formatting, lints, the wasm UI build, the desktop build, and every
# test (unit, store, broker, end-to-end against the real server, the real binary and Debian's
# Mosquitto clients). CI runs exactly this (.ci/run).
set -euo pipefail
cd "$(dirname "$0")/.."

# Outside the clone so that a fresh clone (as in CI) still reuses earlier builds.
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/porchlight/target}"
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"

step() { echo; echo "== $* ($(date +%H:%M:%S))"; }

step "setup"
bash scripts/setup.sh test

step "rustfmt"
cargo fmt --all -- --check

step "web UI (wasm)"
bash scripts/build-ui.sh release

step "clippy (server crates, tests)"
cargo clippy --all-targets --locked -- -D warnings
step "clippy (ui, wasm32)"
cargo clippy -p porchlight-ui --target wasm32-unknown-unknown --locked -- -D warnings

step "build the porchlight binary (used by end-to-end tests)"
cargo build -p porchlight --locked

step "tests"
cargo test --locked

step "web UI in a real browser (chromium, against the real server)"
(cd ui/browser-test && PORCHLIGHT_BIN="$CARGO_TARGET_DIR/debug/porchlight" node run.mjs)

step "desktop shell (Tauri, feature 'desktop')"
cargo clippy -p porchlight-desktop --features desktop-test --all-targets --locked -- -D warnings
cargo test -p porchlight-desktop --lib --features desktop-test --locked
cargo build -p porchlight-desktop --features desktop --locked
bash scripts/desktop-smoke.sh "$CARGO_TARGET_DIR/debug/porchlight-desktop"

step "all checks passed"
