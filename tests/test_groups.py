"""``wbg group``, ``wbg runs set|tag|move|delete``, ``wbg export`` and completion."""
# ruff: noqa: E501  (the expected group page has its real width)

from __future__ import annotations

import contextlib
import csv
import io
import json
import os
import re
import subprocess

from helpers import both_engines, wbg_executable
from views_helpers import add_run, fixture_experiment

from wbg.db import connect

GROUP_PAGE = """\
group      exp-a
project    proj
runs       4 (train 3, eval 1)
states     finished 4
time span  2023-11-14 22:13:20 -> 2023-11-14 22:14:25
compute    38 s (sum of durations)

Runs (summary values on the right)
id        name         job_type  state     fold  split  acc   loss  val_acc  duration_s
--------  -----------  --------  --------  ----  -----  ----  ----  -------  ----------
<ID>      exp-a-fold0  train     finished  0            0.9   0.5            10
<ID>      exp-a-fold1  train     finished  1            0.91  0.4            11
<ID>      exp-a-fold2  train     finished  2            0.92  0.3            12
<ID>      exp-a-eval   eval      finished        val                0.85     5

Config common to all runs
key         value
----------  -----
lr          0.1
model.name  mlp

Aggregates per job_type (mean ± std)
job_type  runs  acc            loss         val_acc  duration_s
--------  ----  -------------  -----------  -------  ----------
eval      1                                 0.85     5
train     3     0.910 ± 0.010  0.40 ± 0.10           11.0 ± 1.0
"""


def _ids(text: str, ids: dict[str, str]) -> str:
    for run_id in ids.values():
        text = text.replace(run_id, "<ID>".ljust(len(run_id)))
    return text


@both_engines
def test_group_page_of_a_fixture_experiment(cli, db_path):
    ids = fixture_experiment(db_path)
    result = cli("group", "show", "exp-a")
    assert result.exit_code == 0, result.output
    assert _ids(result.stdout, ids) == GROUP_PAGE
    page = json.loads(cli("group", "show", "exp-a", "-f", "json").stdout)
    assert page["common_config"] == {"lr": 0.1, "model.name": "mlp"}
    assert page["varying_keys"] == ["fold", "split"]
    assert page["job_types"] == {"train": 3, "eval": 1}
    assert page["compute_s"] == 38
    assert [row["job_type"] for row in page["aggregates"]] == ["eval", "train"]
    assert page["aggregates"][1]["acc.mean"] == 0.91
    assert [row["id"] for row in page["runs_table"]][0] == ids["exp-a-train-0"]


@both_engines
def test_group_list(cli, db_path):
    fixture_experiment(db_path)
    add_run(db_path, group="live", job_type="train", state="running")
    result = cli("group", "list", "-f", "csv")
    assert result.exit_code == 0, result.output
    rows = list(csv.DictReader(io.StringIO(result.stdout)))
    assert [r["group"] for r in rows] == ["live", "exp-b", "exp-a"]
    assert rows[1]["job_types"] == '{"train":3,"eval":1}'
    assert rows[2]["first_start"] == "2023-11-14T22:13:20.000+00:00"
    assert rows[0]["last_end"] == ""  # still running
    human = cli("group", "list")
    assert "train 3, eval 1" in human.stdout and "(running)" in human.stdout


@both_engines
def test_unknown_and_ambiguous_groups(cli, db_path):
    fixture_experiment(db_path)
    result = cli("group", "show", "exp-aa")
    assert result.exit_code == 2
    assert result.stderr.splitlines() == [
        "Error: unknown group 'exp-aa'",
        "did you mean: exp-a, exp-b?",
    ]
    add_run(db_path, project="other", group="exp-a")
    ambiguous = cli("group", "show", "exp-a")
    assert ambiguous.exit_code == 2
    assert ambiguous.stderr.splitlines() == [
        "Error: group 'exp-a' exists in several projects: other, proj",
        "say which with --project",
    ]
    assert cli("group", "show", "exp-a", "-p", "other").exit_code == 0


