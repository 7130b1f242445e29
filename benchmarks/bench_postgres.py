"""PostgreSQL against SQLite (README "On a cluster"). Run by hand; prints figures and checks
that nothing was lost or duplicated (exit 1 if something was).

    python benchmarks/bench_postgres.py                      # a throwaway server on loopback
    python benchmarks/bench_postgres.py --url postgresql://me@host/wbg_bench   # an existing one
    python benchmarks/bench_postgres.py --writers 32 --points 50000 --children 16  # issue sizes

1. points/s through the Python API (2 metrics per step), 1 process and N at once.
2. runs/s through the Python API (init, 3 logs, finish), 1 process and N at once, and the
   CPU each run costs the writers (their start-up included) and the server.
3. `wbg run` children at once: all recorded, every captured point there.
4. `wbg table --group-by lr` at 100,000 runs on each engine (wall clock, best of 3).
5. The server's CPU (all postgres processes, in cores) while N writers log at once.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

POINTS = """
import sys, wbg
with wbg.init(project="bench", group="points", job_type=f"w{sys.argv[1]}") as run:
    log = run.log
    for step in range(int(sys.argv[2])):
        log({"loss": 1.0 / (step + 1), "acc": step * 1e-6})
"""

RUNS = """
import sys, wbg
for i in range(int(sys.argv[2])):
    with wbg.init(project="bench", group="runs", job_type=f"w{sys.argv[1]}",
                  config={"lr": [0.1, 0.01, 0.001][i % 3], "seed": i}) as run:
        for step in range(3):
            run.log({"loss": 1.0 / (step + 1)})
"""


def wbg_cmd() -> list[str]:
    return [sys.executable, "-m", "wbg.cli.main"]


def parallel(code: str, n: int, count: int, env: dict[str, str]) -> float:
    start = time.perf_counter()
    procs = [
        subprocess.Popen([sys.executable, "-c", code, str(i), str(count)], env=env)
        for i in range(n)
    ]
    codes = [p.wait() for p in procs]
    elapsed = time.perf_counter() - start
    if any(codes):
        raise SystemExit(f"a writer failed: exit codes {codes}")
    return elapsed


def counts(db: str) -> tuple[int, int, int]:
    """(runs, history rows, distinct (run, step, key)) as stored."""
    from wbg import db as wbg_db
    from wbg.engine import ServerUrl, connect_server

    location = wbg_db.as_location(db)
    if isinstance(location, ServerUrl):
        conn = connect_server(location)
    else:
        import sqlite3

        conn = sqlite3.connect(location)
    with contextlib.closing(conn):
        runs = conn.execute("SELECT count(*) FROM runs").fetchone()[0]
        rows = conn.execute("SELECT count(*) FROM history").fetchone()[0]
        distinct = conn.execute(
            "SELECT count(*) FROM (SELECT DISTINCT run, step, key FROM history) AS d"
        ).fetchone()[0]
    return runs, rows, distinct


def server_cpu_seconds() -> float:
    """CPU seconds of every postgres process on this machine (loopback server only),
    with those of its exited children (backends of closed connections)."""
    total = 0
    tick = os.sysconf("SC_CLK_TCK")
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open(f"/proc/{pid}/stat") as handle:
                fields = handle.read().rsplit(")", 1)[1].split()
            with open(f"/proc/{pid}/comm") as handle:
                name = handle.read().strip()
        except OSError:
            continue
        if name.startswith("postgres"):
            total += sum(int(f) for f in fields[11:15])  # utime stime cutime cstime
    return total / tick


def children_cpu_seconds() -> float:
    """CPU seconds of this script's finished child processes (the writers)."""
    import resource

    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def new_database(base: str | None, url: str | None, name: str) -> str:
    if url:
        from wbg.engine import ServerUrl, connect_server

        with contextlib.closing(connect_server(ServerUrl(url))) as conn:
            for table in ("history", "summary_metrics", "run_output", "runs", "wbg_migrations"):
                conn.execute(f"DROP TABLE IF EXISTS {table}")
        return url
    from pg_server import create_database

    return create_database(base, name)


