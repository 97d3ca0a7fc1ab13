#!/usr/bin/env bash
# Regenerates every figure in BENCHMARKS.md in one sitting, with the release
# binary (built first when missing or stale).
#
#   bench/run.sh [--quick] [STEP...]
#
# Prints a description of the machine, runs each step's bench script several
# times, then prints one Markdown table (each figure's median beside the
# target its issue set, and every run's value) followed by the scripts' raw
# output. The same report goes to bench/results/run-<UTC time>.md.
#
#   full run   ingest 3 x 1M spans, log search 3 x 2M lines + PromQL 3 x 1h of
#              1,000 series, chaos pass-through 3 x (50,000 round trips, 8 GiB),
#              memory under 16 x 19 MiB OTLP/JSON bodies x 3, TUI 3 x 500 frames:
#              about 10-12 minutes on the 2-core machine
#   --quick    the same steps at tiny sizes, one run each (under 2 minutes): a
#              smoke test that every step still works, not a measurement
#   STEP...    only these steps (ingest signals chaos inflight tui)
#   SEISMO=path/to/seismo bench/run.sh ...   measure that binary instead (no build)
#
# A failing step stops the run with a non-zero exit naming it. Ctrl-C (or any
# exit) stops the running step's whole process group — servers, agents, load
# generators — and removes every temp directory.
#
# Adding a step: write `step_<name>` below (run its command with `run_step`,
# then declare its figures with `figure` and their per-run values with
# `record`), and add <name> to STEPS.
set -euo pipefail
cd "$(dirname "$0")/.."

STEPS=(ingest store signals chaos inflight tui)

MODE=full
SELECTED=()
for arg in "$@"; do
  case "$arg" in
    --quick) MODE=quick ;;
    -h | --help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    -*) echo "bench/run.sh: unknown flag $arg (see --help)" >&2; exit 2 ;;
    *)
      if [[ " ${STEPS[*]} " != *" $arg "* ]]; then
        echo "bench/run.sh: unknown step $arg (steps: ${STEPS[*]})" >&2
        exit 2
      fi
      SELECTED+=("$arg")
      ;;
  esac
