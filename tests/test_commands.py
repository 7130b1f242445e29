"""`wbg new-group`, `wbg log`, help texts and completion scripts."""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path

import pytest
from helpers import PY, history, no_database, only_record, raw_count, run_wbg

ROOT = Path(__file__).resolve().parent.parent


@no_database
def test_new_group_posix_is_eval_safe_and_exports(cli):
    result = cli("new-group")
    assert result.exit_code == 0
    assert re.fullmatch(r"export WANDB_RUN_GROUP=experiment-[a-z0-9]{8}\n", result.stdout)
    shell = subprocess.run(
        ["bash", "-c", 'eval "$(printf %s "$1")"; printf %s "$WANDB_RUN_GROUP"', "_", result.stdout],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    assert shell.stdout == result.stdout.strip().split("=", 1)[1]


@no_database
def test_new_group_prefix_with_shell_characters_is_quoted(cli):
    result = cli("new-group", "--prefix", "a b;$(touch pwned)'")
    assert result.exit_code == 0
    shell = subprocess.run(
        ["bash", "-c", 'eval "$1"; printf %s "$WANDB_RUN_GROUP"', "_", result.stdout],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    assert shell.stdout.startswith("a b;$(touch pwned)'") and len(shell.stdout) == 27
    assert not Path("pwned").exists()


@no_database
def test_new_group_other_shells(cli):
    assert re.fullmatch(r"set -gx WANDB_RUN_GROUP exp-[a-z0-9]{8}\n",
                        cli("new-group", "--shell", "fish", "--prefix", "exp-").stdout)  # fmt: skip
    assert re.fullmatch(r"\$env:WANDB_RUN_GROUP = 'o''k[a-z0-9]{8}'\n",
                        cli("new-group", "--shell", "powershell", "--prefix", "o'k").stdout)  # fmt: skip
    assert re.fullmatch(r"experiment-[a-z0-9]{8}\n", cli("new-group", "--name-only").stdout)


@no_database
def test_new_group_rejects_bad_shell_and_long_prefix(cli):
    result = cli("new-group", "--shell", "tcsh")
    assert result.exit_code == 2 and result.stderr.startswith("Error: Invalid value for '--shell'")
    result = cli("new-group", "--prefix", "p" * 121)
    assert result.exit_code == 2
    assert result.stderr == "Error: group is 129 characters long; the limit is 128\n"


def test_eval_new_group_then_run_joins_it(db_path):
    script = (
        f'eval "$({" ".join(_wbg())} new-group --prefix demo-)" && '
        f'{" ".join(_wbg())} run -- {PY} -c pass && printf %s "$WANDB_RUN_GROUP"'
    )
    proc = subprocess.run(
        ["bash", "-c", script], capture_output=True, text=True, env=os.environ.copy()
    )
    assert proc.returncode == 0, proc.stderr
    assert only_record(db_path)["group"] == proc.stdout


def _wbg() -> list[str]:
    from helpers import wbg_executable

    return wbg_executable()


def test_log_inside_wbg_run(db_path):
    script = f"{' '.join(_wbg())} log loss=0.5 acc=0.7 && {' '.join(_wbg())} log loss=0.4 && " \
             f"{' '.join(_wbg())} log --summary best=0.9 note=ok"  # fmt: skip
    proc = run_wbg("run", "--no-capture", "--", "sh", "-c", script)
    assert proc.returncode == 0, proc.stderr
    record = only_record(db_path)
    assert sorted(history(db_path, record["id"])) == [
        (0, "acc", 0.7),
        (0, "loss", 0.5),
        (1, "loss", 0.4),
    ]
    assert record["summary"] == {"loss": 0.4, "acc": 0.7, "best": 0.9, "note": "ok"}


def test_log_with_run_and_step(db_path, cli):
    import wbg

    with wbg.init(project="p") as run:
        pass
    assert cli("log", "--run", run.id, "--step", "7", "x=1").exit_code == 0
    assert history(db_path, run.id) == [(7, "x", 1.0)]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["x=1"], "Error: no run to log into"),
        (["--run", "zzzzzzzz", "x=1"], "Error: no run with id 'zzzzzzzz'"),
        (["--run", "abc", "x"], "Error: malformed metric 'x': expected KEY=VALUE"),
        (["--run", "abc", "x=hello"], "Error: not a number: x='hello'"),
    ],
)
def test_log_errors(cli, args, message):
    result = cli("log", *args)
    assert result.exit_code == 2, result
    assert result.stderr.splitlines()[0] == message


def test_log_never_changes_recorded_data_on_error(db_path, cli):
    import wbg

    with wbg.init(project="p") as run:
        run.log({"x": 1.0})
    assert cli("log", "--run", run.id, "x=1", "y=nope").exit_code == 2
    assert history(db_path, run.id) == [(0, "x", 1.0)]
    assert raw_count(db_path, "history") == 1


def all_commands(command, path=()):
    # typer 0.28 builds its commands from its own vendored click classes, so a group is
    # told by having sub-commands, not by isinstance against the installed click.
    yield path, command
    for name, sub in getattr(command, "commands", {}).items():
        yield from all_commands(sub, (*path, name))


def click_app():
    import typer

    from wbg.cli.main import app

    return typer.main.get_command(app)


