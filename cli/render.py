"""Rendering rows for the terminal or for programs: one place for formats and numbers.

Human formats go through tabulate (every tabulate format name is accepted); ``csv``,
``json`` and ``jsonl`` are machine formats: values unrounded, keys as given.
"""

from __future__ import annotations

import csv
import io
import itertools
import json
import math
import os
import re
import sys
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any, TextIO

from wbg.errors import InvalidInput

MACHINE_FORMATS = ("csv", "json", "jsonl")


def _tabulate() -> Any:
    """The tabulate module, imported without ``importlib.metadata`` where that is safe.

    tabulate 0.10 reads its own version through ``importlib.metadata`` when imported: 30
    modules more, and a scan of every installed distribution for a version string wbg
    never reads (15-35 ms of every table command in an environment of ML packages; 7-15 %
    of ``wbg table --group-by lr`` at 100,000 runs). So a stand-in that knows no version
    takes its place for that one import, when nothing else could see it: no other thread
    running, and the real module not loaded yet. Anything unexpected: the plain import.
    """
    module = sys.modules.get("tabulate")
    if module is not None:
        return module
    import threading

    if "importlib.metadata" in sys.modules or threading.active_count() > 1:
        import tabulate

        return tabulate
    import types

    class PackageNotFoundError(Exception):
        pass

    def version(name: str) -> str:
        raise PackageNotFoundError(name)

    stand_in = types.ModuleType("importlib.metadata")
    stand_in.version = version  # type: ignore[attr-defined]
    stand_in.PackageNotFoundError = PackageNotFoundError  # type: ignore[attr-defined]
    sys.modules["importlib.metadata"] = stand_in
    try:
        import tabulate
    except Exception:
        sys.modules.pop("tabulate", None)
        sys.modules.pop("importlib.metadata", None)
        import tabulate
    finally:
        if sys.modules.get("importlib.metadata") is stand_in:
            del sys.modules["importlib.metadata"]
    return tabulate


def tabulate_formats() -> list[str]:
    return list(_tabulate().tabulate_formats)


def check_format(fmt: str) -> str:
    if fmt in MACHINE_FORMATS or fmt in tabulate_formats():
        return fmt
    from wbg.errors import close_matches, did_you_mean

    known = [*MACHINE_FORMATS, *tabulate_formats()]
    close = close_matches(fmt, known)
    hint = did_you_mean(close) if close else "known: " + ", ".join(known)
    raise InvalidInput(f"unknown format {fmt!r}", hint=hint)


DEFAULT_PRECISION = 4
# Below this fraction of the mean, a spread is float noise (three equal values give a std
# of 1e-17, not a spread anyone measured): it is shown as 0.
_NOISE = 1e-9


def format_number(value: Any, precision: int | None = None) -> str:
    """A number for people: ``precision`` significant digits (default 4), no float noise;
    floats from 10,000 up in thousands form (``123,457``), from 1e9 in engineering form
    (``3.5e9``, ``12.35e12``)."""
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
        digits = DEFAULT_PRECISION if precision is None else precision
        if precision is None:
            rounded = abs(float(f"{value:.{digits}g}"))
            if 1e4 <= rounded < 1e9:
                return f"{round(value):,}"
            if rounded >= 1e9:  # engineering form: 3.5e9, 12.35e12
                power = 3 * math.floor(math.log10(rounded) / 3)
                return f"{value / 10**power:.{digits}g}e{power}"
        if value.is_integer() and abs(value) < 1e15:
            return str(int(value))
        return f"{value:.{digits}g}"
    return str(value)


