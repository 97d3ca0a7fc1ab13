#!/usr/bin/env bash
# Log-search and PromQL benchmarks of the release binary on this machine.
#
#   bench/signals.sh [LOG_RECORDS] [SERIES] [HOURS]   (defaults: 10000000 1000 1; LOG_RECORDS 0 = metrics only)
#
# Logs: a fresh `seismo serve`; `seismo loadgen-logs` sends LOG_RECORDS
# templated log lines (spread over the last hour, 8 services, ids in every
# line) over OTLP/gRPC; the server is restarted (SIGTERM flushes the memtable,
# so searches read segments only) and each of 8 searches is timed 20 times
# through /api/v1/logs (limit 100).
# Metrics: a counter with SERIES series, one point per series every 15 s for
# HOURS hours, then (after a restart) three PromQL range queries over the whole
# span, each timed 20 times through POST /api/v1/query_range.
set -euo pipefail
cd "$(dirname "$0")/.."
RECORDS=${1:-10000000}
SERIES=${2:-1000}
HOURS=${3:-1}
BIN=target/release/seismo
[ -x "$BIN" ] || cargo build --release --bin seismo

DIR=$(mktemp -d)
start() {
  "$BIN" serve --data-dir "$DIR/data" --otlp-grpc 127.0.0.1:0 --otlp-http 127.0.0.1:0 --http 127.0.0.1:0 \
    > "$DIR/ready" 2>> "$DIR/server.log" &
  PID=$!
  for _ in $(seq 600); do grep -q '^seismo ready' "$DIR/ready" 2>/dev/null && break; sleep 0.1; done
  GRPC=$(grep -o 'otlp-grpc=[^ ]*' "$DIR/ready" | cut -d= -f2)
  HTTP=$(grep -o ' http=[^ ]*' "$DIR/ready" | cut -d= -f2)
}
stop() { kill -TERM $PID; wait $PID; }

if [ "$RECORDS" -gt 0 ]; then
start
"$BIN" loadgen-logs --endpoint "http://$GRPC" --records "$RECORDS"
stop
start
"$BIN" loadgen-logs --endpoint "http://$GRPC" --records 0 --query-url "http://$HTTP"
stop
echo "log segments: $(find "$DIR/data/segments" -name '*-logs.parquet' | wc -l), parquet $(find "$DIR/data/segments" -name '*-logs.parquet' -printf '%s\n' | awk '{s+=$1} END {printf "%.1f", s/1e6}') MB, index $(find "$DIR/data/segments" -path '*-logs.tantivy/*' -printf '%s\n' | awk '{s+=$1} END {printf "%.1f", s/1e6}') MB"
fi
rm -rf "$DIR"

DIR=$(mktemp -d)
start
"$BIN" loadgen-metrics --endpoint "http://$GRPC" --series "$SERIES" --hours "$HOURS" --query-url "http://$HTTP"
stop
start
"$BIN" loadgen-metrics --endpoint "http://$GRPC" --series "$SERIES" --hours "$HOURS" --queries-only --query-url "http://$HTTP"
stop
rm -rf "$DIR"