# Every command and group below `wbg` (update when a command is added: the test proves
# that the walk reaches them all).
COMMAND_COUNT = 32


@no_database
def test_every_command_and_option_has_help(cli):
    walked = list(all_commands(click_app()))
    assert len(walked) - 1 == COMMAND_COUNT, sorted(" ".join(p) for p, _ in walked)
    for path, command in walked:
        assert command.help or command.short_help, path
        for param in command.params:
            if param.param_type_name == "option":
                assert param.help, (path, param.name)
        if path:
            result = cli(*path, "--help")
            assert result.exit_code == 0, (path, result.output)
            assert "Usage: wbg" in result.stdout
            assert cli(*path, "-h").stdout == result.stdout


@no_database
@pytest.mark.parametrize("shell", ["bash", "zsh", "fish"])
def test_completion_scripts_are_current(shell):
    generated = run_wbg(env={"_WBG_COMPLETE": f"source_{shell}"})
    assert generated.returncode == 0, generated.stderr
    stored = (ROOT / "completions" / f"wbg.{shell}").read_text()
    assert stored == generated.stdout, f"run completions/generate.sh ({shell} is stale)"


@no_database
def test_completion_of_command_names():
    proc = run_wbg(
        env={"_WBG_COMPLETE": "complete_bash", "COMP_WORDS": "wbg ru", "COMP_CWORD": "1"}
    )
    assert proc.returncode == 0
    assert proc.stdout.split() == ["run", "runs"]


def test_runs_show_json_has_the_record_fields(cli, db_path):
    import wbg
    from wbg.runs import RECORD_FIELDS

    with wbg.init(project="p", group="g", config={"lr": 0.1}) as run:
        run.log({"loss": 0.5})
    result = cli("runs", "show", run.id, "--format", "json")
    assert result.exit_code == 0, result.output
    record = json.loads(result.stdout)
    assert list(record) == [*RECORD_FIELDS, "history_points"]
    assert record["history_points"] == 1
    assert record["started_at"].endswith("+00:00")
    with_history = json.loads(cli("runs", "show", run.id, "-f", "json", "--history").stdout)
    assert with_history["history"][0]["key"] == "loss"
    listed = json.loads(cli("runs", "list", "--format", "json").stdout)
    assert [list(r) for r in listed] == [list(RECORD_FIELDS)]


def test_unknown_run_id_suggests_close_matches(cli):
    import wbg

    with wbg.init(project="p") as run:
        pass
    result = cli("runs", "show", run.id[:-1] + ("x" if run.id[-1] != "x" else "y"))
    assert result.exit_code == 2
    lines = result.stderr.splitlines()
    assert lines[0].startswith("Error: no run with id")
    assert lines[1] == f"did you mean: {run.id}?"


def test_demo_records_through_the_real_paths(db_path, cli):
    proc = run_wbg("demo", "--epochs", "5")
    assert proc.returncode == 0, proc.stderr
    listed = json.loads(cli("runs", "list", "--format", "json").stdout)
    assert len(listed) == 8
    assert {r["job_type"] for r in listed} == {"train", "eval"}
    assert len({r["group"] for r in listed}) == 2
    assert all(r["state"] == "finished" for r in listed)
    train = [r for r in listed if r["job_type"] == "train"]
    evals = [r for r in listed if r["job_type"] == "eval"]
    assert all(set(r["summary"]) == {"loss", "acc"} for r in train)
    assert all("val_acc" in r["summary"] and r["config"]["split"] == "validation" for r in evals)
    # it ends with the grouped table of its two groups
    table = proc.stdout.splitlines()
    assert table[0].split()[:2] == ["group", "runs"]
    assert sorted(line.split()[0] for line in table[2:]) == sorted({r["group"] for r in listed})


@no_database
def test_command_modules_import_shared_parts_not_each_other() -> None:
    """Each command module registered in cli/main.py imports render/options/common (and its
    own helpers), never another command module: they stand alone."""
    import ast

    import wbg.cli

    cli_dir = Path(wbg.cli.__file__).parent
    main = ast.parse((cli_dir / "main.py").read_text())
    commands = {
        alias.name
        for node in ast.walk(main)
        if isinstance(node, ast.ImportFrom) and node.module == "wbg.cli"
        for alias in node.names
    }
    assert len(commands) >= 10, commands
    crossings = []
    for name in sorted(commands):
        tree = ast.parse((cli_dir / f"{name}.py").read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module:
                imported = (
                    {node.module.removeprefix("wbg.cli.")}
                    if node.module.startswith("wbg.cli.")
                    else ({a.name for a in node.names} if node.module == "wbg.cli" else set())
                )
                crossings += [(name, other) for other in imported & commands if other != name]
    assert crossings == []


@no_database
def test_tests_import_helpers_not_conftest() -> None:
    """conftest.py holds fixtures; what tests import lives in tests/helpers.py (pytest may
    load conftest under another module name, and then ``from conftest`` is a second copy)."""
    tests = Path(__file__).parent
    offenders = [
        path.name
        for path in sorted(tests.glob("*.py"))
        if re.search(r"^\s*(from conftest import|import conftest)", path.read_text(), re.M)
    ]
    assert offenders == []
