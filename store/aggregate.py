"""The grouped summary table (README "``wbg table``"): aggregates computed by SQLite.

SQLite does the work (see ``_aggregate``): the selected runs' group-key values and their
numeric summary values (``summary_metrics``, plus ``duration_s``) go into temporary
tables; one pass gives count, mean, min and max per (group, metric), a second the sum of
squared deviations from that mean (a two-pass, numerically stable variance), and the
median is found by rank. Python only turns the (group x metric) result rows into table
rows.

- Sample std (n - 1); stderr = std / sqrt(n); with n = 1 both are None, never 0.
- NaN (stored as NULL) and +-inf are excluded from every aggregate and counted:
  ``METRIC.excluded``. ``METRIC.count`` is the number of values aggregated.
- A run without a group-by key falls into the ``None`` group (shown as ``-``).
"""

from __future__ import annotations

import math
import sqlite3
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from wbg import query
from wbg.engine import engine_of
from wbg.errors import InvalidInput, close_matches, did_you_mean

AGGREGATES = ("count", "mean", "std", "stderr", "min", "max", "median")
DEFAULT_AGGREGATES = ("count", "mean", "std")
DURATION = "duration_s"
NO_GROUP_KEYS = ("id", "name")
# Any finite REAL is smaller in magnitude than 9e999, which SQLite reads as infinity
# (engine.infinity); the non-finite test is engine.non_finite, spelled as in the partial
# index of migration 3 so the planner uses it.


@dataclass
class Table:
    """A grouped table: ``rows`` hold the group keys by name, ``runs`` and ``METRIC.AGG``."""

    keys: list[str]
    metrics: list[str]
    aggregates: list[str]
    rows: list[dict[str, Any]] = field(default_factory=list)
    grouped: bool = True

    def columns(self) -> list[str]:
        """Machine-format columns: keys, runs, then per metric its aggregates and excluded."""
        columns = [*self.keys, "runs"]
        for metric in self.metrics:
            columns += [f"{metric}.{agg}" for agg in self.aggregates]
            columns.append(f"{metric}.excluded")
        return columns

    def excluded(self) -> dict[str, int]:
        """Metric -> how many NaN/inf values were left out of its aggregates, in all rows
        (of a streamed table: in the rows read so far)."""
        if isinstance(self.rows, _CountedRows):
            return {m: n for m, n in self.rows.excluded.items() if n}
        totals = {m: sum(row.get(f"{m}.excluded") or 0 for row in self.rows) for m in self.metrics}
        return {m: n for m, n in totals.items() if n}


def parse_aggregates(text: str | Sequence[str] | None) -> list[str]:
    """``"count,mean,std"`` -> names, checked; None -> the default set."""
    if text is None:
        return list(DEFAULT_AGGREGATES)
    items = text.split(",") if isinstance(text, str) else list(text)
    names = [item.strip() for item in items if item.strip()]
    if not names:
        raise InvalidInput("--agg is empty", hint="choose from " + ",".join(AGGREGATES))
    for name in names:
        if name not in AGGREGATES:
            hint = did_you_mean(
                close_matches(name, AGGREGATES, n=2), "choose from " + ",".join(AGGREGATES)
            )
            raise InvalidInput(f"unknown aggregate {name!r}", hint=hint)
    return list(dict.fromkeys(names))


def metric_name(name: str) -> str:
    return name[len("summary.") :] if name.startswith("summary.") else name


