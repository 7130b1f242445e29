"""The everyday CLI as a demanding user finds it: right answers, 80-column views, filters."""

from __future__ import annotations

import json

import pytest
from views_helpers import fixture_experiment

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


def test_double_equals_means_equals(cli, db_path):
    fixture_experiment(db_path)

    def names(condition):
        result = cli("runs", "list", "-w", condition, "-f", "json")
        assert result.exit_code == 0, result.output
        return sorted(r["name"] for r in json.loads(result.stdout))

    assert names("lr == 0.01") == names("lr = 0.01")
    assert names("lr==0.01") == ["exp-b-eval", "exp-b-fold0", "exp-b-fold1", "exp-b-fold2"]


# --- the table at the end of a grid ------------------------------------------------------


def test_grid_end_table_shows_state_exit_code_and_counts_failures(db_path):
    from helpers import run_wbg

    done = run_wbg(
        "run", "-g", "codes", "--grid", "code=0,3,4", "--", "sh", "-c", "exit $(({code} % 4))"
    )  # fmt: skip
    assert done.returncode == 3, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].split() == ["name", "id", "code", "state", "exit"]
    assert [line.split()[2:] for line in lines[2:]] == [
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


def test_grid_range_with_a_dash_suggests_two_dots(db_path):
    from helpers import raw_count, run_wbg

    done = run_wbg("run", "--grid", "fold=0-4", "--", "echo", "{fold}")
    assert done.returncode == 2
    assert done.stderr.splitlines() == [
        "Error: --grid fold=0-4: a range is written with two dots",
        "--grid fold=0..4 (or quote the text: --grid 'fold=\"0-4\"')",
    ]
    assert raw_count(db_path, "runs") == 0


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
