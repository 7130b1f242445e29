"""Option aliases shared by every command, so each is spelled and documented once."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Annotated

import typer

# --- completion from the database ---------------------------------------------------------
# Each callback opens the database read-only and returns [] on any problem: a completion
# never creates a file and never prints.


def _complete(ctx: typer.Context, kind: str, incomplete: str) -> list[str]:
    try:
        from wbg.complete import candidates

        db = ctx.params.get("db") if ctx is not None else None
        return candidates(db, kind, incomplete)
    except Exception:
        return []


def complete_group(ctx: typer.Context, incomplete: str) -> list[str]:
    return _complete(ctx, "group", incomplete)


def complete_job_type(ctx: typer.Context, incomplete: str) -> list[str]:
    return _complete(ctx, "job_type", incomplete)


def complete_project(ctx: typer.Context, incomplete: str) -> list[str]:
    return _complete(ctx, "project", incomplete)


def complete_key(ctx: typer.Context, incomplete: str) -> list[str]:
    return _complete(ctx, "key", incomplete)


def complete_metric(ctx: typer.Context, incomplete: str) -> list[str]:
    return _complete(ctx, "metric", incomplete)


def complete_history_metric(ctx: typer.Context, incomplete: str) -> list[str]:
    return _complete(ctx, "history_metric", incomplete)


def complete_run_id(ctx: typer.Context, incomplete: str) -> list[str]:
    return _complete(ctx, "run", incomplete)


def complete_state(incomplete: str) -> list[str]:
    from wbg.runs import STATES

    return [state for state in STATES if state.startswith(incomplete)]


# A string, not a Path: a postgresql:// URL must keep its "//" (Path would fold it).
DbOpt = Annotated[
    str | None,
    typer.Option(
        "--db",
        metavar="PATH|URL",
        help="SQLite file or postgresql:// URL to use (default: $WBG_DB, then `db` in "
        "wbg.toml / [tool.wbg], then the per-user data directory).",
        show_default=False,
        dir_okay=False,
        path_type=str,
    ),
]
ProjectOpt = Annotated[
    str | None,
    typer.Option("--project", "-p", help="Project (default: $WANDB_PROJECT, settings, cwd name)."),
]
GroupOpt = Annotated[
    str | None,
    typer.Option(
        "--group",
        "-g",
        help="Group (experiment) name (default: $WANDB_RUN_GROUP).",
        autocompletion=complete_group,
    ),
]
JobTypeOpt = Annotated[
    str | None,
    typer.Option(
        "--job-type",
        "-j",
        help="Role of the run: train, eval... ($WANDB_JOB_TYPE).",
        autocompletion=complete_job_type,
    ),
]
FormatOpt = Annotated[
    str,
    typer.Option(
        "--format",
        "-f",
        help="Output format: any tabulate format (simple, github, grid...), csv, json, jsonl.",
    ),
]
PrecisionOpt = Annotated[
    int | None,
    typer.Option(
        "--precision",
        min=1,
        max=17,
        metavar="N",
        help="Significant digits in human formats (default: 4, and `mean ± std` to the "
        "std's 2 significant digits).",
    ),
]


def open_db(
    db: str | Path | None, *, create: bool = True, read_only: bool = False
) -> tuple[sqlite3.Connection, Path]:
    """Resolve the database path (one rule, in wbg.settings) and open it.

    ``read_only`` for commands that only read: nothing is created or written.
    """
    from wbg.db import connect
    from wbg.settings import resolve_db_path

    path = resolve_db_path(db)
    return connect(path, create=create, read_only=read_only), path


def open_db_for_recording(
    db: str | Path | None,
) -> tuple[sqlite3.Connection | None, Path, str | None]:
    """``open_db`` for the commands that run a job: a database that cannot be written for
    now (full disk, I/O error, a lock held past the timeout) is no reason to stop the job.
    Returns the connection (None then), the path and why it is unavailable."""
    from wbg.errors import DatabaseUnavailable
    from wbg.settings import resolve_db_path

    try:
        conn, path = open_db(db)
    except DatabaseUnavailable as exc:
        return None, resolve_db_path(db), exc.message
    return conn, path, None


# --- run filters (wbg table, runs list, export, group list) -------------------------------

ProjectFilterOpt = Annotated[
    str | None,
    typer.Option(
        "--project",
        "-p",
        metavar="NAME",
        help="Only runs of this project.",
        autocompletion=complete_project,
    ),
]
GroupFilterOpt = Annotated[
    str | None,
    typer.Option(
        "--group",
        "-g",
        metavar="NAME",
        help="Only runs of this group.",
        autocompletion=complete_group,
    ),
]
JobTypeFilterOpt = Annotated[
    str | None,
    typer.Option(
        "--job-type",
        "-j",
        metavar="TYPE",
        help="Only runs of this job_type.",
        autocompletion=complete_job_type,
    ),
]
StateOpt = Annotated[
    str | None,
    typer.Option(
        "--state",
        metavar="STATE",
        help="Only runs in this state: running, finished, failed, killed, crashed.",
        autocompletion=complete_state,
    ),
]
TagOpt = Annotated[
    str | None, typer.Option("--tag", "-t", metavar="TAG", help="Only runs with this tag.")
]
WhereOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--where",
        "-w",
        metavar="'KEY OP VALUE'",
        help="Condition on a run field or config key (repeatable, ANDed); OP one of "
        "= != < <= > >= ~ (== is =; ~ is a glob: 'name ~ bert-*'). Quote VALUE to compare as text.",
    ),
]
SearchOpt = Annotated[
    str | None,
    typer.Option(
        "--search",
        "-s",
        metavar="TEXT",
        help="Only runs with every word of TEXT in their name, notes, command, tags or kept "
        "output (whole words, any case).",
        show_default=False,
    ),
]
GroupByOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--group-by",
        "-G",
        metavar="KEY[,KEY...]",
        help="Group by run fields / config keys (repeatable or comma-separated; nested). "
        "Default: by group when any selected run has one, else one per run.",
        autocompletion=complete_key,
    ),
]
MetricOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--metric",
        "-m",
        metavar="NAME",
        help="Summary metric to show (repeatable; default: all, logged ones first).",
        autocompletion=complete_metric,
    ),
]
RunSortOpt = Annotated[
    str | None,
    typer.Option(
        "--sort",
        metavar="KEY",
        help="Sort by a run field, config key or summary metric (runs without it last).",
        autocompletion=complete_key,
    ),
]
DescOpt = Annotated[bool, typer.Option("--desc", help="Sort descending.")]
WideOpt = Annotated[
    bool,
    typer.Option(
        "--wide",
        help="Every column, whole values and full times, however wide (default: fit the terminal).",
    ),
]
LimitOpt = Annotated[
    int | None, typer.Option("--limit", min=1, metavar="N", help="At most N rows.")
]


AllProjectsOpt = Annotated[
    bool,
    typer.Option(
        "--all-projects",
        help="Every project (default: $WANDB_PROJECT or the settings file's project when set).",
    ),
]


def filters_from(
    project: str | None,
    group: str | None,
    job_type: str | None,
    state: str | None,
    tag: str | None,
    where: list[str] | None,
    all_projects: bool = False,
    search: str | None = None,
):
    """The ``wbg.query.Filters`` of the shared filter options (states checked here).

    Without --project or --all-projects, the views show the project the user works in
    ($WANDB_PROJECT, else the settings file's), when one is set (``note_scope`` says so).
    """
    from wbg.errors import InvalidInput
    from wbg.query import Filters
    from wbg.runs import STATES

    if state is not None and state not in STATES:
        raise InvalidInput(f"unknown state {state!r}", hint="states: " + ", ".join(STATES))
    if project is not None and all_projects:
        raise InvalidInput("--project and --all-projects exclude each other")
    project_from = None
    if project is None and not all_projects:
        from wbg.settings import view_project

        project, project_from = view_project()
    filters = Filters(project, group, job_type, state, tag, tuple(where or ()), search=search)
    filters.project_from = project_from
    return filters


def note_scope(filters) -> None:
    """One line on stderr when the views show one project by default and others exist."""
    if filters.project_from and filters.other_projects:
        n = filters.other_projects
        typer.echo(
            f"note: project {filters.project} only (from {filters.project_from}); "
            f"{n} other project{'s' if n > 1 else ''}: --all-projects",
            err=True,
        )