def build_table(
    conn: sqlite3.Connection,
    filters: query.Filters | None = None,
    *,
    group_by: Sequence[str] | None = None,
    no_group: bool = False,
    metrics: Sequence[str] | None = None,
    aggregates: Sequence[str] | None = None,
    sort: str | None = None,
    desc: bool = False,
    limit: int | None = None,
    stream: bool = False,
) -> Table:
    """The grouped summary table of the runs ``filters`` select (see the module docstring).

    ``group_by`` None: by ``group`` when a selected run has one, else one row per run
    (``no_group``), keyed by ``id`` and ``name``. ``stream``: one row per run, in their
    order, is worked out a slice of runs at a time as ``rows`` is read (with no ``sort``,
    ``desc`` or ``limit``): a view of 100,000 runs prints its first row at once.
    """
    from wbg.runs import reap_crashed

    filters = filters or query.Filters()
    aggs = parse_aggregates(aggregates)
    query.grouping(group_by, no_group)  # refuses both at once
    reap_crashed(conn)
    query.check_filters(conn, filters)
    where, params = filters.sql(engine_of(conn))
    keys = list(group_by or ())
    resolved = [query.resolve_key(k) for k in keys]
    if not keys and not no_group:
        keys = query.default_grouping(conn, where, params)
        resolved = [query.resolve_key(k) for k in keys]
        no_group = not keys
    if no_group:
        keys, resolved = list(NO_GROUP_KEYS), [query.resolve_key(k) for k in NO_GROUP_KEYS]
    query.check_group_keys(conn, resolved, where, params)
    wanted = [metric_name(m) for m in metrics] if metrics else None
    if wanted:
        wanted = list(dict.fromkeys(wanted))
        _check_metrics(conn, wanted, where, params)
    if stream and no_group and sort is None and not desc and limit is None:
        return _per_run_streamed(conn, keys, resolved, where, params, wanted, aggs)
    result = _aggregate(
        conn,
        resolved,
        where,
        params,
        wanted,
        **_passes(aggs),
    )
    found = sorted({metric for _, _, metric, *_ in result if metric is not None})
    names = rank_metrics(conn, found, where, params) if wanted is None else wanted
    table = Table(keys=keys, metrics=names, aggregates=aggs, grouped=not no_group)
    table.rows = _rows(table, result)
    _sort(table, sort, desc)
    if limit is not None:
        table.rows = table.rows[:limit]
    return table


# How many of the selected runs with a metric are probed for its history. A logged metric
# is found among a run's first points; a summary-only one costs a walk over each probed
# run's points (history is keyed by run and step), so few runs are probed: a summary value
# that came from logging is in the history of every run that has it.
_HISTORY_PROBE_RUNS = 3


class _CountedRows:
    """Rows read once, as they are made, counting the NaN/inf values left out on the way
    (``Table.excluded`` of a streamed table)."""

    def __init__(self, rows: Iterator[dict[str, Any]], metrics: Sequence[str], count: int) -> None:
        self._rows = rows
        self._metrics = metrics
        self._count = count
        self.excluded: dict[str, int] = {}

    def __len__(self) -> int:
        return self._count

    def __iter__(self) -> Iterator[dict[str, Any]]:
        for row in self._rows:
            for metric in self._metrics:
                n = row.get(f"{metric}.excluded")
                if n:
                    self.excluded[metric] = self.excluded.get(metric, 0) + n
            yield row


# Up to this many metric names in a file, each is looked up on its own (one index seek);
# past it, the selected runs' values are walked once for the names they have.
FEW_METRICS = 20

# A streamed per-run table is worked out for this many runs first, then this many at a time.
STREAM_FIRST, STREAM_SLICE = 200, 10_000


