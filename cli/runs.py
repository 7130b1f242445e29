"""``wbg runs``: list, inspect and change individual runs."""

from __future__ import annotations

import contextlib
import sys
from typing import Annotated, Any

import typer

from wbg.cli.options import (
    DbOpt,
    FormatOpt,
    GroupFilterOpt,
    JobTypeFilterOpt,
    LimitOpt,
    PrecisionOpt,
    ProjectFilterOpt,
    StateOpt,
    TagOpt,
    WhereOpt,
    complete_group,
    complete_run_id,
    filters_from,
    open_db,
)

app = typer.Typer(
    help="List, inspect and change runs: list, show, set, tag, move, delete.",
    no_args_is_help=True,
    rich_markup_mode=None,
)

RunIdArg = Annotated[
    str, typer.Argument(metavar="ID", help="Run id.", autocompletion=complete_run_id)
]
RunIdsArg = Annotated[
    list[str], typer.Argument(metavar="ID...", help="Run ids.", autocompletion=complete_run_id)
]

LIST_COLUMNS = (
    "id",
    "name",
    "project",
    "group",
    "job_type",
    "state",
    "exit_code",
    "started",
    "duration_s",
)


def _short_time(iso: str | None) -> str:
    return "" if not iso else iso[:19].replace("T", " ")


@app.command("list")
def list_runs(
    project: ProjectFilterOpt = None,
    group: GroupFilterOpt = None,
    job_type: JobTypeFilterOpt = None,
    state: StateOpt = None,
    tag: TagOpt = None,
    where: WhereOpt = None,
    limit: LimitOpt = None,
    fmt: FormatOpt = "simple",
    precision: PrecisionOpt = 4,
    db: DbOpt = None,
) -> None:
    """List runs, newest first (filters: --project --group --job-type --state --tag --where)."""
    from wbg import query, runs
    from wbg.cli import render

    render.check_format(fmt)
    filters = filters_from(project, group, job_type, state, tag, where)
    conn, _ = open_db(db, read_only=True)
    with contextlib.closing(conn):
        query.check_filters(conn, filters)
        records = runs.list_runs(conn, filters, limit=limit)
    if fmt in ("json", "jsonl"):
        typer.echo(render.render_records(records, fmt))
        return
    rows = [{**r, "started": _short_time(r["started_at"])} for r in records]
    columns = LIST_COLUMNS if fmt != "csv" else runs.RECORD_FIELDS
    if fmt == "csv":
        rows = records
    typer.echo(render.render(rows, columns, fmt, precision))


@app.command("show")
def show(
    run_id: RunIdArg,
    output: Annotated[
        bool, typer.Option("--output", help="Print the kept tail of the run's output.")
    ] = False,
    history: Annotated[bool, typer.Option("--history", help="Include the history points.")] = False,
    fmt: FormatOpt = "simple",
    precision: PrecisionOpt = 4,
    db: DbOpt = None,
) -> None:
    """Show one run: its fields, config, summary and history size."""
    from wbg import runs
    from wbg.cli import render

    render.check_format(fmt)
    conn, _ = open_db(db, read_only=True)
    with contextlib.closing(conn):
        record = runs.get_run(conn, run_id)
        if output:
            kept = runs.get_output(conn, run_id)
            if kept is not None:
                # to a terminal, escapes that could act on it are shown, not obeyed;
                # to a pipe or a file, the bytes as the command wrote them
                tty = sys.stdout.isatty()
                sys.stdout.buffer.write(render.safe_output(kept[0]) if tty else kept[0])
                sys.stdout.buffer.flush()
            return
        record["history_points"] = runs.history_count(conn, run_id)
        if history:  # streamed: points are read as they are written
            points = runs.iter_history(conn, run_id)
            if fmt in ("json", "jsonl"):
                render.write_records_streaming(
                    [record], fmt, lambda _: points, sys.stdout, single=fmt == "json"
                )
                return
            typer.echo(_human_record(record, fmt, precision) + "\n")
            render.write_human_streaming(
                points, ("step", "key", "value", "time"), fmt, precision, sys.stdout
            )
            return
    if fmt == "json":
        typer.echo(render.render_object(record))
    elif fmt == "jsonl":
        typer.echo(render.render_records([record], "jsonl"))
    else:
        typer.echo(_human_record(record, fmt, precision))


