"""Grouped curves: a metric's history, aligned across runs and aggregated per group.

See docs/design.md, "Reading".

How a group's curve is made, in order:

1. **Read** with SQL only the selected runs' points of the metric (``history.run =
   runs.num``). Non-finite values (NaN, stored as NULL, and ±inf) are dropped and counted.
2. **Smooth** each run on its own (``smooth`` > 0): an exponential moving average over the
   run's points in x order, ``s[0] = v[0]``, ``s[i] = smooth * s[i-1] + (1 - smooth) * v[i]``
   (the TensorBoard / W&B "smoothing" weight: 0 is off, closer to 1 is smoother).
3. **Align**: the group's x values are the union of its runs' x values. Each run is
   interpolated linearly between its own points and never extrapolated: at an x before its
   first or after its last point it is absent.
4. **Aggregate** per x over the runs present there: the line (mean, median, min or max)
   and the band over the same runs: ``minmax`` = [min, max], ``std`` = line ± sample
   standard deviation (n - 1), ``stderr`` = line ± std / sqrt(n). With one run present the
   std and stderr bands are empty (None), as in ``wbg table``.
5. **Down-sample** (for drawing only, after aggregation): :func:`downsample`.

x is the step, or with ``x="time"`` the seconds since the run started (each run measured
from its own ``started_at``, so runs launched at different times overlay, like W&B's
"relative time"). Times, unlike steps, are almost never shared between runs, so their union
would hold every point of every run; above 10,000 values the group's x values are instead
10,000 evenly spaced times plus each run's first and last time (still interpolated, never
extrapolated).

Pure Python on purpose: numpy is not a dependency of wbg, and the common case (runs sharing
a step grid) is a list comparison per run plus one pass per x.
"""

from __future__ import annotations

import math
import sqlite3
from bisect import bisect_left, bisect_right
from collections.abc import Sequence
from dataclasses import dataclass, field
from itertools import pairwise, repeat
from operator import itemgetter
from typing import Any

from wbg import query
from wbg.engine import engine_of
from wbg.errors import InvalidInput, close_matches, did_you_mean

LINES = ("mean", "median", "min", "max")
BANDS = ("none", "minmax", "std", "stderr")
X_AXES = ("step", "time")
TIME_GRID_POINTS = 10_000  # x values of a group at most, with x = time (see align)
MISSING = "-"  # label of runs without the group-by key, as in ``wbg table``


@dataclass
class Curve:
    """One group's aggregated series of one metric (parallel lists, one item per x)."""

    metric: str
    group: str  # label: the group's key values
    runs: int  # runs of the group with at least one finite point
    x: list[float] = field(default_factory=list)
    line: list[float] = field(default_factory=list)
    low: list[float | None] = field(default_factory=list)
    high: list[float | None] = field(default_factory=list)
    n: list[int] = field(default_factory=list)

    def rows(self) -> list[dict[str, Any]]:
        return [
            {
                "metric": self.metric,
                "x": x,
                "group": self.group,
                "line": line,
                "low": low,
                "high": high,
                "n": n,
            }
            for x, line, low, high, n in zip(
                self.x, self.line, self.low, self.high, self.n, strict=True
            )
        ]


@dataclass
class Panel:
    """All groups' curves of one metric."""

    metric: str
    x_axis: str
    curves: list[Curve]
    excluded: int = 0  # non-finite points dropped


@dataclass
class Selection:
    """The selected runs and the group each belongs to."""

    groups: dict[int, str]  # runs.num -> group label
    starts: dict[int, float]  # runs.num -> started_at
    order: list[str]  # group labels, sorted
    where: str = "1"  # the filters, a WHERE body over runs (see query.Filters.sql)
    params: list[Any] = field(default_factory=list)

    def nums_sql(self) -> tuple[str, list[Any]]:
        """The selected runs' numbers as a subquery (any number of runs, unlike IN (?, ...))."""
        return f"(SELECT runs.num FROM runs WHERE {self.where})", list(self.params)