def _per_run_streamed(
    conn: sqlite3.Connection,
    keys: list[str],
    resolved: Sequence[query.Key],
    where: str,
    params: Sequence[Any],
    wanted: list[str] | None,
    aggs: list[str],
) -> Table:
    """``build_table(no_group=True)`` with rows made a slice of runs at a time. Each run is
    its own group, so a slice's rows are exactly the whole table's rows for those runs;
    the metrics are those of the whole selection, found up front."""
    if wanted is None:
        found = _selected_metrics(conn, where, params)
        ended = conn.execute(
            f"SELECT EXISTS (SELECT 1 FROM runs WHERE ({where}) AND ended_at IS NOT NULL)",
            params,
        ).fetchone()[0]
        found = sorted({*found, *([DURATION] if ended else [])})
        names = rank_metrics(conn, found, where, params)
    else:
        names = wanted
    table = Table(keys=keys, metrics=names, aggregates=aggs, grouped=False)
    count = conn.execute(f"SELECT count(*) FROM runs WHERE {where}", params).fetchone()[0]

    def rows() -> Iterator[dict[str, Any]]:
        after, size = "", STREAM_FIRST  # every id sorts after ""
        while True:
            part = [
                i
                for (i,) in conn.execute(
                    f"SELECT id FROM runs WHERE ({where}) AND id > ? ORDER BY id LIMIT ?",
                    [*params, after, size],
                )
            ]
            if not part:
                return
            after, size = part[-1], STREAM_SLICE
            result = _aggregate(
                conn,
                resolved,
                f"({where}) AND runs.id BETWEEN ? AND ?",
                [*params, part[0], part[-1]],
                names,
                **_passes(aggs),
            )
            piece = Table(keys=keys, metrics=names, aggregates=aggs, grouped=False)
            piece.rows = _rows(piece, result)
            _sort(piece, None, False)
            yield from piece.rows

    table.rows = _CountedRows(rows(), names, count)  # type: ignore[assignment]
    return table


def _selected_metrics(conn: sqlite3.Connection, where: str, params: Sequence[Any]) -> list[str]:
    """The summary metrics that the runs ``where`` selects have: the file's metric names
    (one index seek each), each kept when a selected run has it. A key's first selected
    run is usually among its first rows; a walk over all of the selected runs' values is
    only for files with many metric names."""
    names = query.metric_names(conn)
    if where == query.ALL_RUNS:
        return names
    if len(names) > FEW_METRICS:
        return [
            key
            for (key,) in conn.execute(
                "SELECT DISTINCT sm.key FROM runs JOIN summary_metrics AS sm "
                f"ON sm.run = runs.num WHERE {where}",
                params,
            )
        ]
    return [
        name
        for name in names
        if conn.execute(
            "SELECT EXISTS (SELECT 1 FROM summary_metrics AS sm JOIN runs ON runs.num = sm.run "
            f"WHERE sm.key = ? AND ({where}))",
            [name, *params],
        ).fetchone()[0]
    ]


def rank_metrics(
    conn: sqlite3.Connection,
    names: Sequence[str],
    where: str = query.ALL_RUNS,
    params: Sequence[Any] = (),
) -> list[str]:
    """``names`` in the order a reader wants them: metrics logged to history first (what
    was trained and evaluated), then summary-only values, ``duration_s`` last; names keep
    their order within each part. Views drop metrics from the right to fit a terminal, so
    the bookkeeping goes first."""
    logged = logged_metrics(conn, names, where, params)
    summary_only = [n for n in names if n not in logged and n != DURATION]
    return logged + summary_only + ([DURATION] if DURATION in names else [])


def logged_metrics(
    conn: sqlite3.Connection,
    names: Sequence[str],
    where: str = query.ALL_RUNS,
    params: Sequence[Any] = (),
    probe_runs: int = _HISTORY_PROBE_RUNS,
) -> list[str]:
    """The ``names`` that the selected runs logged to history (a summary metric that one
    of the first ``probe_runs`` runs with it also has history points of)."""
    logged = []
    for name in names:
        if name == DURATION:
            continue
        probe = conn.execute(
            "SELECT EXISTS (SELECT 1 FROM (SELECT sm.run FROM summary_metrics AS sm "
            f"JOIN runs ON runs.num = sm.run WHERE sm.key = ? AND ({where}) LIMIT ?) AS r "
            "WHERE EXISTS (SELECT 1 FROM history AS h WHERE h.run = r.run AND h.key = ?))",
            [name, *params, probe_runs, name],
        ).fetchone()[0]
        if probe:
            logged.append(name)
    return logged


