"""The real `wandb` package under `wbg run`: the W&B runs a command writes (offline, no
network) end up in its wbg run, as `wbg import wandb` would read them, and nowhere else."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from helpers import history, invoke, records, wbg_executable

pytest.importorskip("wandb", reason="the `wandb` package is not installed (the test extra)")

PY = sys.executable


def run_wbg(*args: str, env: dict[str, str], timeout: float = 300) -> subprocess.CompletedProcess:
    """`wbg ARGS` as a real process with exactly ``env``: none of this process's own W&B
    variables leak in (an in-process `wandb` leaves WANDB_SERVICE behind, and a child
    that finds it hands its run to that service instead of starting its own)."""
    return subprocess.run(
        [*wbg_executable(), *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
    )


def wandb_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    """Offline W&B whose own settings and caches stay inside the test's folder."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("WANDB_")}
    for name in ("CACHE_DIR", "CONFIG_DIR", "DATA_DIR"):
        path = tmp_path / f"wandb-{name.lower()}"
        path.mkdir(exist_ok=True)
        env[f"WANDB_{name}"] = str(path)
    env.update({"WANDB_MODE": "offline", "WANDB_DISABLE_GIT": "true", **extra})
    return env


def script(tmp_path: Path, name: str, text: str) -> str:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return str(path)


def show(run_id: str, db: Path | None = None) -> dict:
    args = ["runs", "show", run_id, "--format", "json", "--history"]
    result = invoke(*args, *(["--db", str(db)] if db else []))
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def points(record: dict) -> list[tuple[int, str, float]]:
    return sorted((p["step"], p["key"], p["value"]) for p in record["history"])


def imported(tmp_path: Path, folder: Path) -> dict:
    """The W&B run in ``folder`` as `wbg import wandb` records it (in a separate file)."""
    other = tmp_path / "imported.db"
    result = invoke("import", "wandb", str(folder), "--db", str(other))
    assert result.exit_code == 0, result.output
    (run_id,) = [
        r["id"] for r in json.loads(invoke("runs", "list", "-f", "json", "--db", str(other)).stdout)
    ]
    return show(run_id, other)


def run_folders(root: Path) -> list[Path]:
    return sorted(p for p in (root / "wandb").glob("*run-*") if p.is_dir())


PLAIN = """
import wandb
run = wandb.init(config={"lr": 0.1, "optimizer": {"name": "adam"}, "layers": [4, 2]},
                 tags=["baseline"])
for step in range(30):
    print(f"loss: {2.0 / (step + 1)}")          # printed AND logged: W&B's value is kept
    run.log({"loss": 1.0 / (step + 1), "acc": step / 30, "grad": {"norm": step * 2}})
    print(f"printed_only: {step}")                # printed only: captured as always
run.config.update({"late": "yes"})
run.summary["best_acc"] = 0.97
run.finish()
"""


def test_plain_wandb_script_fills_its_run(tmp_path, db_path):
    path = script(tmp_path, "plain.py", PLAIN)
    done = run_wbg(
        "run", "-g", "G", "-j", "J", "-t", "mine", "--", PY, path, env=wandb_env(tmp_path)
    )
    assert done.returncode == 0, done.stderr
    (record,) = records(db_path)  # one record for the process, not two
    assert (record["group"], record["job_type"], record["state"]) == ("G", "J", "finished")
    run = show(record["id"])
    (folder,) = run_folders(Path.cwd())
    wandb_run = imported(tmp_path, folder)
    # what W&B recorded, as `wbg import wandb` reads it
    assert run["config"] == wandb_run["config"]
    assert run["config"] == {
        "lr": 0.1,
        "optimizer": {"name": "adam"},
        "layers": [4, 2],
        "late": "yes",
    }
    assert wandb_run["tags"] == ["baseline"] and run["tags"] == ["mine", "baseline"]
    printed = [(s, "printed_only", float(s)) for s in range(30)]
    assert sorted(points(run)) == sorted(points(wandb_run) + printed)
    assert (1, "loss", 0.5) in points(run) and (29, "grad.norm", 58) in points(run)
    assert {k: v for k, v in run["summary"].items() if k != "printed_only"} == wandb_run["summary"]
    assert run["summary"]["best_acc"] == 0.97 and run["summary"]["loss"] == 1 / 30


SEVERAL = """
import sys, wandb
for fold in range(3):
    run = wandb.init(config={"fold": fold}, job_type="fold" if fold else None, reinit="create_new")
    for step in range(fold + 2):
        run.log({"score": fold * 10 + step})
    run.finish(exit_code=0 if fold < 2 else 3)
"""


