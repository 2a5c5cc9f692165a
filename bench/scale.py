#!/usr/bin/env python3
"""Issue 14 §2 in one run: how `dhctl migrate` and `dhctl status` scale, and their fixed cost.

Every comparison is paired (A B A B … on the same server in the same run) and reported as a
ratio of medians; absolute times on a shared machine are noise.

  1. Fixed cost, on the shipped migrations (compiled into dhctl):
     - `dhctl status` on an up-to-date database against bench/floor (connect with
       tokio-postgres, read the history table, exit), with `sslmode=disable` and with the
       default `sslmode=prefer` (TLS when the server offers it), target <= 1.15x;
     - `dhctl migrate --no-partitions` on a fresh database against `psql -X -1 -f` of the same up
       sections concatenated, target <= 1.0x.
  2. Scale: N one-table migrations (`CREATE TABLE tI (id int)`, read from a folder) applied to
     a fresh database by `dhctl migrate --no-partitions`, against `psql -X -f` of the same
     statements with one transaction per migration (`BEGIN; CREATE TABLE …; COMMIT;` N times:
     what dhctl does, minus the history rows), target <= 1.3x at every N and the largest N at
     most 11x the 10x smaller one; peak RSS < 40 MiB. Then `status` and `migrate` with nothing
     to do at N applied against the same at 5 applied, target <= 1.5x.

Usage: cargo build --release && python3 bench/scale.py [rounds] [N ...]
(default 3 rounds, N = 1000 10000; the fixed-cost pairs run 10x rounds.) DHCTL_BIN picks the
binary (default target/release/dhctl), DHCTL_BENCH_URL the server. Builds bench/floor in release
mode into target/bench. Prints a Markdown table to paste into docs/performance.md.
"""

import datetime
import os
import platform
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DHCTL = os.environ.get("DHCTL_BIN", str(ROOT / "target" / "release" / "dhctl"))
FLOOR = ROOT / "target" / "bench" / "release" / "floor"
SERVER = os.environ.get("DHCTL_BENCH_URL", "postgres://postgres@127.0.0.1:5432")
ROUNDS = int(sys.argv[1]) if len(sys.argv) > 1 else 3
SIZES = [int(n) for n in sys.argv[2:]] or [1000, 10000]
ENV = {k: v for k, v in os.environ.items() if not k.startswith(("DHCTL_", "PG")) and k != "DATABASE_URL"}
DB = f"dhctl_bench_scale_{os.getpid()}"
SMALL_DB = f"{DB}_small"


def url(db, query=""):
    return f"{SERVER}/{db}{query}"


def admin(sql):
    subprocess.run(["psql", "-X", "-q", "-d", url("postgres"), "-c", sql], check=True, env=ENV,
                   stdout=subprocess.DEVNULL)


def fresh(db=DB):
    admin(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)')
    admin(f'CREATE DATABASE "{db}"')


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
    d = Path(tempfile.mkdtemp(prefix="dhctl_scale_"))
    mig = d / "migrations"
    mig.mkdir()
    base = datetime.datetime(2030, 1, 1)
    script = []
    for i in range(n):
        version = (base + datetime.timedelta(seconds=i)).strftime("%Y%m%d%H%M%S")
        (mig / f"{version}_t{i}.sql").write_text(
            f"-- migrate:up\nCREATE TABLE t{i} (id int);\n-- migrate:down\nDROP TABLE t{i};\n")
        script.append(f"BEGIN;\nCREATE TABLE t{i} (id int);\nCOMMIT;\n")
    sql = d / "all.psql"
    sql.write_text("".join(script))
    return mig, sql


def seed_script():
    """The shipped migrations' up sections, concatenated, for `psql -1 -f`."""
    parts = []
    for path in sorted((ROOT / "sql").glob("*.sql")):
        up = re.split(r"^-- migrate:down.*$", path.read_text(), flags=re.M)[0]
        parts.append(re.sub(r"^-- migrate:up.*$", "", up, flags=re.M))
    handle = tempfile.NamedTemporaryFile("w", suffix=".sql", delete=False)
    handle.write("\n".join(parts))
    handle.close()
    return handle.name


def dhctl(args, db=DB, migrations=None, query=""):
    env = {"DATABASE_URL": url(db, query)}
    if migrations:
        env["DHCTL_MIGRATIONS_DIR"] = str(migrations)
    return timed([DHCTL, *args], env)


def psql(db, *args):
    return timed(["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", url(db), *args])


def ms(xs):
    return statistics.median(xs) * 1000


def paired(rounds, a, b):
    """Runs a and b alternately; returns both lists of seconds."""
    xs, ys = [], []
    for _ in range(rounds):
        xs.append(a())
        ys.append(b())
    return xs, ys


