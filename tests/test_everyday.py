"""The everyday CLI as a demanding user finds it: right answers, 80-column views, filters."""

from __future__ import annotations

import json
import re

import pytest
from helpers import both_engines
from views_helpers import add_run, fixture_experiment

# --- --where: only the operators it knows -------------------------------------------------


@pytest.mark.parametrize(
    ("condition", "meant"),
    [
        ("lr => 0.01", "'>='"),
        ("lr =< 0.01", "'<='"),
        ("lr <> 0.01", "'!='"),
        ("lr ~= 0.01", "'~'"),
        ("lr >< 0.01", None),
    ],
)
@both_engines
def test_where_refuses_unknown_operators(cli, db_path, condition, meant):
    fixture_experiment(db_path)
    for command in (("table",), ("runs", "list"), ("export",), ("group", "list")):
        result = cli(*command, "-w", condition)
        assert result.exit_code == 2, (command, result.output)
        assert result.stdout == ""
        first, hint = result.stderr.splitlines()
        op = condition.split()[1]
        assert first == f"Error: unknown operator {op!r} in --where {condition!r}"
        assert ("did you mean " + meant) in hint if meant else "did you mean" not in hint
        assert "= != < <= > >= ~" in hint


@both_engines
def test_double_equals_means_equals(cli, db_path):
    fixture_experiment(db_path)

    def names(condition):
        result = cli("runs", "list", "-w", condition, "-f", "json")
        assert result.exit_code == 0, result.output
        return sorted(r["name"] for r in json.loads(result.stdout))

    assert names("lr == 0.01") == names("lr = 0.01")
    assert names("lr==0.01") == ["exp-b-eval", "exp-b-fold0", "exp-b-fold1", "exp-b-fold2"]


# --- the table at the end of a grid ------------------------------------------------------


@both_engines
def test_grid_end_table_shows_state_exit_code_and_counts_failures(db_path):
    from helpers import run_wbg

    done = run_wbg(
        "run", "-g", "codes", "--grid", "code=0,3,4", "--", "sh", "-c", "exit $(({code} % 4))"
    )  # fmt: skip
    assert done.returncode == 3, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].split() == ["id", "code", "state", "exit"]
    assert [line.split()[1:] for line in lines[2:]] == [
        ["0", "finished", "0"],
        ["3", "failed", "3"],
        ["4", "finished", "0"],
    ]
    assert done.stderr.splitlines()[-1] == (
        "wbg: 3 runs in group codes, 1 failed: code=3 (exit 3); see `wbg runs list --group codes`"
    )


# --- a metric logged as a string ----------------------------------------------------------

STRING_METRICS = """
import wbg
with wbg.init(group="strings", name="s") as run:
    run.log({"acc": 0.5, "loss": 1.0})
    run.log({"acc": "0.6", "loss": "nan"})
    run.log({"acc": "0.7", "phase": "eval"})
    run.log({"acc": 0.8})
    run.log({"acc": "0.9"})
"""


@both_engines
def test_strings_never_replace_numbers_and_are_reported_once(cli, db_path, tmp_path):
    import subprocess
    import sys

    script = tmp_path / "strings.py"
    script.write_text(STRING_METRICS)
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stderr.splitlines() == [
        f"wbg: {key!r} was logged as a string ({value!r}), not a number: it is no history "
        "point and never replaces a numeric summary value; log float(value) to chart it"
        for key, value in (("acc", "0.6"), ("loss", "nan"))
    ]
    [record] = json.loads(cli("runs", "list", "-f", "json").stdout)
    assert record["summary"] == {"acc": 0.8, "loss": 1.0, "phase": "eval"}
    table = cli("table", "-f", "json", "--agg", "mean").stdout
    assert json.loads(table)[0]["acc.mean"] == 0.8
    assert json.loads(table)[0]["loss.mean"] == 1.0
    curve = cli("plot", "acc", "--out", str(tmp_path / "acc.json"))
    assert curve.exit_code == 0, curve.output
    points = json.loads((tmp_path / "acc.json").read_text())
    assert [p["line"] for p in points] == [0.5, 0.8]
    # the same rule for `wbg log --summary`, which says so
    run_id = record["id"]
    logged = cli("log", "--run", run_id, "--summary", "acc=n/a", "comment=ok")
    assert logged.exit_code == 0, logged.output
    assert "not replacing the numeric summary value of acc" in logged.stderr
    [record] = json.loads(cli("runs", "list", "-f", "json").stdout)
    assert record["summary"]["acc"] == 0.8 and record["summary"]["comment"] == "ok"


