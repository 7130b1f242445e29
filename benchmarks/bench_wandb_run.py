"""Speed figures for the real `wandb` under `wbg run` (issue 9). Run by hand; prints,
asserts nothing.

    python benchmarks/bench_wandb_run.py [--steps 20000] [--repeat 4]

The same script (offline `wandb`, STEPS steps of 2 metrics) runs directly and under
`wbg run`; printed: the wall time of each (median of REPEAT), the difference, and how
many points the wbg run holds. Then `wbg run -- true` with and without W&B following
(in-process Supervisor, median of 20): what following costs a run that never uses W&B.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SCRIPT = """
import sys, wandb
run = wandb.init(config={"lr": 0.1})
for step in range(int(sys.argv[1])):
    run.log({"loss": 1.0 / (step + 1), "acc": step / 1000})
run.finish()
"""


def wall(command: list[str], env: dict[str, str], cwd: Path) -> float:
    start = time.perf_counter()
    subprocess.run(command, env=env, cwd=cwd, check=True, capture_output=True)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=20_000)
    parser.add_argument("--repeat", type=int, default=4)
    args = parser.parse_args()
    wbg = shutil.which("wbg", path=os.path.dirname(sys.executable)) or "wbg"
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        script = root / "train.py"
        script.write_text(SCRIPT)
        env = {k: v for k, v in os.environ.items() if not k.startswith(("WANDB_", "WBG_"))}
        env.update(WANDB_MODE="offline", WANDB_SILENT="true", WBG_DB=str(root / "runs.db"))
        for name in ("CACHE_DIR", "CONFIG_DIR", "DATA_DIR"):
            (root / name).mkdir()
            env[f"WANDB_{name}"] = str(root / name)
        direct, under = [], []
        plain = [sys.executable, str(script), str(args.steps)]
        for index in range(args.repeat):  # alternate which goes first: the host is shared
            for kind in ("direct", "under") if index % 2 == 0 else ("under", "direct"):
                if kind == "direct":
                    direct.append(wall(plain, env, root))
                else:
                    under.append(wall([wbg, "run", "--", *plain], env, root))
        import sqlite3

        with sqlite3.connect(root / "runs.db") as conn:
            points = conn.execute("SELECT count(*) FROM history").fetchone()[0] // args.repeat
        d, u = statistics.median(direct), statistics.median(under)
        print(f"wandb script, {args.steps} steps x 2 metrics, median of {args.repeat}:")
        print(f"  direct          {d:7.2f} s")
        print(f"  under wbg run   {u:7.2f} s   (+{u - d:.2f} s; {points} points recorded per run)")

        from wbg import db
        from wbg.launch import RunSpec, Supervisor

        path = root / "plain.db"
        conn = db.connect(path)
        for follow in (False, True):
            times = []
            for _ in range(20):
                start = time.perf_counter()
                Supervisor(
                    conn, path, ["true"], RunSpec(project="p"), capture=None,
                    use_pty=False, follow_wandb=follow,
                ).run()  # fmt: skip
                times.append(time.perf_counter() - start)
            label = "with" if follow else "without"
            median_ms = statistics.median(times) * 1000
            print(f"`true` supervised {label} W&B following: {median_ms:.1f} ms")


if __name__ == "__main__":
    main()
