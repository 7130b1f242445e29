"""Working beside W&B and past one machine: ``wbg import wandb``, ``wbg export wandb``,
``wbg merge``."""

from __future__ import annotations

import contextlib
import time
from enum import Enum
from pathlib import Path
from typing import Annotated, Any

import typer

from wbg.cli.options import (
    DbOpt,
    GroupFilterOpt,
    JobTypeFilterOpt,
    ProjectFilterOpt,
    StateOpt,
    TagOpt,
    WhereOpt,
    filters_from,
    open_db,
)

import_app = typer.Typer(
    help="Bring runs recorded by other tools into the database.",
    no_args_is_help=True,
    rich_markup_mode=None,
)


class Prefer(str, Enum):
    ours = "ours"
    theirs = "theirs"
    newer = "newer"


def register(app: typer.Typer, export_app: typer.Typer) -> None:
    """``wbg import wandb``, ``wbg merge``; ``wbg export wandb`` joins ``export_app``."""
    app.add_typer(import_app, name="import")
    export_app.command("wandb")(export_wandb)
    app.command("merge", no_args_is_help=True)(merge)


class Progress:
    """Progress lines on stderr for long jobs: nothing for the first seconds, then one
    line every few seconds."""

    def __init__(self, verb: str, first_after: float = 2.0, every: float = 2.0) -> None:
        self.verb = verb
        self.start = time.monotonic()
        self.next_at = self.start + first_after
        self.every = every

    def __call__(self, done: int, total: int, *_: object) -> None:
        now = time.monotonic()
        if now >= self.next_at and done < total:
            typer.echo(f"{self.verb} {done}/{total}...", err=True)
            self.next_at = now + self.every


@import_app.command("wandb", no_args_is_help=True)
def import_wandb(
    paths: Annotated[
        list[Path],
        typer.Argument(
            metavar="PATH...",
            help="W&B runs: a wandb/ folder, a run folder (offline-run-* or run-*) or a "
            "run-<id>.wandb file.",
            show_default=False,
        ),
    ],
    project: Annotated[
        str | None,
        typer.Option("--project", "-p", help="Put the runs in this project (default: W&B's)."),
    ] = None,
    db: DbOpt = None,
) -> None:
    """Import W&B runs (offline or synced) with group, job_type, config, summary, history.

    Importing a run already in the database adds nothing. A run whose log was cut off
    (its process killed) brings what is complete and is marked crashed.
    """
    from wbg import wandb_io

    wandb_io.require_wandb("importing W&B runs")
    logs = wandb_io.find_run_logs(paths)
    if not logs:
        from wbg.errors import InvalidInput

        raise InvalidInput(
            f"no W&B run logs (run-*.wandb) in {' '.join(str(p) for p in paths)}",
            hint="point at a wandb/ folder, a run folder or a run-<id>.wandb file",
        )
    counts = {"imported": 0, "present": 0, "error": 0}
    progress = Progress("imported")

    def report(done: int, total: int, result: wandb_io.ImportResult) -> None:
        counts[result.status] += 1
        run = result.run
        if result.status == "error" or run is None:
            typer.echo(f"warning: {result.message}", err=True)
        elif result.status == "present":
            typer.echo(
                f"present   {run.id}  {run.project}/{run.group or '-'}  (already in the database)"
            )
        else:
            note = f"  ({run.problem})" if run.problem else ""
            if run.complete and run.problem:  # damaged mid-file, read past the damage
                typer.echo(f"warning: {result.path}: {run.problem}", err=True)
            typer.echo(
                f"imported  {run.id}  {run.project}/{run.group or '-'}  {run.job_type or '-'}  "
                f"{run.state}  {result.steps} steps{note}"
            )
        progress(done, total)

    conn, _ = open_db(db)
    with contextlib.closing(conn):
        wandb_io.import_logs(conn, logs, project=project, progress=report)
    summary = f"{counts['imported']} imported, {counts['present']} already present"
    if counts["error"]:
        summary += f", {counts['error']} unreadable"
    typer.echo(summary, err=True)
    if counts["error"]:
        raise typer.Exit(1)


