"""Recording commands: ``wbg run``, ``wbg new-group``, ``wbg log``."""

import contextlib
import os
import sys
from enum import Enum
from pathlib import Path
from typing import Annotated

import typer

from wbg.cli.options import DbOpt, GroupOpt, JobTypeOpt, ProjectOpt, open_db, open_db_for_recording


class Shell(str, Enum):
    posix = "posix"
    fish = "fish"
    powershell = "powershell"


def register(app: typer.Typer) -> None:
    app.command(
        "run",
        context_settings={"allow_interspersed_args": False},
        no_args_is_help=True,
    )(run)
    app.command("new-group")(new_group)
    app.command("log", no_args_is_help=True)(log)


def run(
    command: Annotated[
        list[str], typer.Argument(help="The command to run, after `--`.", show_default=False)
    ],
    group: GroupOpt = None,
    job_type: JobTypeOpt = None,
    name: Annotated[
        str | None, typer.Option("--name", "-n", help="Run name (with --grid: may use {KEY}).")
    ] = None,
    project: ProjectOpt = None,
    config: Annotated[
        list[str] | None,
        typer.Option(
            "--config",
            "-c",
            metavar="KEY=VALUE",
            help="Config value (repeatable); VALUE typed as TOML/JSON (3, 0.1, true, [1,2]).",
        ),
    ] = None,
    config_file: Annotated[
        list[Path] | None,
        typer.Option(
            "--config-file",
            metavar="FILE",
            help="TOML or JSON config file (repeatable; later files and -c win).",
        ),
    ] = None,
    tag: Annotated[list[str] | None, typer.Option("--tag", "-t", help="Tag (repeatable).")] = None,
    notes: Annotated[str | None, typer.Option("--notes", help="Free-text notes.")] = None,
    no_capture: Annotated[
        bool, typer.Option("--no-capture", help="Do not turn printed metrics into history.")
    ] = False,
    capture_pattern: Annotated[
        list[str] | None,
        typer.Option(
            "--capture-pattern",
            metavar="REGEX",
            help="Extra capture regex with named groups key and value (repeatable).",
        ),
    ] = None,
    grid: Annotated[
        list[str] | None,
        typer.Option(
            "--grid",
            metavar="KEY=V1,V2",
            help="Launch one run per value (repeatable: every combination); KEY=A..B is an "
            "integer range; {KEY} in the command is replaced by the value.",
        ),
    ] = None,
    repeat: Annotated[
        int | None,
        typer.Option(
            "--repeat",
            min=1,
            metavar="N",
            help="Launch each combination N times ({repeat} and config.repeat: 0..N-1).",
        ),
    ] = None,
    parallel: Annotated[
        int | None,
        typer.Option(
            "--parallel",
            min=1,
            metavar="J",
            help="Run up to J runs at once, output lines prefixed by the run name.",
        ),
    ] = None,
    fail_fast: Annotated[
        bool, typer.Option("--fail-fast", help="Start no more runs after the first failure.")
    ] = False,
    dry_run: Annotated[
        bool,
        typer.Option(
            "--dry-run", help="Print the planned runs (name, values, command); record nothing."
        ),
    ] = False,
    resume: Annotated[
        bool,
        typer.Option(
            "--resume",
            help="With --grid/--repeat: start only the runs of the group that have not "
            "finished yet (matched by grid values and repeat index).",
        ),
    ] = False,
    db: DbOpt = None,
) -> int:
    """Run COMMAND as a recorded run of a group: wbg run -g exp -j train -- python train.py

    With --grid/--repeat: one run per combination and repeat, all in one group (the given
    one, $WANDB_RUN_GROUP, else a new one); the runs' table is printed at the end.
    """
    from wbg import settings, values
    from wbg.capture import ScalarCapture, compile_patterns
    from wbg.launch import RunSpec, launch

    project, group, job_type = settings.resolve_grouping(project, group, job_type)
    tags = values.check_tags(tag)
    merged: dict = {}
    for path in config_file or []:
        values.deep_merge(merged, values.load_config_file(path))
    values.deep_merge(merged, values.parse_assignments(config or []))
    patterns = compile_patterns(capture_pattern or [])
    spec = RunSpec(
        project=project,
        group=group,
        job_type=job_type,
        name=name,
        tags=tags,
        notes=notes,
        config=merged,
    )
    if grid or repeat is not None or parallel is not None or fail_fast or dry_run or resume:
        from wbg.cli.batch import run_batch

        return run_batch(
            command,
            spec,
            grid=grid or [],
            repeat=repeat or 1,
            parallel=parallel,
            fail_fast=fail_fast,
            dry_run=dry_run,
            resume=resume,
            capture=None if no_capture else (lambda: ScalarCapture(patterns)),
            db=db,
        )
    conn, db_path, unavailable = open_db_for_recording(db)  # unavailable: the job runs anyway
    talk = sys.stderr.isatty()

    def announce(run_id: str) -> None:
        if talk:
            where = f" in group {group}" if group else ""
            sys.stderr.write(f"wbg: recording run {run_id}{where}\n")
            sys.stderr.flush()

    from wbg.cli.common import warn_recording

    result = launch(
        conn,
        db_path,
        command,
        spec,
        capture=None if no_capture else ScalarCapture(patterns),
        announce=announce,
        warn=warn_recording,
        unavailable=unavailable,
    )
    if conn is not None:
        conn.close()
    for problem in result.problems:
        sys.stderr.write(f"wbg: note: W&B run not fully recorded: {problem}\n")
    if result.error:
        sys.stderr.write(f"Error: {result.error}\n")
    elif talk:
        sys.stderr.write(
            f"wbg: run {result.run_id} {result.state} (exit {result.exit_code}); "
            f"see `wbg runs show {result.run_id}`\n"
        )
    return result.exit_code


