"""Completion candidates from the database (group names, job types, keys, run ids).

Opened read-only with no migration and no reaping: a completion must never create or
change a file. Callers treat any exception as "no candidates".
"""

from __future__ import annotations

import contextlib
import sqlite3
from pathlib import Path

from wbg import query
from wbg.engine import ServerUrl, connect_server

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


def candidates(path: Path | str | None, kind: str, incomplete: str) -> list[str]:
    """Stored values of ``kind`` (group, job_type, project, key, metric, run) starting so."""
    with contextlib.closing(open_readonly(path)) as conn:
        if kind in ("group", "job_type", "project"):
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
