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
import re
import sys
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, TextIO

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
    return safe_text(format_number(value, precision))


# Control characters (C0, DEL, C1) and the bidirectional overrides: what lets stored text
# (a run name, a config string, a child's output) move the cursor, retitle the window,
# set the clipboard (OSC 52) or reorder what is shown. Human formats show them escaped.
_UNSAFE = re.compile("[\x00-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")
_SGR = "\x1b\\[[0-9;:]*m"
_UNSAFE_BUT_SGR = re.compile(
    f"({_SGR})|[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]"
)


def _escape(char: str) -> str:
    return {"\n": "\\n", "\t": "\\t", "\r": "\\r"}.get(char) or (
        f"\\x{ord(char):02x}" if ord(char) < 0x100 else f"\\u{ord(char):04x}"
    )


def safe_text(text: str) -> str:
    """``text`` for a human format: every control character shown as an escape (``\\x1b``)."""
    if not _UNSAFE.search(text):
        return text
    return _UNSAFE.sub(lambda m: _escape(m.group()), text)


def safe_output(data: bytes) -> bytes:
    """A run's kept output for a terminal: lines, tabs, carriage returns and colours kept;
    every other control character or escape sequence (OSC, cursor moves) escaped."""
    text = data.decode("utf-8", "replace")
    return _UNSAFE_BUT_SGR.sub(lambda m: m.group(1) or _escape(m.group()), text).encode("utf-8")


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
        table,
        headers=[safe_text(str(h)) for h in headers or columns],
        tablefmt=fmt,
        disable_numparse=True,
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


def write_records_streaming(
    records: Iterable[Mapping[str, Any]],
    fmt: str,
    points: Callable[[Mapping[str, Any]], Iterable[Mapping[str, Any]]],
    out: TextIO,
    single: bool = False,
) -> None:
    """``render_records`` (or ``render_object`` with ``single``) of ``records`` each with a
    last key ``history`` taken from ``points(record)`` as it is written, so a run with
    millions of points is never held in memory. The text is the same as rendering the
    records with their history lists."""
    marker = "\x00wbg-history\x00"
    if fmt == "json" and not single:
        out.write("[")
    first = True
    for record in records:
        obj = _json_safe({**record, "history": marker})
        if fmt == "jsonl":
            head, _, tail = json.dumps(obj, default=json_default).partition(json.dumps(marker))
            out.write(("" if first else "\n") + head + "[")
            for index, point in enumerate(points(record)):
                out.write((", " if index else "") + json.dumps(_json_safe(dict(point))))
            out.write("]" + tail)
        else:
            text = json.dumps(obj, indent=2, default=json_default)
            head, _, tail = text.partition(json.dumps(marker))
            depth = 2 if single else 4  # where the "history" key sits
            if not single:
                head = "\n".join("  " + line for line in head.split("\n"))
                tail = "\n".join("  " + line if line else line for line in tail.split("\n"))
            out.write(("" if first or single else ",") + ("" if single else "\n") + head + "[")
            pad = " " * (depth + 2)
            empty = True
            for point in points(record):
                item = json.dumps(_json_safe(dict(point)), indent=2, default=json_default)
                out.write(("\n" if empty else ",\n") + pad + item.replace("\n", "\n" + pad))
                empty = False
            out.write(("]" if empty else "\n" + " " * depth + "]") + tail)
        first = False
    if fmt == "json" and not single:
        out.write("\n]" if not first else "]")
    if fmt == "json" or not first:
        out.write("\n")


def write_csv_streaming(
    rows: Iterable[Mapping[str, Any]], columns: Sequence[str], out: TextIO
) -> None:
    """``render(rows, columns, "csv")`` written row by row (rows read as they are written)."""
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(columns)
    for row in rows:
        writer.writerow([_csv_cell(row.get(c)) for c in columns])


HUMAN_PAGE_ROWS = 10_000


def write_human_streaming(
    rows: Iterable[Mapping[str, Any]],
    columns: Sequence[str],
    fmt: str,
    precision: int,
    out: TextIO,
) -> None:
    """A human table of any length in pages of ``HUMAN_PAGE_ROWS`` rows (each page with its
    own headers and widths): memory stays flat for a million-point history."""
    page: list[Mapping[str, Any]] = []
    first = True
    for row in rows:
        page.append(row)
        if len(page) == HUMAN_PAGE_ROWS:
            out.write(("" if first else "\n") + render(page, columns, fmt, precision) + "\n")
            page, first = [], False
    if page or first:
        out.write(("" if first else "\n") + render(page, columns, fmt, precision) + "\n")


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