def new_group(
    prefix: Annotated[
        str, typer.Option("--prefix", help="Text before the random id.")
    ] = "experiment-",
    shell: Annotated[
        Shell, typer.Option("--shell", help="Syntax of the printed assignment.")
    ] = Shell.posix,
    name_only: Annotated[
        bool, typer.Option("--name-only", help="Print only the new group name.")
    ] = False,
) -> None:
    """Print a new group name as a shell assignment (for eval "$(wbg new-group)")."""
    from wbg.ids import generate_id
    from wbg.values import check_group

    name = f"{prefix}{generate_id()}"
    check_group(name)
    if name_only:
        line = name
    elif shell is Shell.powershell:
        line = "$env:WANDB_RUN_GROUP = '" + name.replace("'", "''") + "'"
    else:
        import shlex

        quoted = shlex.quote(name)
        line = (
            f"set -gx WANDB_RUN_GROUP {quoted}"
            if shell is Shell.fish
            else f"export WANDB_RUN_GROUP={quoted}"
        )
    typer.echo(line)


def log(
    items: Annotated[list[str], typer.Argument(metavar="KEY=VALUE...", help="Metrics to log.")],
    step: Annotated[
        int | None,
        typer.Option(
            "--step", min=0, max=2**63 - 1, help="Step of the points (default: next step)."
        ),
    ] = None,
    run_id: Annotated[
        str | None, typer.Option("--run", help="Run id (default: $WBG_RUN_ID).")
    ] = None,
    summary: Annotated[
        bool, typer.Option("--summary", help="Set summary values instead of logging points.")
    ] = False,
    db: DbOpt = None,
) -> None:
    """Log metrics into the current run (inside `wbg run`) or --run ID."""
    from wbg import runs, values
    from wbg.db import transaction
    from wbg.errors import InvalidInput

    parsed: dict = {}
    for item in items:
        key, raw = values.split_assignment(item, "metric")
        parsed[key] = values.parse_value(raw)
    target = run_id or os.environ.get("WBG_RUN_ID")
    if not target:
        raise InvalidInput(
            "no run to log into", hint="pass --run ID, or call wbg log inside `wbg run`"
        )
    if not summary:
        bad = [key for key, value in parsed.items() if not values.is_number(value)]
        if bad:
            raise InvalidInput(
                f"not a number: {', '.join(f'{k}={parsed[k]!r}' for k in bad)}",
                hint="history points are numbers; use --summary for other values",
            )
    conn, _ = open_db(db)
    with contextlib.closing(conn):
        num = runs.run_num(conn, target)
        if summary:
            with transaction(conn):
                kept = runs.merge_summary(conn, num, parsed)
            if kept:
                typer.echo(
                    f"wbg: not replacing the numeric summary value of {', '.join(kept)} "
                    "with a value that is not a number",
                    err=True,
                )
        else:
            runs.log_points(conn, num, parsed, step)
