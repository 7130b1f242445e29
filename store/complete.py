"""Completion candidates from the database (group names, job types, keys, run ids).

Opened read-only with no migration and no reaping: a completion must never create or
change a file. Callers treat any exception as "no candidates".
"""

from __future__ import annotations

import contextlib
import sqlite3
from pathlib import Path

from wbg import query
from wbg.engine import PgConnection, ServerUrl, connect_server

LIMIT = 200


def open_readonly(path: Path | str | None) -> sqlite3.Connection:
    """The database at ``path`` (resolved as usual when None), read-only; raises if absent."""
    from wbg.settings import resolve_db_path

    db_path = resolve_db_path(path)
    if isinstance(db_path, ServerUrl):  # a read-only session: nothing can be created
        return connect_server(db_path, read_only=True)
    if not db_path.is_file():
        raise FileNotFoundError(db_path)
    return sqlite3.connect(db_path.resolve().as_uri() + "?mode=ro", uri=True, timeout=1.0)


def _server_config_keys(conn: PgConnection, limit: int) -> list[str]:
    # PostgreSQL has no json_tree: the config leaves of the newest runs, walked recursively.
    rows = conn.execute(
        "WITH RECURSIVE r AS (SELECT config::json AS doc FROM runs "
        "ORDER BY started_at DESC LIMIT ?), "
        "t(path, value) AS (SELECT e.key, e.value FROM r, json_each(CASE WHEN "
        "json_typeof(r.doc) = 'object' THEN r.doc ELSE '{}'::json END) AS e "
        "UNION ALL SELECT t.path || '.' || e.key, e.value FROM t, json_each(CASE WHEN "
        "json_typeof(t.value) = 'object' THEN t.value ELSE '{}'::json END) AS e) "
        "SELECT DISTINCT path FROM t WHERE json_typeof(value) <> 'object' ORDER BY path",
        (limit,),
    )
    return [key for (key,) in rows]


def _server_candidates(conn: PgConnection, kind: str) -> list[str]:
    # Plain SQL that PostgreSQL accepts (the file's queries lean on SQLite's typing).
    if kind in ("group", "job_type", "project"):
        column = {"project": "project", "group": '"group"', "job_type": "job_type"}[kind]
        sql = (
            f"SELECT {column} FROM runs WHERE {column} IS NOT NULL GROUP BY {column} "
            "ORDER BY max(started_at) DESC LIMIT 5000"
        )
    elif kind == "key":
        return [*query.FIELDS, *_server_config_keys(conn, limit=2000)]
    elif kind == "metric":
        sql = "SELECT DISTINCT key FROM summary_metrics ORDER BY key"
    elif kind == "history_metric":
        sql = "SELECT DISTINCT key FROM history ORDER BY key LIMIT 5000"
    elif kind == "run":
        sql = "SELECT id FROM runs ORDER BY started_at DESC LIMIT 5000"
    else:
        return []
    found = [value for (value,) in conn.execute(sql)]
    return [*found, "duration_s"] if kind == "metric" else found


def candidates(path: Path | str | None, kind: str, incomplete: str) -> list[str]:
    """Stored values of ``kind`` (group, job_type, project, key, metric, run) starting so."""
    with contextlib.closing(open_readonly(path)) as conn:
        if isinstance(conn, PgConnection):
            found = _server_candidates(conn, kind)
        elif kind in ("group", "job_type", "project"):
            found = query.distinct_values(conn, kind, limit=5000)
        elif kind == "key":
            found = [*query.FIELDS, *query.known_keys(conn, "config", limit=2000)]
        elif kind == "metric":
            found = [*query.metric_names(conn), "duration_s"]
        elif kind == "history_metric":  # what `wbg plot` can draw
            from wbg.aggregate import logged_metrics

            named = [m for m in query.metric_names(conn) if m.startswith(incomplete)][:LIMIT]
            found = logged_metrics(conn, named, probe_runs=1)  # a completion must be quick
        elif kind == "run":
            rows = conn.execute("SELECT id FROM runs ORDER BY started_at DESC LIMIT 5000")
            found = [run_id for (run_id,) in rows]
        else:
            return []
    head = ""
    if kind == "key" and "," in incomplete:  # --group-by lr,se<TAB>
        head, _, incomplete = incomplete.rpartition(",")
        head += ","
    return [head + value for value in found if value.startswith(incomplete)][:LIMIT]
