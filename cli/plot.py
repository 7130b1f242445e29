"""``wbg plot``: grouped curves in the terminal (plotext) or to a file.

The terminal chart is drawn by ``wbg.cli.chart`` (shared with ``wbg ui``). Image files go
through matplotlib, the optional extra ``plot``.
"""

from __future__ import annotations

import contextlib
import math
import shutil
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from wbg.cli.chart import BAND_NAMES, legend_label, render_terminal, x_scale
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
    from wbg.curves import Panel

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
    keys = query.grouping(group_by, no_group)
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
        scale, unit = x_scale(item)
        for index, curve in enumerate(shown):
            xs = [x / scale for x in curve.x]
            color = f"C{index % 10}"
            ax.plot(xs, curve.line, color=color, label=legend_label(curve), linewidth=1.5)
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