# --- values as Python and TOML users write them --------------------------------------------


@both_engines
def test_config_numbers_as_python_and_toml_write_them(cli, db_path):
    from helpers import only_record, run_wbg

    typed = {".001": 0.001, "1e-3": 0.001, "-5": -5, "+1": 1, "1_000": 1000, "1.": 1.0}
    options = [arg for i, text in enumerate(typed) for arg in ("-c", f"k{i}={text}")]
    done = run_wbg("run", *options, "-c", "name_like=01", "--", "true")
    assert done.returncode == 0, done.stderr
    config = only_record(db_path)["config"]
    assert config == {**{f"k{i}": v for i, v in enumerate(typed.values())}, "name_like": "01"}
    assert [type(config[f"k{i}"]) for i in range(6)] == [float, float, int, int, int, float]
    # the same typing for --where and --grid values
    result = cli("runs", "list", "-w", "k0 = .001", "-w", "k2 > -5.5", "-f", "json")
    assert len(json.loads(result.stdout)) == 1, result.output


@both_engines
def test_grid_range_with_a_dash_suggests_two_dots(db_path):
    from helpers import raw_count, run_wbg

    done = run_wbg("run", "--grid", "fold=0-4", "--", "echo", "{fold}")
    assert done.returncode == 2
    assert done.stderr.splitlines() == [
        "Error: --grid fold=0-4: a range is written with two dots",
        "--grid fold=0..4 (or quote the text: --grid 'fold=\"0-4\"')",
    ]
    assert raw_count(db_path, "runs") == 0


