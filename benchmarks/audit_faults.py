"""The reliability audit as a script (issue 10): each fault, what was lost, the state
recorded, exit codes. Run by hand against any installed wbg; prints a table, asserts nothing.

    python benchmarks/audit_faults.py [--venv PATH] [--writers 4,8,16,32 --points 200000]

``--venv`` picks the wbg to audit (default: the one of this Python), so one script gives
the "before" and "after" columns. The full-disk and read-only cases mount a small tmpfs
and need root (they say "skipped" otherwise). ``--writers`` adds the concurrency figures:
N processes each logging ``--points`` points through the API into one file at once.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

Row = dict[str, str]
CASES: list[tuple[str, Callable[[Path, Path], Row]]] = []


def case(name: str) -> Callable[[Callable[[Path, Path], Row]], Callable[[Path, Path], Row]]:
    def register(func: Callable[[Path, Path], Row]) -> Callable[[Path, Path], Row]:
        CASES.append((name, func))
        return func

    return register


def run(venv: Path, args: list[str], db: Path, **kwargs) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "WBG_DB": str(db), **kwargs.pop("env", {})}
    for name in ("WBG_RUN_ID", "WBG_RUN_PID", "WANDB_RUN_GROUP"):
        env.pop(name, None)
    return subprocess.run(
        args, capture_output=True, text=True, env=env, timeout=kwargs.pop("timeout", 300), **kwargs
    )


def wbg(venv: Path, *args: str, db: Path, **kwargs) -> subprocess.CompletedProcess[str]:
    return run(venv, [str(venv / "bin" / "wbg"), *args], db, **kwargs)


def py(venv: Path, code: str, db: Path, **kwargs) -> subprocess.CompletedProcess[str]:
    return run(venv, [str(venv / "bin" / "python"), "-c", code], db, **kwargs)


def first_line(text: str) -> str:
    lines = [line for line in text.strip().splitlines() if line.strip()]
    if not lines:
        return ""
    if any(line.startswith("Traceback") for line in lines):
        return "traceback: " + lines[-1][:70]
    return lines[0][:90]


def sql(db: Path, query: str, *params) -> list[tuple]:
    if not db.exists():
        return []
    with contextlib.closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True)) as conn:
        return conn.execute(query, params).fetchall()


def points(db: Path) -> int:
    try:
        return sql(db, "SELECT count(*) FROM history")[0][0]
    except (sqlite3.Error, IndexError):
        return 0


def states(db: Path) -> str:
    try:
        return ",".join(s for (s,) in sql(db, "SELECT state FROM runs ORDER BY num"))
    except sqlite3.Error:
        return "?"


# --- the faults --------------------------------------------------------------------------


@case("log() of an int >= 2**63, then 99 more points")
def huge_int(venv: Path, db: Path) -> Row:
    code = (
        "import wbg\nrun = wbg.init()\nerrors = 0\n"
        "run.log({'flops': 2**64})\n"
        "for s in range(99):\n"
        "    try:\n        run.log({'loss': float(s)})\n"
        "    except Exception:\n        errors += 1\n"
        "run.finish()\nprint(errors)\n"
    )
    result = py(venv, code, db)
    return {
        "lost": f"{100 - points(db)} of 100 points",
        "state": states(db),
        "exit": str(result.returncode),
        "note": first_line(result.stderr) or f"log() raised {result.stdout.strip()} times",
    }


@case("printed 'loss: 1 (step 99999999999999999999)' and 'step: 1e20'")
def huge_step(venv: Path, db: Path) -> Row:
    child = "print('loss: 1 (step 99999999999999999999)'); print('step: 1e20'); print('ok: 1')"
    result = wbg(venv, "run", "--", sys.executable, "-c", child, db=db)
    return {
        "lost": f"{1 - points(db)} of 1 good point",
        "state": states(db),
        "exit": str(result.returncode),
        "note": first_line(result.stderr),
    }


@case("wbg log --step 99999999999999999999")
def log_huge_step(venv: Path, db: Path) -> Row:
    wbg(venv, "run", "--", "true", db=db)
    run_id = sql(db, "SELECT id FROM runs")[0][0]
    result = wbg(venv, "log", "--run", run_id, "--step", "9" * 20, "a=1", db=db)
    return {"lost": "-", "state": states(db), "exit": str(result.returncode),
            "note": first_line(result.stderr)}  # fmt: skip


@case("--where 'lr = 18446744073709551616'")
def where_huge(venv: Path, db: Path) -> Row:
    wbg(venv, "run", "-c", "lr=1", "--", "true", db=db)
    result = wbg(venv, "runs", "list", "--where", "lr = 18446744073709551616", db=db)
    return {"lost": "-", "state": "-", "exit": str(result.returncode),
            "note": first_line(result.stderr) or "no error"}  # fmt: skip


@case("-c v=<5,000 digits>")
def long_config(venv: Path, db: Path) -> Row:
    result = wbg(venv, "run", "-c", "v=" + "7" * 5000, "--", "true", db=db)
    return {"lost": "-", "state": states(db) or "(no run)", "exit": str(result.returncode),
            "note": first_line(result.stderr)}  # fmt: skip


@case("config nested 500 deep")
def deep_config(venv: Path, db: Path) -> Row:
    code = (
        "import wbg\nd = x = {}\nfor _ in range(500):\n    x['a'] = {}\n    x = x['a']\n"
        "wbg.init(config=d).finish()\n"
    )
    result = py(venv, code, db)
    return {"lost": "-", "state": states(db) or "(no run)", "exit": str(result.returncode),
            "note": first_line(result.stderr)}  # fmt: skip


@case("a 10 MB line ending in 'zz: 7'")
def long_line(venv: Path, db: Path) -> Row:
    child = "import sys; sys.stdout.write('x' * 10_000_000 + 'zz: 7\\n')"
    result = wbg(venv, "run", "--", sys.executable, "-c", child, db=db)
    keys = [
        k if len(k) < 20 else f"{k[:6]}...{k[-4:]} ({len(k):,} chars)"
        for (k,) in sql(db, "SELECT key FROM history")
    ]
    return {"lost": "-", "state": states(db), "exit": str(result.returncode),
            "note": f"captured: {keys or 'nothing'}"}  # fmt: skip


def _tmpfs(size: str) -> Path | None:
    if os.geteuid() != 0:
        return None
    folder = Path(tempfile.mkdtemp(prefix="wbg-audit-fs-"))
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(folder)])
    return folder if done.returncode == 0 else None


def _umount(folder: Path) -> None:
    subprocess.run(["umount", str(folder)], check=False)
    folder.rmdir()


@case("disk full for 1.5 s of a 4 s `wbg run` (40 printed metrics)")
def disk_full(venv: Path, _db: Path) -> Row:
    folder = _tmpfs("2M")
    if folder is None:
        return {
            "lost": "skipped (needs root to mount a tmpfs)",
            "state": "",
            "exit": "",
            "note": "",
        }
    try:
        db = folder / "runs.db"
        wbg(venv, "run", "--", "true", db=db)
        child = (
            "import time, pathlib\n"
            f"d = pathlib.Path({str(folder)!r})\n"
            "for s in range(40):\n"
            "    print(f'loss: {s}', flush=True)\n"
            "    if s == 10: (d / 'fill').touch()\n"
            "    if s == 25: (d / 'free').touch()\n"
            "    time.sleep(0.1)\n"
            "raise SystemExit(3)\n"
        )
        filler = subprocess.Popen(
            [
                "sh",
                "-c",
                f"while [ ! -e {folder}/fill ]; do sleep 0.01; done; "
                f"dd if=/dev/zero of={folder}/filler bs=4k 2>/dev/null; "
                f"while [ ! -e {folder}/free ]; do sleep 0.01; done; rm -f {folder}/filler",
            ]
        )
        result = wbg(venv, "run", "--", sys.executable, "-c", child, db=db)
        (folder / "fill").touch()
        (folder / "free").touch()  # also when the run ended early
        filler.wait(timeout=60)
        lines = result.stdout.count("loss:")
        return {
            "lost": f"{40 - points(db) if points(db) else 40} of 40 points; output {lines}/40",
            "state": states(db).split(",")[-1],
            "exit": f"{result.returncode} (child 3)",
            "note": first_line(result.stderr),
        }
    finally:
        _umount(folder)


@case("write lock taken by another process for 75 s during a `wbg run` (1 metric/s)")
def lock_held(venv: Path, db: Path) -> Row:
    if not os.environ.get("AUDIT_SLOW"):
        return {"lost": "skipped (AUDIT_SLOW=1: takes 90 s)", "state": "", "exit": "", "note": ""}
    wbg(venv, "run", "--", "true", db=db)
    child = (
        "import time\nprint('ready', flush=True)\n"
        "for s in range(85):\n    print(f'loss: {s}', flush=True); time.sleep(1)"
    )
    proc = subprocess.Popen(
        [str(venv / "bin" / "wbg"), "run", "--", sys.executable, "-c", child],
        env={**os.environ, "WBG_DB": str(db)}, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True,
    )  # fmt: skip
    assert proc.stdout is not None
    proc.stdout.readline()
    holder = sqlite3.connect(db, isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")
    held_at = time.monotonic()
    lines = 0
    while time.monotonic() - held_at < 75:  # count the lines that arrive meanwhile
        if proc.stdout.readline():
            lines += 1
        else:
            break
    holder.execute("COMMIT")
    holder.close()
    out, err = proc.communicate(timeout=400)
    return {
        "lost": f"{85 - points(db)} of 85 points; {lines} lines shown while the lock was held",
        "state": states(db).split(",")[-1],
        "exit": str(proc.returncode),
        "note": first_line(err) or "no message",
    }


@case("SIGKILL to `wbg run` while its child logs through the API")
def sigkill_wbg(venv: Path, db: Path) -> Row:
    # one line of output only: with wbg gone, printing would kill the child (EPIPE)
    child = (
        "import time, wbg\nrun = wbg.init()\nprint('up', flush=True)\n"
        "for s in range(100):\n    run.log({'loss': float(s)}); time.sleep(0.1)\nrun.finish()\n"
    )
    proc = subprocess.Popen(
        [str(venv / "bin" / "wbg"), "run", "--", str(venv / "bin" / "python"), "-c", child],
        env={**os.environ, "WBG_DB": str(db)}, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
        start_new_session=True,
    )  # fmt: skip
    assert proc.stdout is not None
    proc.stdout.readline()
    time.sleep(1.5)
    proc.kill()
    proc.wait()
    time.sleep(1.5)  # the child is still logging
    listed = wbg(venv, "runs", "list", "-f", "json", db=db)
    try:
        seen = json.loads(listed.stdout)[0]["state"]
    except (ValueError, IndexError, KeyError):
        seen = "?"
    return {"lost": "-", "state": f"read while the child logs: {seen}", "exit": "-",
            "note": f"in the file: {states(db)}"}  # fmt: skip


@case("SIGTERM to `wbg run -- bash -c 'worker & wait'` (no terminal)")
def bash_worker(venv: Path, db: Path) -> Row:
    worker = "import os, time; print(os.getpid(), flush=True); time.sleep(60)"
    proc = subprocess.Popen(
        [str(venv / "bin" / "wbg"), "run", "--", "bash", "-c", f"python3 -c '{worker}' & wait"],
        env={**os.environ, "WBG_DB": str(db)}, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
        start_new_session=True, text=True,
    )  # fmt: skip
    assert proc.stdout is not None
    pid = int(proc.stdout.readline())
    proc.send_signal(signal.SIGTERM)
    proc.wait(timeout=20)
    time.sleep(0.5)
    try:
        os.kill(pid, 0)
        os.kill(pid, signal.SIGKILL)
        note = "worker left running (orphaned)"
    except ProcessLookupError:
        note = "worker got SIGTERM too"
    return {"lost": "-", "state": states(db), "exit": str(proc.returncode), "note": note}


@case("a foreign SQLite file (1 table, journal delete, user_version 7) as --db")
def foreign(venv: Path, db: Path) -> Row:
    with contextlib.closing(sqlite3.connect(db)) as conn:
        conn.execute("CREATE TABLE notes (x)")
        conn.execute("PRAGMA user_version = 7")
        conn.commit()
    result = wbg(venv, "run", "--", "true", db=db)
    tables = [t for (t,) in sql(db, "SELECT name FROM sqlite_master WHERE type='table'")]
    mode = sql(db, "PRAGMA journal_mode")[0][0]
    return {"lost": "-", "state": f"tables {len(tables)}, journal {mode}",
            "exit": str(result.returncode), "note": first_line(result.stderr)}  # fmt: skip


@case("mistyped --db on a read command")
def mistyped(venv: Path, db: Path) -> Row:
    wbg(venv, "run", "--", "true", db=db)
    wrong = db.with_name("run.db")
    result = wbg(venv, "runs", "list", "--db", str(wrong), db=db)
    return {"lost": "-", "state": f"file created: {wrong.exists()}",
            "exit": str(result.returncode), "note": first_line(result.stderr)}  # fmt: skip


@case("read commands on a read-only mount")
def read_only(venv: Path, _db: Path) -> Row:
    folder = _tmpfs("4M")
    if folder is None:
        return {
            "lost": "skipped (needs root to mount a tmpfs)",
            "state": "",
            "exit": "",
            "note": "",
        }
    try:
        db = folder / "runs.db"
        wbg(venv, "run", "-g", "g", "--", "true", db=db)
        subprocess.run(["mount", "-o", "remount,ro", str(folder)], check=True)
        codes = [
            wbg(venv, *args, db=db)
            for args in (["runs", "list"], ["table"], ["group", "show", "g"])
        ]
        failed = next((first_line(c.stderr) for c in codes if c.returncode), "all read")
        exits = ",".join(str(c.returncode) for c in codes)
        return {"lost": "-", "state": "-", "exit": exits, "note": failed}
    finally:
        _umount(folder)


@case("a damaged database (its middle half overwritten)")
def corrupt(venv: Path, db: Path) -> Row:
    for _ in range(3):
        wbg(
            venv,
            "run",
            "--",
            sys.executable,
            "-c",
            "[print(f'x: {i}') for i in range(3000)]",
            db=db,
        )
    with contextlib.closing(sqlite3.connect(db)) as conn:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    with db.open("r+b") as handle:  # the middle half: history pages for sure
        size = db.stat().st_size
        handle.seek(size // 4)
        handle.write(b"\xff" * (size // 2))
    result = wbg(venv, "runs", "show", sql(db, "SELECT id FROM runs")[0][0], "--history", db=db)
    return {"lost": "-", "state": "-", "exit": str(result.returncode),
            "note": first_line(result.stderr) or "no error"}  # fmt: skip


@case("run name with OSC 52 / CSI escapes, shown by runs list")
def escapes(venv: Path, db: Path) -> Row:
    name = "\x1b]52;c;ZWNobyBoaQ==\x07\x1b[2Jevil"
    wbg(venv, "run", "-n", name, "--", "true", db=db)
    result = wbg(venv, "runs", "list", db=db)
    raw = chr(27) in result.stdout
    return {"lost": "-", "state": "-", "exit": str(result.returncode),
            "note": f"raw ESC in output: {raw}"}  # fmt: skip


# --- concurrency -------------------------------------------------------------------------

WRITER = """
import sys, wbg
n = int(sys.argv[1])
run = wbg.init(group="conc", job_type="w")
for step in range(n):
    run.log({"loss": 1.0 / (step + 1)})
