#!/usr/bin/env bash
# Times `dhctl verify` next to `dhctl status` on a freshly migrated gateway database, in one
# hyperfine run (same machine, same moment), and prints the ratio verify/status (medians, which
# a shared machine's stragglers move less than means, and means).
#
#   bench/verify.sh                 # server from DHCTL_BENCH_SERVER, default postgres@127.0.0.1:5432
#   RUNS=200 bench/verify.sh
#   DHCTL_BIN=/path/to/dhctl bench/verify.sh   # time that binary instead of building one
#   DHCTL_VERIFY_SCRATCH_URL=… bench/verify.sh # verify rebuilds in that (empty) database
#
# Needs hyperfine (apt-get install -y hyperfine), jq, psql and a role that may CREATE DATABASE.
# Builds the release binary first. The database is dropped at the end.
set -euo pipefail
cd "$(dirname "$0")/.."

server=${DHCTL_BENCH_SERVER:-postgres://postgres@127.0.0.1:5432}
db=dhctl_bench_verify_$$
runs=${RUNS:-100}
out=$(mktemp -d)
trap 'psql -q "$server/postgres" -c "DROP DATABASE IF EXISTS $db WITH (FORCE)" >/dev/null 2>&1 || true; rm -rf "$out"' EXIT

for tool in hyperfine jq psql; do
    command -v "$tool" >/dev/null || { echo "error: $tool is not installed" >&2; exit 2; }
done

if [ -n "${DHCTL_BIN:-}" ]; then
    bin=$DHCTL_BIN
else
    cargo build --release --quiet
    bin=$PWD/target/release/dhctl
fi
export DATABASE_URL=$server/$db
# The full migrate, partitions included where the build has them: verify is timed on the
# schema a deployed gateway has.
"$bin" migrate >/dev/null 2>&1 || "$bin" migrate --no-partitions >/dev/null
"$bin" verify >/dev/null   # exits non-zero (and stops the script) if the schema does not verify

hyperfine --shell=none --warmup 10 --runs "$runs" \
    --export-json "$out/result.json" \
    --command-name status "$bin status" \
    --command-name verify "$bin verify"

jq -r '
  def ms: . * 1000 | . * 100 | round / 100;
  (.results | map({(.command): .}) | add) as $r
  | "status  median \($r.status.median | ms) ms, mean \($r.status.mean | ms) ms (σ \($r.status.stddev | ms))",
    "verify  median \($r.verify.median | ms) ms, mean \($r.verify.mean | ms) ms (σ \($r.verify.stddev | ms))",
    "ratio verify/status: \($r.verify.median / $r.status.median | . * 100 | round / 100) (medians), \($r.verify.mean / $r.status.mean | . * 100 | round / 100) (means)"
' "$out/result.json"
