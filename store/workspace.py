"""Reading for the workspace (``wbg ui``): change detection, paged runs, group members.

The grouped rows come from ``wbg.aggregate.build_table`` and the curves from
``wbg.curves`` (the code paths of ``wbg table`` and ``wbg plot``); this module adds only
what an interactive view needs on top: a cheap "did anything change" probe, one page of
runs at a time (so 100,000 runs never become 100,000 Python rows at once), and the runs
of one group of a grouping by any keys.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

from wbg import query, runs
from wbg.curves import Selection
from wbg.engine import engine_of


def data_version(conn: sqlite3.Connection) -> Any:
    """A change counter: it moves when another connection commits to the database
    (SQLite's ``data_version``; a server's log position, see ``wbg.engine``).

    One statement, no table read: cheap enough to poll several times a second.
    """
    return conn.execute(engine_of(conn).change_counter).fetchone()[0]


def count_runs(conn: sqlite3.Connection, filters: query.Filters) -> int:
    where, params = filters.sql(engine_of(conn))
    return conn.execute(f"SELECT count(*) FROM runs WHERE {where}", params).fetchone()[0]


def default_keys(conn: sqlite3.Connection, filters: query.Filters) -> list[str]:
    """The grouping ``wbg table`` uses when none is asked for: ``group`` when a selected
    run has one, else none (one row per run)."""
    where, params = filters.sql(engine_of(conn))
    found = conn.execute(
        f'SELECT 1 FROM runs WHERE ({where}) AND runs."group" IS NOT NULL LIMIT 1', params
    ).fetchone()
    return ["group"] if found else []


_PAGE_COLUMNS = (
    'runs.num, runs.id, runs.name, runs."group", runs.job_type, runs.state, '
    "runs.started_at, runs.ended_at, runs.summary"
)


def _page_rows(rows: Sequence[Sequence[Any]]) -> list[dict[str, Any]]:
    from wbg import values

    found = []
    for num, run_id, name, group, job_type, state, started, ended, summary in rows:
        found.append(
            {
                "num": num,
                "id": run_id,
                "name": name,
                "group": group,
                "job_type": job_type,
                "state": state,
                "duration_s": None if ended is None else max(0.0, ended - started),
                "summary": values.loads(summary, {}),
            }
        )
    return found


def run_page(
    conn: sqlite3.Connection, filters: query.Filters, offset: int, limit: int
) -> list[dict[str, Any]]:
    """One page of the selected runs, newest first (as ``wbg runs list``)."""
    where, params = filters.sql(engine_of(conn))
    rows = conn.execute(
        f"SELECT {_PAGE_COLUMNS} FROM runs WHERE {where} "
        "ORDER BY runs.started_at DESC, runs.id LIMIT ? OFFSET ?",
        [*params, limit, offset],
    ).fetchall()
    return _page_rows(rows)


def _member_clause(
    conn: sqlite3.Connection, filters: query.Filters, keys: Sequence[str], group: Sequence[Any]
) -> tuple[str, list[Any]]:
    # The group values are those build_table reports (Key.display_sql), compared with IS
    # so that the missing-key group (None) selects the runs without the key.
    engine = engine_of(conn)
    where, params = filters.sql(engine)
    clauses = [f"({where})"]
    for name, value in zip(keys, group, strict=True):
        key = query.resolve_key(name)
        expr, extra = key.display_sql(engine)
        same, value_params = engine.same(expr, value, key.source != "field")
        clauses.append(same)
        params = [*params, *extra, *value_params]
    return " AND ".join(clauses), params


def group_members(
    conn: sqlite3.Connection,
    filters: query.Filters,
    keys: Sequence[str],
    group: Sequence[Any],
    offset: int = 0,
    limit: int = 100,
) -> tuple[list[dict[str, Any]], int]:
    """The runs of one row of a grouped table (newest first, one page) and how many."""
    clause, params = _member_clause(conn, filters, keys, group)
    total = conn.execute(f"SELECT count(*) FROM runs WHERE {clause}", params).fetchone()[0]
    rows = conn.execute(
        f"SELECT {_PAGE_COLUMNS} FROM runs WHERE {clause} "
        "ORDER BY runs.started_at DESC, runs.id LIMIT ? OFFSET ?",
        [*params, limit, offset],
    ).fetchall()
    return _page_rows(rows), total


def running_counts(
    conn: sqlite3.Connection, filters: query.Filters, keys: Sequence[str]
) -> dict[tuple[Any, ...], int]:
    """Group values (as ``build_table`` reports them) -> how many of the group's runs are
    running. Reads only running runs (the state index), so it is cheap at any size."""
    where, params = filters.sql(engine_of(conn))
    exprs, extra = [], []
    for name in keys:
        expr, more = query.resolve_key(name).display_sql(engine_of(conn))
        exprs.append(expr)
        extra += more
    rows = conn.execute(
        f"SELECT {', '.join(exprs)}, count(*) FROM runs WHERE runs.state = 'running' "
        f"AND ({where}) GROUP BY {', '.join(str(i + 1) for i in range(len(exprs)))}",
        [*extra, *params],
    )
    return {tuple(row[:-1]): row[-1] for row in rows}


def member_filters(
    filters: query.Filters, keys: Sequence[str], group: Sequence[Any]
) -> query.Filters | None:
    """``filters`` narrowed to one group as ``--where`` conditions (so that any reading
    function takes it), or None for the missing-key group, which no condition selects."""
    conditions = []
    for key, value in zip(keys, group, strict=True):
        if value is None:
            return None
        if isinstance(value, str) and value not in ("true", "false"):
            if "'" in value:
                return None
            value = f"'{value}'"
        elif isinstance(value, float):
            value = repr(value)  # round-trips exactly
        conditions.append(f"{key} = {value}")
    return replace(filters, where=(*filters.where, *conditions))


def member_nums(
    conn: sqlite3.Connection, filters: query.Filters, keys: Sequence[str], group: Sequence[Any]
) -> list[int]:
    clause, params = _member_clause(conn, filters, keys, group)
    return [num for (num,) in conn.execute(f"SELECT runs.num FROM runs WHERE {clause}", params)]


def restrict(selection: Selection, nums: Sequence[int]) -> Selection:
    """``selection`` keeping only the runs ``nums`` (and the groups they fall in)."""
    keep = set(nums)
    groups = {num: label for num, label in selection.groups.items() if num in keep}
    labels = set(groups.values())
    return replace(
        selection,
        groups=groups,
        starts={num: selection.starts[num] for num in groups},
        order=[label for label in selection.order if label in labels],
    )


def latest(selection: Selection, count: int) -> Selection:
    """``selection`` keeping the ``count`` most recently started runs (a readable chart
    of ungrouped runs: one line per run)."""
    newest = sorted(selection.starts, key=selection.starts.__getitem__)[-count:]
    return restrict(selection, newest)


def run_history_keys(conn: sqlite3.Connection, run_id: str) -> list[str]:
    """The metrics a run logged history for, sorted (one primary-key range of history)."""
    return [
        key
        for (key,) in conn.execute(
            "SELECT DISTINCT key FROM history WHERE run = (SELECT num FROM runs WHERE id = ?) "
            "ORDER BY key",
            (run_id,),
        )
    ]


def run_output_tail(conn: sqlite3.Connection, run_id: str, max_bytes: int = 65536) -> str:
    """The end of a run's kept output as text (undecodable bytes replaced)."""
    kept = runs.get_output(conn, run_id)
    if kept is None:
        return ""
    return kept[0][-max_bytes:].decode("utf-8", errors="replace")
