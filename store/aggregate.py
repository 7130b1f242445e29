"""The grouped summary table (SPEC §5 ``wbg table``): aggregates computed by SQLite.

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
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from wbg import query
from wbg.errors import InvalidInput

AGGREGATES = ("count", "mean", "std", "stderr", "min", "max", "median")
DEFAULT_AGGREGATES = ("count", "mean", "std")
DURATION = "duration_s"
NO_GROUP_KEYS = ("id", "name")
# Any finite REAL is smaller in magnitude than 9e999, which SQLite reads as infinity. The
# non-finite test is spelled exactly as in the partial index of migration 3 so SQLite uses it.
NON_FINITE = "(sm.value IS NULL OR abs(sm.value) >= 9e999)"


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
        """Metric -> how many NaN/inf values were left out of its aggregates, in all rows."""
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
            import difflib

            close = difflib.get_close_matches(name, AGGREGATES, n=2)
            hint = (
                (f"did you mean: {', '.join(close)}? " if close else "")
                + "choose from "
                + (",".join(AGGREGATES))
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
) -> Table:
    """The grouped summary table of the runs ``filters`` select (see the module docstring).

    ``group_by`` None: by ``group`` when a selected run has one, else one row per run
    (``no_group``), keyed by ``id`` and ``name``.
    """
    from wbg.runs import reap_crashed

    filters = filters or query.Filters()
    aggs = parse_aggregates(aggregates)
    if group_by and no_group:
        raise InvalidInput("--group-by and --no-group exclude each other")
    reap_crashed(conn)
    query.check_filters(conn, filters)
    where, params = filters.sql()
    keys = list(group_by or ())
    resolved = [query.resolve_key(k) for k in keys]
    if not keys and not no_group:
        has_group = conn.execute(
            f'SELECT 1 FROM runs WHERE ({where}) AND runs."group" IS NOT NULL LIMIT 1', params
        ).fetchone()
        no_group = has_group is None
        if not no_group:
            keys, resolved = ["group"], [query.resolve_key("group")]
    if no_group:
        keys, resolved = list(NO_GROUP_KEYS), [query.resolve_key(k) for k in NO_GROUP_KEYS]
    for key in resolved:
        # a key some other run has is not a typo: the selected runs fall into the - group
        if not query.key_exists(conn, key):
            raise query.unknown_key_error(conn, key, where, params)
    wanted = [metric_name(m) for m in metrics] if metrics else None
    if wanted:
        wanted = list(dict.fromkeys(wanted))
        _check_metrics(conn, wanted, where, params)
    result = _aggregate(
        conn,
        resolved,
        where,
        params,
        wanted,
        median="median" in aggs,
        deviations="std" in aggs or "stderr" in aggs,
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


def rank_metrics(
    conn: sqlite3.Connection, names: Sequence[str], where: str = "1", params: Sequence[Any] = ()
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
    where: str = "1",
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
        close = query.close_matches(name, [*selected, DURATION]) or query.close_matches(name, known)
        hint = (
            (f"did you mean: {', '.join(close)}? " if close else "")
            + "known metrics: "
            + (", ".join(sorted(selected or known)[:40]))
        )
        raise InvalidInput(f"unknown metric {name!r}: no run has it in its summary", hint=hint)


def _aggregate(
    conn: sqlite3.Connection,
    keys: Sequence[query.Key],
    where: str,
    params: Sequence[Any],
    metrics: Sequence[str] | None,
    median: bool,
    deviations: bool = True,
) -> list[tuple[Any, ...]]:
    """Rows ``(kind, group values, metric, n, mean, min, max, sum sq dev, median)``.

    kind ``stats``: the aggregates of the finite values; ``runs``: the group's run count in
    ``n`` (metric None); ``excluded``: how many NaN/inf values ``n`` were left out.

    The selected runs and their group values go into a temporary table (each config value
    is read from JSON once), indexed by (group values, run). For each metric, pass one
    walks that index in group order, looks the metric up by primary key and aggregates
    count, mean, min and max with no sort; pass two walks it again and sums the squared
    deviations from the group's mean (a two-pass, numerically stable variance). NaN/inf
    values are counted through the partial index of migration 3. The median (only when
    asked for) ranks each metric's values within each group with a window function.
    """
    if not keys:  # pragma: no cover - callers always group by something
        raise ValueError("no group keys")
    g = [f"g{i}" for i in range(len(keys))]
    g_list = ", ".join(g)
    s_list = ", ".join(f"s.{name}" for name in g)
    exprs: list[str] = []
    sel_params: list[Any] = []
    for key in keys:
        expr, extra = key.display_sql()
        exprs.append(expr)
        sel_params += extra
    with_duration = metrics is None or DURATION in metrics
    finite = "abs(sm.value) < 9e999"
    walk = (  # the selected runs in group order, joined to one metric's values
        "FROM temp.wbg_sel AS s INDEXED BY wbg_sel_groups CROSS JOIN summary_metrics AS sm "
        f"ON sm.run = s.run AND sm.key = ? AND {finite}"
    )
    _drop_temp(conn)
    # Sorting for the indexes uses temporary b-trees: in memory, not in files.
    conn.execute("PRAGMA temp_store = MEMORY")
    try:
        conn.execute(f"CREATE TEMP TABLE wbg_sel (run INTEGER PRIMARY KEY, {g_list}, dur)")
        conn.execute(
            f"INSERT INTO temp.wbg_sel SELECT runs.num, {', '.join(exprs)}, "
            f"runs.ended_at - runs.started_at FROM runs WHERE {where}",
            [*sel_params, *params],
        )
        conn.execute(f"CREATE INDEX temp.wbg_sel_groups ON wbg_sel ({g_list}, run, dur)")
        # Statistics on the temporary table let the planner see how small a selection is
        # (without them it may scan all of summary_metrics to build a Bloom filter).
        conn.execute("ANALYZE temp.wbg_sel")
        if metrics is None:
            names = [k for k in query.metric_names(conn) if k != DURATION]
            if len(names) > 20:  # many keys in the file: walk only those the selection has
                names = [
                    k
                    for (k,) in conn.execute(
                        "SELECT DISTINCT sm.key FROM temp.wbg_sel AS s CROSS JOIN "
                        "summary_metrics AS sm ON sm.run = s.run WHERE sm.key != ?",
                        (DURATION,),
                    )
                ]
        else:
            names = [m for m in metrics if m != DURATION]
        # One walk per metric gathers count, mean, min, max and the sums of (x - K) and
        # (x - K)**2, K being one of the metric's own values: the squared deviations are
        # then S2 - S1**2/n, accurate unless the spread is tiny next to |mean - K| (then
        # that group is walked again for an exact two-pass sum, below).
        conn.execute(
            f"CREATE TEMP TABLE wbg_stats ({g_list}, metric, n, mu, lo, hi, shift, s1, s2)"
        )
        for name in names:
            row = conn.execute(
                f"SELECT value FROM summary_metrics AS sm WHERE key = ? AND {finite} LIMIT 1",
                (name,),
            ).fetchone()
            shift = row[0] if row else 0.0
            conn.execute(
                f"INSERT INTO temp.wbg_stats SELECT {s_list}, ?, count(sm.value), "
                "avg(sm.value), min(sm.value), max(sm.value), ?, sum(sm.value - ?), "
                f"sum((sm.value - ?) * (sm.value - ?)) {walk} GROUP BY {s_list}",
                (name, shift, shift, shift, shift, name),
            )
        if with_duration:
            row = conn.execute("SELECT dur FROM temp.wbg_sel WHERE abs(dur) < 9e999 LIMIT 1")
            found = row.fetchone()
            conn.execute(
                f"INSERT INTO temp.wbg_stats SELECT {g_list}, '{DURATION}', count(dur), "
                "avg(dur), min(dur), max(dur), ?1, sum(dur - ?1), sum((dur - ?1) * (dur - ?1)) "
                f"FROM temp.wbg_sel INDEXED BY wbg_sel_groups WHERE abs(dur) < 9e999 "
                f"GROUP BY {g_list}",
                (found[0] if found else 0.0,),
            )
        sumsq: dict[tuple[Any, ...], float] = {}
        if deviations:
            redo = []
            for row in conn.execute(
                f"SELECT {g_list}, metric, n, s1, s2 FROM temp.wbg_stats WHERE n >= 2"
            ):
                *found, n, s1, s2 = row
                deviation = s2 - s1 * s1 / n
                # cancellation loses about log10(s2 / deviation) of float's 16 digits
                if deviation > 0 and s2 <= deviation * 1e6:
                    sumsq[tuple(found)] = deviation
                else:
                    redo.append(tuple(found))
            if redo:
                sumsq.update(_exact_deviations(conn, g, redo))
        medians: dict[tuple[Any, ...], float] = {}
        if median:
            medians = _medians(conn, g, names, with_duration)
        width = len(keys)
        result: list[tuple[Any, ...]] = []
        for row in conn.execute(f"SELECT {g_list}, metric, n, mu, lo, hi FROM temp.wbg_stats"):
            group, metric = tuple(row[:width]), row[width]
            found = (*group, metric)
            result.append(
                ("stats", group, metric, *row[width + 1 :], sumsq.get(found), medians.get(found))
            )
        for row in conn.execute(
            f"SELECT {g_list}, count(*) FROM temp.wbg_sel INDEXED BY wbg_sel_groups "
            f"GROUP BY {g_list}"
        ):
            result.append(("runs", tuple(row[:width]), None, row[width], *([None] * 5)))
        excluded = (
            f"SELECT {s_list}, sm.key, count(*) "
            "FROM summary_metrics AS sm INDEXED BY summary_metrics_non_finite "
            f"JOIN temp.wbg_sel AS s ON s.run = sm.run WHERE {NON_FINITE} "
            f"AND sm.key != '{DURATION}' GROUP BY {s_list}, sm.key"
        )
        if with_duration:
            excluded += (
                f" UNION ALL SELECT {g_list}, '{DURATION}', count(*) FROM temp.wbg_sel "
                f"WHERE dur IS NOT NULL AND abs(dur) >= 9e999 GROUP BY {g_list}"
            )
        for row in conn.execute(excluded):
            result.append(("excluded", tuple(row[:width]), row[width], row[width + 1]))
            result[-1] += (None,) * 5
    finally:
        _drop_temp(conn)
    return result


def _exact_deviations(
    conn: sqlite3.Connection, g: Sequence[str], found: Sequence[tuple[Any, ...]]
) -> dict[tuple[Any, ...], float]:
    """The two-pass sum of squared deviations of the (group values..., metric) in ``found``:
    one index range each, for the few the one-pass sums cannot give exactly."""
    same = " AND ".join(f"s.{name} IS st.{name}" for name in g)
    stored = (
        "(SELECT sum((sm.value - st.mu) * (sm.value - st.mu)) FROM temp.wbg_sel AS s "
        "CROSS JOIN summary_metrics AS sm ON sm.run = s.run AND sm.key = st.metric "
        f"AND abs(sm.value) < 9e999 WHERE {same})"
    )
    duration = (
        "(SELECT sum((s.dur - st.mu) * (s.dur - st.mu)) FROM temp.wbg_sel AS s "
        f"WHERE {same} AND abs(s.dur) < 9e999)"
    )
    where = " AND ".join(f"st.{name} IS ?" for name in g) + " AND st.metric = ?"
    sql = (
        f"SELECT CASE WHEN st.metric = '{DURATION}' THEN {duration} ELSE {stored} END "
        f"FROM temp.wbg_stats AS st WHERE {where}"
    )
    return {key: conn.execute(sql, key).fetchone()[0] for key in found}


def _medians(
    conn: sqlite3.Connection, g: Sequence[str], names: Sequence[str], with_duration: bool
) -> dict[tuple[Any, ...], float]:
    """(group values..., metric) -> median of the finite values, ranked per metric."""
    g_list = ", ".join(g)
    s_list = ", ".join(f"s.{name}" for name in g)
    ranked = (
        f"SELECT {g_list}, avg(x) FROM (SELECT {s_list}, {{value}} AS x, "
        f"row_number() OVER (PARTITION BY {s_list} ORDER BY {{value}}) AS rk, "
        f"count(*) OVER (PARTITION BY {s_list}) AS nn FROM {{source}}) "
        f"WHERE rk IN ((nn + 1) / 2, (nn + 2) / 2) GROUP BY {g_list}"
    )
    medians: dict[tuple[Any, ...], float] = {}
    for name in names:
        sql = ranked.format(
            value="sm.value",
            source="temp.wbg_sel AS s CROSS JOIN summary_metrics AS sm ON sm.run = s.run "
            "AND sm.key = ? AND abs(sm.value) < 9e999",
        )
        for row in conn.execute(sql, (name,)):
            medians[(*row[:-1], name)] = row[-1]
    if with_duration:
        sql = ranked.format(value="s.dur", source="temp.wbg_sel AS s WHERE abs(s.dur) < 9e999")
        for row in conn.execute(sql):
            medians[(*row[:-1], DURATION)] = row[-1]
    return medians


def _drop_temp(conn: sqlite3.Connection) -> None:
    for table in ("wbg_stats", "wbg_sel"):
        conn.execute(f"DROP TABLE IF EXISTS temp.{table}")


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


def _order_key(value: Any) -> tuple[int, Any]:
    """Numbers before strings, the ``-`` group (None) last."""
    if value is None:
        return (2, 0)
    if isinstance(value, (int, float)):
        return (0, value)
    return (1, str(value))


def _sort(table: Table, sort: str | None, desc: bool) -> None:
    if sort is None:
        table.rows.sort(key=lambda row: [_order_key(row.get(k)) for k in table.keys])
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
        import difflib

        close = difflib.get_close_matches(sort, columns, n=3, cutoff=0.5)
        hint = (f"did you mean: {', '.join(close)}? " if close else "") + (
            "sort by a group key, runs, or METRIC.AGG: " + ", ".join(columns[:30])
        )
        raise InvalidInput(f"cannot sort by {sort!r}: not a column of this table", hint=hint)
    present = [row for row in table.rows if row.get(sort) is not None]
    missing = [row for row in table.rows if row.get(sort) is None]
    present.sort(key=lambda row: _order_key(row[sort]), reverse=desc)
    table.rows = present + missing  # rows without a value stay last either way
