"""Grouped curves drawn as text with plotext: ``wbg plot`` in the terminal and the charts of
``wbg ui`` (one renderer, so both show the same thing).

Per group a line (colour on a terminal, a marker character of its own without colour) and
its band as dots between low and high. The legend (group, run count) is printed under the
chart so it never hides a curve.
"""

from __future__ import annotations

import math
import sys
import types
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from wbg.curves import Curve, Panel

PALETTE = (12, 9, 10, 13, 14, 11, 208, 141)  # 256-colour codes, one per group
MARKERS = ("•", "+", "x", "o", "*", "#", "%", "@")  # one per group when there is no colour
BAND_NAMES = {"minmax": "min-max", "std": "± std", "stderr": "± stderr"}


def render_terminal(
    panels: list[Panel],
    line: str,
    band: str,
    width: int,
    height: int,
    *,
    color: bool,
    x_range: tuple[float, float] | None = None,
    log_y: bool = False,
    min_height: int = 8,
) -> str:
    """The panels stacked, each with its title, axes and legend, in ``width`` x ``height``.

    ``x_range`` (in the panel's x units: steps or seconds) shows only that part of the
    curves, down-sampled after the cut so a zoom shows detail; ``log_y`` draws log10 of
    the values (values <= 0 are left out) with ticks labelled in the values' own units.
    """
    each = max(height // len(panels), min_height)
    return "\n".join(
        _render_panel(p, line, band, width, each, color, x_range, log_y) for p in panels
    )


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


def _render_panel(
    panel: Panel,
    line: str,
    band: str,
    width: int,
    height: int,
    color: bool,
    x_range: tuple[float, float] | None = None,
    log_y: bool = False,
) -> str:
    from wbg.curves import downsample

    plotext = _import_plotext()

    legend = _legend(panel, width, color)
    chart_height = max(height - len(legend), 4)
    points = 2 * width  # plotext's "hd" marker has two columns per character
    curves = panel.curves
    if x_range is not None:
        curves = [clip(curve, *x_range) for curve in curves]
    if log_y:
        curves = [_log10(curve) for curve in curves]
    shown = [downsample(curve, points) for curve in curves if curve.x]
    if not shown:
        return "\n".join([f"{panel.metric}: nothing to draw in this range", *legend])
    scale, unit = x_scale(panel)

    plotext.terminal.limit(False, False)  # --width/--height are exact, not capped
    figure = plotext.figure
    figure.clear()
    figure.theme("colorless")
    figure.plot_size(width, chart_height)
    lows: list[float] = []
    highs: list[float] = []
    for index, curve in enumerate(shown):
        xs = [x / scale for x in curve.x]
        if band != "none":
            drawn = [
                (x, lo, hi)
                for x, lo, hi in zip(xs, curve.low, curve.high, strict=True)
                if lo is not None and hi is not None  # a band has both ends or none
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
    if x_range is not None:
        x_low, x_high = x_range[0] / scale, x_range[1] / scale
    else:
        x_low = min(curve.x[0] for curve in shown) / scale
        x_high = max(curve.x[-1] for curve in shown) / scale
    _set_axis(figure, "x", x_low, x_high, max(width // 12, 2))
    _set_axis(figure, "y", min(lows), max(highs), max(chart_height // 3, 2), log=log_y)
    band_text = "" if band == "none" else f", band: {BAND_NAMES[band]}"
    log_text = ", log y" if log_y else ""
    figure.title(f"{panel.metric} ({line} per group{band_text}{log_text})")
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
        text = legend_label(curve)
        size = 2 + 3 + len(text)  # indent or gap, sample and space, label
        if row and used + size > width:
            rows.append(row)
            row, used = "", 0
        row += f"  {_sample(index, color)} {text}"
        used += size
    return [*rows, row]


def legend_label(curve: Curve) -> str:
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


def x_scale(panel: Panel) -> tuple[float, str]:
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


def _set_axis(
    figure: Any, axis: str, low: float, high: float, count: int, log: bool = False
) -> None:
    from wbg.cli.render import format_number

    if high <= low:
        pad = abs(low) * 0.05 or 0.5
        low, high = low - pad, high + pad
    ticks = nice_ticks(low, high, count)
    figure.ruler(axis).lim(low, high)
    labels = [format_number(10**t if log else t, 3 if log else 4) for t in ticks]
    figure.ruler(axis).ticks(ticks, labels)


def clip(curve: Curve, low: float, high: float) -> Curve:
    """The part of ``curve`` with ``low <= x <= high``."""
    from bisect import bisect_left, bisect_right

    from wbg.curves import Curve

    start, end = bisect_left(curve.x, low), bisect_right(curve.x, high)
    return Curve(
        curve.metric,
        curve.group,
        curve.runs,
        curve.x[start:end],
        curve.line[start:end],
        curve.low[start:end],
        curve.high[start:end],
        curve.n[start:end],
    )


def _log10(curve: Curve) -> Curve:
    """log10 of the line and band; points whose line is not positive are left out, a band
    edge that is not positive is dropped (None)."""
    from wbg.curves import Curve

    out = Curve(curve.metric, curve.group, curve.runs)
    for x, value, lo, hi, n in zip(
        curve.x, curve.line, curve.low, curve.high, curve.n, strict=True
    ):
        if value <= 0:
            continue
        out.x.append(x)
        out.line.append(math.log10(value))
        out.low.append(math.log10(lo) if lo is not None and lo > 0 else None)
        out.high.append(math.log10(hi) if hi is not None and hi > 0 else None)
        out.n.append(n)
    return out
