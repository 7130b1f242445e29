"""What several command modules share: confirmations, the running-run check, the
recording warning and the grouped-table renderer. Command modules import this (and
``render``, ``options``), never each other (docs/design.md, "Layout")."""

from __future__ import annotations

import dataclasses
import os
import sys
from typing import Any

import typer


def warn_recording(message: str) -> None:
    """``wbg: warning: MESSAGE`` on stderr in one write: recording threads call it while
    the child's output passes through, so the line is never cut by other output."""
    os.write(2, f"wbg: warning: {message}\n".encode(errors="replace"))


def confirm_delete(what: str, yes: bool) -> None:
    """Ask before deleting; with no terminal to ask and no --yes, refuse."""
    from wbg.errors import InvalidInput

    if yes:
        return
    if not sys.stdin.isatty():
        raise InvalidInput(
            f"not deleting {what}: no terminal to confirm on", hint="pass --yes to delete"
        )
    if not typer.confirm(f"Delete {what}?", default=False, err=True):
        raise typer.Abort()


def check_running(running: list[str], force: bool) -> None:
    from wbg.errors import InvalidInput

    if running and not force:
        raise InvalidInput(
            f"{len(running)} run(s) still running: {', '.join(running[:5])}",
            hint="wait for them to end, or pass --force",
        )


def echo_table(
    result: Any, fmt: str, precision: int | None = None, count_column: bool = False
) -> None:
    """Print a ``wbg.aggregate.Table`` in ``fmt`` (notes go to stderr)."""
    from wbg.cli import render

    if fmt == "csv":  # written as the rows are read (a streamed table makes them so)
        render.write_csv_streaming(result.rows, result.columns(), sys.stdout)
        return
    if fmt == "jsonl":
        columns = result.columns()
        render.write_records(({c: row.get(c) for c in columns} for row in result.rows), fmt,
                             sys.stdout)  # fmt: skip
        return
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
