#!/usr/bin/env bash
# Pass-through cost of the chaos agent (release build), no toxics active.
#
#   bench/chaos.sh [ROUND_TRIPS] [BYTES] [RUNS] [AGENT_FLAGS...]   (defaults: 50000 8589934592 3)
#
# Starts `seismo chaos agent`, then `seismo loadgen-proxy` runs its own
# loopback upstreams (echo, HTTP/1.1 keep-alive, sink), creates three proxies
# through the Toxiproxy API and measures, in one run: 64-byte TCP round trips
# and HTTP requests direct vs proxied (interleaved blocks; added = proxied -
# direct at the same percentile), and single-stream throughput into the sink.
set -euo pipefail
cd "$(dirname "$0")/.."
ROUND_TRIPS=${1:-50000}
BYTES=${2:-8589934592}
RUNS=${3:-3}
shift $(( $# < 3 ? $# : 3 ))
BIN=target/release/seismo
[ -x "$BIN" ] || cargo build --release --bin seismo

OUT=$(mktemp)
"$BIN" chaos agent --api 127.0.0.1:0 "$@" > "$OUT" 2>/dev/null &
PID=$!
trap 'kill $PID 2>/dev/null || true; rm -f "$OUT"' EXIT
for _ in $(seq 100); do grep -q 'ready' "$OUT" && break; sleep 0.1; done
API=$(grep -o 'api=[^ ]*' "$OUT" | cut -d= -f2)
for run in $(seq "$RUNS"); do
  echo "== run $run"
  "$BIN" loadgen-proxy --agent "http://$API" --round-trips "$ROUND_TRIPS" --bytes "$BYTES"
done
