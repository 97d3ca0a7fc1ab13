#!/usr/bin/env bash
# Memory under concurrent large OTLP/JSON bodies (issue 14: 16 x 19 MiB took 9.1 GB).
#
#   bench/inflight.sh [CONCURRENT] [MIB] [RUNS]     (defaults: 16 bodies of 19 MiB, 3 runs)
#   SEISMO=target/debug/seismo bench/inflight.sh    (another binary; default: release)
#
# Each run: a fresh `seismo serve` (default limits) on a temp data dir; CONCURRENT
# curl processes POST the same MIB-sized OTLP/JSON export (spans with 5 attributes)
# at once; prints the answers by status, the wall time, and the server's peak RSS
# (VmHWM). Requests past the memory budget wait up to 5 s, then get 429.
set -euo pipefail
N=${1:-16}
MIB=${2:-19}
RUNS=${3:-3}
# shellcheck source=bench/lib.sh
. "$(dirname "$0")/lib.sh"

python3 - "$MIB" > "$WORK/body.json" <<'PY'
import json, random, sys, time
target, now, spans, size, i = int(sys.argv[1]) << 20, time.time_ns(), [], 0, 0
while size < target:
    s = {"traceId": "%032x" % random.getrandbits(128), "spanId": "%016x" % random.getrandbits(64),
         "parentSpanId": "%016x" % random.getrandbits(64), "name": "GET /api/item/%d" % (i % 50), "kind": 2,
         "startTimeUnixNano": str(now - 1000000 + i), "endTimeUnixNano": str(now + i), "status": {"code": 1},
         "attributes": [{"key": "http.method", "value": {"stringValue": "GET"}},
                        {"key": "http.status_code", "value": {"intValue": "200"}},
                        {"key": "http.url", "value": {"stringValue": "http://shop/api/item/%d?x=%d" % (i, i)}},
                        {"key": "net.peer.name", "value": {"stringValue": "10.0.0.%d" % (i % 255)}},
                        {"key": "user.id", "value": {"stringValue": "user-%d" % i}}]}
    spans.append(s); size += len(json.dumps(s)); i += 1
print(json.dumps({"resourceSpans": [{"resource": {"attributes": [{"key": "service.name", "value": {"stringValue": "shop"}}]},
      "scopeSpans": [{"spans": spans}]}]}))
PY

for run in $(seq 1 "$RUNS"); do
  rm -rf "$WORK/data"
  serve_start "$WORK/data"
  START=$(date +%s%N)
  CURLS=()
  for _ in $(seq "$N"); do
    curl -s -o /dev/null -w '%{http_code}\n' -X POST "http://$OTLP_HTTP/v1/traces" \
      -H 'content-type: application/json' --data-binary @"$WORK/body.json" >> "$WORK/codes.$run" &
    CURLS+=($!)
  done
  wait "${CURLS[@]}"
  END=$(date +%s%N)
  PEAK=$(awk '/VmHWM/ {print int($2/1024)}' "/proc/$SERVE_PID/status")
  serve_stop
  echo "run $run: $(sort "$WORK/codes.$run" | uniq -c | awk '{printf "%sx%s ", $1, $2}')wall_ms=$(( (END - START) / 1000000 )) peak_rss_mib=$PEAK"
done