def check_options(line: str, band: str, x_axis: str, smooth: float) -> None:
    for name, value, allowed in (
        ("--line", line, LINES),
        ("--band", band, BANDS),
        ("--x", x_axis, X_AXES),
    ):
        if value not in allowed:
            raise InvalidInput(f"unknown {name} {value!r}", hint="one of: " + ", ".join(allowed))
    if not (0.0 <= smooth < 1.0) or math.isnan(smooth):
        raise InvalidInput(
            f"--smooth must be at least 0 and below 1, got {smooth:g}",
            hint="0 is no smoothing; 0.6 to 0.99 smooths more and more",
        )


def select_runs(
    conn: sqlite3.Connection, filters: query.Filters, group_by: Sequence[str] | None
) -> Selection:
    """Selected runs and their group labels.

    ``group_by`` None: by ``group`` when any selected run has one, else one curve per run
    (as ``wbg table``); an empty list: one curve per run. A label is the group's name for
    the key ``group`` and ``key=value`` for any other key, joined by ``, ``.
    """
    where, params = filters.sql(engine_of(conn))
    if group_by is None:
        group_by = query.default_grouping(conn, where, params)
    keys = [query.resolve_key(name) for name in group_by]
    for key in keys:
        if not query.key_exists(conn, key, where, params):
            raise query.unknown_key_error(conn, key)
    columns, key_params = ["runs.num", "runs.started_at", "runs.name", "runs.id"], []
    for key in keys:
        expr, extra = key.sql(engine_of(conn))
        columns.append(expr)
        key_params.extend(extra)
    rows = conn.execute(
        f"SELECT {', '.join(columns)} FROM runs WHERE {where} ORDER BY runs.started_at, runs.id",
        [*key_params, *params],
    ).fetchall()
    groups: dict[int, str] = {}
    starts: dict[int, float] = {}
    sort_keys: dict[str, tuple[Any, ...]] = {}
    for num, started_at, name, run_id, *key_values in rows:
        starts[num] = started_at
        if keys:
            label = ", ".join(
                _label(value) if key.name == "group" else f"{key.name}={_label(value)}"
                for key, value in zip(keys, key_values, strict=True)
            )
            sort_keys.setdefault(label, tuple(query.group_order_key(v) for v in key_values))
        else:
            label = f"{name} ({run_id})" if name and name != run_id else run_id
            sort_keys.setdefault(label, (len(sort_keys),))
        groups[num] = label
    order = sorted(sort_keys, key=sort_keys.__getitem__)
    return Selection(groups, starts, order, where, list(params))


def _label(value: Any) -> str:
    if value is None:
        return MISSING
    if isinstance(value, float) and value.is_integer() and abs(value) < 1e15:
        return str(int(value))
    return str(value)


# SQLite stores NaN as NULL; ±inf fall outside the range of finite doubles.
_first, _second = itemgetter(0), itemgetter(1)
_FINITE = "value BETWEEN -1.7976931348623157e308 AND 1.7976931348623157e308"


def metric_points(
    conn: sqlite3.Connection, metric: str, selection: Selection, x_axis: str
) -> tuple[dict[int, tuple[list[float], list[float]]], int]:
    """The selected runs' finite points of ``metric`` in x order, and how many were not.

    Returns ``{runs.num: (xs, values)}`` (runs without a finite point left out) and the
    count of NaN/±inf points dropped.
    """
    column = "step" if x_axis == "step" else "time"
    points: dict[int, tuple[list[float], list[float]]] = {}
    for num in selection.groups:
        # One range of the primary key (run, step, key) per run, already in step order.
        rows = conn.execute(
            f"SELECT {column}, value FROM history WHERE run = ? AND key = ? AND {_FINITE} "
            f"ORDER BY {column}",
            (num, metric),
        ).fetchall()
        if rows:
            points[num] = (list(map(_first, rows)), list(map(_second, rows)))
    nums, params = selection.nums_sql()
    (excluded,) = conn.execute(
        f"SELECT count(*) FROM history WHERE run IN {nums} AND key = ? "
        f"AND NOT coalesce({_FINITE}, FALSE)",
        [*params, metric],
    ).fetchone()
    return points, excluded