def test_several_wandb_runs_of_one_process(tmp_path, db_path):
    path = script(tmp_path, "folds.py", SEVERAL)
    done = run_wbg("run", "-g", "G", "-j", "J", "--", PY, path, env=wandb_env(tmp_path))
    assert done.returncode == 0, done.stderr
    found = records(db_path)
    assert len(found) == 3
    assert all(r["group"] == "G" for r in found)
    first = found[0]
    assert first["job_type"] == "J" and first["config"] == {"fold": 0}  # the command's run
    assert first["command"][-1] == path
    folders = {f.name.rsplit("-", 1)[1]: f for f in run_folders(Path.cwd())}
    for fold, record in enumerate(found):
        assert record["config"] == {"fold": fold}
        assert history(db_path, record["id"]) == [
            (s, "score", fold * 10 + s) for s in range(fold + 2)
        ]
        if fold:  # runs of their own, under W&B's ids, with W&B's job_type and outcome
            assert record["id"] in folders
            assert record["job_type"] == "fold"
    assert [r["state"] for r in found] == ["finished", "finished", "failed"]
    assert found[2]["exit_code"] == 3


def test_wandb_dir_and_a_child_that_does_not_exec(tmp_path, db_path):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    path = script(tmp_path, "one.py", "import wandb\nwandb.init(config={'a': 1}).log({'x': 5})\n")
    env = wandb_env(tmp_path, WANDB_DIR=str(elsewhere))
    done = run_wbg("run", "-g", "G", "--", "sh", "-c", f"{PY} {path}; true", env=env)
    assert done.returncode == 0, done.stderr
    (record,) = records(db_path)
    assert record["config"] == {"a": 1} and history(db_path, record["id"]) == [(0, "x", 5.0)]
    assert run_folders(Path.cwd()) == [] and len(run_folders(elsewhere)) == 1


def test_runs_already_there_or_of_other_commands_are_not_taken(tmp_path, db_path):
    path = script(
        tmp_path,
        "param.py",
        """
        import sys, wandb
        run = wandb.init(config={"i": int(sys.argv[1])})
        for step in range(20):
            run.log({"v": int(sys.argv[1]) * 100 + step})
        run.finish()
        """,
    )
    env = wandb_env(tmp_path)
    before = run_wbg("run", "-g", "old", "--", PY, path, "7", env=env)  # leaves a run folder
    assert before.returncode == 0, before.stderr
    quiet = run_wbg("run", "-g", "quiet", "--", PY, "-c", "print('no wandb here')", env=env)
    assert quiet.returncode == 0, quiet.stderr
    batch = run_wbg(
        "run", "-g", "G", "--grid", "i=0..3", "--parallel", "4", "--", PY, path, "{i}", env=env
    )
    assert batch.returncode == 0, batch.stderr
    by_group: dict[str, list[dict]] = {}
    for record in records(db_path):
        by_group.setdefault(record["group"], []).append(record)
    assert len(by_group["old"]) == 1 and by_group["old"][0]["config"] == {"i": 7}
    assert (
        by_group["quiet"][0]["config"] == {} and history(db_path, by_group["quiet"][0]["id"]) == []
    )
    assert len(by_group["G"]) == 4  # four children in one folder at once: each took its own
    for record in by_group["G"]:
        i = record["config"]["i"]
        assert history(db_path, record["id"]) == [(s, "v", i * 100 + s) for s in range(20)]
    assert len(run_folders(Path.cwd())) == 5


def test_disabled_mode_records_only_the_command(tmp_path, db_path):
    path = script(
        tmp_path,
        "off.py",
        "import wandb\nr = wandb.init(config={'a': 1})\nr.log({'x': 1})\nprint('x: 2')\n",
    )
    done = run_wbg("run", "--", PY, path, env=wandb_env(tmp_path, WANDB_MODE="disabled"))
    assert done.returncode == 0, done.stderr
    (record,) = records(db_path)
    assert record["config"] == {} and history(db_path, record["id"]) == [(0, "x", 2.0)]
    assert not (Path.cwd() / "wandb").exists()


LIVE = """
import os, sys, time, wandb
from wbg import db, runs
run = wandb.init(config={"live": True}, dir=sys.argv[1])
for step in range(3000):        # well over two 32 KiB blocks of records
    run.log({"loss": 1.0 / (step + 1), "acc": step / 3000})
# wbg reads the log while this process still runs: wait until the points are recorded
deadline = time.time() + 60
while time.time() < deadline:
    conn = db.connect(os.environ["WBG_DB"], read_only=True)  # a new moment each time
    n = runs.history_count(conn, os.environ["WBG_RUN_ID"])
    conn.close()
    if n:
        break
    time.sleep(0.1)
print(f"seen_while_running: {n}", flush=True)
run.finish()
"""