def _check_metrics(
    conn: sqlite3.Connection, wanted: Sequence[str], where: str, params: Sequence[Any]
) -> None:
    for name in wanted:
        if name == DURATION:
            continue
        if conn.execute("SELECT 1 FROM summary_metrics WHERE key = ? LIMIT 1", (name,)).fetchone():
            continue
        selected = [
            key
            for (key,) in conn.execute(
                "SELECT DISTINCT sm.key FROM summary_metrics AS sm JOIN runs ON runs.num = sm.run "
                f"WHERE {where} LIMIT 5000",
                params,
            )
        ]
        known = query.metric_names(conn) + [DURATION]
        # close matches among the selected runs' metrics first, then the whole file's
        close = close_matches(name, [*selected, DURATION]) or close_matches(name, known)
        hint = did_you_mean(close, "known metrics: " + ", ".join(sorted(selected or known)[:40]))
        raise InvalidInput(f"unknown metric {name!r}: no run has it in its summary", hint=hint)


def _passes(aggs: Sequence[str]) -> dict[str, bool]:
    """Which of ``_aggregate``'s optional work the aggregates ``aggs`` need: a walk keeps
    only the running sums it needs (each costs about a tenth of a walk at 100,000 runs)."""
    return {
        "median": "median" in aggs,
        "deviations": "std" in aggs or "stderr" in aggs,
        "extremes": "min" in aggs or "max" in aggs,
    }


def _aggregate(
    conn: sqlite3.Connection,
    keys: Sequence[query.Key],
    where: str,
    params: Sequence[Any],
    metrics: Sequence[str] | None,
    median: bool,
    deviations: bool = True,
    extremes: bool = True,
) -> list[tuple[Any, ...]]:
    """Rows ``(kind, group values, metric, n, mean, min, max, sum sq dev, median)``.

    kind ``stats``: the aggregates of the finite values; ``runs``: the group's run count in
    ``n`` (metric None); ``excluded``: how many NaN/inf values ``n`` were left out.

    The passes, each a method of ``_Selection`` (which owns the temporary tables): the
    selected runs and their group values go into a temporary table indexed by (group
    values, run); one walk per metric gathers count, mean, min, max and shifted sums; the
    squared deviations come from those sums (or an exact second walk where they cannot be
    trusted); NaN/inf values are counted through the partial index of migration 3; the
    median (only when asked for) ranks each metric's values within each group.
    """
    if not keys:  # pragma: no cover - callers always group by something
        raise ValueError("no group keys")
    with_duration = metrics is None or DURATION in metrics
    with _Selection(conn, keys, where, params) as selection:
        names = selection.metric_names(metrics)
        selection.walk_metrics(names, with_duration, extremes=extremes, squares=deviations)
        sumsq = selection.squared_deviations() if deviations else {}
        medians = _medians(conn, selection.g, names, with_duration) if median else {}
        return [
            *selection.stats_rows(sumsq, medians),
            *selection.run_counts(),
            *selection.excluded_counts(with_duration),
        ]


# Metrics summed in one walk of the selection: each is a join (SQLite allows 64 tables).
WALK_METRICS = 16
# A sum left out: typed, so a column of nothing has the type of the sums (PostgreSQL types
# a bare NULL in a subquery as text).
_NO_VALUE = "CAST(NULL AS DOUBLE PRECISION)"