run.finish()
"""


def concurrency(venv: Path, writers: int, per_writer: int) -> str:
    with tempfile.TemporaryDirectory() as tmp:
        db = Path(tmp) / "conc.db"
        env = {**os.environ, "WBG_DB": str(db)}
        python = str(venv / "bin" / "python")
        subprocess.run([python, "-c", "import wbg; wbg.init().finish()"], env=env, check=True)
        start = time.perf_counter()
        procs = [
            subprocess.Popen([python, "-c", WRITER, str(per_writer)], env=env)
            for _ in range(writers)
        ]
        codes = [p.wait() for p in procs]
        elapsed = time.perf_counter() - start
        stored = points(db) - 0
        expected = writers * per_writer
        return (
            f"{writers:>3} writers x {per_writer:,} points: {stored:,}/{expected:,} stored "
            f"({expected - stored:,} lost), exits {sorted(set(codes))}, {elapsed:.1f} s, "
            f"{stored / elapsed:,.0f} points/s"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--venv", type=Path, default=Path(sys.executable).parent.parent)
    parser.add_argument("--only", help="run the cases whose name contains this text")
    parser.add_argument("--writers", default="", help="e.g. 4,8,16,32")
    parser.add_argument("--points", type=int, default=200_000)
    args = parser.parse_args()
    venv = args.venv.resolve()
    print(f"wbg from {venv}")
    print("| fault | lost | state recorded | exit | message / note |")
    print("| --- | --- | --- | --- | --- |")
    for name, func in CASES:
        if args.only and args.only not in name:
            continue
        with tempfile.TemporaryDirectory() as tmp:
            try:
                row = func(venv, Path(tmp) / "runs.db")
            except Exception as exc:  # the audit goes on
                row = {"lost": "?", "state": "?", "exit": "?", "note": f"audit error: {exc!r}"}
        cells = [name, row["lost"], row["state"], row["exit"], row["note"]]
        print("| " + " | ".join(c.replace("|", "/").replace("\n", " ") for c in cells) + " |")
    for writers in [int(w) for w in args.writers.split(",") if w]:
        print(concurrency(venv, writers, args.points))


if __name__ == "__main__":
    main()
