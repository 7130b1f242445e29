"""``wbg plot``: grouped curves in the terminal (plotext) or to a file.

The terminal chart is drawn with plotext: per group a line (colour on a terminal, a marker
character of its own without colour) and its band as dots between low and high. The
legend (group, run count) is printed under the chart so it never hides a curve.
Image files go through matplotlib, the optional extra ``plot``.
"""

from __future__ import annotations

import contextlib
import math
import shutil
import sys
import types
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from wbg.cli.options import (
    AllProjectsOpt,
    DbOpt,
    GroupByOpt,
    GroupFilterOpt,
    JobTypeFilterOpt,
    ProjectFilterOpt,
    StateOpt,
    TagOpt,
    WhereOpt,
    complete_history_metric,
    filters_from,
    note_scope,
    open_db,
)

if TYPE_CHECKING:
    from wbg.curves import Curve, Panel

PALETTE = (12, 9, 10, 13, 14, 11, 208, 141)  # 256-colour codes, one per group
MARKERS = ("•", "+", "x", "o", "*", "#", "%", "@")  # one per group when there is no colour
BAND_NAMES = {"minmax": "min-max", "std": "± std", "stderr": "± stderr"}
FILE_SUFFIXES = (".png", ".svg", ".csv", ".json")
IMAGE_POINTS = 2000  # points per curve in an image file


class Line(str, Enum):
    mean = "mean"
    median = "median"
    min = "min"
    max = "max"


class Band(str, Enum):
    none = "none"
    minmax = "minmax"
    std = "std"
    stderr = "stderr"


class XAxis(str, Enum):
    step = "step"
    time = "time"


def register(app: typer.Typer) -> None:
    app.command("plot", no_args_is_help=True)(plot)


def plot(
    metrics: Annotated[
        list[str],
        typer.Argument(
            metavar="METRIC",
            help="History keys to plot (one panel each).",
            autocompletion=complete_history_metric,
        ),
    ],
    group_by: GroupByOpt = None,
    no_group: Annotated[
        bool, typer.Option("--no-group", help="One line per run, no grouping.")
    ] = False,
    line: Annotated[
        Line, typer.Option("--line", help="What each group's line is.", case_sensitive=False)
    ] = Line.mean,
    band: Annotated[
        Band,
        typer.Option(
            "--band", help="Shading around the line over the same runs.", case_sensitive=False
        ),
    ] = Band.minmax,
    smooth: Annotated[
        float,
        typer.Option(
            "--smooth",
            metavar="ALPHA",
            help="EMA weight in [0, 1) applied to each run before aggregation (0 = off).",
        ),
    ] = 0.0,
    x_axis: Annotated[
        XAxis,
        typer.Option(
            "--x",
            help="x axis: step, or time = seconds since each run started.",
            case_sensitive=False,
        ),
    ] = XAxis.step,
    width: Annotated[
        int | None,
        typer.Option(
            "--width",
            min=30,
            help="Chart width in columns (default: the terminal's).",
            show_default=False,
        ),
    ] = None,
    height: Annotated[
        int | None,
        typer.Option(
            "--height",
            min=8,
            help="Chart height in rows (default: the terminal's).",
            show_default=False,
        ),
    ] = None,
    out: Annotated[
        Path | None,
        typer.Option(
            "--out",
            "-o",
            help="Write FILE.png|.svg (needs wbg[plot]) or the series as FILE.csv|.json.",
            dir_okay=False,
            show_default=False,
        ),
    ] = None,
    project: ProjectFilterOpt = None,
    all_projects: AllProjectsOpt = False,
    group: GroupFilterOpt = None,
    job_type: JobTypeFilterOpt = None,
    state: StateOpt = None,
    tag: TagOpt = None,
    where: WhereOpt = None,
    db: DbOpt = None,
) -> None:
    """Plot grouped curves of history metrics: one line per group with a band."""
    from wbg import curves, query, runs
    from wbg.errors import InvalidInput

    curves.check_options(line.value, band.value, x_axis.value, smooth)
    if state is not None and state not in runs.STATES:
        raise InvalidInput(f"unknown state {state!r}", hint="states: " + ", ".join(runs.STATES))
    if group_by is not None and no_group:
        raise InvalidInput("--group-by and --no-group exclude each other")
    keys: list[str] | None = None
    if no_group:
        keys = []
    elif group_by is not None:
        keys = query.split_keys(group_by)
    suffix = out.suffix.lower() if out is not None else None
    if out is not None and suffix not in FILE_SUFFIXES:
        raise InvalidInput(
            f"cannot tell the file type of {str(out)!r}",
            hint="--out takes a .png, .svg, .csv or .json file",
        )
    if suffix in (".png", ".svg"):
        _require_matplotlib()
    filters = filters_from(project, group, job_type, state, tag, where, all_projects)
    filters.sql()  # malformed --where: refuse before opening anything
    conn, _ = open_db(db, read_only=True)
    with contextlib.closing(conn):
        runs.reap_crashed(conn)
        query.check_filters(conn, filters)
        selection = curves.select_runs(conn, filters, keys)
        note_scope(filters)
        if not selection.groups:
            from wbg.cli.render import note_no_runs

            note_no_runs(filters)
            return
        panels = [
            curves.panel(
                conn,
                metric,
                selection,
                line=line.value,
                band=band.value,
                smooth=smooth,
                x_axis=x_axis.value,
            )
            for metric in metrics
        ]
    for item in panels:
        if item.excluded:
            typer.echo(
                f"{item.metric}: {item.excluded} NaN/inf point(s) left out of the curves", err=True
            )
    if out is None:
        from wbg.cli.render import use_color

        size = shutil.get_terminal_size()
        typer.echo(
            render_terminal(
                panels,
                line.value,
                band.value,
                width or max(size.columns, 30),
                height or max(size.lines - 1, 8 * len(panels)),
                color=use_color(),
            )
        )
    elif suffix in (".csv", ".json"):
        _write_series(panels, out, suffix)
        typer.echo(f"Wrote {out}", err=True)
    else:
        _write_image(panels, out, line.value, band.value)
        typer.echo(f"Wrote {out}", err=True)


