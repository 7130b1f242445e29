"""Rendering rows for the terminal or for programs: one place for formats and numbers.

Human formats go through tabulate (every tabulate format name is accepted); ``csv``,
``json`` and ``jsonl`` are machine formats: values unrounded, keys as given.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import sys
from collections.abc import Mapping, Sequence
from typing import Any

from wbg.errors import InvalidInput

MACHINE_FORMATS = ("csv", "json", "jsonl")


def tabulate_formats() -> list[str]:
    import tabulate

    return list(tabulate.tabulate_formats)


def check_format(fmt: str) -> str:
    if fmt in MACHINE_FORMATS or fmt in tabulate_formats():
        return fmt
    import difflib

    known = [*MACHINE_FORMATS, *tabulate_formats()]
    close = difflib.get_close_matches(fmt, known, n=3)
    hint = f"did you mean: {', '.join(close)}?" if close else "known: " + ", ".join(known)
    raise InvalidInput(f"unknown format {fmt!r}", hint=hint)


def format_number(value: Any, precision: int = 4) -> str:
    """Numbers for people: ``precision`` significant digits, no float noise."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        if value.is_integer() and abs(value) < 1e15:
            return str(int(value))
        return f"{value:.{precision}g}"
    return str(value)


def human_cell(value: Any, precision: int) -> str:
    if isinstance(value, (list, dict)):
        return json.dumps(value, separators=(",", ":"))
    return format_number(value, precision)


def json_default(value: Any) -> Any:
    return str(value)


def _json_safe(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_json_safe(v) for v in value]
    return value


def render(
    rows: Sequence[Mapping[str, Any]],
    columns: Sequence[str],
    fmt: str = "simple",
    precision: int = 4,
    headers: Sequence[str] | None = None,
) -> str:
    """Rows as text in ``fmt``; ``columns`` picks and orders the keys."""
    check_format(fmt)
    if fmt == "json":
        return json.dumps(
            [_json_safe({c: row.get(c) for c in columns}) for row in rows],
            indent=2,
            default=json_default,
        )
    if fmt == "jsonl":
        return "\n".join(
            json.dumps(_json_safe({c: row.get(c) for c in columns}), default=json_default)
            for row in rows
        )
    if fmt == "csv":
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(columns)
        for row in rows:
            writer.writerow([_csv_cell(row.get(c)) for c in columns])
        return out.getvalue().rstrip("\n")
    import tabulate

    table = [[human_cell(row.get(c), precision) for c in columns] for row in rows]
    return tabulate.tabulate(
        table, headers=list(headers or columns), tablefmt=fmt, disable_numparse=True
    )


def _csv_cell(value: Any) -> Any:
    if value is None:
        return ""
    if isinstance(value, (list, dict)):
        return json.dumps(value, separators=(",", ":"))
    if isinstance(value, bool):
        return str(value).lower()
    return value


def render_records(records: Sequence[Mapping[str, Any]], fmt: str) -> str:
    """Whole nested records (json / jsonl): ``wbg runs list/show --format json``."""
    if fmt == "jsonl":
        return "\n".join(json.dumps(_json_safe(r), default=json_default) for r in records)
    return json.dumps([_json_safe(r) for r in records], indent=2, default=json_default)


def render_object(record: Mapping[str, Any]) -> str:
    """One nested record as a JSON object (``wbg runs show --format json``)."""
    return json.dumps(_json_safe(dict(record)), indent=2, default=json_default)


def use_color(stream: Any = None) -> bool:
    """Colour only on a terminal and never with NO_COLOR set."""
    if os.environ.get("NO_COLOR"):
        return False
    stream = stream or sys.stdout
    return hasattr(stream, "isatty") and stream.isatty()


def output_width() -> int | None:
    """Columns available for a human table: $COLUMNS, else the terminal's; None = no limit.

    A table written to a pipe or a file is never cut (unless COLUMNS says so).
    """
    import shutil

    columns = os.environ.get("COLUMNS", "")
    if columns.isdigit() and int(columns) > 0:
        return int(columns)
    if sys.stdout.isatty():
        return shutil.get_terminal_size((100, 24)).columns
    return None


def render_fitted(
    rows: Sequence[Mapping[str, Any]],
    fixed: Sequence[str],
    blocks: Sequence[tuple[str, Sequence[str]]],
    fmt: str,
    precision: int,
    width: int | None,
    labels: Mapping[str, str] | None = None,
) -> tuple[str, list[str]]:
    """Render ``fixed`` columns plus column ``blocks`` (name, columns), dropping whole blocks
    from the right until every line fits in ``width``; returns the text and dropped names.
    ``labels`` renames column headers."""
    kept = list(blocks)
    dropped: list[str] = []
    while True:
        columns = [*fixed, *(c for _, cols in kept for c in cols)]
        headers = [(labels or {}).get(c, c) for c in columns]
        text = render(rows, columns, fmt, precision, headers=headers)
        longest = max((len(line) for line in text.splitlines()), default=0)
        if width is None or longest <= width or not kept:
            return text, dropped
        dropped.insert(0, kept.pop()[0])


DROPPED_HINT = "choose with -m, or use --format csv/json"


def note_dropped(dropped: Sequence[str], hint: str = DROPPED_HINT) -> None:
    """The one note every view prints (on stderr) when it left metrics out to fit."""
    if dropped:
        import typer

        typer.echo(
            f"note: {len(dropped)} metric(s) left out to fit the terminal: "
            f"{', '.join(dropped)} ({hint})",
            err=True,
        )
