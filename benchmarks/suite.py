"""Every speed figure of issue 13, with its target beside it: a script, not a test.

    python benchmarks/suite.py [--runs 100000] [--db PATH] [--keep] [--repeat 3]

Builds the 100,000-run database once (``bench_views.build``: 5 config keys, 5 metrics,
100 groups of 1,000 runs, plus one 1,000-run group whose runs each carry their own config
keys) and prints, as real subprocesses of the installed ``wbg`` (median wall clock):

1. recording: short runs per second through the API (init + config + one log + finish in
   one process) against wbg's store layer writing the same rows with no API around it,
   and raw SQLite writing them into one plain table; ``wbg run -- true`` against
   ``true``; points per second of one API process;
2. views at 100,000 runs: ``runs list``, ``table --no-group``, ``export``, ``group show``
   of the wide group, ``table --group-by lr`` against the hand-written GROUP BY over the
   JSON columns in a fresh process, and the time to the first row of the views that print
   100,000 rows;
3. on disk: bytes per run and per history point, against a plain row per run / point.

Machines are shared and noisy: the load average is printed with the figures.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from bench_views import build, wbg_command  # noqa: E402

ENV = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
WIDE_GROUP = "wide-keys"

SHORT_RUNS = """
import sys, time, wbg
n = int(sys.argv[1])
wbg.init(project="bench").finish()  # the first run opens the file and starts the writer
start = time.perf_counter()
for i in range(n):
    run = wbg.init(project="bench", group="sweep", config={"lr": 0.1, "seed": i})
    run.log({"loss": 0.5})
    run.finish()
print(n / (time.perf_counter() - start))
"""

RAW_RUNS = """
import json, os, sqlite3, sys, time
n = int(sys.argv[1])
conn = sqlite3.connect(sys.argv[2], isolation_level=None)
conn.execute("PRAGMA journal_mode=WAL"); conn.execute("PRAGMA synchronous=NORMAL")
conn.execute("CREATE TABLE runs (id TEXT PRIMARY KEY, grp TEXT, state TEXT, config TEXT, "
             "summary TEXT, started REAL, ended REAL)")
conn.execute("CREATE TABLE history (run TEXT, step INT, key TEXT, value REAL)")
start = time.perf_counter()
for i in range(n):
    rid = os.urandom(4).hex()
    conn.execute("INSERT INTO runs VALUES (?, 'sweep', 'running', ?, '{}', ?, NULL)",
                 (rid, json.dumps({"lr": 0.1, "seed": i}), time.time()))
    conn.execute("BEGIN")
    conn.execute("INSERT INTO history VALUES (?, 0, 'loss', 0.5)", (rid,))
    conn.execute("UPDATE runs SET summary = ?, state = 'finished', ended = ? WHERE id = ?",
                 (json.dumps({"loss": 0.5}), time.time(), rid))
    conn.execute("COMMIT")
print(n / (time.perf_counter() - start))
"""

# The same runs through wbg's store layer with no API around it: the rows, indexes and
# search index a run writes, in the same two transactions (the run's row, committed before
# the user's code runs, then its points, summary and end). What is left of the API figure
# is the API's own Python (argument, settings and environment resolution, the run object).
STORE_RUNS = """
import os, sys, time, wbg
from wbg import db, runs
n = int(sys.argv[1])
wbg.init(project="bench").finish()  # creates the file
conn = db.connect()
start = time.perf_counter()
for i in range(n):
    run_id, num = runs.create_run(conn, project="bench", group="sweep",
                                  config={"lr": 0.1, "seed": i}, command=sys.argv)
    with db.transaction(conn):
        runs.write_history(conn, [(num, 0, "loss", 0.5, time.time())])
        runs.merge_summary(conn, num, {"loss": 0.5})
        runs.finish_run(conn, run_id, state="finished", exit_code=0)
print(n / (time.perf_counter() - start))
"""

POINTS = """
import sys, time, wbg
steps = int(sys.argv[1])
run = wbg.init(project="bench")
start = time.perf_counter()
for step in range(steps):
    run.log({"loss": 1.0 / (step + 1), "acc": step * 1e-6})
