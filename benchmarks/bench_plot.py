"""Benchmark ``wbg plot``: 4 groups x 10 runs x 10,000 steps of one metric (issue 4).

Records the runs into a temporary database, then times ``wbg plot loss`` as a subprocess
(wall clock, median of several runs) and prints the figure. Target: at most 1.5 s.

    python benchmarks/bench_plot.py [--repeat 5] [--steps 10000] [--x step|time]
"""

from __future__ import annotations

import argparse
import math
import os
import random
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

GROUPS = 4
RUNS_PER_GROUP = 10


def record(path: Path, steps: int) -> None:
    from wbg import db, runs

    conn = db.connect(path)
    rng = random.Random(0)
    with runs.transaction(conn):
        for g in range(GROUPS):
            for seed in range(RUNS_PER_GROUP):
                run_id, num = runs.create_run(
                    conn,
                    project="bench",
                    group=f"lr-{g}",
                    job_type="train",
                    config={"lr": 10.0**-g, "seed": seed},
                )
                start = time.time()
                points = [
                    (
                        num,
                        step,
                        "loss",
                        math.exp(-step / 3000) * (1 + g / 4) + rng.random() / 10,
                        start + step * 0.01,
                    )
                    for step in range(steps)
                ]
                runs.write_history(conn, points)
                runs.finish_run(conn, run_id, state="finished", exit_code=0)
    conn.close()


def wbg_command() -> list[str]:
    found = shutil.which("wbg", path=os.path.dirname(sys.executable))
    return [found] if found else [sys.executable, "-m", "wbg.cli.main"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--steps", type=int, default=10_000)
    parser.add_argument("--x", default="step", choices=("step", "time"))
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "bench.db"
        record(path, args.steps)
        command = [
            *wbg_command(),
            "plot",
            "loss",
            "--db",
            str(path),
            "--x",
            args.x,
            "--width",
            "120",
            "--height",
            "40",
        ]
        env = {**os.environ, "NO_COLOR": "1"}
        walls, cpus = [], []
        for _ in range(args.repeat):
            before = resource.getrusage(resource.RUSAGE_CHILDREN)
            began = time.perf_counter()
            subprocess.run(command, check=True, env=env, stdout=subprocess.DEVNULL)
            walls.append(time.perf_counter() - began)
            after = resource.getrusage(resource.RUSAGE_CHILDREN)
            cpus.append(after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime)
    points = GROUPS * RUNS_PER_GROUP * args.steps
    print(
        f"wbg plot loss --x {args.x}: {GROUPS} groups x {RUNS_PER_GROUP} runs x {args.steps} "
        f"steps ({points} points): median {statistics.median(walls):.3f} s wall "
        f"(min {min(walls):.3f}, max {max(walls):.3f}, {args.repeat} runs); "
        f"CPU (user+sys) median {statistics.median(cpus):.3f} s; "
        f"load average {os.getloadavg()[0]:.2f}"
    )


if __name__ == "__main__":
    main()
