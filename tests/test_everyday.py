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
