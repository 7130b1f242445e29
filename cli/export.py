"""``wbg export``: run records for other programs (json, jsonl, csv)."""

from __future__ import annotations

import contextlib
import sys
from enum import Enum
from typing import Annotated, Any

import typer

from wbg.cli.options import (
    AllProjectsOpt,
    DbOpt,
    DescOpt,
    GroupFilterOpt,
    JobTypeFilterOpt,
    LimitOpt,
    ProjectFilterOpt,
    RunSortOpt,
    StateOpt,
    TagOpt,
    WhereOpt,
    filters_from,
    note_scope,
    open_db,
)


class ExportFormat(str, Enum):
    json = "json"
    jsonl = "jsonl"
    csv = "csv"


HELP = """Export run records (oldest first, or by --sort KEY) with the field names of
`wbg runs list -f json`.

json/jsonl: nested records; --history adds each run's points as "history".
csv: one row per run, config and summary flattened to config.KEY / summary.KEY columns;
with --history, one row per history point instead (id, group, job_type, step, key,
value, time), ready for pandas.
"""


app = typer.Typer(rich_markup_mode=None)


def register(main_app: typer.Typer) -> None:
    main_app.add_typer(app, name="export")


@app.callback(
    invoke_without_command=True, help=HELP + "\n`wbg export wandb DIR` writes W&B offline runs."
)
def export(
    ctx: typer.Context,
    fmt: Annotated[
        ExportFormat, typer.Option("--format", "-f", help="Output format.")
    ] = ExportFormat.jsonl,
    history: Annotated[bool, typer.Option("--history", help="Include history points.")] = False,
    project: ProjectFilterOpt = None,
    all_projects: AllProjectsOpt = False,
    group: GroupFilterOpt = None,
    job_type: JobTypeFilterOpt = None,
    state: StateOpt = None,
    tag: TagOpt = None,
    where: WhereOpt = None,
    limit: LimitOpt = None,
    sort: RunSortOpt = None,
    desc: DescOpt = False,
    db: DbOpt = None,
) -> None:
    if ctx.invoked_subcommand is not None:
        # `wbg export -g a wandb DIR`: the filters given before `wandb` apply to it (the
        # subcommand merges them with its own); options that mean nothing there are refused.
        from wbg.errors import InvalidInput

        for name, given in (("--format", fmt != ExportFormat.jsonl), ("--history", history),
                            ("--limit", limit is not None), ("--sort", sort is not None),
                            ("--desc", desc)):  # fmt: skip
            if given:
                raise InvalidInput(f"{name} does not apply to `wbg export wandb`")
        ctx.obj = {
            "project": project, "group": group, "job_type": job_type, "state": state,
            "tag": tag, "where": where, "all_projects": all_projects, "db": db,
        }  # fmt: skip
        return
    from wbg import query, runs
    from wbg.cli import render

    filters = filters_from(project, group, job_type, state, tag, where, all_projects)
    conn, _ = open_db(db, read_only=True)
    with contextlib.closing(conn):
        query.check_filters(conn, filters)
        records = runs.list_runs(
            conn, filters, limit=limit, oldest_first=True, sort=sort, desc=desc
        )
        note_scope(filters)
        if not records:
            if fmt is ExportFormat.json:
                typer.echo("[]")
            render.note_no_runs(filters)
            return
        if history:  # streamed: points are read as they are written (memory stays flat)
            out = sys.stdout

            def points(record: dict[str, Any]) -> Any:
                return runs.iter_history(conn, record["id"])

            if fmt is ExportFormat.csv:
                columns = ["id", "group", "job_type", "step", "key", "value", "time"]
                rows = (
                    {"id": r["id"], "group": r["group"], "job_type": r["job_type"], **point}
                    for r in records
                    for point in points(r)
                )
                render.write_csv_streaming(rows, columns, out)
            else:
                render.write_records_streaming(records, fmt.value, points, out)
            return
    if fmt is ExportFormat.csv:
        rows, columns = _flat_rows(records)
        typer.echo(render.render(rows, columns, "csv"))
    else:
        text = render.render_records(records, fmt.value)
        if text:
            typer.echo(text)


def _flatten(prefix: str, value: Any, out: dict[str, Any]) -> None:
    if isinstance(value, dict) and value:
        for key, item in value.items():
            _flatten(f"{prefix}.{key}", item, out)
    else:
        out[prefix] = value


def _flat_rows(records: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], list[str]]:
    from wbg.runs import RECORD_FIELDS

    rows = []
    config_cols: dict[str, None] = {}
    summary_cols: dict[str, None] = {}
    for record in records:
        row = {k: v for k, v in record.items() if k not in ("config", "summary")}
        flat: dict[str, Any] = {}
        _flatten("config", record["config"], flat)
        _flatten("summary", record["summary"], flat)
        flat = {k: v for k, v in flat.items() if k not in ("config", "summary")}
        for key in flat:
            (config_cols if key.startswith("config.") else summary_cols)[key] = None
        rows.append({**row, **flat})
    fields = [f for f in RECORD_FIELDS if f not in ("config", "summary")]
    return rows, [*fields, *sorted(config_cols), *sorted(summary_cols)]
