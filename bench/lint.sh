#!/usr/bin/env bash
# Times `dhctl lint` next to squawk on the same 1,000 migration files, in one hyperfine run
# (paired: same machine, same moment, alternating), and prints the ratio dhctl/squawk of the
# medians and means. The files are the corpus's single-file cases (tests/lint/*.sql), each
# copied under as many versions as it takes, after the shipped sql/ (so dhctl lints 1,005 files, squawk 1,000).
#
#   bench/lint.sh                   # needs squawk on PATH (pip install squawk-cli)
#   RUNS=20 SQUAWK=/path/to/squawk DHCTL_BIN=/path/to/dhctl bench/lint.sh
#
# Needs hyperfine and jq. Builds the release binary first unless DHCTL_BIN is set.
set -euo pipefail
cd "$(dirname "$0")/.."

runs=${RUNS:-10}
squawk=${SQUAWK:-squawk}
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT

for tool in hyperfine jq "$squawk"; do
    command -v "$tool" >/dev/null || { echo "error: $tool is not installed" >&2; exit 2; }
done
if [ -n "${DHCTL_BIN:-}" ]; then
    bin=$DHCTL_BIN
else
    cargo build --release --quiet
    bin=$PWD/target/release/dhctl
fi

mkdir -p "$out/sql" "$out/only"
cp sql/*.sql "$out/sql/"
n=0
for copy in $(seq 1 100); do
    for case in tests/lint/*.sql; do
        n=$((n + 1))
        version=$(printf '2025%010d' "$n")
        name=$(basename "$case" .sql)
        cp "$case" "$out/sql/${version}_${name}.sql"
        cp "$case" "$out/only/${version}_${name}.sql"
        [ "$n" -ge 1000 ] && break 2
    done
done
echo "files: $(ls "$out/only" | wc -l) (dhctl also reads the $(ls sql | wc -l) shipped ones)"

# Exit codes are findings (1), not failures: -i keeps hyperfine going.
hyperfine --shell=none -i --warmup 2 --runs "$runs" \
    --export-json "$out/result.json" \
    --command-name dhctl "$bin lint --migrations-dir $out/sql --format json" \
    --command-name squawk "$squawk --reporter json $out/only/*.sql"

jq -r '
  (.results[] | select(.command == "dhctl")) as $d
  | (.results[] | select(.command == "squawk")) as $s
  | "dhctl median \($d.median * 1000 | floor) ms, squawk median \($s.median * 1000 | floor) ms",
    "ratio dhctl/squawk: median \(($d.median / $s.median) * 100 | floor / 100), mean \(($d.mean / $s.mean) * 100 | floor / 100)"
' "$out/result.json"