done
[ ${#SELECTED[@]} -gt 0 ] || SELECTED=("${STEPS[@]}")

if [ "$MODE" = quick ]; then
  RUNS=1
  INGEST_SPANS=20000
  STORE_SPANS=10000
  LOG_RECORDS=20000
  SERIES=20
  ROUND_TRIPS=1000
  PROXY_BYTES=$((64 << 20))
  BODIES=4
  BODY_MIB=2
  FRAMES=50
else
  RUNS=3
  INGEST_SPANS=1000000
  STORE_SPANS=1000000
  LOG_RECORDS=2000000
  SERIES=1000
  ROUND_TRIPS=50000
  PROXY_BYTES=$((8 << 30))
  BODIES=16
  BODY_MIB=19
  FRAMES=500
fi

STARTED=$(date -u +%Y-%m-%dT%H:%M:%SZ)
RESULTS_DIR=bench/results
RESULT_FILE="$RESULTS_DIR/run-$(date -u +%Y%m%dT%H%M%SZ)"
if [ "$MODE" = quick ]; then RESULT_FILE+=-quick; fi
RESULT_FILE+=.md
WORK=$(mktemp -d "${TMPDIR:-/tmp}/seismo-run.XXXXXX")
# The step scripts make their temp directories in here, so they go too even
# when a step has to be killed.
mkdir "$WORK/tmp"
export TMPDIR="$WORK/tmp"
BUILD=yes
if [ -n "${SEISMO:-}" ]; then BUILD=no; else SEISMO=target/release/seismo; fi
export SEISMO
STEP_PID=

cleanup() {
  local status=$?
  if [ -n "$STEP_PID" ]; then
    echo "bench/run.sh: stopping the running step (process group $STEP_PID)" >&2
    kill -TERM -- "-$STEP_PID" 2>/dev/null || true
    # Its data is thrown away: 5 s to stop, then what is left is killed.
    for _ in $(seq 50); do
      kill -0 -- "-$STEP_PID" 2>/dev/null || break
      sleep 0.1
    done
    kill -KILL -- "-$STEP_PID" 2>/dev/null || true
    wait "$STEP_PID" 2>/dev/null || true
  fi
  rm -rf "$WORK"
  exit "$status"
}
trap cleanup EXIT
trap 'echo "bench/run.sh: interrupted" >&2; exit 130' INT TERM HUP

fail() {
  echo "bench/run.sh: FAILED: $*" >&2
  exit 1
}

# --- the report --------------------------------------------------------------

# figure KEY LABEL OP TARGET: a row of the table, in the order declared; OP is
# >=, <= or < (the median is checked against TARGET) or - (no target; TARGET
# is then a note).
figure() { printf '%s\t%s\t%s\t%s\n' "$1" "$2" "$3" "$4" >> "$WORK/figures.tsv"; }

# record KEY VALUE: one run's value of figure KEY.
record() {
  [[ "$2" =~ ^-?[0-9]+(\.[0-9]+)?([eE][-+]?[0-9]+)?$ ]] || fail "$CURRENT_STEP: '$2' for '$1' is not a number"
  printf '%s\t%s\n' "$1" "$2" >> "$WORK/values.tsv"
}

# The number after "KEY": in a JSON line (the first one).
json_number() { grep -o "\"$1\":-\{0,1\}[0-9.eE+-]*" <<< "$2" | head -n 1 | cut -d: -f2; }

# expect_runs STEP WHAT LINES: LINES, parsed from STEP's output, must hold
# one line per run.
expect_runs() {
  if [ -z "$3" ] || [ "$(wc -l <<< "$3")" -ne "$RUNS" ]; then
    fail "$1: expected $RUNS $2 in its output, found $(grep -c . <<< "$3") (has the format changed?)"
  fi
}

# 1234567 -> 1,234,567
thousands() { sed ':a; s/\B[0-9]\{3\}\>/,&/; ta' <<< "$1"; }

# The value of KEY=VALUE in a line.
kv() { grep -o "$1=[^ ]*" <<< "$2" | head -n 1 | cut -d= -f2; }

machine() {
  local cpu cores ram load
  cpu=$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')
  cores=$(nproc)
  ram=$(awk '/MemTotal/ {printf "%.1f GiB", $2 / 1048576}' /proc/meminfo)
  load=$(cut -d' ' -f1-3 /proc/loadavg)
  echo "## Machine"
  echo
  echo "- CPU: ${cpu:-unknown}, $cores cores available to this process"
  echo "- RAM: $ram; kernel $(uname -sr)"
  echo "- binary $SEISMO$(if [ "$BUILD" = yes ]; then echo " (release build of this commit)"; fi); $(rustc --version)"
  echo "- commit $(git rev-parse --short HEAD) \"$(git log -1 --format=%s | cut -c1-100)\"$(git diff --quiet HEAD -- . ':!bench/results' || echo ' (with uncommitted changes)')"
  echo "- started $STARTED; load average at start $load (other work on the machine shares the cores)"
}

# The table: one row per figure, its median over the runs, the runs' values.
table() {
  awk -F'\t' -v runs="$RUNS" '
    function fmt(v, a, s, groups) {
      a = v < 0 ? -v : v
      if (a >= 100 || v !~ /\./) {
        s = sprintf("%.0f", a); groups = ""
        while (length(s) > 3) { groups = "," substr(s, length(s) - 2) groups; s = substr(s, 1, length(s) - 3) }
        return (v < 0 ? "-" : "") s groups
      }
      return a >= 10 ? sprintf("%.1f", v) : sprintf("%.2f", v)
    }
    function median(list, n, i, j, t, v) {
      n = split(list, v, " ")
      for (i = 2; i <= n; i++) for (j = i; j > 1 && v[j - 1] + 0 > v[j] + 0; j--) { t = v[j]; v[j] = v[j - 1]; v[j - 1] = t }
      return n % 2 ? v[(n + 1) / 2] : (v[n / 2] + v[n / 2 + 1]) / 2
    }
    FNR == NR { values[$1] = values[$1] (values[$1] == "" ? "" : " ") $2; count[$1]++; next }
    FNR == 1 {
      print "| figure | target | median of " runs " | runs | |"
      print "|---|---|---|---|---|"
    }
    {
      key = $1; label = $2; op = $3; target = $4
      if (!(key in values)) { print "| " label " | | (no value) | | |"; missing = 1; next }
      m = median(values[key]); n = split(values[key], v, " "); list = ""
      for (i = 1; i <= n; i++) list = list (i > 1 ? " / " : "") fmt(v[i])
      verdict = ""
      if (op == ">=") verdict = (m >= target) ? "met" : "**not met**"
      if (op == "<=") verdict = (m <= target) ? "met" : "**not met**"
      if (op == "<") verdict = (m < target) ? "met" : "**not met**"
      shown = op == "-" ? target : (op == ">=" ? "≥ " : op == "<=" ? "≤ " : "< ") fmt(target)
      print "| " label " | " shown " | **" fmt(m) "** | " list " | " verdict " |"
    }
    END { exit missing }
  ' "$WORK/values.tsv" "$WORK/figures.tsv"
}

# --- steps ---------------------------------------------------------------------

# run_step NAME COMMAND...: runs COMMAND in a process group of its own (so
# cleanup can stop all of it), its stdout kept as the step's raw output.
run_step() {
  local name=$1 status=0 start
  shift
  CURRENT_STEP=$name
  start=$(date +%s)
  echo "== $name: $*" >&2
  setsid "$@" > "$WORK/$name.out" 2> "$WORK/$name.err" < /dev/null &
  STEP_PID=$!
  wait "$STEP_PID" || status=$?
  STEP_PID=
  if [ "$status" -ne 0 ]; then
    echo "-- last lines of $name's output:" >&2
    tail -n 10 "$WORK/$name.out" >&2
    echo "-- its errors (first and last lines):" >&2
    awk 'NR <= 20 { print; next } { tail[NR % 20] = $0 } END { if (NR > 40) print "..."; for (i = (NR > 40 ? NR - 19 : 21); i <= NR; i++) print tail[i % 20] }' \
      "$WORK/$name.err" >&2
    fail "step $name ($*) exited with status $status"
  fi
  local took=$(($(date +%s) - start))
  echo "   $name took ${took}s" >&2
  {
    echo "### $name: \`$*\` (${took} s)"
    echo
    echo '```'
    cat "$WORK/$name.out"
    echo '```'
    echo
  } >> "$WORK/raw.md"
}

step_ingest() {
  run_step ingest bench/ingest.sh "$INGEST_SPANS" "$RUNS"
  local scale
  scale=$(awk -v n="$INGEST_SPANS" 'BEGIN { print (n >= 1e6 ? n / 1e6 "M" : n / 1e3 "k") }')
  figure ingest.rate "durable ingest, spans/s ($scale-span bursts)" ">=" 200000
  figure ingest.mem.p50 "trace by id right after ingest, p50 ms" "-" "—"
  figure ingest.mem.p99 "trace by id right after ingest, p99 ms" "-" "—"
  figure ingest.seg.p50 "trace by id from segments, p50 ms ($scale spans; target at 10M)" "<=" 10
  figure ingest.seg.p99 "trace by id from segments, p99 ms" "-" "—"
  figure ingest.parquet "Parquet bytes/span" "-" "—"
  figure ingest.index "index bytes/span (span index)" "-" "—"
  figure ingest.bytes "bytes/span on disk (Parquet + index)" "<=" 40
  local line after segments parquet index seen=0
  while IFS= read -r line; do
    [[ "$line" == "run "* ]] || continue
    seen=$((seen + 1))
    after=${line%% segments_lookup=*}
    segments=${line#* segments_lookup=}
    parquet=$(kv parquet_bytes_per_span "$line")
    index=$(kv index_bytes_per_span "$line")
    record ingest.rate "$(json_number spans_per_sec "$after")"
    record ingest.mem.p50 "$(json_number p50_ms "$after")"
    record ingest.mem.p99 "$(json_number p99_ms "$after")"
    record ingest.seg.p50 "$(json_number p50_ms "$segments")"
    record ingest.seg.p99 "$(json_number p99_ms "$segments")"
    record ingest.parquet "$parquet"
    record ingest.index "$index"
    record ingest.bytes "$(awk -v a="$parquet" -v b="$index" 'BEGIN { printf "%.1f", a + b }')"
  done < "$WORK/ingest.out"
  [ "$seen" -eq "$RUNS" ] || fail "ingest: $seen result lines for $RUNS runs"
}

# The trace-store benchmark of issue 13 (Jaeger's ClickHouse workload, loaded
# and queried through the Jaeger API): one load per run, medians across runs.
# Its 10M-span figures come from `bench/store.sh 10000000`, a longer command.
step_store() {
  run_step store env SEISMO_BIN="$SEISMO" bench/store.sh "$STORE_SPANS" 3 "$RUNS"
  figure store.load "Store: JCH load, one client, spans/s (at $(thousands "$STORE_SPANS") spans; target at 10M)" ">=" 200000
  figure store.bytes "Store: bytes per span on disk (du of the data dir)" "<=" 40
  figure store.byid "Store: trace by id, median ms" "<=" 10
  figure store.attr "Store: search service + attribute, median ms" "<=" 100
  figure store.svc "Store: search service only, median ms" "<=" 50
  figure store.rss "Store: server peak RSS, MB" "<=" 500
  local lines
  lines=$(grep '^{"system"' "$WORK/store.out" || true)
  expect_runs store "JSON result lines of bench/jch/jaeger_side.py" "$lines"
  while read -r line; do
    record store.load "$(json_value spans_per_s "$line")"
    record store.bytes "$(json_value bytes_per_span "$line")"
    record store.byid "$(query_median trace_by_id "$line")"
    record store.attr "$(query_median search_service_attr "$line")"
    record store.svc "$(query_median search_service "$line")"
    record store.rss "$(($(json_value server_peak_rss_bytes "$line") >> 20))"
  done <<< "$lines"
}

# The number after `"KEY": ` in python's JSON (a space after the colon).
json_value() { grep -o "\"$1\": -\{0,1\}[0-9.eE+-]*" <<< "$2" | head -n 1 | cut -d' ' -f2; }

# The median_ms of query set NAME in a jaeger_side.py result line.
query_median() { json_value median_ms "$(grep -o "\"$1\": {[^}]*}" <<< "$2")"; }

step_signals() {
  run_step signals bench/signals.sh "$LOG_RECORDS" "$SERIES" 1 "$RUNS"
  local scale line label key phase
  local -A declared=()
  scale=$(awk -v n="$LOG_RECORDS" 'BEGIN { print (n >= 1e6 ? n / 1e6 "M" : n / 1e3 "k") }')
  figure logs.rate "log ingest, lines/s ($scale lines)" "-" "—"
  # One figure per search and per range query, in the order they ran.
  while IFS= read -r line; do
    case "$line" in
      '{"logs_acked"'*) record logs.rate "$(json_number logs_per_sec "$line")" ;;
      '{"log_search"'*)
        # The label is the search's query string; shown decoded, as BENCHMARKS.md writes it.
        label=$(sed 's/^{"log_search":"\(\([^"\\]\|\\.\)*\)".*/\1/; s/\\"/"/g; s/+/ /g; s/%22/"/g' <<< "$line")
        key="logs.$label"
        if [ -z "${declared[$key]:-}" ]; then
          declared[$key]=1
          figure "$key" "log search \`$label\`, p50 ms ($scale lines; target at 10M)" "<=" 100
        fi
        record "$key" "$(json_number p50_ms "$line")"
        ;;
      memtable:*'"query_range"'* | segments:*'"query_range"'*)
        phase=${line%%:*}
        # shellcheck disable=SC2016 # the backquotes are Markdown
        label=$(sed 's/.*"query_range":"\(\([^"\\]\|\\.\)*\)".*"step_s":\([0-9]*\).*/`\1` (step \3 s)/; s/\\"/"/g' <<< "$line")
        key="promql.$phase.$label"
        if [ -z "${declared[$key]:-}" ]; then
          declared[$key]=1
          figure "$key" "PromQL $label over 1 h of $(thousands "$SERIES") series, p50 ms from the $phase" "<=" 200
        fi
        record "$key" "$(json_number p50_ms "$line")"
        ;;
    esac
  done < "$WORK/signals.out"
  [ "${#declared[@]}" -gt 0 ] || fail "signals: no log search or range query results in its output"
}

