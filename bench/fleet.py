#!/usr/bin/env python3
"""Benchmarks `dhctl --targets` (one process for a fleet) against `xargs -P 4` running one dhctl
per database, paired (A B A B ...), on N fresh databases of the server at DHCTL_BENCH_URL.

Each round creates N empty databases twice (one set per side), then:
  migrate: `dhctl migrate --targets FILE` (parallel = 4)  vs  `xargs -P 4` one `dhctl migrate`
           per database;                              target: wall time ratio <= 0.90
  status:  the same two ways on the migrated databases (nothing pending); target: ratio <= 0.90
  peak RSS of the fleet process (GNU time's %M);      target: <= 40 MiB
The xargs side's RSS is the largest single dhctl (xargs waits for each, so %M is the largest
child). The databases are dropped after each round.

Usage: cargo build --release --locked && python3 bench/fleet.py [rounds] [databases]
Prints a Markdown table to paste into docs/performance.md.
"""

import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DHCTL = os.environ.get("DHCTL_BIN", str(ROOT / "target" / "release" / "dhctl"))
SERVER = os.environ.get("DHCTL_BENCH_URL", "postgres://postgres@127.0.0.1:5432")
ROUNDS = int(sys.argv[1]) if len(sys.argv) > 1 else 5
N = int(sys.argv[2]) if len(sys.argv) > 2 else 40
PARALLEL = 4
ENV = {
    k: v
    for k, v in os.environ.items()
    if not k.startswith(("DHCTL_", "PG")) and k != "DATABASE_URL"
}


def psql(sql):
    subprocess.run(
        ["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", f"{SERVER}/postgres", "-c", sql],
        check=True,
        env={**ENV, "PGOPTIONS": "-c client_min_messages=warning"},
    )


def create(prefix):
    names = [f"{prefix}_{i}" for i in range(N)]
    for name in names:
        psql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        psql(f'CREATE DATABASE "{name}"')
    return names


def drop(names):
    for name in names:
        psql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def timed(argv, stdin=None, env=None):
    """Wall seconds and peak RSS (KiB) of `argv` under GNU time; fails on a non-zero exit."""
    with tempfile.NamedTemporaryFile("r") as out:
        started = time.perf_counter()
        run = subprocess.run(
            ["/usr/bin/time", "-f", "%M", "-o", out.name, *argv],
            input=stdin,
            text=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            env=env or ENV,
        )
        wall = time.perf_counter() - started
        if run.returncode != 0:
            sys.exit(f"{argv[:3]} exited {run.returncode}:\n{run.stderr[-2000:]}")
        rss = int(out.read().strip().splitlines()[-1])
    return wall, rss


def fleet_file(names, folder):
    path = Path(folder) / "fleet.toml"
    lines = [f"parallel = {PARALLEL}\n"]
    for name in names:
        lines.append(f'[[target]]\nname = "{name}"\nurl = "{SERVER}/{name}"\n')
    path.write_text("\n".join(lines))
    return path


def fleet(command, names, folder):
    return timed([DHCTL, *command, "--targets", str(fleet_file(names, folder))])


def xargs(command, names):
    urls = "".join(f"{SERVER}/{name}\n" for name in names)
    # One dhctl per database, DATABASE_URL from the line (never on the command line).
    script = f'DATABASE_URL="$1" exec {DHCTL} {" ".join(command)}'
    return timed(
        ["xargs", "-P", str(PARALLEL), "-I{}", "sh", "-c", script, "sh", "{}"], stdin=urls
    )


def main():
    if not Path(DHCTL).exists():
        sys.exit(f"{DHCTL} not found: cargo build --release --locked first")
    results = {k: [] for k in ("migrate_a", "migrate_b", "status_a", "status_b", "rss_a", "rss_b")}
    with tempfile.TemporaryDirectory() as folder:
        for r in range(ROUNDS):
            # A then B, each round (paired): each side's databases are created just before its
            # run and the server checkpoints first, so neither inherits the other's dirty
            # buffers (80 CREATE DATABASE write a lot of WAL); then status on what was migrated.
            a_names = create(f"dhctl_bench_fleet_a{r}")
            psql("CHECKPOINT")
            wall, rss = fleet(["migrate"], a_names, folder)
            results["migrate_a"].append(wall)
            results["rss_a"].append(rss)
            b_names = create(f"dhctl_bench_fleet_b{r}")
            psql("CHECKPOINT")
            wall, rss = xargs(["migrate"], b_names)
            results["migrate_b"].append(wall)
            results["rss_b"].append(rss)
            psql("CHECKPOINT")
            wall, rss = fleet(["status", "--exit-code"], a_names, folder)
            results["status_a"].append(wall)
            results["rss_a"].append(rss)
            wall, rss = xargs(["status", "--exit-code"], b_names)
            results["status_b"].append(wall)
            results["rss_b"].append(rss)
            drop(a_names + b_names)
            print(
                f"round {r + 1}: migrate {results['migrate_a'][-1]:.2f}s vs "
                f"{results['migrate_b'][-1]:.2f}s, status {results['status_a'][-1]:.2f}s vs "
                f"{results['status_b'][-1]:.2f}s",
                file=sys.stderr,
            )
    med = {k: statistics.median(v) for k, v in results.items()}
    ratio = lambda a, b: [x / y for x, y in zip(results[a], results[b])]
    print(f"{N} fresh databases, parallel {PARALLEL}, {ROUNDS} paired rounds (A B A B), medians\n")
    print("| measure | `--targets` (one process) | `xargs -P 4` (one dhctl each) | ratio (median of pairs) | target |")
    print("|---|---|---|---|---|")
    print(
        f"| migrate, wall | {med['migrate_a']:.2f} s | {med['migrate_b']:.2f} s | "
        f"{statistics.median(ratio('migrate_a', 'migrate_b')):.2f} | <= 0.90 |"
    )
    print(
        f"| status (nothing pending), wall | {med['status_a']:.2f} s | {med['status_b']:.2f} s | "
        f"{statistics.median(ratio('status_a', 'status_b')):.2f} | <= 0.90 |"
    )
    print(
        f"| peak RSS | {max(results['rss_a']) / 1024:.1f} MiB (the one process) | "
        f"{max(results['rss_b']) / 1024:.1f} MiB (largest single dhctl) | | <= 40 MiB |"
    )


if __name__ == "__main__":
    main()
