"""``wbg table``: the grouped summary table (README "``wbg table``")."""

from __future__ import annotations

import contextlib
from typing import Annotated

import typer

from wbg.cli.options import (
    AllProjectsOpt,
    DbOpt,
    FormatOpt,
    GroupByOpt,
    GroupFilterOpt,
    JobTypeFilterOpt,
    LimitOpt,
    PrecisionOpt,
    ProjectFilterOpt,
    StateOpt,
    TagOpt,
    WhereOpt,
    complete_metric,
    filters_from,
    note_scope,
    open_db,
)

HELP = """Show the grouped summary table: one row per group, aggregates of each summary metric.

Groups by `group` when any selected run has one, else one row per run. --group-by takes
any run field or config key (several = nested groups); a run without the key falls into
the `-` group. NaN and +-inf values are left out of the aggregates and counted.

Human formats show METRIC as `mean ± std` (when both are asked for) and add `(n=N)`
where a metric's count differs from `runs`. A table wider than the terminal ($COLUMNS, or the
terminal's width; pipes are never cut) loses whole metrics from the right, with a note
on stderr: choose metrics with -m, or use --format csv/json for everything.
"""


def register(app: typer.Typer) -> None:
    app.command("table", help=HELP)(table)


def table(
    group_by: GroupByOpt = None,
    no_group: Annotated[
        bool, typer.Option("--no-group", help="One row per run (grouping off).")
    ] = False,
    metric: Annotated[
        list[str] | None,
        typer.Option(
            "--metric",
            "-m",
            metavar="NAME",
            help="Summary metric to aggregate (repeatable; default: all, plus duration_s).",
            autocompletion=complete_metric,
        ),
    ] = None,
    agg: Annotated[
        str | None,
        typer.Option(
            "--agg",
            metavar="AGG[,AGG...]",
            help="Aggregates: count,mean,std,stderr,min,max,median (default count,mean,std).",
        ),
    ] = None,
    project: ProjectFilterOpt = None,
    all_projects: AllProjectsOpt = False,
    group: GroupFilterOpt = None,
    job_type: JobTypeFilterOpt = None,
    state: StateOpt = None,
    tag: TagOpt = None,
    where: WhereOpt = None,
    sort: Annotated[
        str | None,
        typer.Option(
            "--sort", metavar="KEY", help="Sort by a group key, runs, or METRIC.AGG (acc.mean)."
        ),
    ] = None,
    desc: Annotated[bool, typer.Option("--desc", help="Sort descending.")] = False,
    limit: LimitOpt = None,
    fmt: FormatOpt = "simple",
    precision: PrecisionOpt = None,
    db: DbOpt = None,
) -> None:
    from wbg import aggregate, query
    from wbg.cli import render

    render.check_format(fmt)
    filters = filters_from(project, group, job_type, state, tag, where, all_projects)
    keys = query.split_keys(group_by) or None
    conn, _ = open_db(db, read_only=True)
    with contextlib.closing(conn):
        result = aggregate.build_table(
            conn,
            filters,
            group_by=keys,
            no_group=no_group,
            metrics=metric,
            aggregates=agg,
            sort=sort,
            desc=desc,
            limit=limit,
            stream=True,
        )
        note_scope(filters)
        if not result.rows:
            if fmt == "json":
                typer.echo("[]")
            render.note_no_runs(filters)
            return
        asked_count = agg is not None and "count" in result.aggregates
        from wbg.cli.common import echo_table

        echo_table(result, fmt, precision, count_column=asked_count)  # rows read as printed
