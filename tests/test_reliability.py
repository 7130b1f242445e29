"""Reliability: nothing lost, nothing crashes the job (README "Reliability").

The audit's way of working kept as tests: each test is the regression test of one defect
it found (``benchmarks/audit_faults.py`` runs the same faults and prints the table). Real
processes, real files, real signals, a real full filesystem (a small tmpfs, where the test
may mount one), a real PID namespace (``unshare``), a real terminal (a pty).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import pty
import selectors
import shutil
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from helpers import (
    history,
    only_record,
    raw_count,
    raw_query,
    reader,
    records,
    run_wbg,
    sqlite_only,
    wait_for,
    wbg_executable,
    write_lock_held,
)

from wbg import db as dbmod
from wbg import runs
from wbg.writer import Recorder

PY = sys.executable


def api(code: str, db_path: Path, **kwargs) -> subprocess.CompletedProcess[str]:
    """Run a Python script that uses the API, as a real process."""
    return subprocess.run(
        [PY, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "WBG_DB": str(db_path)},
        **kwargs,
    )


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def start_wbg(*args: str, db_path: Path, **kwargs) -> subprocess.Popen[str]:
    """``wbg ARGS`` as a real process in a session of its own (no terminal: as under CI)."""
    return subprocess.Popen(
        [*wbg_executable(), *args],
        env={**os.environ, "WBG_DB": str(db_path)},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
        **kwargs,
    )


_pending: dict[int, bytes] = {}


def read_line(stream, timeout: float = 30.0) -> str:
    """One line, failing (not hanging) when none comes: output must never be held back.

    Reads the descriptor itself (``stream`` must not be read otherwise): Python's buffer
    would hide lines from the selector."""
    fd = stream.fileno()
    buffer = _pending.get(fd, b"")
    selector = selectors.DefaultSelector()
    selector.register(fd, selectors.EVENT_READ)
    while b"\n" not in buffer:
        if not selector.select(timeout):
            raise AssertionError(f"no output line arrived (so far: {buffer[-200:]!r})")
        chunk = os.read(fd, 65536)
        if not chunk:
            break
        buffer += chunk
    selector.close()
    line, sep, rest = buffer.partition(b"\n")
    _pending[fd] = rest
    return (line + sep).decode()


@pytest.fixture
def tmpfs(tmp_path: Path):
    """Mount a small tmpfs and yield a function that mounts one of a given size."""
    mounted: list[Path] = []

    def mount(size: str = "2M") -> Path:
        if os.geteuid() != 0 or not shutil.which("mount"):
            pytest.skip("mounting a tmpfs needs root")
        folder = tmp_path / f"fs{len(mounted)}"
        folder.mkdir()
        done = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(folder)],
            capture_output=True,
            text=True,
        )
        if done.returncode != 0:
            pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
        mounted.append(folder)
        return folder

    yield mount
    for folder in mounted:
        subprocess.run(["umount", str(folder)], check=False)


# --- 1. a value can never ruin a run -----------------------------------------------------


def test_an_int_beyond_64_bits_is_stored_as_a_float_and_nothing_is_lost(db_path):
    done = api(
        """
        import wbg
        run = wbg.init()
        run.log({"flops": 2**64})
        for step in range(99):
            run.log({"loss": float(step)})
        run.finish()
        print("ok")
        """,
        db_path,
    )
    assert (done.returncode, done.stdout, done.stderr) == (0, "ok\n", "")
    record = only_record(db_path)
    assert record["state"] == "finished"
    points = history(db_path, record["id"])
    assert (0, "flops", float(2**64)) in points
    assert len(points) == 100
    assert record["summary"]["flops"] == 2**64


def test_a_point_sqlite_cannot_take_is_left_out_and_never_blocks_the_others(db_path):
    conn = dbmod.connect(db_path)
    run_id, num = runs.create_run(conn, project="p")
    recorder = Recorder(conn, num)
    now = time.time()
    recorder.add([(num, 2**64, "bad", 1.0, now), (num, 1, "ok", 10**400, now)])
    recorder.add([(num, 2, "ok", 2.0, now)])
    assert recorder.flush() is True
    assert recorder.dropped == 1
    recorder.add([(num, 3, "ok", 3.0, now)])  # later points go in as usual
    assert recorder.close() is True
    conn.close()
    assert history(db_path, run_id) == [(1, "ok", float("inf")), (2, "ok", 2.0), (3, "ok", 3.0)]


# --- 2. steps and values checked where they are parsed ----------------------------------


@pytest.mark.parametrize(
    "line",
    [
        "loss: 1 (step 99999999999999999999)",
        "step: 1e20",
        '{"step": 1e300, "loss": 1}',
        "step: -3",
    ],
)
def test_a_captured_line_with_an_impossible_step_is_skipped_with_one_warning(db_path, line):
    text = f"{line}\n{line}\nok: 1\n"
    done = run_wbg("run", "--", PY, "-c", f"import sys; sys.stdout.write({text!r})")
    assert done.returncode == 0, done.stderr
    assert done.stdout == text
    warnings = [w for w in done.stderr.splitlines() if w.startswith("wbg: warning:")]
    assert len(warnings) == 1 and "step out of range" in warnings[0], done.stderr
    assert "Traceback" not in done.stderr
    record = only_record(db_path)
    assert record["state"] == "finished"
    assert history(db_path, record["id"]) == [(0, "ok", 1.0)]


def test_wbg_log_refuses_a_step_beyond_64_bits_and_stores_a_huge_value_as_float(db_path, cli):
    assert run_wbg("run", "--", "true").returncode == 0
    run_id = only_record(db_path)["id"]
    result = cli("log", "--run", run_id, "--step", "9" * 20, "a=1")
    assert result.exit_code == 2
    assert result.stderr.startswith("Error: Invalid value for '--step': 99999999999999999999")
    assert raw_count(db_path, "history") == 0
    assert cli("log", "--run", run_id, "a=" + "9" * 25).exit_code == 0
    assert history(db_path, run_id) == [(0, "a", float("9" * 25))]


def test_where_with_an_integer_beyond_64_bits(db_path, cli):
    assert run_wbg("run", "-c", "lr=18446744073709551616", "--", "true").returncode == 0
    assert run_wbg("run", "-c", "lr=1", "--", "true").returncode == 0
    result = cli("runs", "list", "--where", "lr = 18446744073709551616", "-f", "json")
    assert result.exit_code == 0, result.stderr
    assert [r["config"]["lr"] for r in json.loads(result.stdout)] == [18446744073709551616]
    result = cli("runs", "list", "--where", "lr < 99999999999999999999999", "-f", "json")
    assert len(json.loads(result.stdout)) == 2


def test_a_config_value_of_5000_digits_is_a_clear_error(db_path, cli):
    result = cli("run", "-c", "v=" + "7" * 5000, "--", "true")
    assert result.exit_code == 2
    assert result.stderr.startswith("Error: number too long: 777777777777... (5000 characters)")
    assert raw_count(db_path, "runs") == 0


def test_config_nested_500_deep_is_a_clear_error(db_path, cli):
    result = cli("run", "-c", ".".join(["a"] * 500) + "=1", "--", "true")
    assert result.exit_code == 2
    assert result.stderr.startswith("Error: config nested more than 100 levels deep")
    done = api(
        """
        import wbg
        deep = node = {}
        for _ in range(500):
            node["a"] = node = {}
        try:
            wbg.init(config=deep)
        except wbg.errors.InvalidInput as exc:
            print(type(exc).__name__)
        """,
        db_path,
    )
    assert (done.stdout, done.stderr) == ("InvalidInput\n", "")
    assert raw_count(db_path, "runs") == 0


# --- 3. a failed write never takes the job down -----------------------------------------

CHILD_40_METRICS = """
import pathlib, sys, time
folder = pathlib.Path(sys.argv[1])
for step in range(40):
    print(f"loss: {step}", flush=True)
    if step == 10:
        (folder / "fill").touch()
        while not (folder / "full").exists():
            time.sleep(0.01)
    if step == 25 and sys.argv[2] == "free":
        (folder / "filler").unlink()
    time.sleep(0.05)