run.finish()
print(2 * steps / (time.perf_counter() - start))
"""

RAW_GROUP_BY = """
import sqlite3, sys, time
start = time.perf_counter()
conn = sqlite3.connect(sys.argv[1])
conn.execute('''
SELECT json_extract(config, '$.lr') AS lr, count(*),
       avg(json_extract(summary, '$.loss')), avg(json_extract(summary, '$.acc')),
       avg(json_extract(summary, '$.val_loss')), avg(json_extract(summary, '$.val_acc')),
       avg(json_extract(summary, '$.f1'))
FROM runs GROUP BY lr''').fetchall()
print(time.perf_counter() - start)
"""


def add_wide_group(path: Path, n_runs: int = 1000) -> None:
    """A 1,000-run group whose runs each have 10 config keys of their own (10,000 keys)."""
    conn = sqlite3.connect(path)
    base = conn.execute("SELECT max(num) FROM runs").fetchone()[0] or 0
    rows = []
    for i in range(n_runs):
        config = {"lr": 0.1, "seed": i, **{f"k{i}_{j}": j for j in range(10)}}
        rows.append(
            (base + i + 1, f"w{i:07d}", "bench", f"wide-{i}", WIDE_GROUP, "train", "finished",
             0, 1.0e9 + i, 1.0e9 + i + 5, json.dumps(config), json.dumps({"loss": i / n_runs}))
        )  # fmt: skip
    with conn:
        conn.executemany(
            'INSERT INTO runs (num, id, project, name, "group", job_type, state, exit_code, '
            "started_at, ended_at, config, summary, host) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 'bench-host')",
            rows,
        )
        conn.executemany(
            "INSERT INTO summary_metrics (run, key, value) VALUES (?, 'loss', ?)",
            [(r[0], json.loads(r[11])["loss"]) for r in rows],
        )
    conn.close()


def median_time(argv: list[str], repeat: int, env: dict[str, str] | None = None) -> float:
    samples = []
    for _ in range(repeat):
        start = time.perf_counter()
        subprocess.run(argv, check=True, stdout=subprocess.DEVNULL, env=env or ENV)
        samples.append(time.perf_counter() - start)
    return statistics.median(samples)


def first_row(argv: list[str]) -> tuple[float, float]:
    """Seconds to the first line of output, and to the end."""
    start = time.perf_counter()
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, env=ENV)
    assert proc.stdout is not None
    proc.stdout.readline()
    first = time.perf_counter() - start
    for _ in proc.stdout:
        pass
    proc.wait()
    return first, time.perf_counter() - start


def python_figure(
    script: str, *args: str, repeat: int = 3, env: dict[str, str] | None = None
) -> float:
    values = []
    for _ in range(repeat):
        done = subprocess.run(
            [sys.executable, "-c", script, *args], check=True, capture_output=True, text=True,
            env=env or ENV,
        )  # fmt: skip
        values.append(float(done.stdout.strip().splitlines()[-1]))
    return statistics.median(values)


def row(label: str, value: str, target: str = "") -> None:
    print(f"{label:<46} {value:>14}  {target}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=100_000)
    parser.add_argument("--db", type=Path, default=None, help="reuse/build this file")
    parser.add_argument("--keep", action="store_true", help="keep the temporary files")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="wbg-suite-"))
    path = args.db or tmp / "bench.db"
    wbg = wbg_command()
    try:
        if not path.exists():
            start = time.perf_counter()
            build(path, args.runs)
            add_wide_group(path)
            print(f"built {path} ({args.runs} runs) in {time.perf_counter() - start:.1f} s")
        db = ["--db", str(path)]
        print(f"load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores\n")
        print("1. recording")
        # The recording figures write into files of their own, never the default database.
        env = {**ENV, "WBG_DB": str(tmp / "short.db")}
        runs_s = python_figure(SHORT_RUNS, "2000", repeat=args.repeat, env=env)
        raw_runs = python_figure(RAW_RUNS, "2000", str(tmp / "raw-runs.db"), repeat=1)
        store_env = {**ENV, "WBG_DB": str(tmp / "store.db")}
        store_runs = python_figure(STORE_RUNS, "2000", repeat=args.repeat, env=store_env)
        row("API short runs/s", f"{runs_s:,.0f}", ">= 5,000")
        row("  wbg's store layer alone, same rows", f"{store_runs:,.0f}", "(no API)")
        row("  raw SQLite, same rows", f"{raw_runs:,.0f}", f"({raw_runs / runs_s:.1f}x wbg)")
        points = python_figure(
            POINTS, "200000", repeat=args.repeat, env={**ENV, "WBG_DB": str(tmp / "points.db")}
        )
        row("API points/s (200k steps x 2)", f"{points:,.0f}")
        true = shutil.which("true") or "/bin/true"
        plain = median_time([true], 9)
        under = median_time([*wbg, "run", "--", true], 9, env)
        row("wbg run -- true, over true", f"{(under - plain) * 1000:,.0f} ms", "<= 100 ms")

        print("\n2. views at", f"{args.runs:,} runs")
        subprocess.run([*wbg, "table", "--group-by", "lr", *db], stdout=subprocess.DEVNULL)
        # A view that prints every one of the 100,000 runs streams them: its target is the
        # first row (below), not the whole output.
        streamed = "(streamed: first row below)"
        for label, argv, target in (
            ("runs list", ["runs", "list", *db], "<= 1 s"),
            ("runs list --all (every run)", ["runs", "list", "--all", *db], streamed),
            ("table --no-group", ["table", "--no-group", *db], streamed),
            ("export (jsonl, every run)", ["export", "--format", "jsonl", *db], streamed),
            (
                f"group show {WIDE_GROUP} (10,000 config keys)",
                ["group", "show", WIDE_GROUP, *db],
                "<= 1 s",
            ),
            ("table --group-by lr (5 metrics)", ["table", "--group-by", "lr", *db], "<= 1 s"),
        ):
            try:
                seconds = median_time([*wbg, *argv], args.repeat)
                row(label, f"{seconds:.2f} s", target)
            except subprocess.CalledProcessError as exc:
                row(label, f"exit {exc.returncode}")
        raw = python_figure(RAW_GROUP_BY, str(path), repeat=args.repeat)
        table = median_time([*wbg, "table", "--group-by", "lr", *db], args.repeat)
        row("raw GROUP BY over JSON columns (in process)", f"{raw:.2f} s")
        row("  table --group-by lr / raw", f"{table / raw:.2f} x", "<= 2 x")
        for label, argv in (
            ("first row: export --format jsonl", ["export", "--format", "jsonl", *db]),
            (
                "first row: runs list --all --format csv",
                ["runs", "list", "--all", "-f", "csv", *db],
            ),
            ("first row: table --no-group", ["table", "--no-group", *db]),
        ):
            try:
                first, total = first_row([*wbg, *argv])
                row(label, f"{first:.2f} s", f"<= 0.2 s (all: {total:.2f} s)")
            except (subprocess.CalledProcessError, AssertionError):
                row(label, "failed")

        print("\n3. on disk")
        conn = sqlite3.connect(path)
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        n = conn.execute("SELECT count(*) FROM runs").fetchone()[0]
        conn.close()
        size = path.stat().st_size
        row("bytes per run (runs + summary_metrics)", f"{size / n:,.0f}")
        plain_db = tmp / "plain.db"
        pconn = sqlite3.connect(plain_db)
        pconn.execute("CREATE TABLE runs (id TEXT, grp TEXT, config TEXT, summary TEXT)")
        src = sqlite3.connect(path)
        pconn.executemany(
            "INSERT INTO runs VALUES (?, ?, ?, ?)",
            src.execute('SELECT id, "group", config, summary FROM runs'),
        )
        pconn.commit()
        pconn.execute("VACUUM")
        pconn.close()
        row(
            "  plain row per run (id, group, config, summary)",
            f"{plain_db.stat().st_size / n:,.0f}",
        )
        hist_db = tmp / "hist.db"
        hist_env = {**ENV, "WBG_DB": str(hist_db)}
        subprocess.run(
            [sys.executable, "-c", POINTS, "500000"], check=True, env=hist_env,
            stdout=subprocess.DEVNULL,
        )  # fmt: skip
        hconn = sqlite3.connect(hist_db)
        hconn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        hconn.execute("VACUUM")
        hconn.close()
        row("history MB per million points", f"{hist_db.stat().st_size / 1e6:,.1f}")
        plain_hist = tmp / "plain-hist.db"
        pconn = sqlite3.connect(plain_hist)
        pconn.execute("CREATE TABLE history (run INT, step INT, key TEXT, value REAL)")
        pconn.executemany(
            "INSERT INTO history VALUES (1, ?, ?, ?)",
            ((s, k, 0.5) for s in range(500_000) for k in ("loss", "acc")),
        )
        pconn.commit()
        pconn.execute("VACUUM")
        pconn.close()
        row("  plain (run, step, key, value) rows", f"{plain_hist.stat().st_size / 1e6:,.1f}")
    finally:
        if not args.keep:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