@both_engines
def test_group_rename(cli, db_path):
    fixture_experiment(db_path)
    result = cli("group", "rename", "exp-a", "exp-c")
    assert result.exit_code == 0, result.output
    assert result.stderr == "renamed group exp-a -> exp-c (4 runs, project proj)\n"
    clash = cli("group", "rename", "exp-c", "exp-b")
    assert clash.exit_code == 2
    assert clash.stderr.splitlines()[0] == "Error: group 'exp-b' already exists in project 'proj'"
    bad = cli("group", "rename", "exp-c", "a\nb")
    assert bad.exit_code == 2
    assert bad.stderr.startswith("Error: group must not contain control characters")
    groups = [g["group"] for g in json.loads(cli("group", "list", "-f", "json").stdout)]
    assert sorted(groups) == ["exp-b", "exp-c"]


@both_engines
def test_group_delete_asks_and_refuses_without_a_terminal(cli, db_path):
    fixture_experiment(db_path)
    refused = cli("group", "delete", "exp-a")
    assert refused.exit_code == 2
    assert refused.stderr.splitlines() == [
        "Error: not deleting group 'exp-a' (4 runs): no terminal to confirm on",
        "pass --yes to delete",
    ]
    with contextlib.closing(connect(db_path)) as conn:
        assert conn.execute("SELECT count(*) FROM runs").fetchone()[0] == 8
    done = cli("group", "delete", "exp-a", "--yes")
    assert done.exit_code == 0, done.output
    with contextlib.closing(connect(db_path)) as conn:
        assert conn.execute("SELECT count(*) FROM runs").fetchone()[0] == 4
        orphans = conn.execute(
            "SELECT count(*) FROM summary_metrics WHERE run NOT IN (SELECT num FROM runs)"
        ).fetchone()[0]
        assert orphans == 0


@both_engines
def test_delete_refuses_running_runs_unless_forced(cli, db_path):
    run_id = add_run(db_path, group="g", state="running")
    with contextlib.closing(connect(db_path)) as conn:  # alive owner: this test process
        conn.execute("UPDATE runs SET owner_pid = ? WHERE id = ?", (os.getpid(), run_id))
    refused = cli("runs", "delete", run_id, "--yes")
    assert refused.exit_code == 2
    assert refused.stderr.startswith(f"Error: 1 run(s) still running: {run_id}")
    assert cli("runs", "delete", run_id, "--yes", "--force").exit_code == 0
    assert cli("runs", "show", run_id).exit_code == 2


@both_engines
def test_runs_set_tag_move(cli, db_path):
    ids = fixture_experiment(db_path)
    run_id = ids["exp-a-train-0"]
    result = cli("runs", "set", run_id, "seed=3", "opt.name=adam")
    assert result.exit_code == 0, result.output
    record = json.loads(cli("runs", "show", run_id, "-f", "json").stdout)
    assert record["config"] == {
        "lr": 0.1,
        "fold": 0,
        "model": {"name": "mlp"},
        "seed": 3,
        "opt": {"name": "adam"},
    }
    rows = json.loads(cli("table", "-G", "seed", "-m", "acc", "-f", "json").stdout)
    assert [(r["seed"], r["runs"]) for r in rows] == [(3, 1), (None, 7)]
    tagged = cli("runs", "tag", run_id, "+best", "+kfold", "-kfold", "plain")
    assert tagged.exit_code == 0, tagged.output
    assert tagged.stdout == "best plain\n"
    assert cli("runs", "tag", run_id, "-best").stdout == "plain\n"
    moved = cli("runs", "move", run_id, ids["exp-b-eval"], "--group", "exp-z")
    assert moved.exit_code == 0, moved.output
    groups = json.loads(cli("runs", "list", "-g", "exp-z", "-f", "json").stdout)
    assert sorted(r["id"] for r in groups) == sorted([run_id, ids["exp-b-eval"]])


@both_engines
def test_runs_set_refuses_running_runs_and_unknown_ids(cli, db_path):
    run_id = add_run(db_path, group="g", state="running")
    with contextlib.closing(connect(db_path)) as conn:
        conn.execute("UPDATE runs SET owner_pid = ? WHERE id = ?", (os.getpid(), run_id))
    result = cli("runs", "set", run_id, "a=1")
    assert result.exit_code == 2
    assert result.stderr.startswith(f"Error: run {run_id} is still running")
    unknown = cli("runs", "set", run_id[:-1] + "#", "a=1")
    assert unknown.exit_code == 2
    assert unknown.stderr.splitlines() == [
        f"Error: no run with id {run_id[:-1] + '#'!r}",
        f"did you mean: {run_id}?",
    ]
    moved = cli("runs", "move", run_id, "nope", "--group", "x")
    assert moved.exit_code == 2
    assert json.loads(cli("runs", "show", run_id, "-f", "json").stdout)["group"] == "g"


