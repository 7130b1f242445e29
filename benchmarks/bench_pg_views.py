"""Views on a PostgreSQL server against the same data in a SQLite file (README "On a
cluster"). Run by hand; prints wall clock (best of 3) and the peak memory of the wbg
process (GNU time's, /usr/bin/time) for each view and engine.

    python benchmarks/bench_pg_views.py                  # a throwaway server on loopback
    python benchmarks/bench_pg_views.py --runs 10000 --points 100000   # smaller

1. `wbg table --group-by lr` (5 metrics) at --runs runs (benchmarks/bench_views.build).
2. `wbg export -f jsonl` of all of them (a listing: read a slice at a time on a server).
3. `wbg plot loss -g g07`: one group of 10 runs on a database of 20 groups holding
   --points history points (2 metrics per step).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
sys.path.insert(0, str(Path(__file__).resolve().parent))


def build_history(path: Path, points: int) -> None:
    """20 groups x 10 runs, `loss` and `acc` logged at each step: ``points`` in all."""
    from wbg import db as wbg_db
    from wbg import runs

    steps = max(1, points // (20 * 10 * 2))
    rng = random.Random(0)
    with contextlib.closing(wbg_db.connect(path)) as conn:
        for g in range(20):
            for r in range(10):
                run_id, num = runs.create_run(
                    conn, project="bench", group=f"g{g:02d}", job_type="train",
                    config={"lr": [0.1, 0.01][r % 2], "seed": r},
                )  # fmt: skip
                t0 = time.time()
                batch = []
                for step in range(steps):
                    batch.append((num, step, "loss", 1 / (step + 1) + rng.random() / 100, t0))
                    batch.append((num, step, "acc", step / steps, t0))
                with runs.transaction(conn):
                    runs.write_history(conn, batch)
                    runs.merge_summary(conn, num, {"loss": batch[-2][3], "acc": batch[-1][3]})
                runs.finish_run(conn, run_id, state="finished", exit_code=0)


def measure(db: str, args: list[str]) -> tuple[float, float]:
    """Best wall clock of 3 runs and the peak RSS (MB) of the wbg process, as GNU time
    reports it (a child of this process would count this process's memory as its own)."""
    env = {**os.environ, "WBG_DB": db}
    best, peak = float("inf"), 0.0
    for _ in range(3):
        start = time.perf_counter()
        done = subprocess.run(
            ["/usr/bin/time", "-f", "%M", sys.executable, "-m", "wbg.cli.main", *args],
            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, check=True,
        )  # fmt: skip
        best = min(best, time.perf_counter() - start)
        peak = max(peak, int(done.stderr.strip().splitlines()[-1]) / 1024)
    return best, peak


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=100_000)
    parser.add_argument("--points", type=int, default=1_000_000)
    args = parser.parse_args()

    import bench_views
    from pg_server import create_database, running_server

    print(f"load average at start: {os.getloadavg()[0]:.2f}", flush=True)
    with tempfile.TemporaryDirectory(prefix="wbg-bench-") as tmp, running_server() as base:
        table_db, plot_db = Path(tmp) / "table.db", Path(tmp) / "plot.db"
        bench_views.build(table_db, args.runs)
        build_history(plot_db, args.points)
        servers = {}
        for name, path in (("table", table_db), ("plot", plot_db)):
            servers[name] = create_database(base, f"views_{name}")
            subprocess.run(
                [sys.executable, "-m", "wbg.cli.main", "merge", str(path), "--db", servers[name]],
                stdout=subprocess.DEVNULL, check=True,
            )  # fmt: skip
        views = (
            ("table", f"wbg table --group-by lr at {args.runs:,} runs",
             ["table", "--group-by", "lr", "-p", "bench"]),
            ("table", f"wbg export -f jsonl of {args.runs:,} runs", ["export", "-f", "jsonl"]),
            ("plot", f"wbg plot loss -g g07 ({args.points:,} points stored)",
             ["plot", "loss", "-g", "g07"]),
        )  # fmt: skip
        for data, label, command in views:
            files = {"sqlite": str(Path(tmp) / f"{data}.db"), "postgresql": servers[data]}
            for engine, db in files.items():
                wall, peak = measure(db, command)
                print(f"{engine:<10} {label}: {wall:.2f} s, {peak:.0f} MB peak", flush=True)
    print(f"load average at end: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
