"""`wbg import wandb` / `wbg export wandb` with runs the real `wandb` package writes in
offline mode (no network), and the error without the extra."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from helpers import both_engines, invoke, wbg_executable

try:
    import wandb  # noqa: F401

    HAVE_WANDB = True
except ImportError:
    HAVE_WANDB = False

needs_wandb = pytest.mark.skipif(
    not HAVE_WANDB,
    reason="the `wandb` package is not installed (pip install -e '.[wandb]' runs these)",
)

MAKE_RUNS = """
import json, sys, wandb

root = sys.argv[1]
ids = {}

run = wandb.init(
    project="vision", group="exp-1", job_type="train", name="train-lr0.01",
    tags=["baseline", "v1"], notes="first try", dir=root,
    config={"lr": 0.01, "optimizer": {"name": "adam", "betas": [0.9, 0.999]}, "epochs": 25},
)
for step in range(25):
    run.log({"loss": 1.0 / (step + 1), "acc": step / 25})
run.config.update({"late": True})
run.summary["best_acc"] = 0.97
run.finish()
ids["train"] = run.id

run = wandb.init(project="vision", group="exp-1", job_type="eval", dir=root,
                 config={"lr": 0.01})
for step in range(21):
    run.log({"val_loss": 0.5 - step / 100, "val_acc": step / 21, "grad": {"norm": step}},
            step=step * 10)
run.finish(exit_code=2)
ids["eval"] = run.id

print(json.dumps(ids))
"""

# Logs until at least two 32 KiB blocks are on disk (wandb's writer flushes whole
# blocks), then kills itself: the log ends cut off, like any run killed mid-way.
MAKE_KILLED = """
import glob, os, signal, sys, time, wandb

root = sys.argv[1]
run = wandb.init(project="vision", group="exp-1", job_type="train", name="killed",
                 config={"lr": 0.1, "optimizer": {"name": "sgd"}}, dir=root)
print(run.id, flush=True)
deadline = time.time() + 60
step = 0
while time.time() < deadline:
    run.log({"loss": 1.0 / (step + 1), "acc": step / 10000})
    step += 1
    if step % 50 == 0:
        logs = glob.glob(os.path.join(root, "wandb", "*", f"run-{run.id}.wandb"))
        if logs and os.path.getsize(logs[0]) >= 2 * 32768:
            break
    time.sleep(0.001)
