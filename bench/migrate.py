#!/usr/bin/env python3
"""Benchmarks dhctl's migration commands against psql, side by side, paired (A B A B ...).

Measures, on fresh databases of the server at DHCTL_BENCH_URL (default the local one):
  1. `dhctl migrate --no-partitions` of the shipped migrations vs `psql -X -1 -f` of the same up
     sections concatenated (the floor);            target: ratio <= 1.10
  2. `dhctl status` on an up-to-date database vs `psql -X -c 'select 1'`; target: ratio <= 0.90
  3. 8 concurrent `dhctl migrate` on one empty database vs one migrate; target: <= 2x, all exit 0
  4. peak RSS of `dhctl migrate`;                  target: <= 20 MiB

Usage: cargo build --release && python3 bench/migrate.py [rounds]
Prints a Markdown table to paste into docs/performance.md.
"""

import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DHCTL = os.environ.get("DHCTL_BIN", str(ROOT / "target" / "release" / "dhctl"))
SERVER = os.environ.get("DHCTL_BENCH_URL", "postgres://postgres@127.0.0.1:5432")
ROUNDS = int(sys.argv[1]) if len(sys.argv) > 1 else 20
ENV = {k: v for k, v in os.environ.items() if not k.startswith(("DHCTL_", "PG")) and k != "DATABASE_URL"}


def url(db):
    return f"{SERVER}/{db}"


def admin(sql):
    subprocess.run(["psql", "-X", "-q", "-d", url("postgres"), "-c", sql], check=True, env=ENV,
                   stdout=subprocess.DEVNULL)


def fresh(db):
    admin(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)')
    admin(f'CREATE DATABASE "{db}"')


def timed(argv, env_extra=None):
    env = dict(ENV, **(env_extra or {}))
    started = time.perf_counter()
    proc = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    took = time.perf_counter() - started
    err = proc.stderr.read().decode()
    proc.stderr.close()
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"{argv} failed: {err}")
    return took, usage.ru_maxrss  # KiB on Linux


def up_sections():
    parts = []
    for path in sorted((ROOT / "sql").glob("*.sql")):
        text = path.read_text()
        up = re.split(r"^-- migrate:down.*$", text, flags=re.M)[0]
        parts.append(re.sub(r"^-- migrate:up.*$", "", up, flags=re.M))
    handle = tempfile.NamedTemporaryFile("w", suffix=".sql", delete=False)
    handle.write("\n".join(parts))
    handle.close()
    return handle.name


def summary(name, a, b, target, better):
    ma, mb = statistics.median(a) * 1000, statistics.median(b) * 1000
    ratio = ma / mb
    verdict = "meets" if (ratio <= target) else "misses"
    print(f"| {name} | {ma:.1f} ms | {mb:.1f} ms | {ratio:.2f}x | {better} {target:.2f}x: {verdict} |")


def main():
    if not Path(DHCTL).exists():
        raise SystemExit(f"{DHCTL} not found: run `cargo build --release` first")
    sql = up_sections()
    db = "dhctl_bench"
    dh, ps, rss = [], [], []
    for _ in range(ROUNDS):
        fresh(db)
        t, r = timed([DHCTL, "migrate", "--no-partitions"], {"DATABASE_URL": url(db)})
        dh.append(t)
        rss.append(r)
        fresh(db)
        ps.append(timed(["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-1", "-d", url(db), "-f", sql])[0])
    st, sel = [], []
    fresh(db)
    timed([DHCTL, "migrate", "--no-partitions"], {"DATABASE_URL": url(db)})
    for _ in range(ROUNDS):
        st.append(timed([DHCTL, "status"], {"DATABASE_URL": url(db)})[0])
        sel.append(timed(["psql", "-X", "-q", "-d", url(db), "-c", "select 1"])[0])
    one, eight = [], []
    for _ in range(max(5, ROUNDS // 4)):
        fresh(db)
        one.append(timed([DHCTL, "migrate", "--no-partitions"], {"DATABASE_URL": url(db)})[0])
        fresh(db)
        env = dict(ENV, DATABASE_URL=url(db))
        started = time.perf_counter()
        procs = [subprocess.Popen([DHCTL, "migrate", "--no-partitions"], env=env, stdout=subprocess.DEVNULL,
                                  stderr=subprocess.DEVNULL) for _ in range(8)]
        codes = [p.wait() for p in procs]
        eight.append(time.perf_counter() - started)
        if any(codes):
            raise SystemExit(f"a concurrent migrate failed: exit codes {codes}")
    admin(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)')
    os.unlink(sql)
    print(f"rounds: {ROUNDS}, paired; medians")
    print("| measurement | dhctl | baseline | ratio | target |")
    print("|---|---|---|---|---|")
    summary("migrate (5 files) vs psql -1 -f", dh, ps, 1.10, "<=")
    summary("status (up to date) vs psql select 1", st, sel, 0.90, "<=")
    summary("8 concurrent migrate vs one migrate (wall)", eight, one, 2.00, "<=")
    peak = max(rss) / 1024
    print(f"| peak RSS of migrate | {peak:.1f} MiB | | | <= 20 MiB: {'meets' if peak <= 20 else 'misses'} |")


if __name__ == "__main__":
    main()