# loadgen-proxy prints prose; these patterns are its exact format
# (loadgen/src/proxy.rs), so a change there fails this step loudly.
step_chaos() {
  run_step chaos bench/chaos.sh "$ROUND_TRIPS" "$PROXY_BYTES" "$RUNS"
  local out=$WORK/chaos.out kind key values
  figure chaos.tcp.p50 "agent added latency, TCP 64 B round trip, p50 µs" "<=" 50
  figure chaos.tcp.p99 "agent added latency, TCP 64 B round trip, p99 µs" "<=" 200
  figure chaos.http.p50 "agent added latency, HTTP/1.1 keep-alive request, p50 µs" "<=" 50
  figure chaos.http.p99 "agent added latency, HTTP/1.1 keep-alive request, p99 µs" "<=" 200
  figure chaos.ref.tcp.p50 "reference proxy added, TCP round trip, p50 µs" "-" "(context)"
  figure chaos.ref.http.p50 "reference proxy added, HTTP request, p50 µs" "-" "(context)"
  figure chaos.gbps "single-stream throughput through the agent, GB/s" ">=" 1.5
  figure chaos.direct.gbps "single-stream throughput direct, GB/s" "-" "(context)"
  for kind in "tcp:tcp 64B round trip" "http:http/1.1 keep-alive request"; do
    key=${kind%%:*}
    values=$(sed -n "s#^${kind#*:} ([0-9]* samples each): direct p50 [-0-9.]* µs p99 [-0-9.]* µs | agent p50 [-0-9.]* p99 [-0-9.]*, added p50 \([-0-9.]*\) p99 \([-0-9.]*\) | reference proxy p50 [-0-9.]* p99 [-0-9.]*, added p50 \([-0-9.]*\) p99 [-0-9.]*\$#\1 \2 \3#p" "$out")
    expect_runs chaos "'${kind#*:}' lines of loadgen-proxy" "$values"
    while read -r p50 p99 ref; do
      record "chaos.$key.p50" "$p50"
      record "chaos.$key.p99" "$p99"
      record "chaos.ref.$key.p50" "$ref"
    done <<< "$values"
  done
  values=$(sed -n 's/^throughput single stream: direct \([0-9.]*\) GB\/s, proxied \([0-9.]*\) GB\/s (.*$/\1 \2/p' "$out")
  expect_runs chaos "throughput lines of loadgen-proxy" "$values"
  while read -r direct proxied; do
    record chaos.gbps "$proxied"
    record chaos.direct.gbps "$direct"
  done <<< "$values"
}

