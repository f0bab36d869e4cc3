#!/usr/bin/env bash
# Builds Porchlight (web UI embedded) and runs it headless: `porchlight serve`.
# Extra arguments go to `serve`, e.g. `bash scripts/run.sh --http-port 8081 --data-dir ./data`.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/porchlight/target}"
bash scripts/setup.sh run
bash scripts/build-ui.sh release
cargo build --release -p porchlight --locked
exec "$CARGO_TARGET_DIR/release/porchlight" serve "$@"