def check_metric(conn: sqlite3.Connection, metric: str, selection: Selection) -> None:
    """Refuse a metric that no selected run logged, naming close matches."""
    nums, params = selection.nums_sql()
    logged = [
        key
        for (key,) in conn.execute(
            f"SELECT DISTINCT key FROM history WHERE run IN {nums} ORDER BY key", params
        )
    ]
    if metric in logged:
        return
    in_summary = conn.execute(
        f"SELECT 1 FROM summary_metrics WHERE run IN {nums} AND key = ? LIMIT 1",
        [*params, metric],
    ).fetchone()
    hint = did_you_mean(
        close_matches(metric, logged),
        ("metrics with history: " + ", ".join(logged[:40])) if logged else "",
    )
    if in_summary:
        raise InvalidInput(
            f"metric {metric!r} has no history in the selected runs, only a summary value",
            hint=hint or f"see it with: wbg table -m {metric}",
        )
    raise InvalidInput(
        f"unknown metric {metric!r}: no selected run logged it",
        hint=hint or "no selected run has any history",
    )


def panel(
    conn: sqlite3.Connection,
    metric: str,
    selection: Selection,
    *,
    line: str = "mean",
    band: str = "minmax",
    smooth: float = 0.0,
    x_axis: str = "step",
) -> Panel:
    """The curves of ``metric``, one per group of ``selection``."""
    check_options(line, band, x_axis, smooth)
    if not selection.groups:
        raise InvalidInput("no runs match the filters")
    raw, excluded = metric_points(conn, metric, selection, x_axis)
    if not raw:
        check_metric(conn, metric, selection)  # explains why: unknown, or a summary value only
        raise InvalidInput(f"metric {metric!r} has no finite values in the selected runs")
    grid = TIME_GRID_POINTS if x_axis == "time" else None
    by_group: dict[str, list[tuple[list[float], list[float]]]] = {}
    for num, (xs, vs) in raw.items():
        if x_axis == "time":
            start = selection.starts[num]
            xs = [x - start for x in xs]
        if smooth:
            vs = ema(vs, smooth)
        by_group.setdefault(selection.groups[num], []).append((xs, vs))
    curves = [
        aggregate(metric, label, by_group[label], line, band, grid)
        for label in selection.order
        if label in by_group
    ]
    return Panel(metric, x_axis, curves, excluded)


def ema(values: Sequence[float], weight: float) -> list[float]:
    """Exponential moving average: ``s[i] = weight * s[i-1] + (1 - weight) * v[i]``."""
    out: list[float] = []
    append = out.append
    rest = 1.0 - weight
    current = values[0]
    for value in values:
        current = weight * current + rest * value
        append(current)
    return out


def align(
    runs: Sequence[tuple[list[float], list[float]]], max_points: int | None = None
) -> tuple[list[float], list[tuple[int, list[float]]]]:
    """The x values of the group, and each run on them as ``(first, values)``: the run
    covers ``x[first : first + len(values)]`` and is absent elsewhere.

    x is the union of the runs' x values; with ``max_points`` and a larger union, it is
    ``max_points`` evenly spaced values plus each run's first and last x instead.
    """
    union = sorted(set().union(*(xs for xs, _ in runs)))
    if max_points is not None and len(union) > max_points:
        low, high = union[0], union[-1]
        step = (high - low) / (max_points - 1)
        grid = {low + i * step for i in range(max_points - 1)} | {high}
        union = sorted(grid.union(*((xs[0], xs[-1]) for xs, _ in runs)))
    spans: list[tuple[int, list[float]]] = []
    for xs, vs in runs:
        first = bisect_left(union, xs[0])
        last = bisect_left(union, xs[-1]) + 1
        span = union[first:last]
        # when the run has a point at every x of its span, nothing to interpolate
        spans.append((first, list(vs) if span == xs else _interpolate(xs, vs, span)))
    return union, spans


