"""Benchmark of the grouped views (issue 3): a script, not a test.

Builds a database of 100,000 runs (5 config keys, 5 summary metrics; 100 groups of
1,000 runs) and times, as real subprocesses (median of 5 runs, wall clock):

- ``wbg table --group-by lr`` against a hand-written raw-SQL GROUP BY over the same file
  (count/mean/std of every metric by config lr, run in-process with ``sqlite3``: no
  interpreter start-up is charged to it, so the ratio is strict);
- ``wbg group show`` of a 1,000-run group.

Usage: python benchmarks/bench_views.py [--runs 100000] [--db PATH] [--keep]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

METRICS = ("loss", "acc", "val_loss", "val_acc", "f1")
LRS = (0.1, 0.03, 0.01, 0.003, 0.001)
GROUP_SIZE = 1000

RAW_SQL = """
SELECT lr, key, count(value), avg(value),
       sqrt((sum(value * value) - sum(value) * sum(value) / count(value)) / (count(value) - 1))
FROM (SELECT json_extract(runs.config, '$.lr') AS lr, sm.key AS key, sm.value AS value
      FROM runs JOIN summary_metrics AS sm ON sm.run = runs.num)
GROUP BY lr, key
"""


def build(path: Path, n_runs: int) -> None:
    from wbg.db import connect

    conn = connect(path)
    rng = random.Random(0)
    now = time.time() - n_runs
    run_rows = []
    metric_rows = []
    for num in range(1, n_runs + 1):
        config = {
            "lr": LRS[num % len(LRS)],
            "batch_size": 32 * (1 + num % 4),
            "seed": num % 10,
            "model": ("mlp", "cnn", "bert")[num % 3],
            "dropout": round(rng.random() * 0.5, 2),
        }
        summary = {m: rng.random() for m in METRICS}
        started = now + num
        run_rows.append(
            (
                num,
                f"r{num:07d}",
                "bench",
                f"run-{num}",
                f"group-{(num - 1) // GROUP_SIZE:03d}",
                "train" if num % 5 else "eval",
                "finished",
                0,
                started,
                started + rng.random() * 100,
                json.dumps(config),
                json.dumps(summary),
            )
        )
        metric_rows.extend((num, m, v) for m, v in summary.items())
    with conn:
        conn.execute("BEGIN")
        conn.executemany(
            'INSERT INTO runs (num, id, project, name, "group", job_type, state, exit_code, '
            "started_at, ended_at, config, summary, host) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 'bench-host')",
            run_rows,
        )
        conn.executemany(
            "INSERT INTO summary_metrics (run, key, value) VALUES (?, ?, ?)", metric_rows
        )
    # no ANALYZE: a user's database has no planner statistics either
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()


def wbg_command() -> list[str]:
    found = shutil.which("wbg", path=os.path.dirname(sys.executable))
    return [found] if found else [sys.executable, "-m", "wbg.cli.main"]


def timed(fn, repeat: int = 5) -> float:
    samples = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - start)
    return statistics.median(samples)


# As installed by pip: byte-code cached (a PYTHONDONTWRITEBYTECODE=1 environment would
# charge every run for compiling wbg, typer and click from source).
ENV = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}


def run_wbg(*args: str) -> None:
    subprocess.run([*wbg_command(), *args], check=True, stdout=subprocess.DEVNULL, env=ENV)


def raw_sql(path: Path) -> None:
    conn = sqlite3.connect(path)
    conn.execute(RAW_SQL).fetchall()
    conn.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=100_000)
    parser.add_argument("--db", type=Path, default=None, help="reuse/build this file")
    parser.add_argument("--keep", action="store_true", help="keep the temporary database")
    args = parser.parse_args()
    tmp = None
    path = args.db
    if path is None:
        tmp = tempfile.mkdtemp(prefix="wbg-bench-")
        path = Path(tmp) / "bench.db"
    if not path.exists():
        start = time.perf_counter()
        build(path, args.runs)
        print(f"built {path} ({args.runs} runs) in {time.perf_counter() - start:.1f} s")
    db = ["--db", str(path)]
    try:
        run_wbg("table", "--group-by", "lr", *db)  # warm the page cache once
        raw = timed(lambda: raw_sql(path))
        table = timed(lambda: run_wbg("table", "--group-by", "lr", *db))
        table_all = timed(
            lambda: run_wbg("table", "--group-by", "lr", "--agg", "count,mean,std,median", *db)
        )
        show = timed(lambda: run_wbg("group", "show", "group-042", *db))
        show_json = timed(lambda: run_wbg("group", "show", "group-042", "-f", "json", *db))
        startup = timed(lambda: run_wbg("--help"))
    finally:
        if tmp and not args.keep:
            shutil.rmtree(tmp, ignore_errors=True)
    print(f"raw SQL GROUP BY (in-process)          {raw * 1000:8.0f} ms")
    print(f"wbg table --group-by lr                {table * 1000:8.0f} ms  (target <= 1000 ms)")
    print(f"  ratio to raw SQL                     {table / raw:8.2f} x   (target <= 3 x)")
    print(f"wbg table --group-by lr (+median)      {table_all * 1000:8.0f} ms")
    print(f"wbg group show (1,000 runs)            {show * 1000:8.0f} ms  (target <= 500 ms)")
    print(f"wbg group show -f json (all 1,000 runs) {show_json * 1000:7.0f} ms")
    print(f"wbg --help (interpreter + typer)       {startup * 1000:8.0f} ms")
    print(f"load average                           {os.getloadavg()[0]:8.2f}")


if __name__ == "__main__":
    main()