sys.exit(3)
"""


def _fill_when_asked(folder: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [
            "sh",
            "-c",
            f"while [ ! -e {folder}/fill ]; do sleep 0.01; done; "
            f"dd if=/dev/zero of={folder}/filler bs=4k 2>/dev/null; touch {folder}/full",
        ]
    )


@sqlite_only("a full disk under the database file (a small tmpfs)")
def test_disk_full_for_a_while_loses_nothing_and_exits_with_the_childs_code(tmpfs):
    folder = tmpfs("2M")
    db_path = folder / "runs.db"
    assert run_wbg("run", "--", "true", env={"WBG_DB": str(db_path)}).returncode == 0
    filler = _fill_when_asked(folder)
    done = run_wbg(
        "run", "--", PY, "-c", CHILD_40_METRICS, str(folder), "free",
        env={"WBG_DB": str(db_path)},
    )  # fmt: skip
    filler.wait(timeout=30)
    assert done.returncode == 3
    assert done.stdout == "".join(f"loss: {step}\n" for step in range(40))
    warnings = [w for w in done.stderr.splitlines() if w.startswith("wbg: warning:")]
    assert len(warnings) == 1 and "database or disk is full" in warnings[0], done.stderr
    record = records(db_path)[-1]
    assert (record["state"], record["exit_code"]) == ("failed", 3)
    assert len(history(db_path, record["id"])) == 40


@sqlite_only("a full disk under the database file (a small tmpfs)")
def test_disk_full_to_the_end_still_passes_output_and_exits_with_the_childs_code(tmpfs):
    folder = tmpfs("2M")
    db_path = folder / "runs.db"
    assert run_wbg("run", "--", "true", env={"WBG_DB": str(db_path)}).returncode == 0
    filler = _fill_when_asked(folder)
    done = run_wbg(
        "run", "--", PY, "-c", CHILD_40_METRICS, str(folder), "keep",
        env={"WBG_DB": str(db_path)},
    )  # fmt: skip
    filler.wait(timeout=30)
    assert done.returncode == 3
    assert done.stdout == "".join(f"loss: {step}\n" for step in range(40))
    assert "Traceback" not in done.stderr
    assert "could not be recorded completely" in done.stderr
    (folder / "filler").unlink()
    # its end was never recorded and no process speaks for it: it reads as crashed
    assert records(db_path)[-1]["state"] == "crashed"


def _database_on_a_full_disk(tmpfs) -> tuple[Path, Path, dict[str, str]]:
    """A database with one run on a 2 MB tmpfs, then filled up: (folder, file, env)."""
    folder = tmpfs("2M")
    db_path = folder / "runs.db"
    env = {"WBG_DB": str(db_path)}
    assert run_wbg("run", "--", "true", env=env).returncode == 0
    subprocess.run(["dd", "if=/dev/zero", f"of={folder}/filler", "bs=4k"], capture_output=True)
    return folder, db_path, env


@sqlite_only("a full disk under the database file (a small tmpfs)")
def test_a_disk_full_at_the_start_runs_the_command_unrecorded(tmpfs):
    folder, db_path, env = _database_on_a_full_disk(tmpfs)
    done = run_wbg("run", "--", PY, "-c", "print('loss: 1'); raise SystemExit(4)", env=env)
    assert (done.returncode, done.stdout) == (4, "loss: 1\n")
    assert done.stderr.startswith("wbg: warning: cannot record this run (")
    assert done.stderr.endswith("); the command runs unrecorded\n")
    assert "Traceback" not in done.stderr
    (folder / "filler").unlink()
    assert len(records(db_path)) == 1


def test_a_write_lock_held_elsewhere_never_holds_back_the_output(db_path):
    assert run_wbg("run", "--", "true").returncode == 0
    child = textwrap.dedent(
        """
        import sys, time
        print("ready", flush=True)
        sys.stdin.readline()
        for step in range(60):
            print(f"loss: {step}", flush=True)
        sys.stdin.readline()
        """
    )
    proc = start_wbg("run", "--", PY, "-c", child, db_path=db_path, stdin=subprocess.PIPE)
    assert proc.stdin is not None and proc.stdout is not None
    assert read_line(proc.stdout) == "ready\n"
    with write_lock_held(db_path):  # every other writer waits now
        proc.stdin.write("go\n")
        proc.stdin.flush()
        lines = [read_line(proc.stdout) for _ in range(60)]  # all of them, lock still held
    assert lines == [f"loss: {step}\n" for step in range(60)]
    proc.stdin.write("end\n")
    proc.stdin.close()
    assert proc.wait(timeout=120) == 0
    record = records(db_path)[-1]
    assert record["state"] == "finished"
    assert len(history(db_path, record["id"])) == 60


# --- 4. run state ------------------------------------------------------------------------


def test_a_live_run_in_another_pid_namespace_is_not_crashed(db_path, cli):
    probe = subprocess.run(["unshare", "--pid", "--fork", "--mount-proc", "true"])
    if probe.returncode != 0:
        pytest.skip("unshare --pid is not permitted here")
    code = "import sys, wbg; run = wbg.init(); print(run.id, flush=True); sys.stdin.readline()"
    proc = subprocess.Popen(
        ["unshare", "--pid", "--fork", "--mount-proc", PY, "-c", code],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "WBG_DB": str(db_path)},
    )
    assert proc.stdin is not None and proc.stdout is not None
    run_id = read_line(proc.stdout).strip()
    try:
        assert records(db_path)[0]["pid"] < 10  # a pid of the namespace, not of this host
        listed = json.loads(cli("runs", "list", "-f", "json").stdout)
        assert [(r["id"], r["state"]) for r in listed] == [(run_id, "running")]
        deleted = cli("runs", "delete", run_id, "--yes")
        assert deleted.exit_code == 2 and "still running" in deleted.stderr
    finally:
        proc.stdin.close()
        proc.wait(timeout=60)
    assert only_record(db_path)["state"] == "finished"


def test_a_stale_heartbeat_reads_as_crashed_on_any_host(db_path, cli):
    conn = dbmod.connect(db_path)
    stale, _ = runs.create_run(conn, project="p")
    fresh, _ = runs.create_run(conn, project="p")
    conn.execute(
        "UPDATE runs SET host = 'elsewhere', pid_ns = 'elsewhere/1', heartbeat_pid = 1, "
        "heartbeat_at = ? WHERE id = ?",
        (time.time() - runs.HEARTBEAT_STALE_S - 5, stale),
    )
    conn.execute(
        "UPDATE runs SET host = 'elsewhere', pid_ns = 'elsewhere/1', heartbeat_pid = 999999999 "
        "WHERE id = ?",
        (fresh,),
    )
    conn.close()
    listed = json.loads(cli("runs", "list", "-f", "json").stdout)
    assert {r["id"]: r["state"] for r in listed} == {stale: "crashed", fresh: "running"}
    refused = cli("runs", "delete", fresh, "--yes")
    assert refused.exit_code == 2 and "still running" in refused.stderr
    assert cli("runs", "delete", fresh, "--yes", "--force").exit_code == 0
    assert cli("runs", "delete", stale, "--yes").exit_code == 0
    assert raw_count(db_path, "runs") == 0


def test_sigkill_to_wbg_run_while_its_child_logs_keeps_the_run_running(db_path, tmp_path, cli):
    stop = tmp_path / "stop"
    child = textwrap.dedent(
        f"""
        import os, time, wbg
        run = wbg.init()
        print(os.getpid(), flush=True)  # then no more output: wbg will be gone
        step = 0
        while not os.path.exists({str(stop)!r}):
            run.log({{"loss": float(step)}})
            step += 1
            time.sleep(0.02)
        run.finish()
        """
    )
    proc = start_wbg("run", "--", PY, "-c", child, db_path=db_path)
    assert proc.stdout is not None
    child_pid = int(read_line(proc.stdout))
    try:
        proc.kill()
        proc.wait(timeout=30)

        def state() -> str:
            return json.loads(cli("runs", "list", "-f", "json").stdout)[0]["state"]

        wait_for(lambda: state() == "running")  # the child's heartbeat speaks for the run
        assert state() == "running"
        refused = cli("runs", "delete", only_record(db_path)["id"], "--yes")
        assert refused.exit_code == 2 and "still running" in refused.stderr
    finally:
        stop.touch()
        with contextlib.suppress(ChildProcessError):
            os.waitpid(child_pid, 0)
    wait_for(lambda: not _alive(child_pid))
    # nobody is left to record the end: crashed, with what was logged kept
    record = only_record(db_path)
    assert record["state"] == "crashed"
    assert len(history(db_path, record["id"])) > 0


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_a_wall_clock_stepped_back_never_gives_a_negative_duration(db_path, cli):
    conn = dbmod.connect(db_path)
    stepped, _ = runs.create_run(conn, project="p", group="g")
    timed, _ = runs.create_run(conn, project="p", group="g")
    # the wall clock read at the start was an hour ahead of the one read at the end
    conn.execute("UPDATE runs SET started_at = started_at + 3600 WHERE id = ?", (stepped,))
    runs.finish_run(conn, stepped, state="finished", exit_code=0)
    conn.execute("UPDATE runs SET started_at = started_at + 3600 WHERE id = ?", (timed,))
    runs.finish_run(conn, timed, state="finished", exit_code=0, duration=2.5)
    conn.close()
    listed = json.loads(cli("runs", "list", "-f", "json").stdout)
    assert {r["id"]: r["duration_s"] for r in listed} == {stepped: 0.0, timed: 2.5}
    table = json.loads(cli("table", "-m", "duration_s", "--agg", "min,max", "-f", "json").stdout)
    assert (table[0]["duration_s.min"], table[0]["duration_s.max"]) == (0.0, 2.5)
    page = json.loads(cli("group", "show", "g", "-f", "json").stdout)
    assert page["compute_s"] == 2.5


# --- 5. signals --------------------------------------------------------------------------


def test_sigterm_reaches_the_workers_of_a_shell_child(db_path, tmp_path):
    got = tmp_path / "worker-got"
    worker = tmp_path / "worker.py"
    worker.write_text(
        textwrap.dedent(
            f"""
            import os, signal, sys, time
            def stop(signum, frame):
                open({str(got)!r}, "w").write(signal.Signals(signum).name)
                sys.exit(0)
            signal.signal(signal.SIGTERM, stop)
            print("up", flush=True)
            time.sleep(60)
            """
        )
    )
    proc = start_wbg("run", "--", "bash", "-c", f"{PY} {worker} & wait", db_path=db_path)
    assert proc.stdout is not None
    assert read_line(proc.stdout) == "up\n"
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=30) == 128 + signal.SIGTERM
    wait_for(got.exists)
    assert got.read_text() == "SIGTERM"
    assert only_record(db_path)["state"] == "killed"


# --- 7. over-long lines ------------------------------------------------------------------


def test_capture_resumes_at_the_next_newline_after_an_over_long_line(db_path):
    child = "import sys; sys.stdout.write('x' * 10_000_000 + 'zz: 7\\nok: 1\\n')"
    done = run_wbg("run", "--", PY, "-c", child)
    assert done.returncode == 0
    assert history(db_path, only_record(db_path)["id"]) == [(0, "ok", 1.0)]


# --- 8. other applications' files are never modified -------------------------------------


def _foreign_file(path: Path, tables: bool = True) -> None:
    with contextlib.closing(sqlite3.connect(path)) as conn:
        if tables:
            conn.execute("CREATE TABLE notes (body TEXT)")
            conn.execute("INSERT INTO notes VALUES ('mine')")
        conn.execute("PRAGMA user_version = 7")
        conn.commit()


@sqlite_only("another application's SQLite file (test_postgres.py: another application's tables)")
@pytest.mark.parametrize("tables", [True, False], ids=["with-tables", "empty-user-version"])
def test_a_foreign_sqlite_file_is_refused_and_left_unchanged(db_path, cli, tables):
    _foreign_file(db_path, tables)
    before = digest(db_path)
    for args in (["run", "--", "true"], ["runs", "list"], ["log", "--run", "x", "a=1"]):
        result = cli(*args)
        assert result.exit_code == 1, args
        assert result.stderr.startswith(f"Error: {db_path} is not a wbg database"), result.stderr
    done = api("import wbg\ntry:\n    wbg.init()\nexcept wbg.errors.NotADatabase:\n    print('no')\n", db_path)  # fmt: skip
    assert done.stdout == "no\n"
    assert digest(db_path) == before
    with contextlib.closing(sqlite3.connect(db_path)) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "delete"
        names = [n for (n,) in conn.execute("SELECT name FROM sqlite_master")]
        assert names == (["notes"] if tables else [])


@sqlite_only(
    "the file's bytes and journal mode stay as they were (test_postgres.py: a newer server schema)"
)
def test_a_newer_wbg_file_is_refused_before_any_change(db_path, cli):
    assert run_wbg("run", "--", "true").returncode == 0
    with contextlib.closing(sqlite3.connect(db_path)) as conn:
        conn.execute(f"PRAGMA user_version = {len(dbmod.MIGRATIONS) + 1}")
        conn.execute("PRAGMA journal_mode = DELETE")
    before = digest(db_path)
    result = cli("run", "--", "true")
    assert result.exit_code == 1 and "written by a newer wbg" in result.stderr
    assert digest(db_path) == before
    with contextlib.closing(sqlite3.connect(db_path)) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "delete"


# --- 9. reading never writes, and damage is found ----------------------------------------


@sqlite_only("a close match among the files of the folder")
def test_a_mistyped_db_is_an_error_with_a_close_match_and_creates_nothing(db_path, cli):
    assert run_wbg("run", "--", "true").returncode == 0
    wrong = db_path.with_name("run.db")
    for args in (["runs", "list", "--db", str(wrong)], ["table", "--db", str(wrong)]):
        result = cli(*args)
        assert result.exit_code == 2
        assert result.stderr == f"Error: no database at {wrong}\ndid you mean {db_path}?\n"
    assert not wrong.exists()
    done = run_wbg("group", "list", env={"WBG_DB": str(wrong)})
    assert done.returncode == 2 and done.stderr.startswith(f"Error: no database at {wrong}")
    assert not wrong.exists()


def test_reading_a_file_with_a_crashed_run_does_not_write_it(db_path, cli, engine):
    proc = start_wbg("run", "--", PY, "-c", "print('up', flush=True); input()", db_path=db_path,
                     stdin=subprocess.PIPE)  # fmt: skip
    assert proc.stdout is not None and read_line(proc.stdout) == "up\n"
    proc.kill()  # wbg gone, its child ends with it (stdin closed)
    proc.wait(timeout=30)
    if engine == "sqlite":
        with contextlib.closing(sqlite3.connect(db_path)) as conn:
            conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    before = raw_query(db_path, "SELECT * FROM runs") if engine == "postgresql" else digest(db_path)
    listed = json.loads(cli("runs", "list", "-f", "json").stdout)
    assert listed[0]["state"] == "crashed"
    assert json.loads(cli("runs", "list", "--state", "crashed", "-f", "json").stdout)
    assert cli("table", "--group-by", "state").stdout.splitlines()[2].startswith("crashed")
    after = raw_query(db_path, "SELECT * FROM runs") if engine == "postgresql" else digest(db_path)
    assert after == before
    assert raw_query(db_path, "SELECT state FROM runs") == [("running",)]


@sqlite_only("a database file on a read-only mount")
def test_read_commands_work_on_a_read_only_mount(tmpfs):
    folder = tmpfs("4M")
    db_path = folder / "runs.db"
    env = {"WBG_DB": str(db_path)}
    assert run_wbg("run", "-g", "g", "--", PY, "-c", "print('loss: 1')", env=env).returncode == 0
    subprocess.run(["mount", "-o", "remount,ro", str(folder)], check=True)
    for args in (
        ["runs", "list"],
        ["table"],
        ["group", "show", "g"],
        ["export", "--history"],
        ["db", "info"],
        ["db", "check"],
    ):
        done = run_wbg(*args, env=env)
        assert done.returncode == 0, (args, done.stderr)
    assert "loss" in run_wbg("table", env=env).stdout
    done = run_wbg("run", "--", "true", env=env)
    assert done.returncode == 1 and done.stderr.startswith("Error: ")


@sqlite_only("damages the file's bytes")
def test_a_damaged_database_gives_a_clear_error_and_db_check_finds_it(db_path, cli):
    for _ in range(3):
        child = "[print(f'x: {i}') for i in range(3000)]"
        assert run_wbg("run", "--", PY, "-c", child).returncode == 0
    run_id = records(db_path)[0]["id"]
    assert cli("db", "check").stdout == f"{db_path}: ok\n"
    with contextlib.closing(sqlite3.connect(db_path)) as conn:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    size = db_path.stat().st_size
    with db_path.open("r+b") as handle:
        handle.seek(size // 4)
        handle.write(b"\xff" * (size // 2))
    done = run_wbg("runs", "show", run_id, "--history")
    assert done.returncode == 1
    assert done.stderr.startswith(f"Error: database {db_path} is damaged (")
    assert "wbg db check" in done.stderr and ".recover" in done.stderr
    assert "Traceback" not in done.stderr
    check = run_wbg("db", "check")
    assert check.returncode == 1
    assert check.stdout.startswith(f"{db_path}: damaged")
    assert "sqlite3 " in check.stderr and ".recover" in check.stderr


# --- 10. untrusted text is printed safely ------------------------------------------------

HOSTILE = "\x1b]52;c;ZWNobyBoaQ==\x07\x1b[2J\x1b]0;title\x07x"


def test_control_characters_are_escaped_in_human_formats_and_kept_in_json(db_path, cli):
    done = run_wbg(
        "run", "-g", "g", "-n", HOSTILE, "--notes", HOSTILE, "-c", f"opt={HOSTILE}",
        "--", PY, "-c", "print('loss: 1')",
    )  # fmt: skip
    assert done.returncode == 0
    run_id = only_record(db_path)["id"]
    assert cli("log", "--run", run_id, "--summary", f"note={HOSTILE}").exit_code == 0
    for args in (
        ["runs", "list"],
        ["runs", "show", run_id],
        ["table", "--no-group"],
        ["table", "-G", "opt"],
        ["group", "show", "g"],
        ["runs", "list", "-f", "github"],
    ):
        result = cli(*args)
        assert result.exit_code == 0, (args, result.stderr)
        assert "\x1b" not in result.stdout and "\x07" not in result.stdout, args
        assert "\\x1b]52;c;ZWNobyBoaQ==\\x07" in result.stdout, args
    record = json.loads(cli("runs", "show", run_id, "-f", "json").stdout)
    assert (record["name"], record["notes"]) == (HOSTILE, HOSTILE)
    assert (record["config"]["opt"], record["summary"]["note"]) == (HOSTILE, HOSTILE)
    exported = cli("export", "-f", "csv").stdout
    assert HOSTILE in exported


def test_kept_output_is_escaped_on_a_terminal_and_unchanged_in_a_pipe(db_path):
    text = f"\x1b[31mred\x1b[0m {HOSTILE}\n"
    assert run_wbg("run", "--", PY, "-c", f"print({text!r}, end='')").returncode == 0
    run_id = only_record(db_path)["id"]
    piped = subprocess.run(
        [*wbg_executable(), "runs", "show", run_id, "--output"], capture_output=True, timeout=60
    )
    assert piped.stdout == text.encode()
    master, slave = pty.openpty()
    proc = subprocess.Popen(
        [*wbg_executable(), "runs", "show", run_id, "--output"],
        stdout=slave,
        stderr=subprocess.PIPE,
    )
    os.close(slave)
    shown = b""
    while True:
        try:
            chunk = os.read(master, 65536)
        except OSError:
            break
        if not chunk:
            break
        shown += chunk
    os.close(master)
    assert proc.wait(timeout=60) == 0
    assert b"\x1b[31mred\x1b[0m" in shown  # colours kept
    assert b"\x1b]" not in shown and b"\x07" not in shown and b"\x1b[2J" not in shown
    assert b"\\x1b]52;c;ZWNobyBoaQ==\\x07" in shown


# --- 11. memory and I/O bounded ----------------------------------------------------------


def test_streamed_history_is_the_same_text_as_before(db_path, cli):
    code = """
        import wbg
        for repeat in range(2):
            with wbg.init(group="g") as run:
                for step in range(10_005):
                    run.log({"loss": 1 / (step + 1), "acc": float("nan") if step == 3 else 0.5})
        """
    assert api(code, db_path).returncode == 0
    ids = [r["id"] for r in records(db_path)]
    from wbg.cli import render

    with contextlib.closing(reader(db_path)) as conn:
        full = runs.list_runs(conn, oldest_first=True)
        for record in full:
            record["history"] = runs.get_history(conn, record["id"])
    assert (
        cli("export", "-f", "json", "--history").stdout
        == render.render_records(full, "json") + "\n"
    )
    assert cli("export", "--history").stdout == render.render_records(full, "jsonl") + "\n"
    rows = cli("export", "-f", "csv", "--history").stdout.splitlines()
    assert len(rows) == 1 + 2 * 2 * 10_005
    shown = json.loads(cli("runs", "show", ids[0], "--history", "-f", "json").stdout)
    assert shown["history"] == json.loads(json.dumps(render._json_safe(full[0]["history"])))
    human = cli("runs", "show", ids[0], "--history").stdout
    assert human.count("\nstep ") == 3  # 20,010 points in pages of 10,000


def test_kept_output_is_appended_while_running_and_survives_a_killed_wbg(db_path, cli):
    child = "import sys\nfor i in range(3): print(f'line {i}', flush=True)\nsys.stdin.readline()"
    proc = start_wbg("run", "--", PY, "-c", child, db_path=db_path, stdin=subprocess.PIPE)
    assert proc.stdout is not None and proc.stdin is not None
    assert [read_line(proc.stdout) for _ in range(3)] == ["line 0\n", "line 1\n", "line 2\n"]
    run_id = only_record(db_path)["id"]

    def kept() -> bytes | None:
        with contextlib.closing(dbmod.connect(db_path)) as conn:
            found = runs.get_output(conn, run_id)
        return None if found is None else found[0]

    wait_for(lambda: kept() == b"line 0\nline 1\nline 2\n", timeout=30)
    proc.kill()  # wbg gone: what was kept stays readable
    proc.wait(timeout=30)
    proc.stdin.close()
    shown = subprocess.run(
        [*wbg_executable(), "runs", "show", run_id, "--output"],
        capture_output=True,
        env={**os.environ, "WBG_DB": str(db_path)},
        timeout=60,
    )
    assert shown.stdout == b"line 0\nline 1\nline 2\n"
    assert raw_count(db_path, "run_output_pages") == 1


# --- 12. smaller ---------------------------------------------------------------------------


def test_new_group_output_survives_an_unquoted_eval(db_path):
    wbg = " ".join(wbg_executable())
    done = subprocess.run(
        ["bash", "-c", f'eval $({wbg} new-group) && printf %s "$WANDB_RUN_GROUP"'],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0 and done.stdout.startswith("experiment-"), done.stderr
    done = subprocess.run(
        ["bash", "-c", f'eval "$({wbg} new-group --prefix "a  *b ")" && printf %s "$WANDB_RUN_GROUP"'],
        capture_output=True,
        text=True,
        timeout=60,
    )  # fmt: skip
    assert done.stdout.startswith("a  *b ") and len(done.stdout) == len("a  *b ") + 8


MAKE_LONG_RUN = """
import sys, wandb
run = wandb.init(project="p", group="g", dir=sys.argv[1])
for step in range(3000):
    run.log({"loss": 1.0 / (step + 1), "acc": step / 3000})