def format_mean_spread(mean: Any, spread: Any, precision: int | None = None) -> str:
    """``mean ± spread``, the one rule of every view: the spread to 2 significant digits
    and the mean to the same decimal place (``0.9959 ± 0.0098``, ``12,350 ± 230``); a
    spread that is float noise reads ``± 0``. With ``precision`` both get that many
    significant digits instead. No spread (one value): the mean alone."""
    if mean is None:
        return ""
    if spread is None:
        return format_number(mean, precision)
    if precision is not None or not (math.isfinite(mean) and math.isfinite(spread)):
        return f"{format_number(mean, precision)} ± {format_number(spread, precision)}"
    if spread <= abs(mean) * _NOISE or spread == 0:
        return f"{format_number(mean)} ± 0"
    last = math.floor(math.log10(spread)) - 1  # the place of the spread's second digit
    spread = round(spread, -last)
    last = math.floor(math.log10(spread)) - 1  # 0.0999 rounds up to 0.10
    if last < -7 or abs(mean) >= 1e9:  # tiny or huge: one shared power of ten
        power = 3 * math.floor(math.log10(max(abs(mean), spread)) / 3)
        inner = format_mean_spread(mean / 10**power, spread / 10**power)
        return f"({inner})e{power}"
    decimals = max(0, -last)
    if last > 0:
        mean, spread = round(mean, -last), round(spread, -last)
    return f"{mean:,.{decimals}f} ± {spread:,.{decimals}f}"


def human_cell(value: Any, precision: int | None) -> str:
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
    precision: int | None = None,
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
    tabulate = _tabulate()
    table = [[human_cell(row.get(c), precision) for c in columns] for row in rows]
    # No extra padding around headers: two spaces between columns are enough, and the
    # two more per column tabulate adds by default cost a metric in an 80-column terminal.
    tabulate.MIN_PADDING = 0
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


HUMAN_PAGE_ROWS = 10_000


def write_records(records: Iterable[Mapping[str, Any]], fmt: str, out: TextIO) -> None:
    """``render_records(records, fmt)`` and a newline, written record by record: the same
    text, with the first record out before the last is read."""
    first = True
    for record in records:
        if fmt == "jsonl":
            out.write(json.dumps(_json_safe(record), default=json_default) + "\n")
        else:
            text = json.dumps(_json_safe(record), indent=2, default=json_default)
            out.write(("[\n" if first else ",\n") + "  " + text.replace("\n", "\n  "))
        first = False
    if fmt == "json":
        out.write("[]\n" if first else "\n]\n")


def pages(
    rows: Iterable[Any], first: int = 200, size: int = HUMAN_PAGE_ROWS
) -> Iterator[list[Any]]:
    """``rows`` in lists: a short first one (the first screen comes at once), then pages
    of ``size`` (a human table of any length, in memory a page at a time)."""
    iterator = iter(rows)
    page = list(itertools.islice(iterator, first))
    while page:
        yield page
        page = list(itertools.islice(iterator, size))


def write_csv_streaming(
    rows: Iterable[Mapping[str, Any]], columns: Sequence[str], out: TextIO
) -> None:
    """``render(rows, columns, "csv")`` written row by row (rows read as they are written)."""
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(columns)
    for row in rows:
        writer.writerow([_csv_cell(row.get(c)) for c in columns])


def write_human_streaming(
    rows: Iterable[Mapping[str, Any]],
    columns: Sequence[str],
    fmt: str,
    precision: int | None,
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
    precision: int | None,
    width: int | None,
    labels: Mapping[str, str] | None = None,
    shrink: Sequence[str] = (),
    cut_end: Sequence[str] = (),
) -> tuple[str, list[str]]:
    """Render ``fixed`` columns plus column ``blocks`` (name, columns) in ``width``; returns
    the text and the names of the blocks left out.

    To fit, the text columns in ``shrink`` (names, groups; the widest first) are first
    cut to 16 characters (their middle as ``…``), then whole blocks are dropped from the
    right (the callers order them by relevance) down to the first, then ``shrink``
    columns are cut down to 6, and only then is the first block dropped too. ``labels``
    renames column headers. Columns in ``cut_end`` (lists: ``finished 4, failed 2``)
    lose their end instead of their middle.
    """
    labels = labels or {}
    every = [*fixed, *(c for _, cols in blocks for c in cols)]
    cells = [{c: human_cell(row.get(c), precision) for c in every} for row in rows]
    kept = list(blocks)
    dropped: list[str] = []
    caps: dict[str, int] = {}

    def attempt(floor: int) -> tuple[str, bool]:
        """Render, narrowing ``shrink`` columns down to ``floor`` while that helps."""
        while True:
            columns = [*fixed, *(c for _, cols in kept for c in cols)]
            headers = [labels.get(c, c) for c in columns]
            text = render(_cut(cells, caps, cut_end), columns, fmt, precision, headers=headers)
            longest = max((len(line) for line in text.splitlines()), default=0)
            if width is None or longest <= width:
                return text, True
            narrow = [c for c in shrink if c in columns]
            if not _narrow(cells, caps, narrow, labels, floor, longest - width):
                return text, False

    text, fits = attempt(16)
    while not fits and len(kept) > 1:
        dropped.insert(0, kept.pop()[0])
        text, fits = attempt(16)
    if fits:
        return text, dropped
    before = dict(caps)
    text, fits = attempt(6)  # the most telling metric is worth shorter names
    if fits or not kept:
        return text, dropped
    caps.clear()
    caps.update(before)  # names cut for nothing: back to 16
    dropped.insert(0, kept.pop()[0])
    text, _ = attempt(16)
    return text, dropped