@both_engines
def test_grid_key_that_nothing_reads_is_warned_about_before_launch(db_path, tmp_path):
    from helpers import run_wbg

    script = tmp_path / "train.py"
    script.write_text("import os\nprint(os.environ['WBG_PARAM_SEED'])\n")
    done = run_wbg(
        "run", "--dry-run", "--grid", "fold=0..1", "--grid", "seed=0..1", "--grid", "lr=1,2",
        "--", "python", str(script), "--lr", "{lr}",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stderr.splitlines()[0] == (
        "wbg: warning: --grid fold: no {fold} in the command, and neither 'fold' nor "
        f"WBG_PARAM_FOLD appears in the command or {script}; its runs may differ only in "
        "their config"
    )
    assert "--grid seed" not in done.stderr and "--grid lr" not in done.stderr


# --- 80-column views -----------------------------------------------------------------------

GROUP_PAGE_80 = """\
Runs (summary values on the right)
id        name         job_type  state     fold  split  acc   loss  val_acc
--------  -----------  --------  --------  ----  -----  ----  ----  -------
<ID>      exp-a-fold0  train     finished  0            0.9   0.5
<ID>      exp-a-fold1  train     finished  1            0.91  0.4
<ID>      exp-a-fold2  train     finished  2            0.92  0.3
<ID>      exp-a-eval   eval      finished        val                0.85
"""


def _section(text: str, title: str) -> str:
    return next(part for part in text.split("\n\n") if part.startswith(title)) + "\n"


def _no_ids(text: str, ids: dict[str, str]) -> str:
    for run_id in ids.values():
        text = text.replace(run_id, "<ID>".ljust(len(run_id)))
    return text


@both_engines
def test_group_page_fits_80_columns_and_says_what_it_left_out(cli, db_path, monkeypatch):
    ids = fixture_experiment(db_path)
    monkeypatch.setenv("COLUMNS", "80")
    result = cli("group", "show", "exp-a")
    assert result.exit_code == 0, result.output
    assert all(len(line) <= 80 for line in result.stdout.splitlines())
    assert _no_ids(_section(result.stdout, "Runs"), ids) == GROUP_PAGE_80
    assert result.stderr == (
        "note: 1 metric left out to fit the terminal: duration_s (-m picks; -f csv/json has all)\n"
    )
    # -m picks the summary columns and the aggregates, in the order given
    monkeypatch.delenv("COLUMNS")
    chosen = cli("group", "show", "exp-a", "-m", "val_acc", "-m", "acc")
    assert chosen.exit_code == 0 and chosen.stderr == "", chosen.output
    runs = _section(chosen.stdout, "Runs").splitlines()
    assert runs[1].split()[-3:] == ["val_acc", "acc", "duration_s"]
    assert runs[-1].split()[-2:] == ["0.85", "5"]
    aggregates = _section(chosen.stdout, "Aggregates").splitlines()
    assert aggregates[1].split() == ["job_type", "runs", "val_acc", "acc"]
    unknown = cli("group", "show", "exp-a", "-m", "val_ac")
    assert unknown.exit_code == 2 and "did you mean: val_acc" in unknown.stderr


@both_engines
def test_names_are_cut_before_a_metric_is_dropped(cli, db_path, monkeypatch):
    for fold in range(2):
        add_run(
            db_path, group="g", name=f"a-very-long-run-name-of-fold-{fold}", summary={"acc": 0.5}
        )
    monkeypatch.setenv("COLUMNS", "60")
    result = cli("group", "show", "g")
    runs = _section(result.stdout, "Runs").splitlines()
    assert all(len(line) <= 60 for line in runs)
    assert runs[1].split()[-1] == "acc"
    name = runs[3].split()[1]
    assert name.startswith("a-very") and name.endswith("-fold-0") and len(name) == 16


@both_engines
def test_mean_and_spread_share_one_rounding_rule():
    from wbg.cli.render import format_mean_spread

    assert format_mean_spread(0.99587, 0.00983) == "0.9959 ± 0.0098"
    assert format_mean_spread(0.6079, 0.001501) == "0.6079 ± 0.0015"
    assert format_mean_spread(12345.6, 234.0) == "12,350 ± 230"
    assert format_mean_spread(0.7, 1.36e-16) == "0.7 ± 0"  # float noise of equal values
    assert format_mean_spread(0.5, 0.0999) == "0.50 ± 0.10"
    assert format_mean_spread(3.4e-6, 1.23e-7) == "(3.40 ± 0.12)e-6"
    assert format_mean_spread(1.5e10, 2.3e8) == "(15.00 ± 0.23)e9"
    assert format_mean_spread(0.5, None) == "0.5"
    assert format_mean_spread(0.99587, 0.00983, precision=2) == "1 ± 0.0098"


@both_engines
def test_views_use_the_rule_and_precision_wins(cli, db_path):
    for value in (0.7, 0.7, 0.7000000000000001):  # a std of float noise
        add_run(db_path, group="g", summary={"acc": value, "steps": 123456.7 + value})
    table = cli("table", "-m", "acc", "-m", "steps")
    assert re.split(r"\s\s+", table.stdout.splitlines()[2]) == ["g", "3", "0.7 ± 0", "123,457 ± 0"]
    page = cli("group", "show", "g", "-m", "acc")
    assert _section(page.stdout, "Aggregates").splitlines()[3].split() == [
        "-",
        "3",
        "0.7",
        "±",
        "0",
    ]
    precise = cli("table", "-m", "acc", "--precision", "3")
    assert precise.stdout.splitlines()[2].split()[2:] == ["0.7", "±", "6.41e-17"]


@both_engines
def test_agg_count_shows_the_count_column_it_was_asked_for(cli, db_path):
    fixture_experiment(db_path)
    result = cli("table", "-G", "job_type", "-m", "acc", "--agg", "count,mean")
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines() == [
        "job_type  runs  acc.count  acc.mean",
        "--------  ----  ---------  --------",
        "eval      2     0",
        "train     6     6          0.86",
    ]
    default = cli("table", "-G", "job_type", "-m", "acc")
    assert default.stdout.splitlines()[3].split() == ["train", "6", "0.860", "±", "0.055"]


def _demo_like(db_path):
    start = 1_700_000_000.0
    for lr in ("0.1", "0.01"):
        for seed in range(3):
            add_run(
                db_path, project="wbg-demo", group=f"demo-2bmc-lr{lr}", job_type="train",
                name=f"train-lr{lr}-seed{seed}", config={"lr": float(lr), "seed": seed},
                summary={"acc": 0.6}, started_at=start, duration=3.25,
            )  # fmt: skip
            start += 60
    add_run(db_path, project="other", started_at=start, duration=1.0)


RUNS_80 = """\
id        name          group          job_type  state     started      duration
--------  ------------  -------------  --------  --------  -----------  --------
<ID>                                             finished  11-14 22:19  1
<ID>      train-…seed2  demo-2…lr0.01  train     finished  11-14 22:18  3.25
<ID>      train-…seed1  demo-2…lr0.01  train     finished  11-14 22:17  3.25
"""

GROUPS_80 = """\
group             runs  job_types  states      ended
----------------  ----  ---------  ----------  -----------
demo-2bmc-lr0.01  3     train 3    finished 3  11-14 22:18
demo-2bmc-lr0.1   3     train 3    finished 3  11-14 22:15
"""


@both_engines
def test_runs_and_group_lists_fit_80_columns_with_a_wide_escape(cli, db_path, monkeypatch):
    _demo_like(db_path)
    monkeypatch.setenv("COLUMNS", "80")
    result = cli("runs", "list", "--limit", "3")
    assert result.exit_code == 0, result.output
    ids = {r["id"]: r["id"] for r in json.loads(cli("runs", "list", "-f", "json").stdout)}
    assert _no_ids(result.stdout, ids) == RUNS_80
    assert result.stderr == "(4 more runs: --limit N or --all)\n"
    wide = cli("runs", "list", "--wide", "--limit", "1")
    assert wide.stdout.splitlines()[0].split() == [
        "id", "name", "project", "group", "job_type", "state", "exit_code", "started",
        "duration_s",
    ]  # fmt: skip
    assert "2023-11-14 22:19:20" in wide.stdout
    groups = cli("group", "list")
    assert groups.exit_code == 0, groups.output
    assert groups.stdout == GROUPS_80
    assert all(len(line) <= 80 for line in groups.stdout.splitlines())
    wide_groups = cli("group", "list", "--wide")
    assert wide_groups.stdout.splitlines()[0].split()[:2] == ["group", "project"]


@both_engines
def test_runs_list_shows_the_newest_50_and_says_how_many_more(cli, db_path):
    for i in range(53):
        add_run(db_path, name=f"r{i}", started_at=1_700_000_000.0 + i)
    result = cli("runs", "list")
    assert len(result.stdout.splitlines()) == 2 + 50
    assert result.stdout.splitlines()[2].split()[1] == "r52"
    assert result.stderr == "(3 more runs: --limit N or --all)\n"
    every = cli("runs", "list", "--all")
    assert len(every.stdout.splitlines()) == 2 + 53 and every.stderr == ""
    assert len(json.loads(cli("runs", "list", "--all", "-f", "json").stdout)) == 53


# --- empty and unmatched results -----------------------------------------------------------


@pytest.mark.parametrize(
    "command",
    [("table",), ("runs", "list"), ("group", "list"), ("export",), ("plot", "acc")],
)
@both_engines
def test_every_view_says_no_runs_match_the_same_way(cli, db_path, command):
    add_run(db_path, group="g", config={"lr": 0.1}, summary={"acc": 0.5})
    result = cli(*command, "-w", "lr > 100")
    assert (result.exit_code, result.stdout) == (0, ""), result.output
    what = "groups" if command == ("group", "list") else "runs"
    assert result.stderr == f"no {what} match --where 'lr > 100'\n"
    if command != ("plot", "acc"):
        as_json = cli(*command, "-w", "lr > 100", "-f", "json")
        assert (as_json.exit_code, as_json.stdout) == (0, "[]\n"), as_json.output


@both_engines
def test_an_empty_database_says_so(cli, db_path):
    from wbg.db import connect

    connect(db_path).close()  # an empty database (a missing one is "no database at PATH")
    for command in (("table",), ("runs", "list"), ("export",)):
        result = cli(*command)
        assert (result.exit_code, result.stdout, result.stderr) == (
            0, "", "no runs recorded yet\n"
        ), command  # fmt: skip


# --- suggestions: the selection first, then the database -----------------------------------


@both_engines
def test_suggestions_come_from_the_selection_first(cli, db_path):
    add_run(db_path, project="a", group="train-b", config={"lr": 1}, summary={"val_acc": 1.0})
    add_run(db_path, project="b", group="train-a", config={"lrs": 1}, summary={"val_acc1": 1.0})
    group = cli("table", "-p", "a", "-g", "train-c")
    assert group.exit_code == 2
    assert group.stderr.splitlines() == ["Error: unknown group 'train-c'", "did you mean: train-b?"]
    anywhere = cli("table", "-g", "train-c")
    assert anywhere.stderr.splitlines()[1] in (
        "did you mean: train-a, train-b?",
        "did you mean: train-b, train-a?",
    )
    metric = cli("table", "-p", "a", "-m", "val_ac")
    assert metric.stderr.splitlines()[1].startswith("did you mean: val_acc? known metrics: ")
    key = cli("table", "-p", "b", "-G", "lrx")
    assert key.stderr.splitlines()[1].startswith("did you mean: lrs")
    # nothing close in the selection: the whole file is asked
    add_run(db_path, project="a", group="zeta")
    elsewhere = cli("table", "-p", "b", "-g", "zetaa")
    assert elsewhere.stderr.splitlines()[1] == "did you mean: zeta?"


# --- filters on summary metrics -------------------------------------------------------------


@both_engines
def test_where_on_a_summary_metric(cli, db_path):
    fixture_experiment(db_path)

    def names(*args):
        result = cli("runs", "list", *args, "-f", "json", "--all")
        assert result.exit_code == 0, result.output
        return sorted(r["name"] for r in json.loads(result.stdout))

    assert names("-w", "acc > 0.9") == ["exp-a-fold1", "exp-a-fold2"]
    assert names("-w", "summary.acc > 0.9") == ["exp-a-fold1", "exp-a-fold2"]
    assert names("-w", "val_acc >= 0.8", "-w", "lr = 0.1") == ["exp-a-eval"]
    table = cli("table", "-w", "acc > 0.9", "-f", "json")
    assert [row["runs"] for row in json.loads(table.stdout)] == [2]
    assert cli("plot", "acc", "-w", "acc > 5").stderr == "no runs match --where 'acc > 5'\n"
    typo = cli("runs", "list", "-w", "acc_x > 0.9")
    assert typo.exit_code == 2 and "did you mean: acc" in typo.stderr


@both_engines
def test_sort_by_a_summary_metric(cli, db_path):
    fixture_experiment(db_path)

    def names(*args):
        result = cli(*args, "--sort", "acc", "-j", "train", "-f", "json")
        assert result.exit_code == 0, result.output
        return [r["name"] for r in json.loads(result.stdout)]

    ascending = ["exp-b-fold0", "exp-b-fold1", "exp-b-fold2", "exp-a-fold0", "exp-a-fold1"]
    assert names("runs", "list", "--limit", "5") == ascending
    assert names("export", "--desc")[:2] == ["exp-a-fold2", "exp-a-fold1"]
    with_eval = cli("runs", "list", "--sort", "acc", "-f", "json")
    assert [r["name"] for r in json.loads(with_eval.stdout)][-2:] == ["exp-b-eval", "exp-a-eval"]
    table = cli("table", "--sort", "acc", "--desc", "-m", "acc", "-f", "json")
    assert [row["group"] for row in json.loads(table.stdout)] == ["exp-a", "exp-b"]
    typo = cli("runs", "list", "--sort", "acx")
    assert typo.exit_code == 2 and "did you mean: acc?" in typo.stderr


# --- conventions -------------------------------------------------------------------------


@both_engines
def test_version_python_m_and_py_typed():
    import subprocess
    import sys
    from importlib.metadata import version
    from pathlib import Path

    from helpers import run_wbg

    import wbg

    expected = f"wbg {version('wbg')}\n"
    assert wbg.__version__ == version("wbg")
    for flag in ("--version", "-V"):
        done = run_wbg(flag)
        assert (done.returncode, done.stdout, done.stderr) == (0, expected, "")
    as_module = subprocess.run(
        [sys.executable, "-m", "wbg", "--version"], capture_output=True, text=True
    )
    assert (as_module.returncode, as_module.stdout) == (0, expected), as_module.stderr
    assert (Path(wbg.__file__).parent / "py.typed").is_file()


@both_engines
def test_bare_wbg_prints_help_and_help_is_not_cut(monkeypatch):
    from helpers import run_wbg

    for args in ((), ("runs",), ("group",)):
        done = run_wbg(*args, env={"COLUMNS": "80"})
        assert done.returncode == 0, done.stderr
        assert done.stderr == "" and done.stdout.startswith("Usage: wbg")
    text = run_wbg("--help", env={"COLUMNS": "80"}).stdout
    assert "..." not in text.split("Commands:")[1] and "-V, --version" in text
    assert "  db          The database file: path, info, check, migrate.\n" in text
    assert "field names of `wbg runs list -f json`." in text


# --- the default scope follows the project being worked on ---------------------------------


@both_engines
def test_views_show_the_current_project_with_a_note(cli, db_path, monkeypatch, tmp_path):
    add_run(db_path, project="mine", group="g1", summary={"acc": 0.5})
    add_run(db_path, project="theirs", group="g2", summary={"acc": 0.7})
    note = "note: project mine only (from $WANDB_PROJECT); 1 other project: --all-projects\n"
    monkeypatch.setenv("WANDB_PROJECT", "mine")
    for command in (("table",), ("runs", "list"), ("group", "list"), ("export",)):
        result = cli(*command, "-f", "json")
        assert result.exit_code == 0, result.output
        assert {row.get("project", "mine") for row in json.loads(result.stdout)} == {"mine"}
        assert result.stderr == note, command
        every = cli(*command, "-f", "json", "--all-projects")
        assert len(json.loads(every.stdout)) == 2 and every.stderr == "", command
    assert cli("table", "-p", "theirs").stderr == ""  # asked for: no note
    assert cli("table", "-p", "theirs", "--all-projects").exit_code == 2
    # a project with no runs yet is not a typo: nothing matches
    monkeypatch.setenv("WANDB_PROJECT", "new")
    fresh = cli("runs", "list")
    assert fresh.exit_code == 0 and fresh.stderr.splitlines()[-1] == "no runs match --project new"
    # the settings file's project, when the variable is not set
    monkeypatch.delenv("WANDB_PROJECT")
    (tmp_path / "work" / "wbg.toml").write_text('project = "theirs"\n')
    from_file = cli("runs", "list", "-f", "json")
    assert [r["project"] for r in json.loads(from_file.stdout)] == ["theirs"]
    assert "(from wbg.toml)" in from_file.stderr


# --- runs show --history --keys --tail --wide ---------------------------------------------

HISTORY = """
import wbg
with wbg.init(name="h") as run:
    for i in range(5):
        run.log({"loss": 1 / (i + 1), "acc": i / 10, **({"lr": 0.1} if i == 2 else {})})
"""


@both_engines
def test_history_keys_tail_and_wide(cli, tmp_path):
    import subprocess
    import sys

    script = tmp_path / "h.py"
    script.write_text(HISTORY)
    subprocess.run([sys.executable, str(script)], check=True)
    [record] = json.loads(cli("runs", "list", "-f", "json").stdout)
    wide = cli("runs", "show", record["id"], "--history", "--wide")
    assert wide.stdout.splitlines() == [
        "step  acc  loss    lr",
        "----  ---  ------  ---",
        "0     0    1",
        "1     0.1  0.5",
        "2     0.2  0.3333  0.1",
        "3     0.3  0.25",
        "4     0.4  0.2",
    ]
    tail = cli(
        "runs", "show", record["id"], "--wide", "--keys", "loss,acc", "--tail", "2", "-f", "csv"
    )
    assert tail.stdout == "step,loss,acc\n3,0.25,0.3\n4,0.2,0.4\n"
    long = cli("runs", "show", record["id"], "--keys", "lr", "-f", "json")
    assert [(p["step"], p["key"]) for p in json.loads(long.stdout)["history"]] == [(2, "lr")]


# --- runs set --name, runs diff ------------------------------------------------------------


@both_engines
def test_runs_set_name_and_diff(cli, db_path):
    ids = fixture_experiment(db_path)
    a, b = ids["exp-a-train-0"], ids["exp-b-train-1"]
    renamed = cli("runs", "set", a, "--name", "baseline")
    assert renamed.exit_code == 0 and renamed.stderr == f"set name on {a}\n", renamed.output
    assert json.loads(cli("runs", "show", a, "-f", "json").stdout)["name"] == "baseline"
    assert cli("runs", "set", a).exit_code == 2
    bad = cli("runs", "set", a, "--name", "")
    assert bad.exit_code == 2 and bad.stderr == "Error: name must not be empty\n"
    result = cli("runs", "diff", a, b, "--only-diff")
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0].split() == ["key", a, b]
    assert [line.split()[:4] for line in lines[2:]] == [
        ["*", "group", "exp-a", "exp-b"],
        ["*", "name", "baseline", "exp-b-fold1"],
        ["*", "duration_s", "10", "11"],
        ["*", "config.fold", "0", "1"],
        ["*", "config.lr", "0.1", "0.01"],
        ["*", "summary.acc", "0.9", "0.81"],
        ["*", "summary.loss", "0.5", "0.4"],
    ]
    every = json.loads(cli("runs", "diff", a, b, "-f", "json").stdout)
    assert {"key": "config.model.name", "a": "mlp", "b": "mlp", "same": True} in every
    assert cli("runs", "diff", a, "nope").exit_code == 2


