"""Speed figures for W&B import and database merge (issue 5). Run by hand; prints, asserts
nothing.

    python benchmarks/bench_interop.py [--runs 100] [--steps 1000] [--merge-runs 100000]

1. `wbg import wandb`: RUNS offline runs x STEPS steps (2 metrics each) written by the real
   `wandb` package (offline, no network; made once, in two processes), imported with the
   CLI: wall time, runs/s, points/s; then the same import again (everything present);
   then `wbg export wandb` of one group of them (RUNS/10 runs).
2. `wbg merge`: a database of MERGE_RUNS runs (10 steps x 2 metrics each, 2 summary
   metrics, config) merged into an empty database, merged again (all unchanged), and
   merged into a database that already holds half of them.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

MAKE_RUNS = """
import sys, wandb
root, first, count, steps = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
for index in range(first, first + count):
    run = wandb.init(project="bench", group=f"exp-{index % 10}", job_type="train",
                     config={"lr": 0.001 * (index % 7 + 1), "model": {"depth": index % 5}},
                     dir=root)
    for step in range(steps):
        run.log({"loss": 1.0 / (step + 1), "acc": step / steps})
    run.finish()
"""


def wandb_env(root: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("WANDB_", "WBG_"))}
    for name in ("DIR", "CACHE_DIR", "CONFIG_DIR", "DATA_DIR"):
        (root / name.lower()).mkdir(parents=True, exist_ok=True)
        env[f"WANDB_{name}"] = str(root / name.lower())
    env.update(WANDB_MODE="offline", WANDB_SILENT="true", WANDB_DISABLE_GIT="true")
    return env


def make_wandb_runs(root: Path, runs: int, steps: int) -> float:
    start = time.perf_counter()
    half = runs // 2
    workers = [
        subprocess.Popen(
            [sys.executable, "-c", MAKE_RUNS, str(root), str(first), str(count), str(steps)],
            env=wandb_env(root),
        )
        for first, count in ((0, half), (half, runs - half))
    ]
    for worker in workers:
        if worker.wait() != 0:
            raise SystemExit("making the W&B runs failed")
    return time.perf_counter() - start


def timed(argv: list[str], env: dict[str, str]) -> float:
    start = time.perf_counter()
    subprocess.run(argv, env=env, stdout=subprocess.DEVNULL, check=True)
    return time.perf_counter() - start


def bench_import(wbg: str, tmp: Path, runs: int, steps: int, runs_dir: Path | None) -> None:
    root = runs_dir or tmp / "wandb-runs"
    root.mkdir(parents=True, exist_ok=True)
    logs = list(root.rglob("run-*.wandb"))
    if len(logs) < runs:
        made = make_wandb_runs(root, runs, steps)
        logs = list(root.rglob("run-*.wandb"))
        print(f"made {len(logs)} W&B offline runs x {steps} steps with wandb in {made:.1f} s")
    size_mib = sum(p.stat().st_size for p in logs) / 2**20
    env = {**os.environ, "WBG_DB": str(tmp / "import.db")}
    first = timed([wbg, "import", "wandb", str(root)], env)
    with sqlite3.connect(tmp / "import.db") as conn:
        points = conn.execute("SELECT count(*) FROM history").fetchone()[0]
        imported = conn.execute("SELECT count(*) FROM runs").fetchone()[0]
    print(
        f"import wandb: {imported} runs, {points:,} points, {size_mib:.1f} MiB of logs in "
        f"{first:.2f} s ({imported / first:.1f} runs/s, {points / first:,.0f} points/s)"
    )
    again = timed([wbg, "import", "wandb", str(root)], env)
    print(f"import wandb again (all present): {again:.2f} s")
    out = tmp / "export"
    exported = timed([wbg, "export", "wandb", str(out), "--group", "exp-0"], env)
    count = len(list((out / "wandb").glob("offline-run-*")))
    print(
        f"export wandb: {count} runs x {steps} steps through wandb in {exported:.2f} s "
        f"({exported / max(count, 1):.2f} s/run)"
    )


def make_database(path: Path, runs: int, seed: int = 0) -> None:
    """A wbg database with ``runs`` finished runs, written straight through SQL."""
    from wbg.db import connect

    rng = random.Random(seed)
    conn = connect(path)
    conn.execute("BEGIN")
    now = time.time()
    for start in range(0, runs, 10_000):
        batch = range(start, min(runs, start + 10_000))
        conn.executemany(
            'INSERT INTO runs (num, id, project, name, "group", job_type, tags, state, '
            "exit_code, host, started_at, ended_at, config, summary) "
            "VALUES (?, ?, 'bench', ?, ?, 'train', '[]', 'finished', 0, 'node', ?, ?, ?, ?)",
            [
                (
                    i + 1,
                    f"r{i:07d}",
                    f"run-{i}",
                    f"exp-{i % 1000}",
                    now - 1000 + i * 1e-3,
                    now + i * 1e-3,
                    json.dumps({"lr": rng.choice([0.1, 0.01, 0.001]), "seed": i % 5}),
                    json.dumps({"loss": 1.0 / (i + 1), "acc": (i % 100) / 100}),
                )
                for i in batch
            ],
        )
        conn.executemany(
            "INSERT INTO summary_metrics (run, key, value) VALUES (?, ?, ?)",
            [(i + 1, key, value) for i in batch for key, value in (("acc", 0.5), ("loss", 0.1))],
        )
        conn.executemany(
            "INSERT INTO history (run, step, key, value, time) VALUES (?, ?, ?, ?, ?)",
            [
                (i + 1, step, key, rng.random(), now + step)
                for i in batch
                for step in range(10)
                for key in ("acc", "loss")
            ],
        )
    conn.execute("COMMIT")
    conn.close()


def bench_merge(wbg: str, tmp: Path, runs: int) -> None:
    source = tmp / "node.db"
    start = time.perf_counter()
    make_database(source, runs)
    size_mib = source.stat().st_size / 2**20
    print(
        f"made a {runs:,}-run database ({runs * 20:,} history points, {size_mib:.0f} MiB) "
        f"in {time.perf_counter() - start:.1f} s"
    )
    target = tmp / "merged.db"
    env = {**os.environ, "WBG_DB": str(target)}
    first = timed([wbg, "merge", str(source)], env)
    print(f"merge into an empty database: {first:.2f} s ({runs / first:,.0f} runs/s)")
    again = timed([wbg, "merge", str(source)], env)
    print(f"merge again (all unchanged): {again:.2f} s")

    half = tmp / "half.db"
    with sqlite3.connect(source) as conn:
        conn.execute("VACUUM INTO ?", (str(half),))
    with sqlite3.connect(half) as conn:
        for table in ("history", "summary_metrics"):
            conn.execute(f"DELETE FROM {table} WHERE run > ?", (runs // 2,))
        conn.execute("DELETE FROM runs WHERE num > ?", (runs // 2,))
    third = timed([wbg, "merge", str(source)], {**os.environ, "WBG_DB": str(half)})
    print(f"merge into a database holding half of them: {third:.2f} s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=100)
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--merge-runs", type=int, default=100_000)
    parser.add_argument(
        "--runs-dir", type=Path, help="keep the W&B runs here (reused when already made)"
    )
    parser.add_argument("--skip-import", action="store_true")
    parser.add_argument("--skip-merge", action="store_true")
    args = parser.parse_args()
    wbg = shutil.which("wbg", path=os.path.dirname(sys.executable)) or "wbg"
    tmp = Path(tempfile.mkdtemp(prefix="wbg-bench-"))
    try:
        if not args.skip_import:
            bench_import(wbg, tmp, args.runs, args.steps, args.runs_dir)
        if not args.skip_merge:
            bench_merge(wbg, tmp, args.merge_runs)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