run.finish()
print(run.id)
"""


def test_a_wandb_log_damaged_mid_file_imports_with_a_warning(db_path, tmp_path, cli):
    pytest.importorskip("wandb")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("WANDB_", "WBG_"))}
    for name in ("DIR", "CACHE_DIR", "CONFIG_DIR", "DATA_DIR"):
        (tmp_path / name).mkdir()
        env[f"WANDB_{name}"] = str(tmp_path / name)
    env.update(WANDB_MODE="offline", WANDB_SILENT="true", WANDB_DISABLE_GIT="true")
    made = subprocess.run(
        [PY, "-c", MAKE_LONG_RUN, str(tmp_path)], env=env, capture_output=True, text=True,
        timeout=300,
    )  # fmt: skip
    assert made.returncode == 0, made.stderr
    run_id = made.stdout.split()[-1]
    [log] = list(tmp_path.glob(f"wandb/offline-run-*/run-{run_id}.wandb"))
    assert log.stat().st_size > 4 * 32768
    data = bytearray(log.read_bytes())
    data[32768 + 1000] ^= 0xFF  # one byte inside the second 32 KiB block
    log.write_bytes(bytes(data))
    result = cli("import", "wandb", str(log))
    assert result.exit_code == 0, result.stderr
    warning = next(line for line in result.stderr.splitlines() if line.startswith("warning:"))
    assert "damaged:" in warning and "bytes skipped (from byte" in warning
    imported = json.loads(cli("runs", "show", run_id, "-f", "json", "--history").stdout)
    assert imported["state"] == "finished"
    steps = {p["step"] for p in imported["history"]}
    assert 0 in steps and 2999 in steps and len(steps) < 3000


@sqlite_only("a full disk under the database file (a small tmpfs)")
def test_a_grid_run_says_when_it_cannot_record_and_loses_nothing(tmpfs):
    """As for one `wbg run`: the trial's output flows on, one warning says why its points
    wait, and they are all stored once the disk has room again."""
    folder = tmpfs("2M")
    db_path = folder / "runs.db"
    assert run_wbg("run", "--", "true", env={"WBG_DB": str(db_path)}).returncode == 0
    filler = _fill_when_asked(folder)
    done = run_wbg(
        "run", "--grid", "x=1", "--", PY, "-c",
        CHILD_40_METRICS.replace("{", "{{").replace("}", "}}"), str(folder), "free",
        env={"WBG_DB": str(db_path)},
    )  # fmt: skip
    filler.wait(timeout=30)
    assert done.returncode == 3
    assert "".join(f"loss: {step}\n" for step in range(40)) in done.stdout
    warnings = [w for w in done.stderr.splitlines() if w.startswith("wbg: warning:")]
    assert len(warnings) == 1 and "database or disk is full" in warnings[0], done.stderr
    record = records(db_path)[-1]
    assert (record["state"], record["exit_code"], record["config"]) == ("failed", 3, {"x": 1})
    assert len(history(db_path, record["id"])) == 40


@sqlite_only("a full disk under the database file (a small tmpfs)")
def test_a_grid_at_a_full_disk_runs_its_trials_unrecorded(tmpfs):
    folder, db_path, env = _database_on_a_full_disk(tmpfs)
    done = run_wbg("run", "--grid", "x=1,2", "--", PY, "-c", "print('loss: 1')", env=env)
    assert done.stdout.count("loss: 1\n") == 2
    assert done.stderr.count("the command runs unrecorded") == 2, done.stderr
    assert "Traceback" not in done.stderr
    (folder / "filler").unlink()
    assert len(records(db_path)) == 1