# --- re-running a grid ---------------------------------------------------------------------


@both_engines
def test_resume_starts_only_the_unfinished_trials(db_path):
    from helpers import records, run_wbg

    first = run_wbg(
        "run", "-g", "sweep", "--grid", "x=1..3", "--repeat", "2",
        "--", "sh", "-c", "exit $(( ({x} + {repeat}) % 2 ))",
    )  # fmt: skip
    assert first.returncode == 1
    again = run_wbg(
        "run", "-g", "sweep", "--grid", "x=1..3", "--repeat", "2", "--resume",
        "--", "sh", "-c", "echo {x}#{repeat}",
    )  # fmt: skip
    assert again.returncode == 0, again.stderr
    assert again.stderr.splitlines()[0] == (
        "wbg: --resume: 3 of 6 runs already finished in group sweep; starting 3"
    )
    assert again.stdout.splitlines()[:3] == ["1#0", "2#1", "3#0"]
    finished = [r["config"] for r in records(db_path) if r["state"] == "finished"]
    assert sorted((c["x"], c["repeat"]) for c in finished) == [
        (x, rep) for x in (1, 2, 3) for rep in (0, 1)
    ]
    nothing = run_wbg("run", "-g", "sweep", "--grid", "x=1..3", "--repeat", "2", "--resume",
                      "--", "sh", "-c", "echo {x}")  # fmt: skip
    assert nothing.returncode == 0 and nothing.stdout == ""
    assert len(records(db_path)) == 9
    no_group = run_wbg("run", "--grid", "x=1..3", "--resume", "--", "echo", "{x}")
    assert no_group.returncode == 2
    assert no_group.stderr.startswith("Error: --resume needs the group to resume\n")