def row(name, a, b, target, baseline):
    ratio = ms(a) / ms(b)
    verdict = "meets" if ratio <= target else "misses"
    return f"| {name} | {ms(a):.1f} ms | {baseline} {ms(b):.1f} ms | {ratio:.2f}x | <= {target:.2f}x: {verdict} |"


def main():
    if not Path(DHCTL).exists():
        raise SystemExit(f"{DHCTL} not found: run `cargo build --release` first")
    subprocess.run(["cargo", "build", "--release", "--quiet", "--manifest-path",
                    str(ROOT / "bench" / "floor" / "Cargo.toml"), "--target-dir",
                    str(ROOT / "target" / "bench")], check=True)
    lines = []
    started = datetime.datetime.now(datetime.timezone.utc)
    load_before = os.getloadavg()[0]

    # 1. Fixed cost.
    fixed = ROUNDS * 10
    fresh(SMALL_DB)
    dhctl(["migrate", "--no-partitions"], SMALL_DB)
    for mode, query in (("sslmode=disable", "?sslmode=disable"), ("sslmode=prefer (TLS)", "")):
        a, b = paired(fixed, lambda: dhctl(["status"], SMALL_DB, query=query)[0],
                      lambda: timed([str(FLOOR), url(SMALL_DB, query)])[0])
        lines.append(row(f"status, 5 applied, {mode}", a, b, 1.15, "floor"))
    seed = seed_script()

    def seed_dhctl():
        fresh(SMALL_DB)
        return dhctl(["migrate", "--no-partitions"], SMALL_DB)[0]

    def seed_psql():
        fresh(SMALL_DB)
        return psql(SMALL_DB, "-1", "-f", seed)[0]

    a, b = paired(fixed, seed_dhctl, seed_psql)
    lines.append(row("migrate, the 5 shipped files", a, b, 1.0, "psql -1 -f"))
    os.unlink(seed)

    # 2. Scale.
    small, _ = folder(5)
    fresh(SMALL_DB)
    dhctl(["migrate", "--no-partitions"], SMALL_DB, small)
    per_n = {}
    for n in SIZES:
        mig, sql = folder(n)
        rss = []

        def apply():
            fresh()
            t, r = dhctl(["migrate", "--no-partitions"], DB, mig)
            rss.append(r)
            return t

        def baseline():
            fresh()
            return psql(DB, "-f", str(sql))[0]

        a, b = paired(ROUNDS, apply, baseline)
        per_n[n] = ms(a)
        lines.append(row(f"migrate {n:,} tiny migrations", a, b, 1.3, "psql, a transaction each,"))
        peak = max(rss) / 1024
        lines.append(f"| peak RSS, migrate {n:,} | {peak:.1f} MiB | | | < 40 MiB: "
                     f"{'meets' if peak < 40 else 'misses'} |")
        fresh()
        dhctl(["migrate", "--no-partitions"], DB, mig)
        a, b = paired(ROUNDS * 5, lambda: dhctl(["status"], DB, mig)[0],
                      lambda: dhctl(["status"], SMALL_DB, small)[0])
        lines.append(row(f"status, {n:,} applied", a, b, 1.5, "5 applied"))
        a, b = paired(ROUNDS * 5, lambda: dhctl(["migrate", "--no-partitions"], DB, mig)[0],
                      lambda: dhctl(["migrate", "--no-partitions"], SMALL_DB, small)[0])
        lines.append(row(f"migrate, nothing to do, {n:,} applied", a, b, 1.5, "5 applied"))
    for n in SIZES:
        if n * 10 in per_n:
            growth = per_n[n * 10] / per_n[n]
            lines.append(f"| migrate {n * 10:,} / migrate {n:,} | | | {growth:.2f}x | <= 11.00x: "
                         f"{'meets' if growth <= 11 else 'misses'} |")
    admin(f'DROP DATABASE IF EXISTS "{DB}" WITH (FORCE)')
    admin(f'DROP DATABASE IF EXISTS "{SMALL_DB}" WITH (FORCE)')

    version = subprocess.run(["psql", "-X", "-A", "-t", "-d", url("postgres"), "-c", "show server_version"],
                             env=ENV, capture_output=True, text=True).stdout.strip()
    print(f"{started:%Y-%m-%d %H:%M} UTC; {platform.node()}, {os.cpu_count()} cores, Linux "
          f"{platform.release()}; PostgreSQL {version}; binary {DHCTL}; rounds {ROUNDS} "
          f"(fixed cost {fixed}), paired, medians; load average {load_before:.1f} before, "
          f"{os.getloadavg()[0]:.1f} after")
    print("| measurement | dhctl | baseline | ratio | target |")
    print("|---|---:|---:|---:|---|")
    for line in lines:
        print(line)


if __name__ == "__main__":
    main()
