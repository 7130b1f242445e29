"""Benchmark of ``wbg ui`` (issue 14): a script, not a test.

On the databases of ``bench_views.py`` (N runs, 5 summary metrics, groups of 1,000 runs)
it starts ``wbg ui`` in a real terminal (a tmux pane, 120x40) and reads the screen:

- time to first screen: from starting the process to the first group row on screen, and
  to the status line's run count (the grouped aggregation done), median of 3 starts;
- time for the key ``g`` (grouping off: the first page of runs), median of 3;
- time until the chart panel has loaded (the curves' run selection over all runs);
- peak memory (VmHWM) of the process once table and chart are loaded;
- the cost of one poll when nothing changed (``PRAGMA data_version``), in-process;
- long curves: 10 runs x 100,000 steps in 2 groups, time until the chart is drawn.

Usage: python benchmarks/bench_ui.py [--runs 1000 100000] [--steps 100000] [--keep]
Needs tmux and the ui extra (pip install 'wbg[ui]').
"""

from __future__ import annotations

import argparse
import os
import shlex
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from bench_views import ENV, build, wbg_command  # noqa: E402


class Pane:
    """``wbg ui`` in a tmux pane of a tmux server of its own."""

    def __init__(self, db: Path, socket: Path) -> None:
        self.socket = str(socket)
        command = shlex.join([*wbg_command(), "ui", "--db", str(db)])
        self.started = time.perf_counter()
        subprocess.run(
            ["tmux", "-S", self.socket, "new-session", "-d", "-s", "b", "-x", "120", "-y", "40",
             f"exec {command}"],
            check=True,
            env={**ENV, "TERM": "xterm-256color"},
        )  # fmt: skip

    def screen(self) -> str:
        return subprocess.run(
            ["tmux", "-S", self.socket, "capture-pane", "-p", "-t", "b"],
            capture_output=True,
            text=True,
        ).stdout

    def wait(self, *texts: str, timeout: float = 120.0) -> float:
        """Seconds from the start until one of ``texts`` is on screen."""
        deadline = time.perf_counter() + timeout
        while time.perf_counter() < deadline:
            screen = self.screen()
            if any(text in screen for text in texts):
                return time.perf_counter() - self.started
            time.sleep(0.01)
        raise RuntimeError(f"{texts!r} never appeared:\n{self.screen()}")

    def keys(self, *names: str) -> None:
        self.started = time.perf_counter()
        subprocess.run(["tmux", "-S", self.socket, "send-keys", "-t", "b", *names], check=True)

    def peak_rss_mib(self) -> float:
        pid = subprocess.run(
            ["tmux", "-S", self.socket, "display", "-p", "-t", "b", "#{pane_pid}"],
            capture_output=True,
            text=True,
        ).stdout.strip()
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
        return float("nan")

    def close(self) -> None:
        subprocess.run(["tmux", "-S", self.socket, "kill-server"], capture_output=True)


def poll_cost(db: Path, repeat: int = 20000) -> tuple[float, float]:
    """Seconds per poll with nothing changed, and per look for crashed runs."""
    from wbg import runs, workspace

    conn = sqlite3.connect(db)
    workspace.data_version(conn)
    start = time.perf_counter()
    for _ in range(repeat):
        workspace.data_version(conn)
    poll = (time.perf_counter() - start) / repeat
    start = time.perf_counter()
    for _ in range(repeat // 10):
        runs.reap_crashed(conn)
    reap = (time.perf_counter() - start) / (repeat // 10)
    conn.close()
    return poll, reap


def measure(db: Path, runs: int, tmp: Path) -> None:
    first_row, counted, charted, ungrouped, peak = [], [], [], [], []
    for attempt in range(3):
        pane = Pane(db, tmp / f"tmux-{runs}-{attempt}.sock")
        try:
            first_row.append(pane.wait("▸ group-000"))
            counted.append(pane.wait(f"{runs:,} runs · groups"))
            # the bench database has summaries only: the chart says so when its load is done
            charted.append(pane.wait("loss: metric 'loss' has no history", "loss (mean"))
            peak.append(pane.peak_rss_mib())
            pane.keys("g")
            ungrouped.append(pane.wait(f"run-{runs} (r{runs:07d})"))
            pane.keys("q")
        finally:
            pane.close()
    print(f"{runs:,} runs")
    print(f"  first group row on screen         {statistics.median(first_row) * 1000:8.0f} ms")
    print(f"  status with the run count         {statistics.median(counted) * 1000:8.0f} ms")
    print(f"  chart panel loaded (all runs)     {statistics.median(charted) * 1000:8.0f} ms")
    print(f"  g (grouping off, first page)      {statistics.median(ungrouped) * 1000:8.0f} ms")
    print(f"  peak RSS, table and chart loaded  {max(peak):8.1f} MiB")
    poll, reap = poll_cost(db)
    print(f"  poll with nothing changed         {poll * 1e6:8.1f} µs (twice a second)")
    print(f"  look for crashed runs             {reap * 1e6:8.1f} µs (every 5 s)")


def build_long(path: Path, steps: int, n_runs: int = 10) -> None:
    """``n_runs`` runs in 2 groups, each logging ``loss`` at every one of ``steps`` steps."""
    import contextlib
    import math
    import random

    from wbg import runs
    from wbg.db import connect

    rng = random.Random(0)
    with contextlib.closing(connect(path)) as conn:
        for index in range(n_runs):
            with runs.transaction(conn):
                run_id, num = runs.create_run(
                    conn, project="bench", group=f"long-{index % 2}", job_type="train", config={}
                )
                runs.write_history(
                    conn,
                    [
                        (num, step, "loss", math.exp(-step / steps) + rng.random() * 0.1, step)
                        for step in range(steps)
                    ],
                )
                runs.merge_summary(conn, num, {"loss": 0.5})
                runs.finish_run(conn, run_id, state="finished", exit_code=0)


def measure_long(db: Path, steps: int, tmp: Path) -> None:
    drawn, peak = [], []
    for attempt in range(3):
        pane = Pane(db, tmp / f"tmux-long-{attempt}.sock")
        try:
            drawn.append(pane.wait("loss (mean per group, band: min-max)"))
            peak.append(pane.peak_rss_mib())
            pane.keys("q")
        finally:
            pane.close()
    print(f"10 runs x {steps:,} steps (2 groups)")
    print(f"  chart drawn                       {statistics.median(drawn) * 1000:8.0f} ms")
    print(f"  peak RSS                          {max(peak):8.1f} MiB")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, nargs="+", default=[1000, 100_000])
    parser.add_argument("--steps", type=int, default=100_000, help="0: skip the long curves")
    parser.add_argument("--keep", action="store_true", help="keep the temporary databases")
    args = parser.parse_args()
    if shutil.which("tmux") is None:
        sys.exit("bench_ui needs tmux")
    tmp = Path(tempfile.mkdtemp(prefix="wbg-bench-ui-"))
    try:
        for runs in args.runs:
            db = tmp / f"ui-{runs}.db"
            start = time.perf_counter()
            build(db, runs)
            print(f"built {db} ({runs} runs) in {time.perf_counter() - start:.1f} s")
            measure(db, runs, tmp)
        if args.steps:
            db = tmp / "ui-long.db"
            start = time.perf_counter()
            build_long(db, args.steps)
            print(
                f"built {db} (10 runs x {args.steps} steps) in {time.perf_counter() - start:.1f} s"
            )
            measure_long(db, args.steps, tmp)
        print(f"load average                        {os.getloadavg()[0]:8.2f}")
    finally:
        if not args.keep:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
