"""The Python API (`import wbg`) with real processes, on each engine."""

from __future__ import annotations

import math
import subprocess
import sys
import textwrap

import pytest
from helpers import PY, history, no_database, only_record, raw_count, records, run_wbg

import wbg


def run_script(code: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    import os

    return subprocess.run(
        [PY, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, **(env or {})},
    )


def test_init_log_finish_records_everything(db_path):
    run = wbg.init(
        project="p", group="g", job_type="train", name="n", config={"lr": 0.1}, tags=["a", "b"],
        notes="first",
    )  # fmt: skip
    run.config["batch"] = 32
    run.config.update({"opt": {"name": "adam"}})
    for step in range(3):
        run.log({"loss": 1.0 / (step + 1), "acc": 0.5 + step / 10, "phase": "warmup"})
    run.summary["best_acc"] = 0.9
    run.finish()
    record = only_record(db_path)
    assert record["project"] == "p" and record["name"] == "n" and record["notes"] == "first"
    assert (record["group"], record["job_type"], record["tags"]) == ("g", "train", ["a", "b"])
    assert record["config"] == {"lr": 0.1, "batch": 32, "opt": {"name": "adam"}}
    assert record["summary"] == {"loss": 1 / 3, "acc": 0.7, "phase": "warmup", "best_acc": 0.9}
    assert (record["state"], record["exit_code"]) == ("finished", 0)
    assert sorted(history(db_path, run.id)) == [
        (0, "acc", 0.5), (0, "loss", 1.0), (1, "acc", 0.6), (1, "loss", 0.5),
        (2, "acc", 0.7), (2, "loss", 1 / 3),
    ]  # fmt: skip
    assert dict(run.config) == {"lr": 0.1, "batch": 32, "opt": {"name": "adam"}}
    assert len(run.id) == 8


def test_explicit_steps_and_non_finite_values(db_path, capfd):
    # wandb's step rules: step=5 opens row 5, a log without step= joins it and commits it,
    # and a lower step is dropped with a warning.
    with wbg.init(project="p") as run:
        run.log({"x": 1.0}, step=5)
        run.log({"x": float("nan"), "y": float("inf")})
        run.log({"x": 3.0}, step=2)
        run.log({"x": 4.0})
    points = history(db_path, run.id)
    assert points[0][0:2] == (5, "x") and math.isnan(points[0][2])
    assert points[1] == (5, "y", math.inf)
    assert points[2] == (6, "x", 4.0)
    assert len(points) == 3
    summary = only_record(db_path)["summary"]
    assert summary["x"] == 4.0 and summary["y"] == math.inf
    assert "Tried to log to step 2 that is less than the current step 6" in capfd.readouterr().err


def test_arguments_win_over_environment(db_path, monkeypatch):
    monkeypatch.setenv("WANDB_RUN_GROUP", "env-group")
    monkeypatch.setenv("WANDB_JOB_TYPE", "env-job")
    monkeypatch.setenv("WANDB_PROJECT", "env-project")
    monkeypatch.setenv("WANDB_NAME", "env-name")
    monkeypatch.setenv("WANDB_TAGS", "t1, t2")
    monkeypatch.setenv("WANDB_NOTES", "env-notes")
    with wbg.init() as run:
        pass
    with wbg.init(group="arg-group", job_type="arg-job", project="arg-project", name="arg-name",
                  tags=["x"], notes="arg-notes"):  # fmt: skip
        pass
    from_env, from_args = records(db_path)
    assert run.group == "env-group"
    assert (from_env["group"], from_env["job_type"], from_env["project"]) == (
        "env-group", "env-job", "env-project",
    )  # fmt: skip
    assert (from_env["name"], from_env["tags"], from_env["notes"]) == (
        "env-name",
        ["t1", "t2"],
        "env-notes",
    )
    assert (from_args["group"], from_args["job_type"], from_args["project"]) == (
        "arg-group", "arg-job", "arg-project",
    )  # fmt: skip
    assert (from_args["name"], from_args["tags"], from_args["notes"]) == (
        "arg-name",
        ["x"],
        "arg-notes",
    )


def test_db_argument_wins_over_wbg_db(db_path, tmp_path):
    other = tmp_path / "other.db"
    with wbg.init(db=other, project="p"):
        pass
    assert len(records(other)) == 1
    assert not db_path.exists() or records(db_path) == []


def test_invalid_group_raises_and_writes_nothing(db_path):
    from wbg.errors import InvalidName

    with pytest.raises(InvalidName, match="group is 129 characters long"):
        wbg.init(group="g" * 129)
    assert not db_path.exists() or records(db_path) == []


def test_uncaught_exception_marks_failed(db_path):
    proc = run_script(
        """
        import wbg
        run = wbg.init(project="p")
        run.log({"loss": 1.0})
        raise ValueError("boom")
        """
    )
    assert proc.returncode == 1 and "ValueError: boom" in proc.stderr
    record = only_record(db_path)
    assert (record["state"], record["exit_code"]) == ("failed", 1)
    assert history(db_path, record["id"]) == [(0, "loss", 1.0)]


def test_interpreter_exit_flushes_and_finishes(db_path):
    proc = run_script(
        """
        import wbg
        run = wbg.init(project="p")
        for i in range(1000):
            run.log({"loss": float(i)})
        """
    )
    assert proc.returncode == 0, proc.stderr
    record = only_record(db_path)
    assert record["state"] == "finished"
    assert len(history(db_path, record["id"])) == 1000
    assert record["summary"] == {"loss": 999.0}


def test_keyboard_interrupt_in_with_block_marks_killed(db_path):
    proc = run_script(
        """
        import wbg
        with wbg.init(project="p") as run:
            raise KeyboardInterrupt
        """
    )
    assert proc.returncode != 0
    assert only_record(db_path)["state"] == "killed"


def test_finish_with_nonzero_exit_code_is_failed(db_path):
    run = wbg.init(project="p")
    run.finish(exit_code=2)
    assert (only_record(db_path)["state"], only_record(db_path)["exit_code"]) == ("failed", 2)
    with pytest.raises(wbg.UsageError, match="is finished"):
        run.log({"x": 1})


def test_script_under_wbg_run_attaches_and_workers_get_their_own_runs(db_path, tmp_path):
    script = tmp_path / "train.py"
    script.write_text(
        textwrap.dedent(
            """
            import multiprocessing as mp
            import wbg

            def fold(k):
                with wbg.init(job_type="fold", config={"fold": k}) as run:
                    run.log({"fold_acc": 0.5 + k / 10})
                return run.id

            if __name__ == "__main__":
                run = wbg.init(config={"from_script": True})
                run.log({"main_metric": 1.0})
                ctx = mp.get_context("fork")
                with ctx.Pool(2) as pool:
                    ids = pool.map(fold, range(3))
                print("workers", len(set(ids)))
            """
        )
    )
    proc = run_wbg("run", "-g", "kfold", "-j", "main", "-c", "lr=0.1", "--", PY, str(script))
    assert proc.returncode == 0, proc.stderr
    found = records(db_path)
    main = [r for r in found if r["job_type"] == "main"]
    folds = [r for r in found if r["job_type"] == "fold"]
    assert len(main) == 1 and len(folds) == 3
    assert main[0]["config"] == {"lr": 0.1, "from_script": True}
    assert history(db_path, main[0]["id"]) == [(0, "main_metric", 1.0)]
    assert main[0]["state"] == "finished"
    assert {r["group"] for r in found} == {"kfold"}
    assert sorted(r["config"]["fold"] for r in folds) == [0, 1, 2]
    assert all(r["state"] == "finished" for r in folds)


def test_multiprocessing_child_without_finish_is_flushed_and_finished(db_path, tmp_path):
    script = tmp_path / "children.py"
    script.write_text(
        textwrap.dedent(
            """
        import multiprocessing as mp
        import wbg

        def work():
            run = wbg.init(project="p", job_type="child")
            for i in range(50):
                run.log({"x": float(i)})

        if __name__ == "__main__":
            for method in ("fork", "spawn"):
                p = mp.get_context(method).Process(target=work)
                p.start()
                p.join()
            """
        )
    )
    proc = subprocess.run([PY, str(script)], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    found = records(db_path)
    assert len(found) == 2
    for record in found:
        assert record["state"] == "finished"
        assert len(history(db_path, record["id"])) == 50


def test_attached_script_exit_code_comes_from_wbg_run(db_path, tmp_path):
    proc = run_wbg(
        "run", "-g", "g", "--", PY, "-c", "import wbg, sys; wbg.init().log({'x': 1}); sys.exit(4)"
    )
    assert proc.returncode == 4
    record = only_record(db_path)
    assert (record["state"], record["exit_code"]) == ("failed", 4)


def test_eight_processes_logging_at_once(db_path):
    code = textwrap.dedent(
        """
        import sys, wbg
        with wbg.init(project="p", group="concurrent", job_type=f"w{sys.argv[1]}") as run:
            for step in range(5000):
                run.log({"loss": step * 0.5})
        print("ok")
        """
    )
    import os

    procs = [
        subprocess.Popen([PY, "-c", code, str(i)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         text=True, env=os.environ.copy())
        for i in range(8)
    ]  # fmt: skip
    outputs = [p.communicate(timeout=300) for p in procs]
    for proc, (out, err) in zip(procs, outputs, strict=True):
        assert proc.returncode == 0, err
        assert "database is locked" not in err
        assert out == "ok\n"
    found = records(db_path)
    assert len(found) == 8 and all(r["state"] == "finished" for r in found)
    assert raw_count(db_path, "history") == 40_000


@no_database
def test_generate_id():
    ids = {wbg.generate_id() for _ in range(200)}
    assert len(ids) == 200
    assert all(len(i) == 8 and i.isalnum() and i == i.lower() for i in ids)


@no_database
def test_import_wbg_is_cheap():
    proc = subprocess.run(
        [sys.executable, "-c", "import sys, wbg; print(sorted(m for m in ('sqlite3', 'typer', 'tabulate', 'sqlite_utils') if m in sys.modules))"],
        capture_output=True, text=True,
    )  # fmt: skip
    assert proc.stdout.strip() == "[]"


def test_git_facts_are_asked_once_per_process_and_directory(db_path, tmp_path, monkeypatch):
    repo = tmp_path / "repo"
    (repo / "sub").mkdir(parents=True)
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@t", "-C", str(repo)]
    subprocess.run([*git, "init", "-q"], check=True)
    (repo / "f.txt").write_text("1")
    subprocess.run([*git, "add", "f.txt"], check=True)
    subprocess.run([*git, "commit", "-qm", "c"], check=True)
    head = subprocess.run([*git, "rev-parse", "HEAD"], capture_output=True, text=True).stdout
    monkeypatch.chdir(repo / "sub")  # the repository is found from a subdirectory
    script = f"""
        import pathlib, wbg
        wbg.init(project="p").finish()
        pathlib.Path({str(repo / "f.txt")!r}).write_text("2")  # dirty now: not asked again
        wbg.init(project="p").finish()
        """
    done = run_script(script)
    assert done.returncode == 0, done.stderr
    assert [(r["git_commit"], r["git_dirty"]) for r in records(db_path)] == [
        (head.strip(), False),
        (head.strip(), False),
    ]
    from wbg.gitinfo import in_work_tree

    assert in_work_tree(str(repo / "sub")) and not in_work_tree(str(tmp_path))
