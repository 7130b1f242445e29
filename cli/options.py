"""Option aliases shared by every command, so each is spelled and documented once."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Annotated

import typer

DbOpt = Annotated[
    Path | None,
    typer.Option(
        "--db",
        help="SQLite file to use (default: $WBG_DB, then `db` in wbg.toml / [tool.wbg], "
        "then the per-user data directory).",
        show_default=False,
        dir_okay=False,
    ),
]
ProjectOpt = Annotated[
    str | None,
    typer.Option("--project", "-p", help="Project (default: $WANDB_PROJECT, settings, cwd name)."),
]
GroupOpt = Annotated[
    str | None,
    typer.Option("--group", "-g", help="Group (experiment) name (default: $WANDB_RUN_GROUP)."),
]
JobTypeOpt = Annotated[
    str | None,
    typer.Option("--job-type", "-j", help="Role of the run: train, eval... ($WANDB_JOB_TYPE)."),
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
    int, typer.Option("--precision", min=0, max=17, help="Significant digits in human formats.")
]


def open_db(db: Path | None, *, create: bool = True) -> tuple[sqlite3.Connection, Path]:
    """Resolve the database path (one rule, in wbg.settings) and open it."""
    from wbg.db import connect
    from wbg.settings import resolve_db_path

    path = resolve_db_path(db)
    return connect(path, create=create), path


# Run filters shared by every reading command (see wbg.query.Filters).
StateOpt = Annotated[
    str | None,
    typer.Option(
        "--state", help="Only runs in this state (running, finished, failed, killed, crashed)."
    ),
]
TagOpt = Annotated[str | None, typer.Option("--tag", "-t", help="Only runs with this tag.")]
WhereOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--where",
        metavar="'KEY OP VALUE'",
        help="Only runs where the condition holds (repeatable, ANDed); OP one of "
        "= != < <= > >= ~ (~ is a glob): --where 'lr >= 0.01'.",
    ),
]