class _Selection:
    """The selected runs of one aggregation in ``temp.wbg_sel`` (each config value read
    from JSON once), with their per-group statistics in ``temp.wbg_stats``: made on
    entering, dropped on leaving, whatever happens in between."""

    def __init__(
        self,
        conn: sqlite3.Connection,
        keys: Sequence[query.Key],
        where: str,
        params: Sequence[Any],
    ) -> None:
        self.conn = conn
        self.keys = keys
        self.where = where
        self.params = params
        self.g = [f"g{i}" for i in range(len(keys))]
        self.g_list = ", ".join(self.g)
        self.s_list = ", ".join(f"s.{name}" for name in self.g)
        self.engine = engine = engine_of(conn)
        self.temp = engine.temp
        # the group columns with their types (PostgreSQL's temporary tables need them)
        self.g_typed = ", ".join(
            engine.typed(name, key.sql_type()) for name, key in zip(self.g, keys, strict=True)
        )
        self.finite = f"abs(sm.value) < {engine.infinity}"

    def __enter__(self) -> _Selection:
        conn, g_list, engine, temp = self.conn, self.g_list, self.engine, self.temp
        exprs: list[str] = []
        sel_params: list[Any] = []
        for key in self.keys:
            expr, extra = key.display_sql(engine)
            exprs.append(expr)
            sel_params += extra
        _drop_temp(conn)
        # Sorting for the indexes uses temporary b-trees: in memory, not in files.
        if engine.temp_store:
            conn.execute(engine.temp_store)
        real = "DOUBLE PRECISION"
        try:
            conn.execute(
                "CREATE TEMP TABLE wbg_sel (run INTEGER PRIMARY KEY, "
                f"{self.g_typed}, {engine.typed('dur', real)})"
            )
            conn.execute(
                f"INSERT INTO {temp}wbg_sel SELECT runs.num, {', '.join(exprs)}, "
                f"runs.ended_at - runs.started_at FROM runs WHERE {self.where}",
                [*sel_params, *self.params],
            )
            index = engine.temp_index("wbg_sel_groups", "wbg_sel", f"{g_list}, run, dur")
            if index:
                conn.execute(index)
            # Statistics on the temporary table let the planner see how small a selection
            # is (without them it may scan all of summary_metrics to build a Bloom filter).
            if engine.analyze_temp:
                conn.execute(f"ANALYZE {temp}wbg_sel")
            stats = ", ".join(
                engine.typed(name, sql_type)
                for name, sql_type in (
                    ("metric", "TEXT"),
                    ("n", "BIGINT"),
                    *((name, real) for name in ("mu", "lo", "hi", "shift", "s1", "s2")),
                )
            )
            conn.execute(f"CREATE TEMP TABLE wbg_stats ({self.g_typed}, {stats})")
        except BaseException:
            _drop_temp(conn)
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        _drop_temp(self.conn)

    def metric_names(self, metrics: Sequence[str] | None) -> list[str]:
        """The stored metrics to walk (``duration_s`` is the selection's own column)."""
        if metrics is not None:
            return [m for m in metrics if m != DURATION]
        names = [k for k in query.metric_names(self.conn) if k != DURATION]
        if len(names) > FEW_METRICS:  # many keys in the file: walk only the selection's
            names = [
                k
                for (k,) in self.conn.execute(
                    f"SELECT DISTINCT sm.key FROM {self.temp}wbg_sel AS s "
                    f"{self.engine.cross_join} summary_metrics AS sm ON sm.run = s.run "
                    "WHERE sm.key != ?",
                    (DURATION,),
                )
            ]
        return names

    def walk_metrics(
        self,
        names: Sequence[str],
        with_duration: bool,
        *,
        extremes: bool = True,
        squares: bool = True,
    ) -> None:
        """Pass one: per (group, metric) the count and the sums of (x - K) and (x - K)**2,
        K one of the metric's own values, into ``temp.wbg_stats``; the mean is K + S1/n, and
        min and max only with ``extremes``. The squared deviations are then S2 - S1**2/n,
        accurate unless the spread is tiny next to |mean - K| (``squared_deviations`` walks
        those groups again).

        One walk of the selection in group order serves up to ``WALK_METRICS`` metrics, each
        joined to its own run's value, so a group's rows arrive together and no sort is
        needed; only what is asked is summed (each running sum costs about a tenth of a
        walk at 100,000 runs)."""
        conn, s_list = self.conn, self.s_list
        engine, temp, finite = self.engine, self.temp, self.finite
        # (name, K, the value as the walk reads it or None for a stored metric's join)
        items: list[tuple[str, Any, str | None]] = []
        for name in names:
            row = conn.execute(
                f"SELECT value FROM summary_metrics AS sm WHERE key = ? AND {finite} LIMIT 1",
                (name,),
            ).fetchone()
            items.append((name, row[0] if row else 0.0, None))
        if with_duration:
            row = conn.execute(
                f"SELECT dur FROM {temp}wbg_sel WHERE abs(dur) < {engine.infinity} LIMIT 1"
            )
            found = row.fetchone()
            items.append(
                (
                    DURATION,
                    found[0] if found else 0.0,
                    f"CASE WHEN abs(s.dur) < {engine.infinity} THEN s.dur END",
                )
            )
        for start in range(0, len(items), WALK_METRICS):
            params: list[Any] = []
            joins, columns, rows = [], [], []
            for j, (name, shift, value) in enumerate(items[start : start + WALK_METRICS]):
                name_at, shift_at = f"?{len(params) + 1}", f"?{len(params) + 2}"
                params += [name, shift]
                if value is None:
                    joins.append(
                        f"LEFT JOIN summary_metrics AS m{j} ON m{j}.run = s.run "
                        f"AND m{j}.key = {name_at} AND abs(m{j}.value) < {engine.infinity}"
                    )
                    value = f"m{j}.value"
                columns.append(self._sums(value, shift_at, f"_{j}", extremes, squares))
                rows.append(self._stats_row(name_at, shift_at, f"_{j}"))
            conn.execute(
                f"WITH w AS MATERIALIZED (SELECT {s_list}, {', '.join(columns)} "
                f"FROM {temp}wbg_sel AS s{engine.indexed_by('wbg_sel_groups')} "
                f"{' '.join(joins)} GROUP BY {s_list}) "
                f"INSERT INTO {temp}wbg_stats {' UNION ALL '.join(rows)}",
                params,
            )

    @staticmethod
    def _sums(value: str, shift: str, suffix: str, extremes: bool, squares: bool) -> str:
        """The running sums of one metric's ``value`` (NULL where the run has none)."""
        shifted = f"({value} - {shift})"
        return ", ".join(
            [
                f"count({value}) AS n{suffix}",
                f"sum({shifted}) AS s1{suffix}",
                f"min({value}) AS lo{suffix}" if extremes else f"{_NO_VALUE} AS lo{suffix}",
                f"max({value}) AS hi{suffix}" if extremes else f"{_NO_VALUE} AS hi{suffix}",
                f"sum({shifted} * {shifted}) AS s2{suffix}"
                if squares
                else f"{_NO_VALUE} AS s2{suffix}",
            ]
        )

    def _stats_row(self, name: str, shift: str, suffix: str) -> str:
        """One metric's ``wbg_stats`` rows out of the wide walk ``w`` (groups that have it)."""
        return (
            f"SELECT {self.g_list}, {name}, n{suffix}, {shift} + s1{suffix} / n{suffix}, "
            f"lo{suffix}, hi{suffix}, {shift}, s1{suffix}, s2{suffix} FROM w WHERE n{suffix} > 0"
        )

    def squared_deviations(self) -> dict[tuple[Any, ...], float]:
        """Pass two: (group values..., metric) -> sum of squared deviations from the mean,
        from pass one's sums where they are exact enough, else by a second walk."""
        sumsq: dict[tuple[Any, ...], float] = {}
        redo = []
        for row in self.conn.execute(
            f"SELECT {self.g_list}, metric, n, s1, s2 FROM {self.temp}wbg_stats WHERE n >= 2"
        ):
            *found, n, s1, s2 = row
            deviation = s2 - s1 * s1 / n
            # cancellation loses about log10(s2 / deviation) of float's 16 digits
            if deviation > 0 and s2 <= deviation * 1e6:
                sumsq[tuple(found)] = deviation
            else:
                redo.append(tuple(found))
        if redo:
            sumsq.update(_exact_deviations(self.conn, self.g, redo, self.keys))
        return sumsq

    def stats_rows(
        self, sumsq: dict[tuple[Any, ...], float], medians: dict[tuple[Any, ...], float]
    ) -> list[tuple[Any, ...]]:
        """The ``stats`` rows: pass one's aggregates with the deviations and medians."""
        width = len(self.g)
        rows: list[tuple[Any, ...]] = []
        for row in self.conn.execute(
            f"SELECT {self.g_list}, metric, n, mu, lo, hi FROM {self.temp}wbg_stats"
        ):
            group, metric = tuple(row[:width]), row[width]
            found = (*group, metric)
            rows.append(
                ("stats", group, metric, *row[width + 1 :], sumsq.get(found), medians.get(found))
            )
        return rows

    def run_counts(self) -> list[tuple[Any, ...]]:
        """The ``runs`` rows: each group's number of selected runs."""
        width = len(self.g)
        return [
            ("runs", tuple(row[:width]), None, row[width], *([None] * 5))
            for row in self.conn.execute(
                f"SELECT {self.g_list}, count(*) FROM {self.temp}wbg_sel"
                f"{self.engine.indexed_by('wbg_sel_groups')} GROUP BY {self.g_list}"
            )
        ]

    def excluded_counts(self, with_duration: bool) -> list[tuple[Any, ...]]:
        """The ``excluded`` rows: how many NaN/inf values each (group, metric) left out."""
        g_list, s_list, width = self.g_list, self.s_list, len(self.g)
        engine, temp = self.engine, self.temp
        excluded = (
            f"SELECT {s_list}, sm.key, count(*) FROM summary_metrics AS sm"
            f"{engine.indexed_by('summary_metrics_non_finite')} "
            f"JOIN {temp}wbg_sel AS s ON s.run = sm.run WHERE {engine.non_finite('sm.value')} "
            f"AND sm.key != '{DURATION}' GROUP BY {s_list}, sm.key"
        )
        if with_duration:
            excluded += (
                f" UNION ALL SELECT {g_list}, '{DURATION}', count(*) FROM {temp}wbg_sel "
                f"WHERE dur IS NOT NULL AND abs(dur) >= {engine.infinity} GROUP BY {g_list}"
            )
        return [
            ("excluded", tuple(row[:width]), row[width], row[width + 1], *([None] * 5))
            for row in self.conn.execute(excluded)
        ]