@both_engines
def test_export_formats(cli, db_path):
    ids = fixture_experiment(db_path)
    result = cli("export", "-f", "csv", "-g", "exp-a")
    assert result.exit_code == 0, result.output
    rows = list(csv.DictReader(io.StringIO(result.stdout)))
    assert list(rows[0])[-7:] == [
        "config.fold",
        "config.lr",
        "config.model.name",
        "config.split",
        "summary.acc",
        "summary.loss",
        "summary.val_acc",
    ]
    assert list(rows[0])[:3] == ["id", "project", "name"]
    assert [r["id"] for r in rows] == [ids[f"exp-a-train-{i}"] for i in range(3)] + [
        ids["exp-a-eval"]
    ]
    records = json.loads(cli("export", "-f", "json", "-w", "fold=1").stdout)
    assert [r["name"] for r in records] == ["exp-a-fold1", "exp-b-fold1"]
    assert "history" not in records[0]
    lines = cli("export", "--history", "-j", "eval").stdout.splitlines()
    assert [json.loads(line)["history"] for line in lines] == [[], []]
    history = cli("export", "-f", "csv", "--history").stdout.splitlines()
    assert history == ["id,group,job_type,step,key,value,time"]


# --- completion: the installed wbg as a real process -------------------------------------


def _complete(words: str, db: str, cwd) -> subprocess.CompletedProcess:
    env = {
        **os.environ,
        "_WBG_COMPLETE": "complete_bash",
        "COMP_WORDS": words,
        "COMP_CWORD": str(len(words.split(" ")) - 1),
        "WBG_DB": db,
    }
    return subprocess.run(
        wbg_executable(), env=env, capture_output=True, text=True, cwd=cwd, timeout=60
    )


@both_engines
def test_completion_from_the_database(db_path, tmp_path):
    fixture_experiment(db_path)
    add_run(db_path, group="other-1", job_type="preprocess", config={"optimizer": {"lr": 1}})
    groups = _complete("wbg group show exp", str(db_path), tmp_path)
    assert groups.returncode == 0 and groups.stderr == ""
    assert sorted(groups.stdout.split()) == ["exp-a", "exp-b"]
    job_types = _complete("wbg table --job-type ", str(db_path), tmp_path)
    assert sorted(job_types.stdout.split()) == ["eval", "preprocess", "train"]
    keys = _complete("wbg table --group-by opt", str(db_path), tmp_path)
    assert keys.stdout.split() == ["optimizer.lr"]
    nested = _complete("wbg table --group-by lr,fo", str(db_path), tmp_path)
    assert nested.stdout.split() == ["lr,fold"]
    runs = _complete("wbg runs show ", str(db_path), tmp_path)
    assert len(runs.stdout.split()) == 9
    metrics = _complete("wbg table -m val", str(db_path), tmp_path)
    assert metrics.stdout.split() == ["val_acc"]
    with_db = _complete(f"wbg group show --db {db_path} exp-", "/nonexistent/x.db", tmp_path)
    assert sorted(with_db.stdout.split()) == ["exp-a", "exp-b"]


@both_engines
def test_completion_never_creates_a_database_or_prints_errors(tmp_path):
    missing = tmp_path / "none" / "runs.db"
    (tmp_path / "none").mkdir()
    for words in ("wbg group show ", "wbg table -G ", "wbg runs show ", "wbg table -j "):
        result = _complete(words, str(missing), tmp_path)
        assert result.returncode == 0
        assert (result.stdout.strip(), result.stderr) == ("", "")
    assert list((tmp_path / "none").iterdir()) == []
    garbage = tmp_path / "garbage.db"
    garbage.write_bytes(b"not sqlite at all")
    result = _complete("wbg group show ", str(garbage), tmp_path)
    assert (result.returncode, result.stdout.strip(), result.stderr) == (0, "", "")
    assert garbage.read_bytes() == b"not sqlite at all"


@both_engines
def test_completion_scripts_are_current():
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    for shell in ("bash", "zsh", "fish"):
        env = {**os.environ, "_WBG_COMPLETE": f"source_{shell}"}
        generated = subprocess.run(
            wbg_executable(), env=env, capture_output=True, text=True, timeout=60
        ).stdout
        with open(os.path.join(root, "completions", f"wbg.{shell}"), encoding="utf-8") as f:
            assert f.read() == generated, shell