def _cut(
    cells: list[dict[str, str]], caps: Mapping[str, int], cut_end: Sequence[str] = ()
) -> list[dict[str, str]]:
    if not caps:
        return cells

    def cut(column: str, text: str) -> str:
        if column not in caps or len(text) <= caps[column]:
            return text
        if column in cut_end:
            return text[: caps[column] - 1] + "…"
        return cut_middle(text, caps[column])

    return [{c: cut(c, v) for c, v in row.items()} for row in cells]


def cut_middle(text: str, width: int) -> str:
    """``text`` in ``width`` characters, its middle replaced by ``…``: names made by a
    pattern (``demo-2bmc-lr0.01``, ``experiment-x1y2``) differ at their ends."""
    if len(text) <= width:
        return text
    head = width // 2
    tail = width - 1 - head
    return text[:head] + "…" + (text[-tail:] if tail else "")


def _narrow(
    cells: list[dict[str, str]],
    caps: dict[str, int],
    columns: Sequence[str],
    labels: Mapping[str, str],
    floor: int,
    overflow: int,
) -> bool:
    """Lower the caps of ``columns`` (the widest first, none below ``floor`` or its header)
    by up to ``overflow`` characters in all; False when none can give any more."""
    widths = {
        c: max((min(len(row[c]), caps.get(c, 10**9)) for row in cells), default=0) for c in columns
    }
    narrowed = False
    while overflow > 0:
        room = {c: w - max(floor, len(labels.get(c, c))) for c, w in widths.items()}
        column = max(room, key=lambda c: (room[c], widths[c]), default=None)
        if column is None or room[column] <= 0:
            break
        widths[column] -= 1
        caps[column] = widths[column]
        overflow -= 1
        narrowed = True
    return narrowed


DROPPED_HINT = "-m picks; -f csv/json has all"


def note_dropped(dropped: Sequence[str], hint: str = DROPPED_HINT) -> None:
    """The one note every view prints (on stderr) when it left metrics out to fit."""
    if dropped:
        import typer

        typer.echo(
            f"note: {len(dropped)} metric{'s' if len(dropped) > 1 else ''} left out to fit "
            f"the terminal: {', '.join(dropped)} ({hint})",
            err=True,
        )


def short_time(iso: str | None, wide: bool = False) -> str:
    """A start or end time for a table: ``2024-06-01 12:30:05`` with ``wide``, else
    ``06-01 12:30`` (what fits an 80-column terminal)."""
    if not iso:
        return ""
    return iso[:19].replace("T", " ") if wide else iso[5:16].replace("T", " ")


def shown_name(record: Mapping[str, Any]) -> str:
    """A run's name for a table: empty when the run has none but its id (no id twice)."""
    name = record.get("name")
    return "" if not name or name == record.get("id") else str(name)


def note_no_runs(filters: Any, what: str = "runs") -> None:
    """What every view says, on stderr, when it has no run to show (and exits 0: an empty
    selection is an answer; a filter naming nothing stored is an error before this)."""
    import typer

    described = filters.describe() if filters is not None else ""
    if described:
        typer.echo(f"no {what} match {described}", err=True)
    elif what == "groups":
        typer.echo("no groups yet (a run gets one from --group or $WANDB_RUN_GROUP)", err=True)
    else:
        typer.echo("no runs recorded yet", err=True)