def _exact_deviations(
    conn: sqlite3.Connection,
    g: Sequence[str],
    found: Sequence[tuple[Any, ...]],
    keys: Sequence[query.Key],
) -> dict[tuple[Any, ...], float]:
    """The two-pass sum of squared deviations of the (group values..., metric) in ``found``:
    one index range each, for the few the one-pass sums cannot give exactly."""
    engine = engine_of(conn)
    temp, is_, finite = engine.temp, engine.is_, f"< {engine.infinity}"
    same = " AND ".join(f"s.{name} {is_} st.{name}" for name in g)
    stored = (
        f"(SELECT sum((sm.value - st.mu) * (sm.value - st.mu)) FROM {temp}wbg_sel AS s "
        f"{engine.cross_join} summary_metrics AS sm ON sm.run = s.run AND sm.key = st.metric "
        f"AND abs(sm.value) {finite} WHERE {same})"
    )
    duration = (
        f"(SELECT sum((s.dur - st.mu) * (s.dur - st.mu)) FROM {temp}wbg_sel AS s "
        f"WHERE {same} AND abs(s.dur) {finite})"
    )
    result = {}
    for found_key in found:
        clauses, params = [], []
        for name, key, value in zip(g, keys, found_key, strict=False):
            clause, extra = engine.same(f"st.{name}", value, key.source != "field")
            clauses.append(clause)
            params += extra
        sql = (
            f"SELECT CASE WHEN st.metric = '{DURATION}' THEN {duration} ELSE {stored} END "
            f"FROM {temp}wbg_stats AS st WHERE {' AND '.join(clauses)} AND st.metric = ?"
        )
        result[found_key] = conn.execute(sql, [*params, found_key[-1]]).fetchone()[0]
    return result


