"""Memory and I/O figures of issue 10. Run by hand; prints, asserts nothing.

    python benchmarks/bench_reliability.py [--venv PATH] [--points 1000000]

1. `wbg export --history` and `wbg runs show ID --history -f json` of a run with
   ``--points`` points: peak RSS of the command (target: 1M points in under 100 MB).
2. `wbg group show` of a group whose 20 runs have 10,000 config keys each (target < 1 s).
3. Bytes `wbg run` writes to the database (SQLite's WAL and file) for a child printing
   1 MiB at once and then 4 KiB/s for 60 s (the steady state of a long run, whose kept
   1 MiB tail is full), against the output's own volume.

``--venv`` picks the wbg to measure (default: this Python's), for before/after figures.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def peak_rss_mib(argv: list[str], env: dict[str, str]) -> tuple[float, float]:
    """(seconds, peak RSS in MiB) of one command, its output thrown away."""
    start = time.perf_counter()
    proc = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode:
        raise SystemExit(f"{argv} failed: {proc.stderr.read().decode() if proc.stderr else ''}")
    return time.perf_counter() - start, usage.ru_maxrss / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--venv", type=Path, default=Path(sys.executable).parent.parent)
    parser.add_argument("--points", type=int, default=1_000_000)
    parser.add_argument("--seconds", type=int, default=60)
    parser.add_argument("--parts", default="1,2,3", help="which measurements, e.g. 3")
    args = parser.parse_args()
    venv = args.venv.resolve()
    wbg = str(venv / "bin" / "wbg")
    python = str(venv / "bin" / "python")
    tmp = Path(tempfile.mkdtemp(prefix="wbg-bench-rel-"))
    env = {**os.environ, "WBG_DB": str(tmp / "runs.db")}
    for name in ("WBG_RUN_ID", "WBG_RUN_PID", "WANDB_RUN_GROUP"):
        env.pop(name, None)
    print(f"wbg from {venv}")

    parts = set(args.parts.split(","))
    if "1" in parts:
        history_memory(python, wbg, env, args.points)
    if "2" in parts:
        wide_group(python, wbg, env)
    if "3" in parts:
        output_bytes(python, wbg, env, tmp, args.seconds)


def history_memory(python: str, wbg: str, env: dict[str, str], points: int) -> None:
    code = (
        "import sys, wbg\nrun = wbg.init(group='hist')\n"
        f"for step in range({points} // 2):\n"
        "    run.log({'loss': 1.0 / (step + 1), 'acc': step * 1e-6})\n"
        "run.finish()\nprint(run.id)\n"
    )
    run_id = subprocess.run(
        [python, "-c", code], env=env, capture_output=True, text=True, check=True
    ).stdout.strip()
    for argv in (
        [wbg, "export", "--history", "-g", "hist"],
        [wbg, "export", "--history", "-f", "csv", "-g", "hist"],
        [wbg, "runs", "show", run_id, "--history", "-f", "json"],
        [wbg, "runs", "show", run_id, "--history"],
    ):
        seconds, rss = peak_rss_mib(argv, env)
        shown = " ".join(argv[1:]).replace(run_id, "ID")
        print(f"{shown}: {points:,} points, {seconds:.1f} s, peak RSS {rss:.0f} MiB")


def wide_group(python: str, wbg: str, env: dict[str, str]) -> None:
    code = (
        "import wbg\nfor r in range(20):\n"
        "    cfg = {f'k{i}': (i if i % 2 else r) for i in range(10_000)}\n"
        "    with wbg.init(group='wide', config=cfg) as run:\n"
        "        run.log({'loss': 1.0})\n"
    )
    subprocess.run([python, "-c", code], env=env, check=True)
    samples = [peak_rss_mib([wbg, "group", "show", "wide"], env)[0] for _ in range(3)]
    print(f"group show, 20 runs x 10,000 config keys: {min(samples):.2f} s (best of 3)")


def output_bytes(python: str, wbg: str, env: dict[str, str], tmp: Path, seconds: int) -> None:
    # 1 MiB at once (the kept tail is full), then 4 KiB/s: a long run's steady state
    child = (
        "import sys, time\n"
        "sys.stdout.write(('x' * 1023 + '\\n') * 1024); sys.stdout.flush()\n"
        f"for second in range({seconds}):\n"
        "    for _ in range(4):\n"
        "        sys.stdout.write('x' * 1023 + '\\n')\n"
        "    sys.stdout.flush(); time.sleep(1)\n"
    )
    env_out = {**env, "WBG_DB": str(tmp / "out.db")}
    proc = subprocess.Popen(
        [wbg, "run", "--no-capture", "--", python, "-c", child],
        env=env_out,
        stdout=subprocess.DEVNULL,
    )
    written = 0
    started = time.monotonic()
    samples: list[tuple[float, int]] = []
    while proc.poll() is None:
        try:
            with open(f"/proc/{proc.pid}/io") as io:
                fields = dict(line.split(": ") for line in io.read().splitlines())
            # wchar: bytes given to write(); the output passed through is taken off below
            written = int(fields["wchar"])
            samples.append((time.monotonic() - started, written))
        except (OSError, KeyError):
            pass
        time.sleep(0.2)
    output = (1024 + seconds * 4) * 1024
    written = max(0, written - output)
    # steady state: from 15 s in to 5 s before the end (4 KiB/s of output meanwhile)
    window = [(t, w) for t, w in samples if 15 <= t <= seconds - 5]
    if len(window) >= 2:
        (t0, w0), (t1, w1) = window[0], window[-1]
        rate = (w1 - w0) / (t1 - t0) - 4096  # minus the output passed through
        print(f"  steady state: {rate / 1024:.1f} KiB/s written for 4 KiB/s of output")
    print(
        f"wbg run, 1 MiB then 4 KiB/s for {seconds} s ({output // 1024} KiB): about "
        f"{written // 1024} KiB written by wbg ({written / output:.1f} x the output; "
        "last reading before exit)"
    )


if __name__ == "__main__":
    main()
