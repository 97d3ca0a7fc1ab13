#!/usr/bin/env bash
# The trace-store benchmark of issue 13: Jaeger's ClickHouse workload (traces
# of 10 spans, 20 services, 200 operations, 11 attributes per span from 97
# keys x 1,000 values), loaded once over OTLP/HTTP protobuf by one client,
# then queried through the Jaeger API (services, trace by id, search by
# service + attribute, search by service). Prints one JSON line and a table.
#
# Usage: bench/store.sh SPANS [ROUNDS] [RUNS]
#   SPANS   1000000 or 10000000 (a multiple of 1,000)
#   ROUNDS  timed passes over each query set (default 3)
#   RUNS    loads of a fresh server, one result line each (default 1)
# Environment: SEISMO_BIN (default target/release/seismo), BENCH_DATA (where
# generated data sets are kept and reused; default bench/data), KEEP_DATA=1,
# FLUSH_TIMEOUT (seconds to wait after the load for the data directory to stop
# changing: flushes and the merges deferred during the load; default 300, so
# that bytes per span are measured after compaction and the queries do not
# share the CPU with merges).
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)
SPANS=${1:?usage: bench/store.sh SPANS [ROUNDS]}
ROUNDS=${2:-3}
RUNS=${3:-1}
DATA_ROOT=${BENCH_DATA:-$HERE/data}
VENV=$HERE/.venv

if [ ! -x "$VENV/bin/python" ] || ! "$VENV/bin/python" -c 'import requests, numpy, pyarrow' 2>/dev/null; then
  echo "setting up $VENV (requests, numpy, pyarrow)" >&2
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q requests numpy pyarrow
fi
BIN=${SEISMO_BIN:-$ROOT/target/release/seismo}
if [ -z "${SEISMO_BIN:-}" ]; then
  (cd "$ROOT" && cargo build --release --bin seismo >&2)
fi
DATA=$DATA_ROOT/jch-$SPANS
if [ ! -f "$DATA/queries.json" ]; then
  echo "generating $SPANS spans into $DATA (once; reused by later runs)" >&2
  mkdir -p "$DATA_ROOT"
  "$VENV/bin/python" "$HERE/jch/gen_jch.py" --spans "$SPANS" --out "$DATA" --seed 42
fi
for run in $(seq 1 "$RUNS"); do
  echo "== run $run"
  SEISMO_BIN=$BIN PYTHON=$VENV/bin/python ROUNDS=$ROUNDS "$HERE/jch/seismo_side.sh" "$ROOT" "$DATA"
done