def _interpolate(xs: Sequence[float], vs: Sequence[float], span: Sequence[float]) -> list[float]:
    # span is sorted and lies within [xs[0], xs[-1]]. The span's x values between two
    # consecutive points of the run get the straight line through those two points.
    if len(span) < len(xs):
        # fewer x values than points (a time grid): find each x's segment by C bisect
        last = len(xs)
        return [
            vs[i - 1]
            if i == last or x == xs[i - 1]
            else vs[i - 1] + (vs[i] - vs[i - 1]) * (x - xs[i - 1]) / (xs[i] - xs[i - 1])
            for x, i in zip(span, map(bisect_right, repeat(xs), span), strict=True)
        ]
    # else walk the run's segments, each filled by one comprehension
    cuts = list(map(bisect_left, repeat(span), xs))  # where each point of the run falls
    out: list[float] = []
    append, extend = out.append, out.extend
    for k in range(len(xs) - 1):
        start, end = cuts[k], cuts[k + 1]
        if start == end:
            continue  # no x of the span in [xs[k], xs[k+1]) (or the same x twice)
        x0, v0 = xs[k], vs[k]
        if span[start] == x0:
            append(v0)  # exactly, whatever the slope
            start += 1
        if start < end:
            # multiply before dividing: a slope could overflow for very close x values
            rise, run = vs[k + 1] - v0, xs[k + 1] - x0
            extend([v0 + rise * (x - x0) / run for x in span[start:end]])
    extend([vs[-1]] * (len(span) - len(out)))  # the x values equal to the last point's
    return out


def aggregate(
    metric: str,
    label: str,
    runs: Sequence[tuple[list[float], list[float]]],
    line: str = "mean",
    band: str = "minmax",
    max_points: int | None = None,
) -> Curve:
    """Align ``runs`` (each ``(xs, values)``, xs ascending) and aggregate them per x
    (``max_points``: see :func:`align`)."""
    union, spans = align(runs, max_points)
    curve = Curve(metric, label, len(runs), union)
    # Between two consecutive run starts/ends the same runs are present: aggregate each
    # such segment with column-wise builtins (map over zip), which run at C speed.
    cuts = sorted({0, len(union)} | {f for f, _ in spans} | {f + len(v) for f, v in spans})
    for start, end in pairwise(cuts):
        present = [v[start - f : end - f] for f, v in spans if f <= start and end <= f + len(v)]
        _aggregate_segment(curve, present, line, band)
    return curve


def _aggregate_segment(curve: Curve, columns: list[list[float]], line: str, band: str) -> None:
    n = len(columns)
    rows = list(zip(*columns, strict=True))
    count = len(rows)
    means: list[float] = []
    if line == "mean" or band in ("std", "stderr"):
        means = [total / n for total in map(math.fsum, rows)]
    if line == "mean":
        center = means
    elif line == "median":
        half = n // 2
        ordered = map(sorted, rows)
        if n % 2:
            center = [r[half] for r in ordered]
        else:
            center = [(r[half - 1] + r[half]) / 2 for r in ordered]
    else:
        center = list(map(min if line == "min" else max, rows))
    if band == "minmax":
        low: list[float | None] = list(map(min, rows))
        high: list[float | None] = list(map(max, rows))
    elif band == "none" or n == 1:
        low = high = [None] * count
    else:
        divisor = (n - 1) * (n if band == "stderr" else 1)
        spread = [
            math.sqrt(math.fsum([(v - m) * (v - m) for v in r]) / divisor)
            for r, m in zip(rows, means, strict=True)
        ]
        low = [c - d for c, d in zip(center, spread, strict=True)]
        high = [c + d for c, d in zip(center, spread, strict=True)]
    curve.line.extend(center)
    curve.low.extend(low)
    curve.high.extend(high)
    curve.n.extend([n] * count)


def downsample(curve: Curve, points: int) -> Curve:
    """At most ``points`` points for drawing: x split into equal buckets; per bucket the
    mean x and line, the lowest low and the highest high (the band's envelope is kept)."""
    if len(curve.x) <= points or points < 2:
        return curve
    low, high = curve.x[0], curve.x[-1]
    width = (high - low) / points
    edges = [bisect_left(curve.x, low + i * width) for i in range(1, points)]
    out = Curve(curve.metric, curve.group, curve.runs)
    for start, end in pairwise([0, *edges, len(curve.x)]):
        if start == end:
            continue
        size = end - start
        out.x.append(math.fsum(curve.x[start:end]) / size)
        out.line.append(math.fsum(curve.line[start:end]) / size)
        lows = [v for v in curve.low[start:end] if v is not None]
        highs = [v for v in curve.high[start:end] if v is not None]
        out.low.append(min(lows) if lows else None)
        out.high.append(max(highs) if highs else None)
        out.n.append(max(curve.n[start:end]))
    return out
