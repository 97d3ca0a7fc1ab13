#!/usr/bin/env bash
# TUI frame time on a synthetic 10,000-span trace (release build).
#
#   bench/tui.sh [FRAMES] [RUNS] [SIZE]      (defaults: 500 frames, 3 runs, 160x50)
#   SEISMO=path/to/seismo bench/tui.sh ...   (another binary; default: release)
#
# Each run is one `seismo tui --bench-frames FRAMES --render-once SIZE`: it
# opens the trace on the Trace screen and draws FRAMES frames off-screen,
# scrolling before each; it prints one line (open time, frame median, p99, max).
set -euo pipefail
FRAMES=${1:-500}
RUNS=${2:-3}
SIZE=${3:-160x50}
# shellcheck source=bench/lib.sh
. "$(dirname "$0")/lib.sh"

for _ in $(seq 1 "$RUNS"); do
  "$BIN" tui --bench-frames "$FRAMES" --render-once "$SIZE"
done
