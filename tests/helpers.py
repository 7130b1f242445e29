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


def records(db_path: Path) -> list[dict[str, Any]]:
    """Every run record in the file, oldest first (through the library)."""
    from wbg import db, runs

    with contextlib.closing(db.connect(db_path)) as conn:
        return list(reversed(runs.list_runs(conn)))


def only_record(db_path: Path) -> dict[str, Any]:
    found = records(db_path)
    assert len(found) == 1, found
    return found[0]


def history(db_path: Path, run_id: str) -> list[tuple[int, str, float]]:
    from wbg import db, runs

    with contextlib.closing(db.connect(db_path)) as conn:
        return [(p["step"], p["key"], p["value"]) for p in runs.get_history(conn, run_id)]


def raw_count(db_path: Path, table: str) -> int:
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
