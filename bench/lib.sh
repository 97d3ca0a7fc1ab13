# Sourced by the bench scripts (not run): the binary under test, a temp
# directory removed on exit, and `seismo serve` started on free ports and
# stopped again — also when the script fails or is interrupted, so no server
# or data directory outlives it.
#
# After sourcing: $BIN (the binary), $WORK (the temp directory), and
#   serve_start DATA_DIR   starts `seismo serve`, waits for its ready line and
#                          sets SERVE_PID, GRPC, OTLP_HTTP and HTTP;
#   serve_stop             SIGTERMs it (the server flushes) and waits;
#   agent_start            starts `seismo chaos agent` (API on a free port),
#                          waits for its ready line and sets AGENT_API.
# The script's working directory becomes the repository root.
# shellcheck shell=bash

cd "$(dirname "${BASH_SOURCE[0]}")/.." || exit
BIN=${SEISMO:-target/release/seismo}
if [ ! -x "$BIN" ]; then
  cargo build --release --bin seismo
fi
WORK=$(mktemp -d "${TMPDIR:-/tmp}/seismo-bench.XXXXXX")
SERVE_PID=
AGENT_PID=

bench_cleanup() {
  local status=$?
  for pid in $SERVE_PID $AGENT_PID; do
    kill -TERM "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  done
  if [ "$status" -ne 0 ]; then
    echo "$(basename "$0") failed (exit $status)" >&2
    for log in "$WORK"/*.log; do
      [ -s "$log" ] || continue
      echo "-- last lines of $(basename "$log"):" >&2
      tail -n 20 "$log" >&2
    done
  fi
  rm -rf "$WORK"
}
trap bench_cleanup EXIT

# Waits until FILE has a line starting with PATTERN while process PID lives
# (up to 120 s: replaying a big WAL takes a while); fails naming WHAT.
wait_ready() {
  local what=$1 pid=$2 file=$3 pattern=$4
  for _ in $(seq 1200); do
    grep -q "^$pattern" "$file" && return 0
    if ! kill -0 "$pid" 2>/dev/null; then
      echo "$what exited before it was ready" >&2
      return 1
    fi
    sleep 0.1
  done
  echo "$what printed no ready line within 120 s" >&2
  return 1
}

# shellcheck disable=SC2034 # GRPC, OTLP_HTTP, HTTP: read by the scripts that source this file
serve_start() {
  # Emptied here, not by the redirection below: that one happens in the child,
  # possibly after the first look for the ready line.
  : > "$WORK/ready"
  "$BIN" serve --data-dir "$1" --otlp-grpc 127.0.0.1:0 --otlp-http 127.0.0.1:0 --http 127.0.0.1:0 \
    > "$WORK/ready" 2>> "$WORK/server.log" &
  SERVE_PID=$!
  wait_ready "seismo serve" "$SERVE_PID" "$WORK/ready" 'seismo ready'
  GRPC=$(grep -o 'otlp-grpc=[^ ]*' "$WORK/ready" | cut -d= -f2)
  OTLP_HTTP=$(grep -o 'otlp-http=[^ ]*' "$WORK/ready" | cut -d= -f2)
  HTTP=$(grep -o ' http=[^ ]*' "$WORK/ready" | cut -d= -f2)
}

serve_stop() {
  local pid=$SERVE_PID
  SERVE_PID=
  kill -TERM "$pid"
  wait "$pid"
}

# shellcheck disable=SC2034 # AGENT_API: read by the scripts that source this file
agent_start() {
  : > "$WORK/agent-ready"
  "$BIN" chaos agent --api 127.0.0.1:0 "$@" > "$WORK/agent-ready" 2>> "$WORK/agent.log" &
  AGENT_PID=$!
  wait_ready "seismo chaos agent" "$AGENT_PID" "$WORK/agent-ready" 'seismo chaos agent ready'
  AGENT_API=$(grep -o 'api=[^ ]*' "$WORK/agent-ready" | cut -d= -f2)
}