def _medians(
    conn: sqlite3.Connection, g: Sequence[str], names: Sequence[str], with_duration: bool
) -> dict[tuple[Any, ...], float]:
    """(group values..., metric) -> median of the finite values, ranked per metric."""
    engine = engine_of(conn)
    temp, finite = engine.temp, f"< {engine.infinity}"
    g_list = ", ".join(g)
    s_list = ", ".join(f"s.{name}" for name in g)
    ranked = (
        f"SELECT {g_list}, avg(x) FROM (SELECT {s_list}, {{value}} AS x, "
        f"row_number() OVER (PARTITION BY {s_list} ORDER BY {{value}}) AS rk, "
        f"count(*) OVER (PARTITION BY {s_list}) AS nn FROM {{source}}) AS ranked "
        f"WHERE rk IN ((nn + 1) / 2, (nn + 2) / 2) GROUP BY {g_list}"
    )
    medians: dict[tuple[Any, ...], float] = {}
    for name in names:
        sql = ranked.format(
            value="sm.value",
            source=f"{temp}wbg_sel AS s {engine.cross_join} summary_metrics AS sm "
            f"ON sm.run = s.run AND sm.key = ? AND abs(sm.value) {finite}",
        )
        for row in conn.execute(sql, (name,)):
            medians[tuple(row[:-1]) + (name,)] = row[-1]
    if with_duration:
        sql = ranked.format(value="s.dur", source=f"{temp}wbg_sel AS s WHERE abs(s.dur) {finite}")
        for row in conn.execute(sql):
            medians[tuple(row[:-1]) + (DURATION,)] = row[-1]
    return medians


