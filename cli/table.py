"""``wbg table``: the grouped summary table (SPEC §5)."""

from __future__ import annotations

import contextlib
import dataclasses
from typing import Annotated, Any

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
        )
    note_scope(filters)
    if not result.rows:
        if fmt == "json":
            typer.echo("[]")
        render.note_no_runs(filters)
        return
    asked_count = agg is not None and "count" in result.aggregates
    echo_table(result, fmt, precision, count_column=asked_count)


def echo_table(
    result: Any, fmt: str, precision: int | None = None, count_column: bool = False
) -> None:
    """Print a ``wbg.aggregate.Table`` in ``fmt`` (notes go to stderr)."""
    from wbg.cli import render

    if fmt in render.MACHINE_FORMATS:
        text = render.render(result.rows, result.columns(), fmt, precision)
        if text:
            typer.echo(text)
        return
    # In pages (a short first one): one row per run of 100,000 runs starts printing at
    # once. Later pages keep the metrics the first page kept, so the columns stay put.
    dropped: list[str] = []
    for number, page in enumerate(render.pages(result.rows)):
        rows, fixed, blocks = human_rows(dataclasses.replace(result, rows=page), precision,
                                         count_column)  # fmt: skip
        if number:
            blocks = [block for block in blocks if block[0] not in dropped]
        text, left_out = render.render_fitted(
            rows, fixed, blocks, fmt, precision, render.output_width(), shrink=result.keys
        )
        if not number:
            dropped = left_out
        typer.echo(("\n" if number else "") + text)
    excluded = result.excluded()
    if excluded:
        counts = ", ".join(f"{m} {n}" for m, n in excluded.items())
        typer.echo(
            f"note: non-finite values (NaN, ±inf) left out of the aggregates: {counts} "
            "(per group: METRIC.excluded in --format csv/json)",
            err=True,
        )
    render.note_dropped(dropped)


def human_rows(
    result: Any, precision: int | None, count_column: bool = False
) -> tuple[list[dict[str, Any]], list[str], list[tuple[str, list[str]]]]:
    """Rows of display strings, the fixed columns and one column block per metric.

    ``count`` gets a column of its own when ``count_column`` (asked for with --agg) or when
    it is the metric's only aggregate; otherwise a cell says (n=N) where N differs from
    the group's run count.
    """
    from wbg.cli.render import format_mean_spread, format_number

    aggs = list(result.aggregates)
    combined = "mean" in aggs and "std" in aggs
    value_aggs = [a for a in aggs if a != "count"]
    count_column = "count" in aggs and (count_column or not value_aggs)
    annotate = "count" in aggs and not count_column
    first = "mean" if combined else (value_aggs[0] if value_aggs else None)
    shown_aggs = [
        agg
        for agg in aggs
        if not (agg == "count" and not count_column) and not (combined and agg == "std")
    ]

    def column(name: str, agg: str) -> str:
        return name if combined and agg == "mean" else f"{name}.{agg}"

    rows: list[dict[str, Any]] = []
    for row in result.rows:
        shown: dict[str, Any] = {}
        for key in result.keys:
            value = row.get(key)
            shown[key] = "-" if value is None else format_number(value, precision)
            if key == "name" and value is not None and value == row.get("id"):
                shown[key] = ""  # a run without a name: not its id twice
        shown["runs"] = row["runs"]
        for name in result.metrics:
            for agg in shown_aggs:
                value = row.get(f"{name}.{agg}")
                if combined and agg == "mean":
                    text = format_mean_spread(value, row.get(f"{name}.std"), precision)
                else:
                    text = format_number(value, precision)
                count = row.get(f"{name}.count")
                if annotate and agg == first and value is not None and count != row["runs"]:
                    text += f" (n={count})"
                shown[column(name, agg)] = text
        rows.append(shown)
    blocks = [(name, [column(name, agg) for agg in shown_aggs]) for name in result.metrics]
    return rows, [*result.keys, "runs"], blocks