step_inflight() {
  run_step inflight bench/inflight.sh "$BODIES" "$BODY_MIB" "$RUNS"
  figure inflight.rss "peak server RSS under $BODIES concurrent $BODY_MIB MiB OTLP/JSON bodies, MiB" "-" \
    "bounded (issue 14: 9.1 GB before the budget)"
  figure inflight.ok "of which answered 200 (the rest 429, retried by exporters)" "-" "—"
  local line seen=0 codes
  while IFS= read -r line; do
    [[ "$line" == "run "* ]] || continue
    seen=$((seen + 1))
    codes=$(grep -o '[0-9]*x[0-9]\{3\}' <<< "$line" | cut -dx -f2 | sort -u | tr '\n' ' ')
    if ! [[ "$codes" =~ ^(200 |429 )+$ && "$codes" == *200* ]]; then
      fail "inflight: answers other than 200/429, or no 200, in: $line"
    fi
    record inflight.rss "$(kv peak_rss_mib "$line")"
    record inflight.ok "$(grep -o '[0-9]*x200' <<< "$line" | cut -dx -f1)"
  done < "$WORK/inflight.out"
  [ "$seen" -eq "$RUNS" ] || fail "inflight: $seen result lines for $RUNS runs"
}

# The line's format is tui/src/bench.rs's Display.
step_tui() {
  run_step tui bench/tui.sh "$FRAMES" "$RUNS" 160x50
  figure tui.median "TUI frame on a 10,000-span trace at 160x50, median ms" "<" 16
  figure tui.p99 "TUI frame, p99 ms" "<" 16
  figure tui.open "TUI: opening the 10,000-span trace, ms" "-" "—"
  local values
  values=$(sed -n 's/^trace of 10000 spans at 160x50: open \([0-9.]*\) ms; [0-9]* frames: median \([0-9.]*\) ms, p99 \([0-9.]*\) ms, max [0-9.]* ms$/\1 \2 \3/p' "$WORK/tui.out")
  expect_runs tui "frame-time lines of seismo tui --bench-frames" "$values"
  while read -r open median p99; do
    record tui.open "$open"
    record tui.median "$median"
    record tui.p99 "$p99"
  done <<< "$values"
}

