#!/usr/bin/env bash
# Ingest + storage + trace-by-id benchmark of the release binary on this machine.
#
#   bench/ingest.sh [SPANS] [RUNS]      (defaults: 1000000 spans, 3 runs)
#
# Each run: a fresh `seismo serve` on a temp data dir, `seismo loadgen` sends
# SPANS spans over OTLP/gRPC (8 requests in flight, 1000 spans each) and counts
# only acknowledged (fsynced) spans, then times 500 trace-by-id lookups through
# the Jaeger API; SIGTERM flushes the memtable, and the segment files are
# measured for bytes per span. Loadgen and server share the machine's cores.
set -euo pipefail
cd "$(dirname "$0")/.."
SPANS=${1:-1000000}
RUNS=${2:-3}
BIN=target/release/seismo
[ -x "$BIN" ] || cargo build --release --bin seismo

for run in $(seq 1 "$RUNS"); do
  DIR=$(mktemp -d)
  "$BIN" serve --data-dir "$DIR/data" --otlp-grpc 127.0.0.1:0 --otlp-http 127.0.0.1:0 --http 127.0.0.1:0 \
    > "$DIR/ready" 2> "$DIR/server.log" &
  PID=$!
  for _ in $(seq 100); do grep -q '^seismo ready' "$DIR/ready" 2>/dev/null && break; sleep 0.1; done
  GRPC=$(grep -o 'otlp-grpc=[^ ]*' "$DIR/ready" | cut -d= -f2)
  HTTP=$(grep -o ' http=[^ ]*' "$DIR/ready" | cut -d= -f2)
  OUT=$("$BIN" loadgen --endpoint "http://$GRPC" --spans "$SPANS" --query-url "http://$HTTP" 2>/dev/null)
  # Lookups again after the flush: trace-by-id served from Parquet segments.
  kill -TERM $PID; wait $PID
  "$BIN" serve --data-dir "$DIR/data" --otlp-grpc 127.0.0.1:0 --otlp-http 127.0.0.1:0 --http 127.0.0.1:0 \
    > "$DIR/ready2" 2>> "$DIR/server.log" &
  PID=$!
  for _ in $(seq 100); do grep -q '^seismo ready' "$DIR/ready2" 2>/dev/null && break; sleep 0.1; done
  HTTP=$(grep -o ' http=[^ ]*' "$DIR/ready2" | cut -d= -f2)
  GRPC=$(grep -o 'otlp-grpc=[^ ]*' "$DIR/ready2" | cut -d= -f2)
  SEG=$("$BIN" loadgen --endpoint "http://$GRPC" --spans "$SPANS" --lookups-only --query-url "http://$HTTP" 2>/dev/null | tail -1)
  kill -TERM $PID; wait $PID
  PARQUET=$(find "$DIR/data/segments" -name '*.parquet' -printf '%s\n' | awk '{s+=$1} END {print s+0}')
  INDEX=$(find "$DIR/data/segments" -path '*.tantivy/*' -printf '%s\n' | awk '{s+=$1} END {print s+0}')
  echo "run $run: $(echo "$OUT" | tr '\n' ' ') segments_lookup=$SEG parquet_bytes_per_span=$(awk -v b=$PARQUET -v n=$SPANS 'BEGIN{printf "%.1f", b/n}') index_bytes_per_span=$(awk -v b=$INDEX -v n=$SPANS 'BEGIN{printf "%.1f", b/n}')"
  rm -rf "$DIR"
done
