"""Speed figures for the recording half (issue 2). Run by hand; prints, asserts nothing.

    python benchmarks/bench_record.py [--repeat 15]

1. `wbg new-group` cold wall-clock median vs `python -c "import typer"` (target <= 1.5x).
2. `wbg run -- true` vs plain `true` (target: at most 150 ms slower).
3. Python API: one process logging 2 metrics per step for 200,000 steps, points/s including
   the final flush (target >= 300,000/s), and peak memory at 50k and 200k steps (bounded by
   the buffer, not by the number of steps).
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

API_SCRIPT = """
import resource, sys, time, wbg
steps = int(sys.argv[1])
run = wbg.init(project="bench", group="bench", job_type="train")
log = run.log
start = time.perf_counter()
for step in range(steps):
    log({"loss": 1.0 / (step + 1), "acc": step * 1e-6})
run.finish()
elapsed = time.perf_counter() - start
rss_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(f"{elapsed} {rss_mib}")
"""


def wall(argv: list[str], env: dict[str, str]) -> float:
    start = time.perf_counter()
    subprocess.run(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
    return time.perf_counter() - start


def median_ms(samples: list[float]) -> float:
    return statistics.median(samples) * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=15)
    parser.add_argument("--steps", type=int, default=200_000)
    args = parser.parse_args()
    wbg = shutil.which("wbg", path=os.path.dirname(sys.executable)) or "wbg"
    tmp = Path(tempfile.mkdtemp(prefix="wbg-bench-"))
    env = {**os.environ, "WBG_DB": str(tmp / "bench.db")}
    env.pop("WANDB_RUN_GROUP", None)
    # Measure what an installed wbg does: with bytecode caches (pip writes them for a
    # regular install; the warm-up below writes them for an editable one).
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    true = shutil.which("true") or "/bin/true"

    # Warm the page cache and the .pyc files once, then alternate the measured commands.
    for argv in (
        [sys.executable, "-c", "import typer"],
        [wbg, "new-group"],
        [wbg, "run", "--", true],
    ):
        wall(argv, env)
    typer_t, group_t, true_t, run_t = [], [], [], []
    for _ in range(args.repeat):
        typer_t.append(wall([sys.executable, "-c", "import typer"], env))
        group_t.append(wall([wbg, "new-group"], env))
        true_t.append(wall([true], env))
        run_t.append(wall([wbg, "run", "--", true], env))

    print(f"python {sys.version.split()[0]}, {os.cpu_count()} cpus, repeat {args.repeat}")
    t, g = median_ms(typer_t), median_ms(group_t)
    print(f"import typer            median {t:7.1f} ms")
    print(f"wbg new-group           median {g:7.1f} ms   ratio {g / t:.2f} (target <= 1.5)")
    tt, rt = median_ms(true_t), median_ms(run_t)
    print(f"true                    median {tt:7.1f} ms")
    print(
        f"wbg run -- true         median {rt:7.1f} ms   overhead {rt - tt:.1f} ms (target <= 150)"
    )

    for steps in (args.steps // 4, args.steps):
        samples = []
        for attempt in range(3):
            proc = subprocess.run(
                [sys.executable, "-c", API_SCRIPT, str(steps)],
                env={**env, "WBG_DB": str(tmp / f"api-{steps}-{attempt}.db")},
                capture_output=True,
                text=True,
                check=True,
            )
            samples.append(tuple(map(float, proc.stdout.split())))
        elapsed = statistics.median(s[0] for s in samples)
        rss = max(s[1] for s in samples)
        points = 2 * steps
        print(
            f"API {steps:>7} steps x 2 {elapsed:6.2f} s   {points / elapsed:>9,.0f} points/s "
            f"(median of 3; target >= 300,000)   peak RSS {rss:.0f} MiB"
        )
    shutil.rmtree(tmp)


if __name__ == "__main__":
    main()