# --- terminal ----------------------------------------------------------------------------


def render_terminal(
    panels: list[Panel], line: str, band: str, width: int, height: int, *, color: bool
) -> str:
    """The panels stacked, each with its title, axes and legend, in ``width`` x ``height``."""
    each = max(height // len(panels), 8)
    return "\n".join(_render_panel(p, line, band, width, each, color) for p in panels)


def _import_plotext() -> Any:
    # plotext (pinned to 6.1.x) builds the help text of its whole API when imported, which
    # costs about 0.2 s, a sixth of the time budget of a plot; wbg never shows that help,
    # so that one module is replaced by an empty stand-in before the import.
    if "plotext" not in sys.modules:
        stand_in = types.ModuleType("plotext._doc.doc")
        stand_in.docs = None  # type: ignore[attr-defined]
        sys.modules.setdefault("plotext._doc.doc", stand_in)
    import plotext

    return plotext


def _render_panel(panel: Panel, line: str, band: str, width: int, height: int, color: bool) -> str:
    from wbg.curves import downsample

    plotext = _import_plotext()

    legend = _legend(panel, width, color)
    chart_height = max(height - len(legend), 6)
    points = 2 * width  # plotext's "hd" marker has two columns per character
    shown = [downsample(curve, points) for curve in panel.curves]
    scale, unit = _x_scale(panel)

    plotext.terminal.limit(False, False)  # --width/--height are exact, not capped
    figure = plotext.figure
    figure.clear()
    figure.theme("colorless")
    figure.plot_size(width, chart_height)
    lows, highs = [], []
    for index, curve in enumerate(shown):
        xs = [x / scale for x in curve.x]
        if band != "none":
            drawn = [
                (x, lo, hi)
                for x, lo, hi in zip(xs, curve.low, curve.high, strict=True)
                if lo is not None
            ]
            if drawn:
                band_marker: Any = "·"
                if color:
                    band_marker = plotext.marker("·", plotext.pixel(_color(index), style="dim"))
                bx = [x for x, _, _ in drawn]
                upper = figure.signal(bx, [hi for _, _, hi in drawn], marker=band_marker)
                lower = figure.signal(bx, [lo for _, lo, _ in drawn], marker=band_marker)
                if len(bx) > 1:
                    upper.lines()
                    lower.lines()
                upper.fill(lower)
                figure.draw(upper)
                figure.draw(lower)
                lows.extend(lo for _, lo, _ in drawn)
                highs.extend(hi for _, _, hi in drawn)
        marker: Any = plotext.marker("hd", _color(index)) if color else _marker(index)
        signal = figure.signal(xs, curve.line, marker=marker)
        if len(xs) > 1:
            signal.lines()
        figure.draw(signal)
        lows.extend(curve.line)
        highs.extend(curve.line)
    x_low = min(curve.x[0] for curve in panel.curves) / scale
    x_high = max(curve.x[-1] for curve in panel.curves) / scale
    _set_axis(figure, "x", x_low, x_high, max(width // 12, 2))
    _set_axis(figure, "y", min(lows), max(highs), max(chart_height // 3, 2))
    band_text = "" if band == "none" else f", band: {BAND_NAMES[band]}"
    figure.title(f"{panel.metric} ({line} per group{band_text})")
    figure.label(unit)
    chart = figure.build().string(colorless=not color)
    figure.clear()
    chart = "\n".join(row.rstrip() for row in chart.splitlines())
    return "\n".join([chart, *legend])


def _legend(panel: Panel, width: int, color: bool) -> list[str]:
    """Legend rows: ``marker group (N runs)`` entries side by side, wrapped at ``width``."""
    rows: list[str] = []
    row, used = "", 0
    for index, curve in enumerate(panel.curves):
        text = _legend_label(curve)
        size = 2 + 3 + len(text)  # indent or gap, sample and space, label
        if row and used + size > width:
            rows.append(row)
            row, used = "", 0
        row += f"  {_sample(index, color)} {text}"
        used += size
    return [*rows, row]


def _legend_label(curve: Curve) -> str:
    from wbg.cli.render import safe_text

    return safe_text(f"{curve.group} ({curve.runs} run{'s' if curve.runs != 1 else ''})")


def _color(index: int) -> int:
    return PALETTE[index % len(PALETTE)]


def _marker(index: int) -> str:
    return MARKERS[index % len(MARKERS)]


def _sample(index: int, color: bool) -> str:
    if color:
        return f"\x1b[38;5;{_color(index)}m━━\x1b[0m"
    return _marker(index) * 2


def _x_scale(panel: Panel) -> tuple[float, str]:
    """Divide time by a unit that keeps the numbers short."""
    if panel.x_axis == "step":
        return 1.0, "step"
    span = max(curve.x[-1] for curve in panel.curves)
    for scale, name in ((86400.0, "days"), (3600.0, "hours"), (60.0, "minutes")):
        if span >= 3 * scale:
            return scale, f"time since run start ({name})"
    return 1.0, "time since run start (s)"


def nice_ticks(low: float, high: float, count: int) -> list[float]:
    """About ``count`` round tick positions (1, 2, 2.5 or 5 times a power of ten) in range."""
    if not (math.isfinite(low) and math.isfinite(high)) or high <= low:
        return [low]
    raw = (high - low) / max(count, 1)
    power = 10 ** math.floor(math.log10(raw))
    step = next(m * power for m in (1, 2, 2.5, 5, 10) if m * power >= raw)
    first = math.ceil(low / step - 1e-9)
    ticks = []
    index = first
    while index * step <= high + step * 1e-9:
        ticks.append(round(index * step, 12))
        index += 1
    return ticks


def _set_axis(figure: Any, axis: str, low: float, high: float, count: int) -> None:
    from wbg.cli.render import format_number

    if high <= low:
        pad = abs(low) * 0.05 or 0.5
        low, high = low - pad, high + pad
    ticks = nice_ticks(low, high, count)
    figure.ruler(axis).lim(low, high)
    figure.ruler(axis).ticks(ticks, [format_number(t, 4) for t in ticks])


# --- files -------------------------------------------------------------------------------

SERIES_COLUMNS = ("metric", "x", "group", "line", "low", "high", "n")


def _write_series(panels: list[Panel], out: Path, suffix: str) -> None:
    from wbg.cli.render import render

    rows = [row for item in panels for curve in item.curves for row in curve.rows()]
    text = render(rows, SERIES_COLUMNS, suffix.lstrip("."))
    _write_text(out, text + "\n")


def _write_text(out: Path, text: str) -> None:
    from wbg.errors import WbgError

    try:
        out.write_text(text, encoding="utf-8")
    except OSError as exc:
        raise WbgError(f"cannot write {out}: {exc.strerror or exc}") from None


def _require_matplotlib() -> None:
    from wbg.errors import WbgError

    try:
        import matplotlib  # noqa: F401
    except ImportError:
        raise WbgError(
            "writing an image needs matplotlib, which is not installed",
            hint="install the plot extra: pip install 'wbg[plot]'",
        ) from None


def _write_image(panels: list[Panel], out: Path, line: str, band: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot

    from wbg.curves import downsample
    from wbg.errors import WbgError

    figure, axes = pyplot.subplots(
        len(panels), 1, figsize=(9, 4 * len(panels)), squeeze=False, layout="constrained"
    )
    for item, ax in zip(panels, axes[:, 0], strict=True):
        shown = [downsample(curve, IMAGE_POINTS) for curve in item.curves]
        scale, unit = _x_scale(item)
        for index, curve in enumerate(shown):
            xs = [x / scale for x in curve.x]
            color = f"C{index % 10}"
            ax.plot(xs, curve.line, color=color, label=_legend_label(curve), linewidth=1.5)
            if band != "none":
                low = [math.nan if v is None else v for v in curve.low]
                high = [math.nan if v is None else v for v in curve.high]
                ax.fill_between(xs, low, high, color=color, alpha=0.2, linewidth=0)
        band_text = "" if band == "none" else f", band: {BAND_NAMES[band]}"
        ax.set_title(f"{item.metric} ({line} per group{band_text})")
        ax.set_xlabel(unit)
        ax.set_ylabel(item.metric)
        ax.grid(alpha=0.3)
        ax.legend(fontsize="small")
    try:
        figure.savefig(out, dpi=100)
    except OSError as exc:
        raise WbgError(f"cannot write {out}: {exc.strerror or exc}") from None
    finally:
        pyplot.close(figure)