def bench_engine(label: str, make_db, args, report: list[str], failures: list[str]) -> None:
    env_base = {k: v for k, v in os.environ.items() if not k.startswith(("WANDB_", "WBG_"))}
    for n in (1, args.writers):
        db = make_db(f"points_{n}")
        env = {**env_base, "WBG_DB": db}
        cpu0 = server_cpu_seconds()
        elapsed = parallel(POINTS, n, args.points, env)
        cpu = server_cpu_seconds() - cpu0
        total = n * args.points * 2
        runs, rows, distinct = counts(db)
        lost, dup = total - distinct, rows - distinct
        line = (
            f"{label:<10} points  {n:>2} proc: {total / elapsed:>10,.0f} points/s "
            f"({total:,} in {elapsed:.1f} s; lost {lost}, duplicated {dup})"
        )
        if label == "postgresql" and not args.url:
            line += f"; server CPU {cpu / elapsed:.2f} cores"
        report.append(line)
        print(line, flush=True)
        if lost or dup or runs != n:
            failures.append(line)
    for n in (1, args.writers):
        db = make_db(f"runs_{n}")
        env = {**env_base, "WBG_DB": db}
        cpu0, writers0 = server_cpu_seconds(), children_cpu_seconds()
        elapsed = parallel(RUNS, n, args.runs, env)
        cpu, writers = server_cpu_seconds() - cpu0, children_cpu_seconds() - writers0
        total = n * args.runs
        runs, _, _ = counts(db)
        line = (
            f"{label:<10} runs    {n:>2} proc: {total / elapsed:>10,.1f} runs/s ({runs:,} stored)"
            f"; CPU per run: writers {writers / total * 1e3:.2f} ms"
        )
        if label == "postgresql" and not args.url:
            line += f", server {cpu / total * 1e3:.2f} ms"
        report.append(line)
        print(line, flush=True)
        if runs != total:
            failures.append(line)
    db = make_db("children")
    env = {**env_base, "WBG_DB": db}
    start = time.perf_counter()
    procs = [
        subprocess.Popen(
            [*wbg_cmd(), "run", "-g", "fan", "-c", f"i={i}", "--", sys.executable, "-c",
             "for s in range(1000): print(f'loss: {s}')"],
            env=env, stdout=subprocess.DEVNULL,
        )
        for i in range(args.children)
    ]  # fmt: skip
    codes = [p.wait() for p in procs]
    elapsed = time.perf_counter() - start
    runs, rows, distinct = counts(db)
    line = (
        f"{label:<10} wbg run {args.children:>2} children at once: {elapsed:.1f} s, exit codes "
        f"{sorted(set(codes))}, {runs} runs, {rows:,} points (expected {args.children * 1000:,})"
    )
    report.append(line)
    print(line, flush=True)
    if any(codes) or runs != args.children or rows != args.children * 1000:
        failures.append(line)


def populate_sqlite(path: Path, n_runs: int) -> None:
    """n_runs finished runs (3 learning rates, 2 metrics each) through the store."""
    from wbg import db as wbg_db
    from wbg import runs

    with contextlib.closing(wbg_db.connect(path)) as conn, runs.transaction(conn):
        for i in range(n_runs):
            run_id, num = runs.create_run(
                conn, project="bench", group=f"g{i % 50}", job_type="train",
                config={"lr": [0.1, 0.01, 0.001][i % 3], "seed": i},
            )  # fmt: skip
            runs.merge_summary(conn, num, {"loss": 1.0 / (i + 1), "acc": (i % 100) / 100})
            runs.finish_run(conn, run_id, state="finished", exit_code=0, duration=1.0 + i % 7)


def time_table(db: str) -> float:
    env = {**os.environ, "WBG_DB": db}
    best = float("inf")
    for _ in range(3):
        start = time.perf_counter()
        subprocess.run(
            [*wbg_cmd(), "table", "--group-by", "lr", "-p", "bench"],
            env=env, stdout=subprocess.DEVNULL, check=True,
        )  # fmt: skip
        best = min(best, time.perf_counter() - start)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", help="an existing server database (emptied first!)")
    parser.add_argument("--writers", type=int, default=16)
    parser.add_argument("--points", type=int, default=20000, help="steps per writer")
    parser.add_argument("--runs", type=int, default=100, help="runs per writer")
    parser.add_argument("--children", type=int, default=16)
    parser.add_argument("--table-runs", type=int, default=100_000, help="0: skip")
    args = parser.parse_args()

    report: list[str] = []
    failures: list[str] = []
    with tempfile.TemporaryDirectory(prefix="wbg-bench-") as tmp, contextlib.ExitStack() as stack:
        base = None
        if not args.url:
            from pg_server import running_server

            base = stack.enter_context(running_server(max_connections=args.writers * 4 + 50))
        bench_engine("sqlite", lambda name: str(Path(tmp) / f"{name}.db"), args, report, failures)
        bench_engine(
            "postgresql", lambda name: new_database(base, args.url, name), args, report, failures
        )

        if not args.table_runs:
            return _summary(report, failures)
        big = Path(tmp) / "table.db"
        start = time.perf_counter()
        populate_sqlite(big, args.table_runs)
        print(
            f"({args.table_runs:,} runs written to SQLite in {time.perf_counter() - start:.0f} s)"
        )
        server_db = new_database(base, args.url, "table")
        start = time.perf_counter()
        subprocess.run([*wbg_cmd(), "merge", str(big), "--db", server_db], check=True,
                       stdout=subprocess.DEVNULL)  # fmt: skip
        print(f"(merged into PostgreSQL in {time.perf_counter() - start:.0f} s)")
        for label, db in (("sqlite", str(big)), ("postgresql", server_db)):
            line = (
                f"{label:<10} wbg table --group-by lr at {args.table_runs:,} runs: "
                f"{time_table(db):.2f} s"
            )
            report.append(line)
            print(line, flush=True)

    _summary(report, failures)


def _summary(report: list[str], failures: list[str]) -> None:
    print("\nSummary")
    for line in report:
        print(" ", line)
    if failures:
        print("\nFAILED (lost, duplicated or missing):", *failures, sep="\n  ")
        raise SystemExit(1)


if __name__ == "__main__":
    main()