# --- the run ---------------------------------------------------------------------

BEGIN=$(date +%s)
{
  echo "# bench/run.sh ($MODE): ${SELECTED[*]}"
  echo
  machine
} > "$WORK/head.md"
cat "$WORK/head.md"
echo

if [ "$BUILD" = yes ]; then
  echo "== build: cargo build --release --bin seismo" >&2
  cargo build --release --bin seismo || fail "build: cargo build --release --bin seismo"
fi

: > "$WORK/figures.tsv"
: > "$WORK/values.tsv"
for step in "${SELECTED[@]}"; do
  "step_$step"
done
ELAPSED=$(($(date +%s) - BEGIN))

mkdir -p "$RESULTS_DIR"
{
  cat "$WORK/head.md"
  echo "- took $((ELAPSED / 60)) min $((ELAPSED % 60)) s, build check included"
  echo
  if [ "$MODE" = quick ]; then
    echo "## Figures (--quick: tiny sizes, one run: a smoke test, not a measurement)"
  else
    echo "## Figures"
  fi
  echo
  table || fail "report: a figure has no value (a step's output changed?)"
  echo
  echo "## Raw output, per step"
  echo
  cat "$WORK/raw.md"
} > "$RESULT_FILE"
sed -n '/^## Figures/,/^## Raw output/p' "$RESULT_FILE" | sed '$d'
echo "full report with every run's raw output: $RESULT_FILE"
