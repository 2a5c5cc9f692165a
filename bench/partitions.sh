#!/usr/bin/env bash
# Benchmarks of `dhctl partition create` (docs/performance.md, "## Partitions").
#
#   1. the cron steady state (nothing to do) vs `psql -X -c 'select 1'`          target <= 1.2x
#   2. that no-op on a daily-policy scratch table with 5,000 partitions vs 5     target <= 2x
#   3. creating 3 months for both gateway tables vs CREATE TABLE … PARTITION OF
#      of the same six partitions in one psql call
#
# Needs hyperfine (apt-get install -y hyperfine), psql and a release build (cargo build --release).
# Usage: bench/partitions.sh [SERVER_URL]   (default postgres://postgres@127.0.0.1:5432/postgres)
# Scratch databases dhctl_bench_p* are created and dropped on the server.
set -euo pipefail

here=$(cd "$(dirname "$0")/.." && pwd)
dhctl=${DHCTL:-$here/target/release/dhctl}
server=${1:-${DHCTL_BENCH_SERVER:-postgres://postgres@127.0.0.1:5432/postgres}}
out=${BENCH_OUT:-$here/target/bench-partitions}
runs=${BENCH_RUNS:-40}
mkdir -p "$out"

command -v hyperfine >/dev/null || { echo "hyperfine missing: apt-get install -y hyperfine" >&2; exit 2; }
[ -x "$dhctl" ] || { echo "no release binary at $dhctl: cargo build --release" >&2; exit 2; }

url_for() { echo "${server%/*}/$1"; }
admin() { psql -X -q -v ON_ERROR_STOP=1 "$server" -c "$1" >/dev/null; }
fresh() { admin "DROP DATABASE IF EXISTS $1 WITH (FORCE)"; admin "CREATE DATABASE $1"; }

steady=dhctl_bench_psteady
create=dhctl_bench_pcreate
trap 'admin "DROP DATABASE IF EXISTS $steady WITH (FORCE)"; admin "DROP DATABASE IF EXISTS $create WITH (FORCE)"; rm -rf "$out/policies-big" "$out/policies-small"' EXIT

# --- 1. the steady state ------------------------------------------------------------------
fresh $steady
export DATABASE_URL; DATABASE_URL=$(url_for $steady)
"$dhctl" migrate >/dev/null 2>&1
"$dhctl" partition create   # brings the set up to date with the real clock
hyperfine -N --warmup 5 --runs "$runs" --export-json "$out/noop.json" --export-markdown "$out/noop.md" \
  -n "psql -X -c 'select 1'" "psql -X -q -c 'select 1' $DATABASE_URL" \
  -n "dhctl partition create (no-op)" "$dhctl partition create"

# --- 2. 5,000 partitions vs 5 ---------------------------------------------------------------
# Daily scratch tables: `big` has 4,997 days before today plus today and 2 ahead (5,000),
# `small` has 2 days before plus today and 2 ahead (5). Created in batches of 500 statements
# so no transaction needs 5,000 relation locks.
psql -X -q -v ON_ERROR_STOP=1 "$DATABASE_URL" <<'SQL'
CREATE TABLE big (id bigint, created_at timestamptz NOT NULL) PARTITION BY RANGE (created_at);
CREATE TABLE small (id bigint, created_at timestamptz NOT NULL) PARTITION BY RANGE (created_at);
SQL
for table_days in "big 4997" "small 2"; do
  set -- $table_days
  psql -X -q -At -v ON_ERROR_STOP=1 "$DATABASE_URL" -c "
    SELECT format('CREATE TABLE %I PARTITION OF %I FOR VALUES FROM (%L) TO (%L);',
                  '$1_' || to_char(d, 'YYYY_MM_DD'), '$1',
                  to_char(d, 'YYYY-MM-DD') || ' 00:00:00+00',
                  to_char(d + 1, 'YYYY-MM-DD') || ' 00:00:00+00')
    FROM generate_series(-$2, 2) AS g(i),
         LATERAL (SELECT (now() AT TIME ZONE 'UTC')::date + i AS d) AS day" \
  | awk 'NR % 500 == 1 { print "BEGIN;" } { print } NR % 500 == 0 { print "COMMIT;" } END { if (NR % 500) print "COMMIT;" }' \
  | psql -X -q -v ON_ERROR_STOP=1 "$DATABASE_URL"
done
for t in big small; do
  mkdir -p "$out/policies-$t"
  printf 'table = "%s"\ncolumn = "created_at"\ninterval = "day"\npremake = 2\n' $t > "$out/policies-$t/$t.toml"
done
echo "partitions: big $(psql -X -At "$DATABASE_URL" -c "select count(*) from pg_inherits where inhparent = 'big'::regclass"), small $(psql -X -At "$DATABASE_URL" -c "select count(*) from pg_inherits where inhparent = 'small'::regclass")"
hyperfine -N --warmup 5 --runs "$runs" --export-json "$out/many.json" --export-markdown "$out/many.md" \
  -n "no-op, 5 partitions" "$dhctl partition create --partitions-dir $out/policies-small" \
  -n "no-op, 5,000 partitions" "$dhctl partition create --partitions-dir $out/policies-big"

# --- 3. creating 3 months for both tables ---------------------------------------------------
fresh $create
DATABASE_URL=$(url_for $create)
"$dhctl" migrate --no-partitions >/dev/null 2>&1
months="2030_01 2030_02 2030_03"
drop_sql=""
ddl=""
for t in request_logs webhook_deliveries; do
  for m in $months; do drop_sql+="DROP TABLE IF EXISTS ${t}_$m;"; done
  ddl+="CREATE TABLE ${t}_2030_01 PARTITION OF $t FOR VALUES FROM ('2030-01-01 00:00:00+00') TO ('2030-02-01 00:00:00+00');"
  ddl+="CREATE TABLE ${t}_2030_02 PARTITION OF $t FOR VALUES FROM ('2030-02-01 00:00:00+00') TO ('2030-03-01 00:00:00+00');"
  ddl+="CREATE TABLE ${t}_2030_03 PARTITION OF $t FOR VALUES FROM ('2030-03-01 00:00:00+00') TO ('2030-04-01 00:00:00+00');"
done
hyperfine -N --warmup 2 --runs "$runs" --export-json "$out/create.json" --export-markdown "$out/create.md" \
  --prepare "psql -X -q $DATABASE_URL -c '$drop_sql'" \
  -n "psql: 6 x CREATE TABLE … PARTITION OF (one call)" "psql -X -q $DATABASE_URL -c \"$ddl\"" \
  -n "dhctl partition create --ahead 2 (6 partitions)" "$dhctl partition create --now 2030-01-15T00:00:00Z --ahead 2"

echo
echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(psql -X -At "$server" -c 'show server_version'), $(date -u +%FT%TZ)"
cat "$out/noop.md" "$out/many.md" "$out/create.md"
