#!/usr/bin/env python3
"""How `dhctl migrate` scales with the number of migrations (issue 14 §2), against psql.

For each N (default 1000 and 2000): N files, each one `CREATE TABLE tI (id int)`, applied to a
fresh database by
  A. `dhctl migrate --no-partitions`, and
  B. `psql -X -q -f` of the same statements with one transaction per migration
     (`BEGIN; CREATE TABLE …; COMMIT;` N times: what dhctl does, minus the history rows),
paired (A B A B …), medians. Then, on the database with N applied, `dhctl status` and
`dhctl migrate` with nothing to do, against the same on a database with 5 applied.

Usage: cargo build && python3 bench/scale.py [rounds] [N ...]
(DHCTL_BIN picks the binary, default target/debug/dhctl; DHCTL_BENCH_URL the server.)
Prints a Markdown table to paste into docs/performance.md.
"""

import datetime
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DHCTL = os.environ.get("DHCTL_BIN", str(ROOT / "target" / "debug" / "dhctl"))
SERVER = os.environ.get("DHCTL_BENCH_URL", "postgres://postgres@127.0.0.1:5432")
ROUNDS = int(sys.argv[1]) if len(sys.argv) > 1 else 3
SIZES = [int(n) for n in sys.argv[2:]] or [1000, 2000]
ENV = {k: v for k, v in os.environ.items() if not k.startswith(("DHCTL_", "PG")) and k != "DATABASE_URL"}
DB = f"dhctl_bench_scale_{os.getpid()}"


def url(db):
    return f"{SERVER}/{db}"


def admin(sql):
    subprocess.run(["psql", "-X", "-q", "-d", url("postgres"), "-c", sql], check=True, env=ENV,
                   stdout=subprocess.DEVNULL)


def fresh():
    admin(f'DROP DATABASE IF EXISTS "{DB}" WITH (FORCE)')
    admin(f'CREATE DATABASE "{DB}"')


def timed(argv, env_extra=None):
    env = dict(ENV, **(env_extra or {}))
    # stderr to a file, not a pipe: dhctl writes a progress line per migration, and a pipe nobody
    # reads until the end fills up and blocks it.
    with tempfile.TemporaryFile() as errors:
        started = time.perf_counter()
        proc = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=errors)
        _, status, usage = os.wait4(proc.pid, 0)
        took = time.perf_counter() - started
        errors.seek(0)
        err = errors.read().decode(errors="replace")[-2000:]
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"{argv} failed: {err}")
    return took, usage.ru_maxrss  # KiB on Linux


def folder(n):
    """N migration files with valid 14-digit UTC versions, and the psql script of the same."""
    d = tempfile.mkdtemp(prefix="dhctl_scale_")
    base = datetime.datetime(2030, 1, 1)
    script = []
    for i in range(n):
        version = (base + datetime.timedelta(seconds=i)).strftime("%Y%m%d%H%M%S")
        Path(d, f"{version}_t{i}.sql").write_text(
            f"-- migrate:up\nCREATE TABLE t{i} (id int);\n-- migrate:down\nDROP TABLE t{i};\n")
        script.append(f"BEGIN;\nCREATE TABLE t{i} (id int);\nCOMMIT;\n")
    sql = Path(d, "all.psql")
    sql.write_text("".join(script))
    mig = Path(d, "migrations")
    mig.mkdir()
    for f in Path(d).glob("*.sql"):
        f.rename(mig / f.name)
    return mig, sql


def dhctl(args, migrations):
    return timed([DHCTL, *args], {"DATABASE_URL": url(DB), "DHCTL_MIGRATIONS_DIR": str(migrations)})


def ms(xs):
    return statistics.median(xs) * 1000


def main():
    if not Path(DHCTL).exists():
        raise SystemExit(f"{DHCTL} not found: run `cargo build` first")
    rows = []
    small, _ = folder(5)
    fresh()
    dhctl(["migrate", "--no-partitions"], small)
    st5 = [dhctl(["status"], small)[0] for _ in range(ROUNDS * 3)]
    noop5 = [dhctl(["migrate", "--no-partitions"], small)[0] for _ in range(ROUNDS * 3)]
    for n in SIZES:
        mig, sql = folder(n)
        dh, ps, rss = [], [], []
        for _ in range(ROUNDS):
            fresh()
            t, r = dhctl(["migrate", "--no-partitions"], mig)
            dh.append(t)
            rss.append(r)
            fresh()
            ps.append(timed(["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", url(DB), "-f", str(sql)])[0])
        fresh()
        dhctl(["migrate", "--no-partitions"], mig)
        st = [dhctl(["status"], mig)[0] for _ in range(ROUNDS * 3)]
        noop = [dhctl(["migrate", "--no-partitions"], mig)[0] for _ in range(ROUNDS * 3)]
        rows.append((n, ms(dh), ms(ps), max(rss) / 1024, ms(st), ms(noop)))
    admin(f'DROP DATABASE IF EXISTS "{DB}" WITH (FORCE)')
    print(f"binary: {DHCTL}; rounds: {ROUNDS}, paired; medians")
    print("| N | dhctl migrate | psql, one transaction per migration | ratio | peak RSS | status at N / at 5 | migrate, nothing to do, at N / at 5 |")
    print("|---:|---:|---:|---:|---:|---:|---:|")
    for n, d, p, rss, st, noop in rows:
        print(f"| {n} | {d:.0f} ms | {p:.0f} ms | {d / p:.2f}x | {rss:.1f} MiB | "
              f"{st:.1f} / {ms(st5):.1f} ms = {st / ms(st5):.2f}x | {noop:.1f} / {ms(noop5):.1f} ms = {noop / ms(noop5):.2f}x |")
    if len(rows) > 1:
        (n0, d0, *_), (n1, d1, *_) = rows[0], rows[-1]
        print(f"\n{n1} costs {d1 / d0:.2f}x {n0} (linear: {n1 / n0:.2f}x)")


if __name__ == "__main__":
    main()
