"""``wbg run --grid/--repeat/--parallel``: a whole experiment as runs of one group.

The plan, the scheduling and the supervision live in ``wbg.batch``; this module prints:
the group (when it was made up), one line per run start and end on stderr when stderr is
a terminal, and the batch's table at the end on stdout.
"""

from __future__ import annotations

import contextlib
import shlex
import signal
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from wbg.cli.options import open_db, open_db_for_recording
from wbg.cli.render import render

if TYPE_CHECKING:
    import sqlite3

    from wbg.batch import Trial
    from wbg.capture import ScalarCapture
    from wbg.launch import LaunchResult, RunSpec


def run_batch(
    command: Sequence[str],
    spec: RunSpec,
    *,
    grid: Sequence[str],
    repeat: int,
    parallel: int | None,
    fail_fast: bool,
    dry_run: bool,
    resume: bool = False,
    capture: Callable[[], ScalarCapture] | None,
    db: str | Path | None,
) -> int:
    """Plan the batch (errors before anything starts), then run it or show the plan."""
    import copy
    from dataclasses import replace

    from wbg import batch, values
    from wbg.ids import generate_id

    axes = batch.parse_grid(grid)
    new_group = spec.group is None
    if resume and new_group:
        from wbg.errors import InvalidInput

        raise InvalidInput(
            "--resume needs the group to resume",
            hint="give --group G (or set $WANDB_RUN_GROUP) as when the batch was first run",
        )
    group = f"experiment-{generate_id()}" if spec.group is None else spec.group
    spec = replace(spec, group=group)
    trials = batch.plan(command, axes, repeat, spec)
    grid_keys = [axis.key for axis in axes]
    keys = grid_keys + (["repeat"] if repeat > 1 else [])
    for key, files in batch.unread_keys(command, axes):
        looked = f"the command or {', '.join(files)}" if files else "the command"
        _say(
            f"wbg: warning: --grid {key}: no {{{key}}} in the command, and neither "
            f"{key.rsplit('.', 1)[-1]!r} nor {batch.param_env_name(key)} appears in {looked}; "
            "its runs may differ only in their config"
        )
    if new_group:
        _say(f"wbg: new group {group}")
    if dry_run:
        _print_plan(trials, keys)
        common = copy.deepcopy(dict(trials[0].spec.config or {}))
        for key in keys:
            values.pop_dotted(common, key, prune=True)
        if common:
            _say(f"wbg: config common to all runs: {values.dumps(common)}")
        _say(f"wbg: dry run: {_runs(len(trials))} planned in group {spec.group}; nothing recorded")
        return 0

    from wbg.errors import DatabaseError, NoDatabase

    conn: sqlite3.Connection | None
    if resume:  # which trials are done is in the database: it must open
        conn, db_path = open_db(db)
    else:  # the trials run, unrecorded if the database cannot be written for now
        conn, db_path, _unavailable = open_db_for_recording(db)
    with contextlib.closing(conn) if conn is not None else contextlib.nullcontext():
        if resume:
            planned = len(trials)
            trials = batch.unfinished(conn, trials, keys)
            _say(
                f"wbg: --resume: {planned - len(trials)} of {_runs(planned)} already finished "
                f"in group {spec.group}; starting {len(trials)}"
            )
            if not trials:
                return 0
    talk = sys.stderr.isatty()
    width = len(str(len(trials)))

    def on_start(trial: Trial, run_id: str) -> None:
        if talk:
            _say(f"wbg: [{trial.index + 1:>{width}}/{len(trials)}] run {run_id} {_label(trial)}")

    def on_end(trial: Trial, result: LaunchResult) -> None:
        for problem in result.problems:
            _say(f"wbg: note: {_label(trial)}: W&B run not fully recorded: {problem}")
        if result.error:
            _say(f"Error: {_label(trial)}: {result.error}")
        elif talk:
            _say(
                f"wbg: run {result.run_id} {result.state} (exit {result.exit_code}) {_label(trial)}"
            )

    def on_stop(signum: int, running: int) -> None:
        if running:
            after = "SIGKILL" if signum == signal.SIGTERM else "SIGTERM"
            _say(
                f"wbg: stopping: waiting for {_runs(running)} to end ({after} in "
                f"{batch.STOP_GRACE_S:g} s; signal again to hurry)"
            )

    sys.stdout.flush()
    sys.stderr.flush()
    from wbg.cli.common import warn_recording

    runner = batch.BatchRunner(
        db_path,
        trials,
        parallel=parallel or 1,
        fail_fast=fail_fast,
        prefix_output=parallel is not None,
        capture=capture,
        on_start=on_start,
        on_end=on_end,
        on_stop=on_stop,
        warn=warn_recording,
    )
    outcome = runner.run()
    if outcome.not_started:
        why = "stopped" if outcome.stop_signal else "--fail-fast"
        _say(f"wbg: {why}: {_runs(outcome.not_started)} of {len(trials)} not started")
    if outcome.not_started < len(trials):
        try:
            _print_runs(db_path, outcome, keys, group)
        except (DatabaseError, NoDatabase) as exc:  # the runs' outcome is the exit code
            _say(f"wbg: warning: cannot show the runs' table ({exc.message})")
    started = len(trials) - outcome.not_started
    failed = batch.failures(outcome)
    counts = f"{len(failed)} failed" if failed else "all finished"
    if failed:
        shown = ", ".join(
            f"{trial.spec.name or result.run_id} (exit {result.exit_code})"
            for trial, result in failed[:3]
        )
        counts += f": {shown}" + (", ..." if len(failed) > 3 else "")
    _say(
        f"wbg: {_runs(started)} in group {group}, {counts}; "
        f"see `wbg runs list --group {shlex.quote(group)}`"
    )
    return outcome.exit_code


def _say(line: str) -> None:
    sys.stderr.write(line + "\n")
    sys.stderr.flush()


def _runs(count: int) -> str:
    return f"{count} run" + ("" if count == 1 else "s")


def _label(trial: Trial) -> str:
    return f"[{trial.spec.name}]" if trial.spec.name else ""


def _print_plan(trials: Sequence[Trial], keys: Sequence[str]) -> None:
    from wbg import values

    rows = [
        {
            "name": trial.spec.name or "",
            **{key: values.get_dotted(trial.spec.config, key) for key in keys},
            "command": shlex.join(trial.command),
        }
        for trial in trials
    ]
    typer.echo(render(rows, ["name", *keys, "command"]))


def _print_runs(db_path: Path, outcome: Any, keys: Sequence[str], group: str) -> None:
    """The batch's runs: name (unless it is the grid values), id, grid keys, state, exit
    code, numeric summary values."""
    from wbg import batch
    from wbg.cli import render
    from wbg.db import connect

    with contextlib.closing(connect(db_path, read_only=True)) as conn:
        rows, metrics = batch.batch_rows(conn, outcome, keys)
    # the default name repeats the grid values shown next to it
    fixed = ["name"] * any(row["named"] for row in rows) + ["id", *keys, "state", "exit_code"]
    blocks = [(name, [f"summary.{name}"]) for name in metrics]
    labels = {f"summary.{name}": name for name in metrics if name not in fixed}
    labels["exit_code"] = "exit"
    sys.stdout.flush()
    text, dropped = render.render_fitted(
        rows, fixed, blocks, "simple", 4, render.output_width(), labels
    )
    typer.echo(text)
    render.note_dropped(dropped, f"all: wbg table -g {shlex.quote(group)} --no-group -f csv")
