#!/usr/bin/env bash
# Pass-through cost of the chaos agent (release build), no toxics active.
#
#   bench/chaos.sh [ROUND_TRIPS] [BYTES] [RUNS] [AGENT_FLAGS...]   (defaults: 50000 8589934592 3)
#   SEISMO=path/to/seismo bench/chaos.sh ...                       (another binary; default: release)
#
# Starts `seismo chaos agent`, then `seismo loadgen-proxy` runs its own
# loopback upstreams (echo, HTTP/1.1 keep-alive, sink), creates three proxies
# through the Toxiproxy API and measures, in one run: 64-byte TCP round trips
# and HTTP requests direct vs proxied (interleaved blocks; added = proxied -
# direct at the same percentile), and single-stream throughput into the sink.
#
# Output: `== run N`, then loadgen-proxy's three lines per run.
set -euo pipefail
ROUND_TRIPS=${1:-50000}
BYTES=${2:-8589934592}
RUNS=${3:-3}
shift $(( $# < 3 ? $# : 3 ))
# shellcheck source=bench/lib.sh
. "$(dirname "$0")/lib.sh"

agent_start "$@"
for run in $(seq "$RUNS"); do
  echo "== run $run"
  "$BIN" loadgen-proxy --agent "http://$AGENT_API" --round-trips "$ROUND_TRIPS" --bytes "$BYTES"
done
