"""Groups (experiments): list them, the group page, rename and delete.

See the README, "``wbg group``: experiments".

A group exists while it has runs; its name is unique within a project. A name used in
several projects needs ``project`` to say which one is meant.
"""

from __future__ import annotations

import sqlite3
from typing import Any

from wbg import query, runs, values
from wbg.aggregate import DURATION, Table, build_table
from wbg.db import transaction
from wbg.engine import engine_of
from wbg.errors import InvalidInput


def list_groups(
    conn: sqlite3.Connection, filters: query.Filters | None = None
) -> list[dict[str, Any]]:
    """One row per (project, group) of the selected runs, most recently started first."""
    filters = filters or query.Filters()
    runs.reap_crashed(conn)
    query.check_filters(conn, filters)
    where, params = filters.sql(engine_of(conn))
    base = f'FROM runs WHERE ({where}) AND runs."group" IS NOT NULL'
    rows = conn.execute(
        f'SELECT runs."group", runs.project, count(*), min(started_at), max(ended_at), '
        f"count(CASE WHEN state = 'running' THEN 1 END) {base} "
        'GROUP BY runs.project, runs."group" '
        "ORDER BY max(started_at) DESC",
        params,
    ).fetchall()
    counts: dict[tuple[str, str], dict[str, dict[str, int]]] = {}
    for column in ("job_type", "state"):
        for project, group, value, n in conn.execute(
            f'SELECT runs.project, runs."group", runs.{column}, count(*) {base} '
            f'GROUP BY runs.project, runs."group", runs.{column} ORDER BY count(*) DESC',
            params,
        ):
            counts.setdefault((project, group), {}).setdefault(column, {})[value or "-"] = n
    result = []
    for group, project, n, first, last, running in rows:
        found = counts.get((project, group), {})
        result.append(
            {
                "group": group,
                "project": project,
                "runs": n,
                "job_types": found.get("job_type", {}),
                "states": found.get("state", {}),
                "first_start": runs.iso(first),
                "last_end": None if running else runs.iso(last),
            }
        )
    return result


def resolve_project(conn: sqlite3.Connection, name: str, project: str | None = None) -> str:
    """The project that holds group ``name``; unknown or ambiguous names are errors."""
    values.check_group(name)
    sql = 'SELECT DISTINCT project FROM runs WHERE "group" = ?'
    params: list[Any] = [name]
    if project is not None:
        sql += " AND project = ?"
        params.append(project)
    projects = sorted(p for (p,) in conn.execute(sql, params))
    if not projects:
        error = query.unknown_name_error(conn, "group", name)
        if project is not None:
            error.message += f" in project {project!r}"
        raise error
    if len(projects) > 1:
        raise InvalidInput(
            f"group {name!r} exists in several projects: {', '.join(projects)}",
            hint="say which with --project",
        )
    return projects[0]


def group_page(
    conn: sqlite3.Connection,
    name: str,
    project: str | None = None,
    max_runs: int | None = None,
    metrics: list[str] | None = None,
    sort: str | None = None,
    desc: bool = False,
) -> dict[str, Any]:
    """Everything ``wbg group show`` prints: facts, runs, common config, aggregates.

    ``run_records`` holds the first ``max_runs`` runs in start order (all when None); the
    facts and aggregates always cover every run. ``metrics`` (default: every numeric
    summary key, logged ones first) are those of the aggregates and, in ``metrics``, the
    summary columns of the runs table. ``sort`` orders the runs by a field, config key or
    summary metric (``--sort val_acc``) instead of by start.
    """
    project = resolve_project(conn, name, project)
    [facts] = list_groups(conn, query.Filters(project=project, group=name))
    records = runs.list_runs(
        conn,
        query.Filters(project=project, group=name),
        oldest_first=True,
        limit=max_runs,
        sort=sort,
        desc=desc,
    )
    common, varying = config_keys(conn, project, name)
    compute = conn.execute(
        "SELECT coalesce(sum(ended_at - started_at), 0.0) FROM runs "
        'WHERE project = ? AND "group" = ? AND ended_at IS NOT NULL',
        (project, name),
    ).fetchone()[0]
    aggregates = build_table(
        conn, query.Filters(project=project, group=name), group_by=["job_type"], metrics=metrics
    )
    return {
        **facts,
        "compute_s": round(compute, 3),
        "common_config": {key: values.get_dotted(records[0]["config"], key) for key in common},
        "varying_keys": varying,
        "run_records": records,
        "aggregates": aggregates,
        "metrics": [m for m in aggregates.metrics if m != DURATION],
    }


