"""``wbg runs``: list and inspect individual runs."""

from __future__ import annotations

import contextlib
import sys
from typing import Annotated, Any

import typer

from wbg.cli.options import DbOpt, FormatOpt, GroupOpt, JobTypeOpt, PrecisionOpt, open_db

app = typer.Typer(help="List and inspect runs.", no_args_is_help=True, rich_markup_mode=None)

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
    project: Annotated[
        str | None, typer.Option("--project", "-p", help="Only this project.")
    ] = None,
    group: GroupOpt = None,
    job_type: JobTypeOpt = None,
    state: Annotated[
        str | None,
        typer.Option("--state", help="Only runs in this state (running, finished, failed...)."),
    ] = None,
    tag: Annotated[str | None, typer.Option("--tag", "-t", help="Only runs with this tag.")] = None,
    limit: Annotated[int | None, typer.Option("--limit", min=1, help="At most N runs.")] = None,
    fmt: FormatOpt = "simple",
    precision: PrecisionOpt = 4,
    db: DbOpt = None,
) -> None:
    """List runs, newest first (filters: --project --group --job-type --state --tag)."""
    from wbg import runs
    from wbg.cli import render

    render.check_format(fmt)
    if state is not None and state not in runs.STATES:
        from wbg.errors import InvalidInput

        raise InvalidInput(f"unknown state {state!r}", hint="states: " + ", ".join(runs.STATES))
    conn, _ = open_db(db)
    with contextlib.closing(conn):
        records = runs.list_runs(
            conn,
            project=project,
            group=group,
            job_type=job_type,
            state=state,
            tag=tag,
            limit=limit,
        )
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
    run_id: Annotated[str, typer.Argument(metavar="ID", help="Run id.")],
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
    conn, _ = open_db(db)
    with contextlib.closing(conn):
        record = runs.get_run(conn, run_id)
        if output:
            kept = runs.get_output(conn, run_id)
            if kept is not None:
                sys.stdout.buffer.write(kept[0])
                sys.stdout.buffer.flush()
            return
        record["history_points"] = runs.history_count(conn, run_id)
        if history:
            record["history"] = runs.get_history(conn, run_id)
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
    text = render.render(rows, ("field", "value"), fmt if fmt != "csv" else "csv", precision)
    if "history" in record:
        points = [
            {"step": p["step"], "key": p["key"], "value": p["value"], "time": p["time"]}
            for p in record["history"]
        ]
        text += "\n\n" + render.render(points, ("step", "key", "value", "time"), fmt, precision)
    return text