# --- shell completion ----------------------------------------------------------------------


@both_engines
def test_completion_command_prints_the_shipped_scripts():
    from pathlib import Path

    from helpers import run_wbg

    root = Path(__file__).resolve().parent.parent
    for shell in ("bash", "zsh", "fish"):
        done = run_wbg("completion", shell)
        assert done.returncode == 0, done.stderr
        assert done.stdout == (root / "completions" / f"wbg.{shell}").read_text()
    assert run_wbg("completion", "tcsh").returncode == 2


@both_engines
def test_plot_completes_only_metrics_with_history(db_path, tmp_path):
    import os
    import subprocess
    import sys

    from helpers import wbg_executable

    script = tmp_path / "h.py"
    script.write_text(HISTORY + 'with wbg.init() as run:\n    run.summary["best"] = 1.0\n')
    subprocess.run([sys.executable, str(script)], check=True)

    def complete(words):
        env = {**os.environ, "_WBG_COMPLETE": "complete_bash", "COMP_WORDS": words,
               "COMP_CWORD": str(len(words.split(" ")) - 1)}  # fmt: skip
        done = subprocess.run(wbg_executable(), env=env, capture_output=True, text=True)
        return done.stdout.split()

    assert complete("wbg plot ") == ["acc", "loss", "lr"]
    assert complete("wbg table -m ") == ["acc", "best", "loss", "lr", "duration_s"]


