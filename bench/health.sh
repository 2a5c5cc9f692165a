#!/usr/bin/env bash
# dhctl-health against its ceiling, a bare hyper "hello world" (bench/hello), with the same wrk
# settings, on 127.0.0.1 only. Prints a Markdown table for docs/performance.md.
#
#   bench/health.sh [DURATION [CONNECTIONS [ROUNDS]]]      defaults: 10s, 50, 3
#
# The machine is shared, so the three targets are measured in rounds (hello, live, ready, one
# after the other) and each round's ratios are taken against that round's ceiling; the table
# shows the medians over the rounds.
#
# Needs: wrk (apt-get install -y wrk), psql, PostgreSQL at DHCTL_TEST_DATABASE_URL (default
# postgres://postgres@127.0.0.1:5432/postgres; the role may CREATE DATABASE) and Redis at
# DHCTL_TEST_REDIS_URL (default redis://127.0.0.1:6379). Every run is bounded by DURATION.
set -euo pipefail
cd "$(dirname "$0")/.."

DURATION=${1:-10s}
CONNECTIONS=${2:-50}
ROUNDS=${3:-3}
THREADS=1 # two cores: one for wrk, the rest for the server under test
PG_URL=${DHCTL_TEST_DATABASE_URL:-postgres://postgres@127.0.0.1:5432/postgres}
REDIS_URL=${DHCTL_TEST_REDIS_URL:-redis://127.0.0.1:6379}
BENCH_DB=dhctl_bench_health
HELLO_PORT=${HELLO_PORT:-3101}
HEALTH_PORT=${HEALTH_PORT:-3102}

command -v wrk >/dev/null || { echo "wrk is missing: apt-get install -y wrk" >&2; exit 2; }
command -v psql >/dev/null || { echo "psql is missing" >&2; exit 2; }

echo "building (release)…" >&2
cargo build --release --quiet --bin dhctl-health
cargo build --release --quiet --manifest-path bench/hello/Cargo.toml --target-dir target/bench

PIDS=()
cleanup() { for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done; }
trap cleanup EXIT

wait_port() { # port: waits up to 10 s for a listener
  for _ in $(seq 100); do
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
    sleep 0.1
  done
  echo "nothing listens on $1" >&2; exit 2
}

# wrk → "rps p99_ms"
run_wrk() { # url
  wrk -t"$THREADS" -c"$CONNECTIONS" -d2s --timeout 2s "$1" >/dev/null # warm-up
  wrk -t"$THREADS" -c"$CONNECTIONS" -d"$DURATION" --timeout 2s --latency "$1" | awk '
    function ms(v) { if (v ~ /us$/) return v / 1000; if (v ~ /ms$/) return v + 0; if (v ~ /s$/) return v * 1000; return v }
    /Requests\/sec:/ { rps = $2 }
    /^ +99%/ { p99 = ms($2) }
    /Non-2xx/ { bad = $NF }
    END { printf "%.0f %.2f %s\n", rps, p99, (bad == "" ? 0 : bad) }'
}

psql_admin() { PGOPTIONS="-c client_min_messages=warning" psql "$PG_URL" -qAtX -v ON_ERROR_STOP=1 -c "$1"; }
# committed transactions minus sessions in the bench database: statements run there
statements() {
  psql_admin "SELECT xact_commit - sessions FROM pg_stat_database WHERE datname = '$BENCH_DB'"
}

psql_admin "DROP DATABASE IF EXISTS $BENCH_DB WITH (FORCE)"
psql_admin "CREATE DATABASE $BENCH_DB"
BENCH_URL="${PG_URL%/*}/$BENCH_DB"

# Both servers run for the whole benchmark; only the one under wrk is busy.
PORT=$HELLO_PORT target/bench/release/hello & PIDS+=($!)
env -i PATH="$PATH" HOST=127.0.0.1 PORT=$HEALTH_PORT DATABASE_URL="$BENCH_URL" \
  REDIS_URL="$REDIS_URL" RUST_LOG=warn target/release/dhctl-health 2>/tmp/dhctl-health-bench.log &
HEALTH_PID=$!; PIDS+=($HEALTH_PID)
wait_port "$HELLO_PORT"
wait_port "$HEALTH_PORT"
sleep 1

ROWS=$(mktemp)
BEFORE=$(statements)
READY_SECS=0
for round in $(seq "$ROUNDS"); do
  echo "round $round/$ROUNDS (load $(cut -d' ' -f1 /proc/loadavg))…" >&2
  read -r hr hp _ < <(run_wrk "http://127.0.0.1:$HELLO_PORT/health/live")
  read -r lr lp lb < <(run_wrk "http://127.0.0.1:$HEALTH_PORT/health/live")
  start=$(date +%s.%N)
  read -r rr rp rb < <(run_wrk "http://127.0.0.1:$HEALTH_PORT/health/ready")
  READY_SECS=$(awk -v t="$READY_SECS" -v s="$start" -v e="$(date +%s.%N)" 'BEGIN { print t + e - s }')
  echo "$hr $hp $lr $lp $lb $rr $rp $rb" >>"$ROWS"
done
RSS_PEAK_KB=$(awk '/VmHWM/ { print $2 }' "/proc/$HEALTH_PID/status")
RSS_NOW_KB=$(awk '/VmRSS/ { print $2 }' "/proc/$HEALTH_PID/status")
kill -TERM "$HEALTH_PID"; wait "$HEALTH_PID" || true
sleep 1 # backends flush their counters as they exit
AFTER=$(statements)
psql_admin "DROP DATABASE IF EXISTS $BENCH_DB WITH (FORCE)"

median() { sort -n | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
col() { awk -v c="$1" '{ print $c }' "$ROWS" | median; }
ratio() { awk -v c="$1" '{ print 100 * $c / $1 }' "$ROWS" | median; }

echo "wrk -t$THREADS -c$CONNECTIONS -d$DURATION --latency, 2 s warm-up each, 127.0.0.1, $ROUNDS rounds; medians"
echo
echo "| target | requests/s | p99 | vs ceiling (per-round ratio) | non-2xx |"
echo "|---|---:|---:|---:|---:|"
printf "| hyper hello world (ceiling) | %.0f | %.2f ms | 100%% | 0 |\n" "$(col 1)" "$(col 2)"
printf "| dhctl-health /health/live | %.0f | %.2f ms | %.0f%% | %s |\n" "$(col 3)" "$(col 4)" "$(ratio 3)" "$(col 5)"
printf "| dhctl-health /health/ready (PG + Redis up) | %.0f | %.2f ms | %.0f%% | %s |\n" "$(col 6)" "$(col 7)" "$(ratio 6)" "$(col 8)"
echo
echo "every round (hello rps, p99 ms; live rps, p99 ms, non-2xx; ready rps, p99 ms, non-2xx):"
sed 's/^/    /' "$ROWS"
awk -v b="$BEFORE" -v a="$AFTER" -v s="$READY_SECS" 'BEGIN {
  printf "\nPostgreSQL statements while /health/ready was under load: %d in %.1f s = %.2f/s\n", a - b, s, (a - b) / s }'
awk -v peak="$RSS_PEAK_KB" -v now="$RSS_NOW_KB" 'BEGIN {
  printf "dhctl-health resident memory: peak %.1f MiB, %.1f MiB after the runs\n", peak / 1024, now / 1024 }'
rm -f "$ROWS"