def config_keys(conn: sqlite3.Connection, project: str, group: str) -> tuple[list[str], list[str]]:
    """Config leaf keys of a group's runs: (same value in every run, the others)."""
    total = conn.execute(
        'SELECT count(*) FROM runs WHERE project = ? AND "group" = ?', (project, group)
    ).fetchone()[0]
    rows = conn.execute(
        "SELECT j.fullkey, count(*), count(DISTINCT j.type || ':' || j.value) "
        f"FROM runs, {engine_of(conn).json_leaves('runs.config')} "
        "WHERE runs.project = ? AND runs.\"group\" = ? AND j.type != 'object' "
        "AND j.fullkey NOT LIKE '%[%' GROUP BY j.fullkey",
        (project, group),
    ).fetchall()
    common: list[str] = []
    varying: list[str] = []
    for fullkey, n, distinct in rows:
        key = query.dotted_key(fullkey)
        (common if n == total and distinct == 1 else varying).append(key)
    return sorted(common), sorted(varying)


def keys_to_show(records: list[dict[str, Any]], varying: list[str], most: int) -> list[str]:
    """The varying config keys most worth a column for ``records``: those set in the most
    of them (ties in the page's order), at most ``most``. Linear in the keys the records
    hold, however many keys vary across the whole group."""
    if len(varying) <= most:
        return varying
    wanted = set(varying)
    counts: dict[str, int] = {}
    for record in records:
        for key in values.flatten(record["config"]):
            if key in wanted:
                counts[key] = counts.get(key, 0) + 1
    order = sorted(varying, key=lambda k: -counts.get(k, 0))  # stable sort
    return order[:most]


def run_row(record: dict[str, Any], varying: list[str]) -> dict[str, Any]:
    """A group page's row for one run: fields, varying config keys, summary values."""
    row: dict[str, Any] = {
        key: record[key] for key in ("id", "name", "job_type", "state", "duration_s")
    }
    for key in varying:
        row[key] = values.get_dotted(record["config"], key)
    for key, value in record["summary"].items():
        row.setdefault(f"summary.{key}", value)
    return row


def rename_group(
    conn: sqlite3.Connection, old: str, new: str, project: str | None = None
) -> tuple[str, int]:
    """Rename a group within its project; return (project, runs renamed)."""
    values.check_group(new)
    project = resolve_project(conn, old, project)
    with transaction(conn):
        if conn.execute(
            'SELECT 1 FROM runs WHERE project = ? AND "group" = ? LIMIT 1', (project, new)
        ).fetchone():
            raise InvalidInput(
                f"group {new!r} already exists in project {project!r}",
                hint=f"to merge the groups, move the runs: wbg runs move ID... --group {new}",
            )
        cursor = conn.execute(
            'UPDATE runs SET "group" = ? WHERE project = ? AND "group" = ?', (new, project, old)
        )
    return project, cursor.rowcount


def group_runs(conn: sqlite3.Connection, name: str, project: str | None = None) -> list[int]:
    """Row numbers of the runs of a group (resolving its project)."""
    project = resolve_project(conn, name, project)
    return [
        num
        for (num,) in conn.execute(
            'SELECT num FROM runs WHERE project = ? AND "group" = ?', (project, name)
        )
    ]


def summary_of(table: Table) -> list[dict[str, Any]]:
    """The aggregate rows of a group page (machine formats)."""
    return [{c: row.get(c) for c in table.columns()} for row in table.rows]