@both_engines
def test_help_names_the_view_commands(cli):
    result = cli("--help")
    for command in ("table", "group", "export"):
        assert re.search(rf"^\s+{command}\s", result.stdout, re.M), command
    for args in (("group", "--help"), ("runs", "--help"), ("table", "--help")):
        assert cli(*args).exit_code == 0


@both_engines
def test_demo_prints_its_grouped_table(cli):
    result = cli("demo", "--epochs", "2")
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0].split() == ["group", "runs", "acc", "loss", "val_acc"]
    assert len(lines) == 4
    assert all(
        re.match(r"demo-[a-z0-9]{4}-lr0\.0?1 +4 +\S+ ± \S+ \(n=3\)", line) for line in lines[2:]
    )


@both_engines
def test_runs_list_filters_and_formats(cli, db_path):
    ids = fixture_experiment(db_path)
    result = cli("runs", "list", "-j", "train", "-w", "fold >= 1", "-w", "lr = 0.1", "-f", "csv")
    assert result.exit_code == 0, result.output
    rows = list(csv.DictReader(io.StringIO(result.stdout)))
    assert sorted(r["id"] for r in rows) == sorted([ids["exp-a-train-1"], ids["exp-a-train-2"]])
    assert json.loads(rows[0]["config"])["lr"] == 0.1
    records = json.loads(cli("runs", "list", "-g", "exp-b", "-j", "eval", "-f", "json").stdout)
    assert [r["id"] for r in records] == [ids["exp-b-eval"]]
    assert list(records[0])[:3] == ["id", "project", "name"]
    human = cli("runs", "list", "--limit", "2")
    assert human.exit_code == 0 and len(human.stdout.splitlines()) == 4


@both_engines
def test_group_show_csv_lists_every_run(cli, db_path):
    ids = fixture_experiment(db_path)
    result = cli("group", "show", "exp-b", "-f", "csv", "--runs", "1")
    assert result.exit_code == 0, result.output
    rows = list(csv.DictReader(io.StringIO(result.stdout)))
    assert [r["id"] for r in rows] == [ids[f"exp-b-train-{i}"] for i in range(3)] + [
        ids["exp-b-eval"]
    ]
    assert list(rows[0]) == [
        "id",
        "name",
        "job_type",
        "state",
        "duration_s",
        "fold",
        "split",
        "summary.acc",
        "summary.loss",
        "summary.val_acc",
    ]
    human = cli("group", "show", "exp-b", "--runs", "2")
    assert "(2 more runs not listed: --runs 0 lists all)" in human.stdout


@both_engines
def test_export_history_points(cli, db_path):
    from wbg import runs

    run_id = add_run(db_path, group="g", summary={"loss": 0.1})
    with contextlib.closing(connect(db_path)) as conn:
        num = runs.run_num(conn, run_id)
        runs.log_points(conn, num, {"loss": 0.5}, step=0)
        runs.log_points(conn, num, {"loss": float("nan")}, step=1)
    [record] = json.loads(cli("export", "-f", "json", "--history").stdout)
    assert [(p["step"], p["key"], p["value"]) for p in record["history"]] == [
        (0, "loss", 0.5),
        (1, "loss", None),
    ]
    rows = list(csv.DictReader(io.StringIO(cli("export", "-f", "csv", "--history").stdout)))
    assert [(r["id"], r["step"], r["value"]) for r in rows] == [
        (run_id, "0", "0.5"),
        (run_id, "1", "nan"),
    ]


@both_engines
def test_a_group_with_thousands_of_varying_keys_shows_the_most_common(cli, db_path):
    for i in range(30):
        add_run(db_path, group="wide", config={"seed": i, **{f"k{i}_{j}": j for j in range(40)}})
    result = cli("group", "show", "wide", "--runs", "5")
    assert result.exit_code == 0, result.output
    header = result.stdout.split("Runs (summary values on the right)\n")[1].splitlines()[0]
    assert header.split()[4] == "seed", header  # in every run: the first to show
    assert len([c for c in header.split() if c.startswith("k")]) == 11
    assert result.stderr.endswith(
        "note: 1189 more config keys differ between runs, not shown "
        "(-f json or -f csv has them all)\n"
    )
    every = cli("group", "show", "wide", "-f", "csv")
    assert every.stdout.splitlines()[0].count(",k") == 1200
