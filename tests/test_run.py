"""`wbg run` with real child processes and real signals, on each engine."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from helpers import (
    PY,
    history,
    only_record,
    raw_count,
    records,
    run_wbg,
    sqlite_only,
    wbg_executable,
)


def test_exit_code_zero_is_finished(db_path):
    proc = run_wbg("run", "-g", "g1", "-j", "train", "--", PY, "-c", "print('hello')")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "hello\n"
    record = only_record(db_path)
    assert record["state"] == "finished"
    assert record["exit_code"] == 0
    assert record["group"] == "g1" and record["job_type"] == "train"
    assert record["command"] == [PY, "-c", "print('hello')"]
    assert record["ended_at"] is not None and record["duration_s"] >= 0


def test_exit_code_three_is_failed_and_passed_through(db_path):
    proc = run_wbg("run", "--", PY, "-c", "import sys; sys.exit(3)")
    assert proc.returncode == 3
    record = only_record(db_path)
    assert (record["state"], record["exit_code"]) == ("failed", 3)


def test_child_killed_by_signal_gives_128_plus_n(db_path):
    proc = run_wbg("run", "--", PY, "-c", "import os, signal; os.kill(os.getpid(), signal.SIGTERM)")
    assert proc.returncode == 128 + signal.SIGTERM
    record = only_record(db_path)
    assert (record["state"], record["exit_code"]) == ("killed", 128 + signal.SIGTERM)


def test_child_sees_the_environment(db_path, tmp_path):
    script = (
        "import json, os; print(json.dumps({k: os.environ.get(k) for k in "
        "['WANDB_RUN_GROUP', 'WANDB_JOB_TYPE', 'WANDB_PROJECT', 'WBG_RUN_ID', 'WBG_DB']}))"
    )
    proc = run_wbg(
        "run", "-g", "exp", "-j", "eval", "-p", "proj", "--no-capture", "--", PY, "-c", script
    )
    assert proc.returncode == 0, proc.stderr
    seen = json.loads(proc.stdout)
    record = only_record(db_path)
    assert seen == {
        "WANDB_RUN_GROUP": "exp",
        "WANDB_JOB_TYPE": "eval",
        "WANDB_PROJECT": "proj",
        "WBG_RUN_ID": record["id"],
        "WBG_DB": str(db_path.resolve()),
    }
    assert record["project"] == "proj"


def test_nested_run_inherits_the_group(db_path):
    inner = " ".join([*wbg_executable(), "run", "-j", "inner", "--", PY, "-c", "pass"])
    proc = run_wbg("run", "-g", "outer-group", "-j", "outer", "--", "sh", "-c", inner)
    assert proc.returncode == 0, proc.stderr
    found = {r["job_type"]: r for r in records(db_path)}
    assert found["outer"]["group"] == found["inner"]["group"] == "outer-group"


def test_flag_beats_environment_variable(db_path):
    proc = run_wbg(
        "run", "-g", "from-flag", "--", PY, "-c", "pass", env={"WANDB_RUN_GROUP": "from-env"}
    )
    assert proc.returncode == 0
    assert only_record(db_path)["group"] == "from-flag"


def test_environment_variable_sets_group_and_job_type(db_path):
    proc = run_wbg(
        "run", "--", PY, "-c", "pass", env={"WANDB_RUN_GROUP": "env-g", "WANDB_JOB_TYPE": "env-j"}
    )
    assert proc.returncode == 0
    record = only_record(db_path)
    assert (record["group"], record["job_type"]) == ("env-g", "env-j")


def test_config_values_are_typed(db_path):
    proc = run_wbg(
        "run",
        "-c", "lr=0.1", "-c", "epochs=3", "-c", "amp=true", "-c", 'name="x"',
        "-c", "layers=[1,2]", "-c", "opt=adam", "-c", "optimizer.beta=0.9",
        "--", PY, "-c", "pass",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert only_record(db_path)["config"] == {
        "lr": 0.1,
        "epochs": 3,
        "amp": True,
        "name": "x",
        "layers": [1, 2],
        "opt": "adam",
        "optimizer": {"beta": 0.9},
    }


def test_config_files_toml_and_json_later_wins_and_flag_wins(db_path, tmp_path):
    (tmp_path / "a.toml").write_text('lr = 0.5\nbatch = 32\n[model]\nname = "mlp"\ndepth = 2\n')
    (tmp_path / "b.json").write_text('{"batch": 64, "model": {"depth": 4}}')
    proc = run_wbg(
        "run", "--config-file", str(tmp_path / "a.toml"), "--config-file", str(tmp_path / "b.json"),
        "-c", "lr=0.01", "--", PY, "-c", "pass",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert only_record(db_path)["config"] == {
        "lr": 0.01,
        "batch": 64,
        "model": {"name": "mlp", "depth": 4},
    }


def test_broken_config_file_is_named_with_its_error(db_path, tmp_path):
    broken = tmp_path / "broken.toml"
    broken.write_text("lr = = 3\n")
    proc = run_wbg("run", "--config-file", str(broken), "--", PY, "-c", "pass")
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1
    assert lines[0].startswith(f"Error: cannot parse config file {broken}: TOML: ")
    assert raw_count(db_path, "runs") == 0


def test_scalar_capture_implicit_steps(db_path):
    script = "for k, v in [('x', 1), ('y', 2), ('y', 3), ('y', 4), ('x', 5), ('y', 6)]: print(f'{k}: {v}')"
    proc = run_wbg("run", "--", PY, "-c", script)
    assert proc.returncode == 0, proc.stderr
    run_id = only_record(db_path)["id"]
    points = sorted(history(db_path, run_id), key=lambda p: p[2])
    assert [(step, key) for step, key, _ in points] == [
        (0, "x"), (0, "y"), (1, "y"), (2, "y"), (2, "x"), (3, "y"),
    ]  # fmt: skip


def test_scalar_capture_explicit_steps_json_and_summary(db_path):
    script = textwrap.dedent(
        """
        print("step: 10")
        print("loss: 0.5")
        print("acc: 0.7 (step 12)")
        print('{"step": 20, "loss": 0.25, "acc": 0.9}')
        print("not a metric line")
        print("\\x1b[32mlr: 0.001\\x1b[0m")
        """
    )
    proc = run_wbg("run", "--", PY, "-c", script)
    assert proc.returncode == 0, proc.stderr
    record = only_record(db_path)
    assert sorted(history(db_path, record["id"])) == [
        (10, "loss", 0.5), (12, "acc", 0.7), (20, "acc", 0.9), (20, "loss", 0.25), (20, "lr", 0.001),
    ]  # fmt: skip
    assert record["summary"] == {"loss": 0.25, "acc": 0.9, "lr": 0.001}


def test_no_capture_and_custom_pattern(db_path):
    proc = run_wbg("run", "--no-capture", "--", PY, "-c", "print('loss: 1')")
    assert proc.returncode == 0
    assert history(db_path, only_record(db_path)["id"]) == []
    proc = run_wbg(
        "run", "--capture-pattern", r"Epoch (?P<step>\d+) (?P<key>\w+)=(?P<value>\S+)",
        "--", PY, "-c", "print('Epoch 4 top1=0.75')",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    newest = records(db_path)[-1]
    assert history(db_path, newest["id"]) == [(4, "top1", 0.75)]


def test_output_tail_is_kept(db_path, cli):
    proc = run_wbg(
        "run", "--", PY, "-c", "import sys; print('out line'); print('err line', file=sys.stderr)"
    )
    assert proc.returncode == 0
    assert proc.stdout == "out line\n" and proc.stderr == "err line\n"
    run_id = only_record(db_path)["id"]
    shown = cli("runs", "show", run_id, "--output")
    assert shown.exit_code == 0
    assert sorted(shown.stdout.splitlines()) == ["err line", "out line"]


def test_output_tail_keeps_the_last_mebibyte(db_path):
    script = "import sys\nfor i in range(40000): sys.stdout.write(f'{i:09d}' + 'x' * 40 + '\\n')"
    proc = run_wbg("run", "--no-capture", "--", PY, "-c", script)
    assert proc.returncode == 0
    assert len(proc.stdout) == 40000 * 50
    from wbg import db, runs

    conn = db.connect(db_path)
    tail, truncated = runs.get_output(conn, only_record(db_path)["id"])
    conn.close()
    assert truncated
    assert len(tail) == 1024 * 1024
    assert tail.endswith(b"000039999" + b"x" * 40 + b"\n")


def test_command_not_found_exits_127_and_is_recorded_failed(db_path):
    proc = run_wbg("run", "-g", "g", "--", "no-such-command-wbg")
    assert proc.returncode == 127
    assert proc.stderr.strip() == "Error: command not found: no-such-command-wbg"
    record = only_record(db_path)
    assert (record["state"], record["exit_code"]) == ("failed", 127)
    assert record["reason"] == "command not found: no-such-command-wbg"


def test_command_not_executable_exits_126(db_path, tmp_path):
    script = tmp_path / "script.sh"
    script.write_text("#!/bin/sh\necho hi\n")
    script.chmod(0o644)
    proc = run_wbg("run", "--", str(script))
    assert proc.returncode == 126
    assert proc.stderr.startswith(f"Error: command not executable: {script}")
    assert only_record(db_path)["state"] == "failed"


def _start_wbg(db_path: Path, script: str, *extra: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [*wbg_executable(), "run", *extra, "--", PY, "-c", script],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        text=True,
        env=os.environ.copy(),
    )


CATCH_SIGINT = textwrap.dedent(
    """
    import signal, sys, time
    def handler(signum, frame):
        print("child got SIGINT", flush=True)
        sys.exit(130)
    signal.signal(signal.SIGINT, handler)
    print("ready", flush=True)
    time.sleep(60)
    """
)


def test_sigint_reaches_the_child_and_the_run_is_killed(db_path):
    proc = _start_wbg(db_path, CATCH_SIGINT)
    assert proc.stdout.readline() == "ready\n"
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 130, err
    assert out == "child got SIGINT\n"
    record = only_record(db_path)
    assert (record["state"], record["exit_code"]) == ("killed", 130)


def test_sigterm_is_forwarded(db_path):
    proc = _start_wbg(db_path, "import time; print('ready', flush=True); time.sleep(60)")
    assert proc.stdout.readline() == "ready\n"
    proc.send_signal(signal.SIGTERM)
    proc.communicate(timeout=30)
    assert proc.returncode == 128 + signal.SIGTERM
    assert only_record(db_path)["state"] == "killed"


def test_wbg_killed_with_sigkill_leaves_a_crashed_run(db_path, cli):
    proc = _start_wbg(db_path, "import os, time; print(os.getpid(), flush=True); time.sleep(60)")
    child_pid = int(proc.stdout.readline())
    try:
        assert records(db_path)[0]["state"] == "running"
        proc.kill()
        proc.wait(timeout=10)
        record = only_record(db_path)
        assert record["state"] == "crashed"
        listed = cli("runs", "list", "--state", "crashed", "--format", "json")
        assert [r["id"] for r in json.loads(listed.stdout)] == [record["id"]]
    finally:
        os.kill(child_pid, signal.SIGKILL)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["-g", "x" * 129], "Error: group is 129 characters long; the limit is 128"),
        (["-j", "j" * 65], "Error: job_type is 65 characters long; the limit is 64"),
        (["-g", "bad\ngroup"], "Error: group must not contain control characters or newlines: 'bad\\ngroup'"),
        (["-g", ""], "Error: group must not be empty"),
        (["-j", ""], "Error: job_type must not be empty"),
        (["-t", "tab\there"], "Error: tag must not contain control characters or newlines: 'tab\\there'"),
        (["-c", "lr"], "Error: malformed config 'lr': expected KEY=VALUE"),
        (["-c", "=3"], "Error: config key must not be empty"),
        (["-c", "lr="], "Error: malformed config 'lr=': the value is empty"),
        (["-c", "a..b=1"], "Error: config key has an empty part between dots: 'a..b'"),
        (["--capture-pattern", "(?P<key>x"], "Error: invalid --capture-pattern '(?P<key>x': missing ), unterminated subpattern at position 0"),
    ],
)  # fmt: skip
def test_bad_input_exits_2_with_one_line_and_writes_nothing(db_path, args, message):
    proc = run_wbg("run", *args, "--", PY, "-c", "print('should not run')")
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.splitlines() == [message]
    assert proc.stdout == ""
    assert raw_count(db_path, "runs") == 0


def test_run_without_command_shows_usage(db_path):
    proc = run_wbg("run")
    assert proc.returncode in (0, 2)
    assert "Usage: wbg run" in proc.stdout + proc.stderr
    assert raw_count(db_path, "runs") == 0


def test_git_commit_and_dirty_flag(db_path, tmp_path):
    repo = tmp_path / "repo"
    repo.mkdir()
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@t", "-C", str(repo)]
    subprocess.run([*git, "init", "-q"], check=True)
    (repo / "f.txt").write_text("1")
    subprocess.run([*git, "add", "f.txt"], check=True)
    subprocess.run([*git, "commit", "-qm", "c"], check=True)
    head = subprocess.run(
        [*git, "rev-parse", "HEAD"], capture_output=True, text=True
    ).stdout.strip()
    assert run_wbg("run", "--", PY, "-c", "pass", cwd=repo).returncode == 0
    (repo / "f.txt").write_text("2")
    assert run_wbg("run", "--", PY, "-c", "pass", cwd=repo).returncode == 0
    first, second = records(db_path)
    assert (first["git_commit"], first["git_dirty"]) == (head, False)
    assert (second["git_commit"], second["git_dirty"]) == (head, True)


def test_outside_git_records_no_commit(db_path, tmp_path):
    assert run_wbg("run", "--", PY, "-c", "pass", cwd=tmp_path).returncode == 0
    record = only_record(db_path)
    assert (record["git_commit"], record["git_dirty"]) == (None, None)


def test_pty_when_stdout_is_a_terminal(db_path):
    import pty

    script = "import sys; print('tty' if sys.stdout.isatty() else 'pipe')"
    pid, fd = pty.fork()
    if pid == 0:  # child: wbg with a terminal as stdout
        os.execvpe(
            wbg_executable()[0], [*wbg_executable(), "run", "--", PY, "-c", script], os.environ
        )
    chunks = []
    while True:
        try:
            data = os.read(fd, 1024)
        except OSError:
            break
        if not data:
            break
        chunks.append(data)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    text = b"".join(chunks).decode()
    assert "tty" in text.splitlines()[-2:] or text.strip().endswith("tty"), text
    assert only_record(db_path)["state"] == "finished"


@sqlite_only("a database file named relative to the settings file")
def test_project_from_settings_file_and_db_relative_to_it(tmp_path, monkeypatch):
    monkeypatch.delenv("WBG_DB")
    project_dir = tmp_path / "proj"
    (project_dir / "sub").mkdir(parents=True)
    (project_dir / "wbg.toml").write_text('db = "data/runs.db"\nproject = "from-settings"\n')
    (project_dir / "data").mkdir()
    proc = run_wbg("run", "--", PY, "-c", "pass", cwd=project_dir / "sub", env={"WBG_DB": ""})
    assert proc.returncode == 0, proc.stderr
    record = only_record(project_dir / "data" / "runs.db")
    assert record["project"] == "from-settings"


def test_sigint_with_child_ignoring_it_keeps_waiting(db_path):
    script = textwrap.dedent(
        """
        import signal, time
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        print("ready", flush=True)
        time.sleep(1.0)
        print("done", flush=True)
        """
    )
    proc = _start_wbg(db_path, script)
    assert proc.stdout.readline() == "ready\n"
    proc.send_signal(signal.SIGINT)
    out, _ = proc.communicate(timeout=30)
    assert out == "done\n"
    # The child finished normally although wbg was interrupted: its exit code stands.
    assert proc.returncode == 0
    assert only_record(db_path)["state"] == "finished"


if sys.platform != "linux":  # pragma: no cover
    pytestmark = pytest.mark.skip(reason="process tests are written for Linux")


@sqlite_only("writes bytes that are not SQLite where the database file goes")
def test_unusable_database_fails_before_the_command_runs(db_path, tmp_path):
    db_path.write_bytes(b"not sqlite at all")
    marker = tmp_path / "ran"
    proc = run_wbg("run", "--", PY, "-c", f"open({str(marker)!r}, 'w')")
    assert proc.returncode == 1
    assert (
        proc.stderr.splitlines()[0] == f"Error: {db_path} is not a wbg database (not a SQLite file)"
    )
    assert not marker.exists()
    assert db_path.read_bytes() == b"not sqlite at all"
