#!/usr/bin/env bash
# Desktop smoke test: starts porchlight-desktop under a private Xvfb display, checks that it is
# still alive after a few seconds and that a window titled "Porchlight" is mapped, and saves a
# screenshot. Exits non-zero otherwise.
#
# Usage: scripts/desktop-smoke.sh [path/to/porchlight-desktop]
#   default binary: $CARGO_TARGET_DIR/debug/porchlight-desktop (build it first with
#   `cargo build -p porchlight-desktop --features desktop`).
# Env: SMOKE_SECONDS (default 5), SMOKE_SHOT (default /tmp/porchlight-desktop-smoke.png),
#      SMOKE_DATA_DIR (default: a fresh temporary directory, so no real data is touched).
# Needs: xvfb, x11-utils (xwininfo), imagemagick (import).
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
binary="${1:-${CARGO_TARGET_DIR:-$root/target}/debug/porchlight-desktop}"
seconds="${SMOKE_SECONDS:-5}"
shot="${SMOKE_SHOT:-/tmp/porchlight-desktop-smoke.png}"

for tool in Xvfb xwininfo import; do
  command -v "$tool" >/dev/null || { echo "smoke: missing $tool" >&2; exit 1; }
done
[[ -x "$binary" ]] || { echo "smoke: no binary at $binary" >&2; exit 1; }

work="$(mktemp -d)"
xvfb_pid=""
app_pid=""
cleanup() {
  # Only the two processes this script started, by pid; failures here must not change the result.
  set +e
  if [[ -n "$app_pid" ]]; then kill "$app_pid" 2>/dev/null; wait "$app_pid" 2>/dev/null; fi
  if [[ -n "$xvfb_pid" ]]; then kill "$xvfb_pid" 2>/dev/null; wait "$xvfb_pid" 2>/dev/null; fi
  rm -rf "$work"
}
trap cleanup EXIT

# Xvfb picks a free display and writes its number to fd 3.
Xvfb -displayfd 3 -screen 0 1280x800x24 -nolisten tcp 3>"$work/display" 2>"$work/xvfb.log" &
xvfb_pid=$!
for _ in $(seq 50); do
  [[ -s "$work/display" ]] && break
  sleep 0.1
done
[[ -s "$work/display" ]] || { echo "smoke: Xvfb did not start" >&2; cat "$work/xvfb.log" >&2; exit 1; }
export DISPLAY=":$(head -n1 "$work/display")"

# A throwaway data dir and OS-chosen ports, so the test never touches real data or ports.
data_dir="${SMOKE_DATA_DIR:-$work/data}"
mkdir -p "$data_dir"
# There is no GPU under Xvfb: keep WebKitGTK on its plain software paths.
export WEBKIT_DISABLE_COMPOSITING_MODE=1 WEBKIT_DISABLE_DMABUF_RENDERER=1

"$binary" --data-dir "$data_dir" --http-port 0 --mqtt-port 0 >"$work/app.log" 2>&1 &
app_pid=$!

sleep "$seconds"

status=0
if ! kill -0 "$app_pid" 2>/dev/null; then
  wait "$app_pid" && code=0 || code=$?
  app_pid=""
  echo "smoke: FAIL, porchlight-desktop exited (code $code) within ${seconds}s" >&2
  status=1
elif ! xwininfo -root -tree | grep -q '"Porchlight"'; then
  echo "smoke: FAIL, no window titled \"Porchlight\" is mapped" >&2
  xwininfo -root -tree >&2 || true
  status=1
fi

import -window root "$shot" || echo "smoke: could not take a screenshot" >&2
echo "--- app log" >&2
cat "$work/app.log" >&2
[[ $status -eq 0 ]] && echo "smoke: OK, window mapped and app alive after ${seconds}s; screenshot $shot"
exit "$status"