def test_points_arrive_while_the_command_runs(tmp_path, db_path):
    elsewhere = tmp_path / "given-dir"  # dir= passed to wandb.init: found through the tree
    elsewhere.mkdir()
    path = script(tmp_path, "live.py", LIVE)
    done = run_wbg("run", "--", PY, path, str(elsewhere), env=wandb_env(tmp_path))
    assert done.returncode == 0, done.stderr
    (record,) = records(db_path)
    points_ = history(db_path, record["id"])
    (seen,) = [v for _, k, v in points_ if k == "seen_while_running"]
    # the script waited (up to 60 s) for its points to be recorded before it finished
    assert seen > 0
    assert [(s, v) for s, k, v in points_ if k == "loss"] == [
        (s, 1.0 / (s + 1)) for s in range(3000)
    ]
    assert record["config"] == {"live": True}


def test_without_wandb_in_wbgs_environment_a_note_and_the_capture(tmp_path, db_path):
    # wbg's own interpreter cannot import wandb (a stand-in package that refuses); the
    # command's can: the run keeps its captured points and wbg says why W&B's are missing
    fake = tmp_path / "fake"
    (fake / "wandb").mkdir(parents=True)
    (fake / "wandb" / "__init__.py").write_text("raise ImportError('not here')\n")
    path = script(tmp_path, "plain.py", PLAIN)
    env = wandb_env(tmp_path, PYTHONPATH=str(fake))
    done = run_wbg("run", "--", "env", "-u", "PYTHONPATH", PY, path, env=env)
    assert done.returncode == 0, done.stderr
    assert done.stderr.count("wbg: note: W&B run not fully recorded: ") == 1
    assert "needs the `wandb` package" in done.stderr and "pip install 'wbg[wandb]'" in done.stderr
    (record,) = records(db_path)
    assert record["config"] == {}
    assert [(s, v) for s, k, v in history(db_path, record["id"]) if k == "loss"] == [
        (s, 2.0 / (s + 1)) for s in range(30)
    ]


def test_a_resumed_wandb_run_continues_the_same_run(tmp_path, db_path):
    path = script(
        tmp_path,
        "resume.py",
        """
        import wandb
        run = wandb.init(id="resume01", config={"a": 1})
        for i in range(3):
            run.log({"x": i})
        run.finish()
        run = wandb.init(id="resume01", resume="allow", config={"b": 2})
        for i in range(3, 6):
            run.log({"x": i}, step=i)
        run.finish()
        """,
    )
    done = run_wbg("run", "-g", "G", "--", PY, path, env=wandb_env(tmp_path))
    assert done.returncode == 0, done.stderr
    assert len(run_folders(Path.cwd())) == 2  # W&B wrote the resumed run to a new folder
    (record,) = records(db_path)
    assert record["config"] == {"a": 1, "b": 2}
    assert history(db_path, record["id"]) == [(s, "x", float(s)) for s in range(6)]


def test_a_refused_wandb_write_is_left_out_and_the_flush_goes_on(db_path, tmp_path, monkeypatch):
    """The follower's writes share the writer's transaction: one the database refuses is
    undone alone (a savepoint), and the writes after it are stored. On PostgreSQL a failed
    statement used to abort the whole transaction, and with it every later write."""
    import contextlib

    from wbg import db as wbg_db
    from wbg import runs
    from wbg.wandb_follow import WandbFollower
    from wbg.writer import Recorder

    monkeypatch.chdir(tmp_path)
    with contextlib.closing(wbg_db.connect(db_path)) as conn:
        run_id, num = runs.create_run(conn, project="p")
        recorder = Recorder(conn, num, background_only=True)
        follower = WandbFollower(run_id, num, recorder, {}, os.getpid(), 0.0)
        follower._queue(lambda c: runs.set_config_keys(c, run_id, {"before": 1}))
        follower._queue(lambda c: c.execute("INSERT INTO runs (id) VALUES (NULL)"))  # refused
        follower._queue(lambda c: runs.set_config_keys(c, run_id, {"after": 2}))
        with wbg_db.transaction(conn):
            follower._write(conn)
        recorder.close()
        assert runs.get_run(conn, run_id)["config"] == {"before": 1, "after": 2}
    assert len(follower.problems) == 1 and "was not stored" in follower.problems[0]