def _drop_temp(conn: sqlite3.Connection) -> None:
    temp = engine_of(conn).temp
    for table in ("wbg_stats", "wbg_sel"):
        conn.execute(f"DROP TABLE IF EXISTS {temp}{table}")


def _rows(table: Table, result: list[tuple[Any, ...]]) -> list[dict[str, Any]]:
    by_group: dict[tuple[Any, ...], dict[str, Any]] = {}
    metrics = set(table.metrics)
    for kind, group, metric, n, mean, lo, hi, sumsq, median in result:
        row = by_group.get(group)
        if row is None:
            row = by_group[group] = dict(zip(table.keys, group, strict=True))
            row["runs"] = 0
            for name in table.metrics:
                row.update({f"{name}.{agg}": None for agg in table.aggregates})
                row[f"{name}.excluded"] = 0
                if "count" in table.aggregates:
                    row[f"{name}.count"] = 0
        if kind == "runs":
            row["runs"] = n
            continue
        if metric not in metrics:
            continue
        if kind == "excluded":
            row[f"{metric}.excluded"] = n
            continue
        std = math.sqrt(max(sumsq, 0.0) / (n - 1)) if n >= 2 and sumsq is not None else None
        stats = {
            "count": n,
            "mean": mean,
            "std": std,
            "stderr": None if std is None else std / math.sqrt(n),
            "min": lo,
            "max": hi,
            "median": median,
        }
        for agg in table.aggregates:
            row[f"{metric}.{agg}"] = stats[agg]
    return list(by_group.values())


def _sort(table: Table, sort: str | None, desc: bool) -> None:
    if sort is None:
        table.rows.sort(key=lambda row: [query.group_order_key(row.get(k)) for k in table.keys])
        if desc:
            table.rows.reverse()
        return
    columns = [*table.keys, "runs"] + [
        f"{m}.{a}" for m in table.metrics for a in (*table.aggregates, "excluded")
    ]
    if sort in table.metrics and sort not in columns:  # a metric alone: its mean, or first
        aggregate = "mean" if "mean" in table.aggregates else table.aggregates[0]
        sort = f"{sort}.{aggregate}"
    if sort not in columns:
        hint = did_you_mean(
            close_matches(sort, columns, cutoff=0.5),
            "sort by a group key, runs, or METRIC.AGG: " + ", ".join(columns[:30]),
        )
        raise InvalidInput(f"cannot sort by {sort!r}: not a column of this table", hint=hint)
    present = [row for row in table.rows if row.get(sort) is not None]
    missing = [row for row in table.rows if row.get(sort) is None]
    present.sort(key=lambda row: query.group_order_key(row[sort]), reverse=desc)
    table.rows = present + missing  # rows without a value stay last either way