os.kill(os.getpid(), signal.SIGKILL)
"""


def wandb_env(root: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("WANDB_", "WBG_"))}
    for name in ("DIR", "CACHE_DIR", "CONFIG_DIR", "DATA_DIR"):
        path = root / f"wandb-{name.lower()}"
        path.mkdir(parents=True, exist_ok=True)
        env[f"WANDB_{name}"] = str(path)
    env.update(WANDB_MODE="offline", WANDB_SILENT="true", WANDB_DISABLE_GIT="true")
    return env


@pytest.fixture(scope="module")
def wandb_runs(tmp_path_factory) -> dict[str, object]:
    """Runs written by wandb itself: a finished train run, a failed eval run, a killed one."""
    if not HAVE_WANDB:
        pytest.skip("the `wandb` package is not installed")
    root = tmp_path_factory.mktemp("wandb-runs")
    env = wandb_env(root)
    made = subprocess.run(
        [sys.executable, "-c", MAKE_RUNS, str(root)],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert made.returncode == 0, made.stderr
    ids = json.loads(made.stdout.strip().splitlines()[-1])
    killed = subprocess.run(
        [sys.executable, "-c", MAKE_KILLED, str(root)],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert killed.returncode == -9, killed.stderr
    ids["killed"] = killed.stdout.split()[0]
    return {"root": root, "wandb_dir": root / "wandb", "ids": ids}


def show(run_id: str, db: Path | None = None) -> dict:
    args = ["runs", "show", run_id, "--format", "json", "--history"]
    result = invoke(*args, *(["--db", str(db)] if db else []))
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout, parse_constant=str)  # NaN as "NaN": comparable


def count(db_path: Path, table: str) -> int:
    from helpers import raw_count

    return raw_count(db_path, table)


@both_engines
@needs_wandb
def test_import_brings_every_field(cli, wandb_runs, db_path):
    ids = wandb_runs["ids"]
    result = cli("import", "wandb", str(wandb_runs["wandb_dir"]))
    assert result.exit_code == 0, result.output
    assert result.stderr.strip().splitlines()[-1] == "3 imported, 0 already present"
    lines = sorted(result.stdout.strip().splitlines())
    assert f"imported  {ids['train']}  vision/exp-1  train  finished  25 steps" in lines
    assert f"imported  {ids['eval']}  vision/exp-1  eval  failed  21 steps" in lines

    train = show(ids["train"])
    assert train["project"] == "vision"
    assert train["group"] == "exp-1"
    assert train["job_type"] == "train"
    assert train["name"] == "train-lr0.01"
    assert train["tags"] == ["baseline", "v1"]
    assert train["notes"] == "first try"
    assert train["state"] == "finished"
    assert train["exit_code"] == 0
    assert train["config"] == {
        "lr": 0.01,
        "optimizer": {"name": "adam", "betas": [0.9, 0.999]},
        "epochs": 25,
        "late": True,
    }
    assert train["summary"] == {"loss": 1 / 25, "acc": 24 / 25, "best_acc": 0.97}
    assert train["started_at"] is not None and train["duration_s"] >= 0
    assert train["history_points"] == 50
    points = {(p["step"], p["key"]): p["value"] for p in train["history"]}
    assert points == {
        **{(s, "loss"): 1.0 / (s + 1) for s in range(25)},
        **{(s, "acc"): s / 25 for s in range(25)},
    }

    evaluation = show(ids["eval"])
    assert evaluation["state"] == "failed" and evaluation["exit_code"] == 2
    assert evaluation["job_type"] == "eval" and evaluation["group"] == "exp-1"
    assert evaluation["config"] == {"lr": 0.01}
    steps = sorted({p["step"] for p in evaluation["history"]})
    assert steps == [s * 10 for s in range(21)]
    keys = {p["key"] for p in evaluation["history"]}
    assert keys == {"val_loss", "val_acc", "grad.norm"}  # a logged dict: dotted keys
    assert evaluation["summary"]["grad.norm"] == 20
    assert math.isclose(evaluation["summary"]["val_loss"], 0.3)


@needs_wandb
@both_engines
def test_a_killed_run_imports_what_is_complete_as_crashed(cli, wandb_runs):
    killed_id = wandb_runs["ids"]["killed"]
    log = next(wandb_runs["wandb_dir"].glob(f"*-{killed_id}/run-{killed_id}.wandb"))
    result = cli("import", "wandb", str(log))
    assert result.exit_code == 0, result.output
    assert f"imported  {killed_id}  vision/exp-1  train  crashed" in result.stdout
    run = show(killed_id)
    assert run["state"] == "crashed" and run["exit_code"] is None
    assert run["name"] == "killed"
    assert run["config"] == {"lr": 0.1, "optimizer": {"name": "sgd"}}
    # Killed mid-record, the log ends in a partial record; killed between two records (W&B
    # writes in 32 KiB blocks, so this happens now and then), it ends cleanly but has no
    # exit record. Either way the run did not end, and the reason says which.
    assert run["reason"].startswith(
        (
            "imported from an incomplete W&B log: ",
            "imported from a W&B log without an exit record",
        )
    ), run["reason"]
    steps = sorted({p["step"] for p in run["history"]})
    assert len(steps) >= 20
    assert steps == list(range(len(steps)))  # a prefix of what was logged, no gap
    for point in run["history"]:
        expected = 1.0 / (point["step"] + 1) if point["key"] == "loss" else point["step"] / 1e4
        assert point["value"] == expected


@both_engines
@needs_wandb
def test_importing_twice_adds_nothing(cli, wandb_runs, db_path):
    first = cli("import", "wandb", str(wandb_runs["root"]))
    assert first.exit_code == 0, first.output
    before = {t: count(db_path, t) for t in ("runs", "history", "summary_metrics")}
    second = cli("import", "wandb", str(wandb_runs["wandb_dir"]))
    assert second.exit_code == 0, second.output
    assert second.stderr.strip().splitlines()[-1] == "0 imported, 3 already present"
    assert all(line.startswith("present   ") for line in second.stdout.strip().splitlines())
    assert {t: count(db_path, t) for t in before} == before


@needs_wandb
@both_engines
def test_import_accepts_a_run_folder_and_a_project_override(cli, wandb_runs):
    train_id = wandb_runs["ids"]["train"]
    folder = next(wandb_runs["wandb_dir"].glob(f"offline-run-*-{train_id}"))
    result = cli("import", "wandb", str(folder), "--project", "other")
    assert result.exit_code == 0, result.output
    assert show(train_id)["project"] == "other"


@needs_wandb
@both_engines
def test_import_reports_an_unreadable_file_and_goes_on(cli, wandb_runs, tmp_path):
    bogus = tmp_path / "run-bogus.wandb"
    bogus.write_bytes(b"not a log")
    train_id = wandb_runs["ids"]["train"]
    good = next(wandb_runs["wandb_dir"].glob(f"*-{train_id}/run-{train_id}.wandb"))
    result = cli("import", "wandb", str(bogus), str(good))
    assert result.exit_code == 1
    assert f"warning: {bogus} is not a W&B run log (bad file header)\n" in result.stderr
    assert result.stderr.strip().splitlines()[-1] == "1 imported, 0 already present, 1 unreadable"


@both_engines
def test_import_of_a_missing_path_is_a_usage_error(cli, tmp_path):
    if not HAVE_WANDB:
        pytest.skip("the `wandb` package is not installed")
    result = cli("import", "wandb", str(tmp_path / "nope"))
    assert result.exit_code == 2
    assert result.stderr == f"Error: no such file or directory: {tmp_path / 'nope'}\n"


@pytest.mark.parametrize(
    "args",
    [("import", "wandb", "."), ("export", "wandb", "out")],
    ids=["import", "export"],
)
@both_engines
def test_without_the_extra_the_error_names_it(cli, monkeypatch, args):
    # An entry of None in sys.modules makes `import wandb` fail as if it were absent.
    monkeypatch.setitem(sys.modules, "wandb", None)
    monkeypatch.setitem(sys.modules, "wandb.proto", None)
    result = cli(*args)
    assert result.exit_code == 1
    purpose = "importing W&B runs" if args[0] == "import" else "exporting to W&B"
    assert result.stderr == (
        f"Error: {purpose} needs the `wandb` package, which is not installed\n"
        "install the extra: pip install 'wbg[wandb]'\n"
    )


def record_native_runs(db: Path) -> list[str]:
    """Runs recorded by wbg itself in a separate process (so wandb is not loaded here)."""
    script = textwrap.dedent(
        """
        import json, math, wbg
        ids = []
        for seed in (1, 2):
            run = wbg.init(project="nlp", group="bert-sweep", job_type="train",
                           name=f"seed-{seed}", tags=["sweep"], notes="k-fold",
                           config={"seed": seed, "model": {"layers": 12, "act": "gelu"}})
            for step in range(22):
                run.log({"loss": 1.0 / (step + seed), "lr": 0.1 * 0.9 ** step}, step=step)
            run.log({"loss": math.nan}, step=22)
            run.summary["best_loss"] = 0.01 * seed
            run.summary["note"] = "text value"
            run.finish(exit_code=0 if seed == 1 else 130)
            ids.append(run.id)
        print(json.dumps(ids))
        """
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith(("WANDB_", "WBG_"))}
    env["WBG_DB"] = str(db)
    made = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=120
    )
    assert made.returncode == 0, made.stderr
    return json.loads(made.stdout)


@both_engines
@needs_wandb
def test_export_then_import_gives_back_the_same_runs(cli, wandb_runs, db_path, tmp_path):
    assert cli("import", "wandb", str(wandb_runs["wandb_dir"])).exit_code == 0
    native = record_native_runs(db_path)
    originals = {run_id: show(run_id) for run_id in [*wandb_runs["ids"].values(), *native]}
    assert originals[native[1]]["state"] == "failed"  # W&B alone would say killed (130)

    out = tmp_path / "export"
    exported = subprocess.run(
        [*wbg_executable(), "export", "wandb", str(out)],
        env={**wandb_env(tmp_path), "WBG_DB": str(db_path)},
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert exported.returncode == 0, exported.stderr
    assert exported.stderr.splitlines()[-2:] == [
        "5 exported, 0 already there, 0 still running",
        f"upload with: wandb sync {out / 'wandb'}/offline-run-*",
    ]
    for run_id in originals:
        assert len(list((out / "wandb").glob(f"offline-run-*-{run_id}"))) == 1

    back = tmp_path / "back.db"
    result = cli("import", "wandb", str(out), "--db", str(back))
    assert result.exit_code == 0, result.output
    assert result.stderr.strip().splitlines()[-1] == "5 imported, 0 already present"
    for run_id, original in originals.items():
        assert show(run_id, back) == original

    again = subprocess.run(
        [*wbg_executable(), "export", "wandb", str(out)],
        env={**wandb_env(tmp_path), "WBG_DB": str(db_path)},
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert again.returncode == 0, again.stderr
    assert "0 exported, 5 already there, 0 still running" in again.stderr


@needs_wandb
@both_engines
def test_export_takes_the_table_filters(cli, db_path, tmp_path):
    native = record_native_runs(db_path)
    out = tmp_path / "export"
    exported = subprocess.run(
        [
            *wbg_executable(),
            "export",
            "wandb",
            str(out),
            "--state",
            "finished",
            "--where",
            "seed = 1",
            "--group",
            "bert-sweep",
        ],
        env={**wandb_env(tmp_path), "WBG_DB": str(db_path)},
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert exported.returncode == 0, exported.stderr
    assert exported.stdout.split()[:2] == ["exported", native[0]]
    assert len(exported.stdout.strip().splitlines()) == 1


@both_engines
def test_export_refuses_a_bad_filter_before_anything(cli, tmp_path):
    result = cli("export", "wandb", str(tmp_path / "out"), "--state", "done")
    assert result.exit_code == 2
    assert result.stderr.splitlines()[0] == "Error: unknown state 'done'"
    result = cli("export", "wandb", str(tmp_path / "out"), "--where", "lr >")
    assert result.exit_code == 2
    assert result.stderr.splitlines()[0] == "Error: malformed --where 'lr >': the value is empty"
    assert not (tmp_path / "out").exists()


@needs_wandb
@both_engines
def test_export_ignores_the_shells_run_variables_and_reports_a_refused_run(cli, db_path, tmp_path):
    script = textwrap.dedent(
        """
        import json, wbg
        ids = []
        for project in ("plain", "bad:name"):
            run = wbg.init(project=project)
            run.log({"loss": 0.5}, step=0)
            run.finish()
            ids.append(run.id)
        print(json.dumps(ids))
        """
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith(("WANDB_", "WBG_"))}
    made = subprocess.run(
        [sys.executable, "-c", script],
        env={**env, "WBG_DB": str(db_path)},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert made.returncode == 0, made.stderr
    plain, bad = json.loads(made.stdout)
    out = tmp_path / "export"
    shell = {"WANDB_RUN_GROUP": "intruder", "WANDB_JOB_TYPE": "x", "WANDB_TAGS": "t1,t2"}
    exported = subprocess.run(
        [*wbg_executable(), "export", "wandb", str(out)],
        env={**wandb_env(tmp_path), **shell, "WBG_DB": str(db_path)},
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert exported.returncode == 1
    assert exported.stdout.split()[:2] == ["exported", plain]
    assert exported.stderr.splitlines()[0].startswith(
        f"warning: run {bad} not exported: Invalid project name 'bad:name'"
    )
    assert "1 exported, 0 already there, 0 still running, 1 refused by wandb" in exported.stderr
    back = tmp_path / "back.db"
    assert cli("import", "wandb", str(out), "--db", str(back)).exit_code == 0
    run = show(plain, back)
    assert (run["group"], run["job_type"], run["tags"]) == (None, None, [])


@both_engines
def test_progress_lines_only_once_a_job_is_long(monkeypatch, capsys):
    from wbg.cli import interop

    clock = iter([0.0, 0.5, 2.5, 3.0, 5.0, 9.0, 20.0])
    monkeypatch.setattr(interop.time, "monotonic", lambda: next(clock))
    progress = interop.Progress("imported")  # starts at 0.0: first line after 2 s
    for done in range(1, 7):
        progress(done, 6)
    # at 0.5 s nothing; then at most one line every 2 s; none for the last file
    assert capsys.readouterr().err == "imported 2/6...\nimported 4/6...\nimported 5/6...\n"


@needs_wandb
@both_engines
def test_a_log_cut_anywhere_gives_a_crashed_run_with_a_prefix_of_the_history(wandb_runs, tmp_path):
    from wbg.wandb_io import decode_run

    train_id = wandb_runs["ids"]["train"]
    log = next(wandb_runs["wandb_dir"].glob(f"*-{train_id}/run-{train_id}.wandb"))
    whole = decode_run(log)
    assert whole.complete and whole.state == "finished"
    data = log.read_bytes()
    for cut in (len(data) // 2, len(data) - 300, len(data) - 1):
        cut_log = tmp_path / str(cut) / log.name
        cut_log.parent.mkdir()
        cut_log.write_bytes(data[:cut])
        run = decode_run(cut_log)
        assert (run.state, run.exit_code, run.complete) == ("crashed", None, False)
        assert run.id == train_id and run.group == "exp-1"
        assert run.history == whole.history[: len(run.history)]
        assert run.reason.startswith("imported from an incomplete W&B log: ")


@both_engines
def test_import_of_a_folder_without_run_logs(cli, tmp_path):
    if not HAVE_WANDB:
        pytest.skip("the `wandb` package is not installed")
    result = cli("import", "wandb", str(tmp_path))
    assert result.exit_code == 2
    assert result.stderr == (
        f"Error: no W&B run logs (run-*.wandb) in {tmp_path}\n"
        "point at a wandb/ folder, a run folder or a run-<id>.wandb file\n"
    )


@needs_wandb
@both_engines
def test_a_log_in_the_older_writers_style_imports_too(cli, tmp_path):
    # Before wandb-core, history items were sent with `key` (not `nested_key`) and the
    # summary records held only what was set explicitly.
    from test_wandb_log_format import write_log
    from wandb.proto import wandb_internal_pb2 as pb

    def record(**kind) -> bytes:
        return pb.Record(**kind).SerializeToString()

    run = pb.RunRecord(run_id="old12345", project="legacy", run_group="g", job_type="train")
    run.start_time.FromSeconds(1_700_000_000)
    run.config.update.add(key="lr", value_json="0.1")
    records = [record(run=run)]
    for step in range(3):
        history = pb.HistoryRecord()
        history.item.add(key="_step", value_json=str(step))
        history.item.add(key="loss", value_json=json.dumps(1 / (step + 1)))
        history.item.add(key="_timestamp", value_json=str(1_700_000_010 + step))
        records.append(record(history=history))
    summary = pb.SummaryRecord()
    summary.update.add(key="best", value_json="0.75")
    records.append(record(summary=summary))
    records.append(record(exit=pb.RunExitRecord(exit_code=0, runtime=20)))
    log = tmp_path / "run-old12345" / "run-old12345.wandb"
    log.parent.mkdir()
    log.write_bytes(write_log(records))

    result = cli("import", "wandb", str(log))
    assert result.exit_code == 0, result.output
    assert result.stdout == "imported  old12345  legacy/g  train  finished  3 steps\n"
    imported = show("old12345")
    assert imported["summary"] == {"loss": 1 / 3, "best": 0.75}
    assert imported["config"] == {"lr": 0.1}
    assert [(p["step"], p["value"]) for p in imported["history"]] == [
        (0, 1.0),
        (1, 0.5),
        (2, 1 / 3),
    ]
    assert imported["started_at"] == "2023-11-14T22:13:20.000+00:00"
    assert imported["duration_s"] == 20  # W&B's runtime, past the last point (12 s)


@needs_wandb
@both_engines
def test_a_run_killed_before_its_first_block_has_nothing_to_import(cli, wandb_runs, tmp_path):
    # wandb writes its log a 32 KiB block at a time: a run killed early leaves the header.
    from wbg.wandb_io import FILE_HEADER

    empty = tmp_path / "offline-run-20250101_000000-early123" / "run-early123.wandb"
    empty.parent.mkdir()
    empty.write_bytes(FILE_HEADER)
    assert (wandb_runs["wandb_dir"] / "latest-run").is_symlink()  # found once, not twice
    result = cli("import", "wandb", str(empty.parent), str(wandb_runs["wandb_dir"]))
    assert result.exit_code == 1
    assert result.stderr.splitlines()[0] == (
        f"warning: {empty} holds no run record: W&B writes its log 32 KiB at a time, and "
        "this run's process ended (was killed?) before the first block was written"
    )
    assert result.stderr.splitlines()[-1] == "3 imported, 0 already present, 1 unreadable"


@both_engines
def test_filters_before_the_wandb_subcommand_apply_to_it(cli, db_path, tmp_path):
    import wbg

    for group in ("a", "b"):
        with wbg.init(project="p", group=group, reinit=True) as run:
            run.log({"x": 1.0})
    out = tmp_path / "out"
    result = cli("export", "-g", "a", "wandb", str(out))
    assert result.exit_code == 0, result.output
    assert result.stdout.count("exported  ") == 1
    assert "1 exported" in result.stderr
    refused = cli("export", "-f", "csv", "wandb", str(tmp_path / "other"))
    assert (refused.exit_code, refused.stderr.splitlines()[0]) == (
        2,
        "Error: --format does not apply to `wbg export wandb`",
    )
    twice = cli("export", "-g", "a", "wandb", str(tmp_path / "x"), "-g", "b")
    assert (twice.exit_code, twice.stderr.splitlines()[0]) == (
        2,
        "Error: --group given twice with different values",
    )
    assert not (tmp_path / "other").exists() and not (tmp_path / "x").exists()