def _with_parent_options(ctx: typer.Context, **given: Any) -> dict[str, Any]:
    """The subcommand's options merged with those given before it (``wbg export -g a
    wandb DIR``); the same option given twice with different values is refused."""
    from wbg.errors import InvalidInput

    parent = ctx.obj if isinstance(ctx.obj, dict) else {}
    merged = dict(given)
    for name, value in parent.items():
        if value is None or value == []:
            continue
        if merged.get(name) not in (None, [], value):
            flag = "--" + name.replace("_", "-")
            raise InvalidInput(f"{flag} given twice with different values")
        merged[name] = value
    return merged


def export_wandb(
    ctx: typer.Context,
    directory: Annotated[
        Path,
        typer.Argument(
            metavar="DIR",
            help="Folder to write into: runs go to DIR/wandb/offline-run-*.",
            file_okay=False,
            show_default=False,
        ),
    ],
    project: ProjectFilterOpt = None,
    group: GroupFilterOpt = None,
    job_type: JobTypeFilterOpt = None,
    state: StateOpt = None,
    tag: TagOpt = None,
    where: WhereOpt = None,
    db: DbOpt = None,
) -> None:
    """Write runs as W&B offline runs, for `wandb sync` to upload with their groups.

    Each run keeps its id, project, group, job_type, name, tags, notes, config, history
    steps and summary. Runs still running are skipped; runs already in DIR are not
    written twice.
    """
    from wbg import wandb_io

    options = _with_parent_options(
        ctx, project=project, group=group, job_type=job_type, state=state, tag=tag,
        where=where, db=db,
    )  # fmt: skip
    db = options.pop("db")
    filters = filters_from(**options)
    filters.sql()  # malformed --where: refuse before opening anything
    wandb_io.require_wandb("exporting to W&B")
    conn, _ = open_db(db, read_only=True)
    with contextlib.closing(conn):
        results = wandb_io.export_runs(
            conn, directory, filters, progress=Progress("exported", first_after=5.0)
        )
    counts = {"exported": 0, "present": 0, "running": 0, "error": 0}
    for result in results:
        counts[result.status] += 1
        if result.status == "exported":
            typer.echo(f"exported  {result.run_id}  {result.path}")
        elif result.status == "present":
            typer.echo(f"present   {result.run_id}  {result.path}  (exported before)")
        elif result.status == "running":
            typer.echo(f"skipped   {result.run_id}  (still running)")
        else:
            typer.echo(f"warning: run {result.run_id} not exported: {result.message}", err=True)
    summary = (
        f"{counts['exported']} exported, {counts['present']} already there, "
        f"{counts['running']} still running"
    )
    if counts["error"]:
        summary += f", {counts['error']} refused by wandb"
    typer.echo(summary, err=True)
    if counts["exported"]:
        typer.echo(
            f"upload with: wandb sync {directory / 'wandb'}/offline-run-*",
            err=True,
        )
    if counts["error"]:
        raise typer.Exit(1)


def merge(
    others: Annotated[
        list[str],
        typer.Argument(
            metavar="OTHER.db...",
            help="wbg databases to bring in (files or postgresql:// URLs; only read).",
            show_default=False,
        ),
    ],
    prefer: Annotated[
        Prefer | None,
        typer.Option(
            "--prefer",
            help="When a run id is on both sides with different content: keep ours, take "
            "theirs, or take the newer (default: report and skip).",
            case_sensitive=False,
        ),
    ] = None,
    db: DbOpt = None,
) -> None:
    """Bring in runs recorded in other databases (one per node or rank), matched by run id.

    Merging twice adds nothing. The other files are never modified.
    """
    from wbg import merge as merging

    conn, _ = open_db(db)
    skipped = 0
    with contextlib.closing(conn):
        for other in others:
            result = merging.merge_database(conn, other, prefer.value if prefer else None)
            for conflict in result.conflicts:
                what = ", ".join(conflict.fields) or "content"
                typer.echo(
                    f"conflict: run {conflict.run_id} differs ({what}): {conflict.resolution}",
                    err=True,
                )
            skipped += 0 if prefer else result.skipped
            line = f"{result.path}: {result.new} new, {result.unchanged} unchanged, "
            if prefer:
                line += f"{result.replaced} replaced, {result.skipped} kept ours"
            else:
                line += f"{result.skipped} conflicts skipped"
            if result.migrated_from is not None:
                line += f" (read through a copy upgraded from schema {result.migrated_from})"
            typer.echo(line)
    if skipped:
        typer.echo("settle conflicts with --prefer ours|theirs|newer", err=True)
