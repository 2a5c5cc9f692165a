#!/usr/bin/env bash
# dhctl-health against its ceiling, a bare hyper "hello world" (bench/hello), with the same wrk
# settings, on 127.0.0.1 only. Prints a Markdown table for docs/performance.md.
#
#   bench/health.sh [DURATION [CONNECTIONS]]      defaults: 10s, 50
#
# Needs: wrk (apt-get install -y wrk), psql, PostgreSQL at DHCTL_TEST_DATABASE_URL (default
# postgres://postgres@127.0.0.1:5432/postgres; the role may CREATE DATABASE) and Redis at
# DHCTL_TEST_REDIS_URL (default redis://127.0.0.1:6379). Every run is bounded by DURATION.
set -euo pipefail
cd "$(dirname "$0")/.."

DURATION=${1:-10s}
CONNECTIONS=${2:-50}
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

# The ceiling.
PORT=$HELLO_PORT target/bench/release/hello & PIDS+=($!)
wait_port "$HELLO_PORT"
read -r HELLO_RPS HELLO_P99 _ < <(run_wrk "http://127.0.0.1:$HELLO_PORT/health/live")
kill "${PIDS[-1]}"

# dhctl-health, defaults as deployed.
env -i PATH="$PATH" HOST=127.0.0.1 PORT=$HEALTH_PORT DATABASE_URL="$BENCH_URL" \
  REDIS_URL="$REDIS_URL" RUST_LOG=warn target/release/dhctl-health 2>/tmp/dhctl-health-bench.log &
HEALTH_PID=$!; PIDS+=($HEALTH_PID)
wait_port "$HEALTH_PORT"
read -r LIVE_RPS LIVE_P99 LIVE_BAD < <(run_wrk "http://127.0.0.1:$HEALTH_PORT/health/live")
BEFORE=$(statements)
START=$(date +%s.%N)
read -r READY_RPS READY_P99 READY_BAD < <(run_wrk "http://127.0.0.1:$HEALTH_PORT/health/ready")
END=$(date +%s.%N)
RSS_PEAK_KB=$(awk '/VmHWM/ { print $2 }' "/proc/$HEALTH_PID/status")
RSS_NOW_KB=$(awk '/VmRSS/ { print $2 }' "/proc/$HEALTH_PID/status")
kill -TERM "$HEALTH_PID"; wait "$HEALTH_PID" || true
sleep 1 # backends flush their counters as they exit
AFTER=$(statements)
psql_admin "DROP DATABASE IF EXISTS $BENCH_DB WITH (FORCE)"

awk -v b="$BEFORE" -v a="$AFTER" -v s="$START" -v e="$END" \
  -v hr="$HELLO_RPS" -v hp="$HELLO_P99" -v lr="$LIVE_RPS" -v lp="$LIVE_P99" -v lb="$LIVE_BAD" \
  -v rr="$READY_RPS" -v rp="$READY_P99" -v rb="$READY_BAD" -v peak="$RSS_PEAK_KB" -v now="$RSS_NOW_KB" \
  -v d="$DURATION" -v c="$CONNECTIONS" -v t="$THREADS" 'BEGIN {
  secs = e - s
  printf "wrk -t%s -c%s -d%s --latency (after a 2 s warm-up), 127.0.0.1\n\n", t, c, d
  print "| target | requests/s | p99 | vs ceiling | non-2xx |"
  print "|---|---:|---:|---:|---:|"
  printf "| hyper hello world (ceiling) | %d | %.2f ms | 100%% | 0 |\n", hr, hp
  printf "| dhctl-health /health/live | %d | %.2f ms | %.0f%% | %s |\n", lr, lp, 100 * lr / hr, lb
  printf "| dhctl-health /health/ready (PG + Redis up) | %d | %.2f ms | %.0f%% | %s |\n", rr, rp, 100 * rr / hr, rb
  printf "\nPostgreSQL statements during the /health/ready run: %d in %.1f s = %.2f/s (for %d requests/s)\n", a - b, secs, (a - b) / secs, rr
  printf "dhctl-health resident memory: peak %.1f MiB, %.1f MiB after the runs\n", peak / 1024, now / 1024
}'
