"""Helpers for tests that start real processes and read the database directly."""

from __future__ import annotations

import contextlib
import os
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from conftest import wbg_executable

PY = sys.executable


def run_wbg(
    *args: str, env: dict[str, str] | None = None, timeout: float = 60, **kwargs: Any
) -> subprocess.CompletedProcess[str]:
    """Run the installed ``wbg`` as a real process; output captured as text."""
    return subprocess.run(
        [*wbg_executable(), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
        stdin=subprocess.DEVNULL,
        **kwargs,
    )


def reader(db_path: Path) -> Any:
    """A connection to read the database as the reading commands do (a server's database
    through its snapshot; a file opened as before, writable)."""
    from wbg import db
    from wbg.engine import ServerUrl

    return db.connect(db_path, read_only=isinstance(db_path, ServerUrl))


def records(db_path: Path) -> list[dict[str, Any]]:
    """Every run record in the file, oldest first (through the library)."""
    from wbg import runs

    with contextlib.closing(reader(db_path)) as conn:
        return list(reversed(runs.list_runs(conn)))


def only_record(db_path: Path) -> dict[str, Any]:
    found = records(db_path)
    assert len(found) == 1, found
    return found[0]


def history(db_path: Path, run_id: str) -> list[tuple[int, str, float]]:
    from wbg import runs

    with contextlib.closing(reader(db_path)) as conn:
        return [(p["step"], p["key"], p["value"]) for p in runs.get_history(conn, run_id)]


def raw_count(db_path: Path, table: str) -> int:
    from wbg.engine import ServerUrl

    if isinstance(db_path, ServerUrl):
        from wbg.engine import connect_server

        with contextlib.closing(connect_server(db_path)) as conn:
            if conn.execute("SELECT to_regclass(?)", (table,)).fetchone()[0] is None:
                return 0
            return conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0]
    if not db_path.exists():
        return 0
    with contextlib.closing(sqlite3.connect(db_path)) as conn:
        try:
            return conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0]
        except sqlite3.OperationalError:
            return 0


def wait_for(predicate, timeout: float = 20.0, interval: float = 0.05) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(interval)
    raise AssertionError("condition not met in time")