def _flatten(prefix: str, value: Any, out: list[tuple[str, Any]]) -> None:
    if isinstance(value, dict) and value:
        for key, item in value.items():
            _flatten(f"{prefix}.{key}" if prefix else str(key), item, out)
    else:
        out.append((prefix, value))


def _human_record(record: dict[str, Any], fmt: str, precision: int) -> str:
    from wbg.cli import render

    fields: list[tuple[str, Any]] = []
    for key, value in record.items():
        if key in ("config", "summary"):
            _flatten(key, value, fields)
        elif key == "history":
            continue
        else:
            fields.append((key, value))
    rows = [{"field": k, "value": v} for k, v in fields]
    return render.render(rows, ("field", "value"), fmt if fmt != "csv" else "csv", precision)


@app.command("set", no_args_is_help=True)
def set_config(
    run_id: RunIdArg,
    assignments: Annotated[
        list[str],
        typer.Argument(
            metavar="KEY=VALUE...",
            help="Config values (typed like -c: 3, 0.1, true, [1,2]; dotted keys nest).",
        ),
    ],
    db: DbOpt = None,
) -> None:
    """Edit the config of an ended run (then group by it): wbg runs set ID fold=3"""
    from wbg import runs, values

    update = values.parse_assignments(assignments)
    conn, _ = open_db(db)
    with contextlib.closing(conn):
        runs.set_config(conn, run_id, update)
    typer.echo(f"set {', '.join(a.partition('=')[0] for a in assignments)} on {run_id}", err=True)


@app.command(
    "tag",
    no_args_is_help=True,
    context_settings={"ignore_unknown_options": True},
)
def tag(
    run_id: RunIdArg,
    changes: Annotated[
        list[str],
        typer.Argument(metavar="+TAG|-TAG...", help="+name adds a tag, -name removes it."),
    ],
    db: DbOpt = None,
) -> None:
    """Add and remove tags: wbg runs tag ID +best -draft (a bare name adds)."""
    from wbg import runs

    add: dict[str, None] = {}
    remove: dict[str, None] = {}
    for change in changes:  # in order: a later change to the same tag wins
        if change.startswith("-"):
            add.pop(change[1:], None)
            remove[change[1:]] = None
        else:
            name = change[1:] if change.startswith("+") else change
            remove.pop(name, None)
            add[name] = None
    conn, _ = open_db(db)
    with contextlib.closing(conn):
        tags = runs.set_tags(conn, run_id, list(add), list(remove))
    typer.echo(" ".join(tags))


@app.command("move", no_args_is_help=True)
def move(
    run_ids: RunIdsArg,
    group: Annotated[
        str,
        typer.Option(
            "--group",
            "-g",
            metavar="NAME",
            help="The group to move the runs into.",
            autocompletion=complete_group,
        ),
    ],
    db: DbOpt = None,
) -> None:
    """Move runs into another group (--group G)."""
    from wbg import runs

    conn, _ = open_db(db)
    with contextlib.closing(conn):
        n = runs.move_runs(conn, run_ids, group)
    typer.echo(f"moved {n} run(s) to group {group}", err=True)


@app.command("delete", no_args_is_help=True)
def delete(
    run_ids: RunIdsArg,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")] = False,
    force: Annotated[
        bool, typer.Option("--force", help="Also delete runs that are still running.")
    ] = False,
    db: DbOpt = None,
) -> None:
    """Delete runs with their history and output (asks first unless --yes)."""
    from wbg import runs
    from wbg.cli.groups import check_running, confirm_delete

    conn, _ = open_db(db)
    with contextlib.closing(conn):
        nums = [runs.run_num(conn, run_id) for run_id in run_ids]
        confirm_delete(f"{len(set(nums))} run(s)", yes)
        check_running(runs.running_ids(conn, nums), force)
        n = runs.delete_runs(conn, nums)
    typer.echo(f"deleted {n} run(s)", err=True)
