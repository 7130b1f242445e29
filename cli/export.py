"""``wbg export``: run records for other programs (json, jsonl, csv)."""

from __future__ import annotations

import contextlib
import itertools
import sys
from collections.abc import Iterable, Iterator
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

        def selected() -> Iterator[dict[str, Any]]:  # streamed: read as it is written
            return runs.iter_runs(
                conn, filters, limit=limit, oldest_first=True, sort=sort, desc=desc
            )

        records = selected()
        first = next(records, None)
        note_scope(filters)
        if first is None:
            if fmt is ExportFormat.json:
                typer.echo("[]")
            render.note_no_runs(filters)
            return
        records = itertools.chain([first], records)
        out = sys.stdout
        if history:  # points are read as they are written too (memory stays flat)

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
        elif fmt is ExportFormat.csv:
            # The columns are every config and summary key: one pass to find them, one to
            # write (neither holds more than a record).
            columns = _flat_columns(records)
            render.write_csv_streaming((_flat_row(r) for r in selected()), columns, out)
        else:
            render.write_records(records, fmt.value, out)


def _flatten(prefix: str, value: Any, out: dict[str, Any]) -> None:
    if isinstance(value, dict) and value:
        for key, item in value.items():
            _flatten(f"{prefix}.{key}", item, out)
    else:
        out[prefix] = value


def _flat_row(record: dict[str, Any]) -> dict[str, Any]:
    """A record with its config and summary flattened to ``config.KEY``/``summary.KEY``."""
    row = {k: v for k, v in record.items() if k not in ("config", "summary")}
    flat: dict[str, Any] = {}
    _flatten("config", record["config"], flat)
    _flatten("summary", record["summary"], flat)
    row.update((k, v) for k, v in flat.items() if k not in ("config", "summary"))
    return row


def _flat_columns(records: Iterable[dict[str, Any]]) -> list[str]:
    """The csv columns of ``records``: the record fields, then every config key, then every
    summary key (each sorted)."""
    from wbg.runs import RECORD_FIELDS

    config_cols: dict[str, None] = {}
    summary_cols: dict[str, None] = {}
    for record in records:
        flat: dict[str, Any] = {}
        _flatten("config", record["config"], flat)
        _flatten("summary", record["summary"], flat)
        for key in flat:
            if key not in ("config", "summary"):
                (config_cols if key.startswith("config.") else summary_cols)[key] = None
    fields = [f for f in RECORD_FIELDS if f not in ("config", "summary")]
    return [*fields, *sorted(config_cols), *sorted(summary_cols)]
