#!/usr/bin/env bash
# Log-search and PromQL benchmarks of the release binary on this machine.
#
#   bench/signals.sh [LOG_RECORDS] [SERIES] [HOURS] [RUNS]   (defaults: 10000000 1000 1 1; LOG_RECORDS 0 = metrics only)
#   SEISMO=path/to/seismo bench/signals.sh ...               (another binary; default: release)
#
# Logs: a fresh `seismo serve`; `seismo loadgen-logs` sends LOG_RECORDS
# templated log lines (spread over the last hour, 8 services, ids in every
# line) over OTLP/gRPC; the server is restarted (SIGTERM flushes the memtable,
# so searches read segments only) and each of 8 searches is timed 20 times
# through /api/v1/logs (limit 100).
# Metrics: a counter with SERIES series, one point per series every 15 s for
# HOURS hours, then three PromQL range queries over the whole span, each timed
# 20 times through POST /api/v1/query_range: first from the memtable, then
# (after a restart) from segments.
#
# Output, per run: `== run N`, the load generators' JSON lines (the metric
# ones prefixed `memtable: ` or `segments: `) and one `log segments: ...` line.
set -euo pipefail
RECORDS=${1:-10000000}
SERIES=${2:-1000}
HOURS=${3:-1}
RUNS=${4:-1}
# shellcheck source=bench/lib.sh
. "$(dirname "$0")/lib.sh"

for run in $(seq 1 "$RUNS"); do
  echo "== run $run"
  if [ "$RECORDS" -gt 0 ]; then
    serve_start "$WORK/logs"
    "$BIN" loadgen-logs --endpoint "http://$GRPC" --records "$RECORDS"
    serve_stop
    serve_start "$WORK/logs"
    "$BIN" loadgen-logs --endpoint "http://$GRPC" --records 0 --query-url "http://$HTTP"
    serve_stop
    SEGMENTS="$WORK/logs/segments"
    echo "log segments: $(find "$SEGMENTS" -name '*-logs.parquet' | wc -l), parquet $(find "$SEGMENTS" -name '*-logs.parquet' -printf '%s\n' | awk '{s+=$1} END {printf "%.1f", s/1e6}') MB, index $(find "$SEGMENTS" -path '*-logs.tantivy/*' -printf '%s\n' | awk '{s+=$1} END {printf "%.1f", s/1e6}') MB"
    rm -rf "$WORK/logs"
  fi

  serve_start "$WORK/metrics"
  "$BIN" loadgen-metrics --endpoint "http://$GRPC" --series "$SERIES" --hours "$HOURS" --query-url "http://$HTTP" \
    | sed -u 's/^/memtable: /'
  serve_stop
  serve_start "$WORK/metrics"
  "$BIN" loadgen-metrics --endpoint "http://$GRPC" --series "$SERIES" --hours "$HOURS" --queries-only --query-url "http://$HTTP" \
    | sed -u 's/^/segments: /'
  serve_stop
  rm -rf "$WORK/metrics"
done