@both_engines
def test_grid_end_table_names_runs_only_when_named(db_path):
    from helpers import run_wbg

    done = run_wbg("run", "-g", "named", "--name", "try-{k}", "--grid", "k=1,2", "--", "true")
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[0].split() == ["name", "id", "k", "state", "exit"]
    assert [line.split()[0] for line in done.stdout.splitlines()[2:]] == ["try-1", "try-2"]


@both_engines
def test_group_page_sorts_its_runs_by_a_metric(cli, db_path):
    ids = fixture_experiment(db_path)
    result = cli("group", "show", "exp-a", "--sort", "acc", "--desc", "-f", "json")
    assert result.exit_code == 0, result.output
    order = [row["id"] for row in json.loads(result.stdout)["runs_table"]]
    assert order == [ids[f"exp-a-{k}"] for k in ("train-2", "train-1", "train-0", "eval")]


RANKED = """
import wbg
for seed in range(2):
    with wbg.init(group="ranked", config={"seed": seed}) as run:
        for step in range(3):
            run.log({"val_loss": 1.0 / (step + 1 + seed), "train_loss": 2.0 / (step + 1)})
        run.summary["a_params"] = 1234567.0
        run.summary["b_flops"] = 3.5e9
"""

TABLE_80 = """\
group   runs  train_loss  val_loss       a_params       b_flops
------  ----  ----------  -------------  -------------  ---------
ranked  2     0.6667 ± 0  0.292 ± 0.059  1,234,567 ± 0  3.5e9 ± 0
"""


@both_engines
def test_table_at_80_columns_puts_logged_metrics_first(cli, db_path, tmp_path, monkeypatch):
    import subprocess
    import sys

    script = tmp_path / "ranked.py"
    script.write_text(RANKED)
    subprocess.run([sys.executable, str(script)], check=True, capture_output=True)
    monkeypatch.setenv("COLUMNS", "80")
    result = cli("table")
    assert result.exit_code == 0, result.output
    assert result.stdout == TABLE_80
    assert result.stderr == (
        "note: 1 metric left out to fit the terminal: duration_s (-m picks; -f csv/json has all)\n"
    )


@both_engines
def test_a_run_without_a_name_is_not_shown_with_its_id_twice(cli, db_path):
    run_id = add_run(db_path, summary={"acc": 0.5})
    named = add_run(db_path, name="baseline", summary={"acc": 0.7})
    table = cli("table", "--no-group", "-m", "acc").stdout.splitlines()
    assert sorted(line.split() for line in table[2:]) == sorted(
        [[run_id, "1", "0.5"], [named, "baseline", "1", "0.7"]]
    )
    listed = cli("runs", "list").stdout.splitlines()
    assert sorted(len(line.split()) for line in listed[2:]) == [5, 6]
