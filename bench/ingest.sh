#!/usr/bin/env bash
# Ingest + storage + trace-by-id benchmark of the release binary on this machine.
#
#   bench/ingest.sh [SPANS] [RUNS]      (defaults: 1000000 spans, 3 runs)
#   SEISMO=path/to/seismo bench/ingest.sh ...   (another binary; default: release)
#
# Each run: a fresh `seismo serve` on a temp data dir, `seismo loadgen` sends
# SPANS spans over OTLP/gRPC (8 requests in flight, 1000 spans each) and counts
# only acknowledged (fsynced) spans, then times 500 trace-by-id lookups through
# the Jaeger API; SIGTERM flushes the memtable, and the segment files are
# measured for bytes per span. Loadgen and server share the machine's cores.
#
# Output, one line per run: `run N: {send JSON} {lookup JSON}
# segments_lookup={lookup JSON} parquet_bytes_per_span=X index_bytes_per_span=Y`.
set -euo pipefail
SPANS=${1:-1000000}
RUNS=${2:-3}
# shellcheck source=bench/lib.sh
. "$(dirname "$0")/lib.sh"

for run in $(seq 1 "$RUNS"); do
  DATA="$WORK/data"
  rm -rf "$DATA"
  serve_start "$DATA"
  OUT=$("$BIN" loadgen --endpoint "http://$GRPC" --spans "$SPANS" --query-url "http://$HTTP" 2>> "$WORK/loadgen.log")
  # Lookups again after the flush: trace-by-id served from Parquet segments.
  serve_stop
  serve_start "$DATA"
  SEG=$("$BIN" loadgen --endpoint "http://$GRPC" --spans "$SPANS" --lookups-only --query-url "http://$HTTP" 2>> "$WORK/loadgen.log" | tail -1)
  serve_stop
  PARQUET=$(find "$DATA/segments" -name '*.parquet' -printf '%s\n' | awk '{s+=$1} END {print s+0}')
  INDEX=$(find "$DATA/segments" \( -path '*.tantivy/*' -o -name '*.idx' \) -printf '%s\n' | awk '{s+=$1} END {print s+0}')
  echo "run $run: $(echo "$OUT" | tr '\n' ' ') segments_lookup=$SEG parquet_bytes_per_span=$(awk -v b="$PARQUET" -v n="$SPANS" 'BEGIN{printf "%.1f", b/n}') index_bytes_per_span=$(awk -v b="$INDEX" -v n="$SPANS" 'BEGIN{printf "%.1f", b/n}')"
done
