"""Helpers for tests: run ``wbg`` in-process or as a real process, read the database directly.

Tests import these from here (``from helpers import ...``); conftest.py holds only fixtures."""

from __future__ import annotations

import contextlib
import os
import shutil
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

PY = sys.executable

ENGINES = ("sqlite", "postgresql")
# Every test runs on both engines (conftest.py's pytest_generate_tests): its db_path is a
# SQLite file, or a fresh database on the session's PostgreSQL server. both_engines says
# so explicitly (the default now).
both_engines = pytest.mark.parametrize("engine", ENGINES, indirect=True)


def sqlite_only(reason: str) -> pytest.MarkDecorator:
    """A test meaningless on PostgreSQL: skipped there, with ``reason`` shown."""
    return pytest.mark.sqlite_only(reason)


def postgresql_only(reason: str) -> pytest.MarkDecorator:
    """A test meaningless on SQLite: skipped there, with ``reason`` shown."""
    return pytest.mark.postgresql_only(reason)


# A test that touches no database (a parser, a formatter): it runs once, on no engine.
no_database = pytest.mark.no_database


def wbg_executable() -> list[str]:
    """How to start the installed CLI as a real process."""
    found = shutil.which("wbg", path=os.path.dirname(sys.executable))
    return [found] if found else [sys.executable, "-m", "wbg.cli.main"]


class Result:
    """What a ``wbg`` invocation left: exit code, stdout, stderr."""

    def __init__(self, exit_code: int, stdout: str, stderr: str) -> None:
        self.exit_code = exit_code
        self.stdout = stdout
        self.stderr = stderr

    @property
    def output(self) -> str:
        return self.stdout + self.stderr

    def __repr__(self) -> str:
        return f"Result(exit_code={self.exit_code}, stdout={self.stdout!r}, stderr={self.stderr!r})"


def invoke(*args: str, input: str | None = None) -> Result:
    """Run ``wbg ARGS`` in-process through the real entry point (with its error mapping)."""
    from typer.testing import CliRunner

    from wbg.cli.main import main

    runner = CliRunner()
    with runner.isolation(input=input) as (stdout, stderr, _mixed):
        try:
            main(list(args))
            code = 0
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        sys.stdout.flush()
        sys.stderr.flush()
        return Result(code, stdout.getvalue().decode(), stderr.getvalue().decode())


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
    """Every run record in the file, in the order the runs were created (through the
    library)."""
    from wbg import runs

    with contextlib.closing(reader(db_path)) as conn:
        ids = [row[0] for row in conn.execute("SELECT id FROM runs ORDER BY num")]
        return [runs.get_run(conn, run_id) for run_id in ids]


def output_of(db_path: Path, run_id: str) -> str:
    """The kept output of a run, as text."""
    from wbg import runs

    with contextlib.closing(reader(db_path)) as conn:
        found = runs.get_output(conn, run_id)
    assert found is not None
    return found[0].decode()


def only_record(db_path: Path) -> dict[str, Any]:
    found = records(db_path)
    assert len(found) == 1, found
    return found[0]


def history(db_path: Path, run_id: str) -> list[tuple[int, str, float]]:
    from wbg import runs

    with contextlib.closing(reader(db_path)) as conn:
        return [(p["step"], p["key"], p["value"]) for p in runs.get_history(conn, run_id)]


def raw_query(db_path: Path, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """The rows of ``sql`` read from the stored tables as they are (the server's, or the
    file's through sqlite3): no snapshot, no crash detection, nothing written."""
    from wbg.engine import ServerUrl

    if isinstance(db_path, ServerUrl):
        from wbg.engine import connect_server

        with contextlib.closing(connect_server(db_path, read_only=True)) as conn:
            return [tuple(row) for row in conn.execute(sql, params)]
    uri = Path(db_path).resolve().as_uri() + "?mode=ro"
    with contextlib.closing(sqlite3.connect(uri, uri=True)) as conn:
        return conn.execute(sql, params).fetchall()


def raw_count(db_path: Path, table: str) -> int:
    """Rows in ``table`` as stored (0 when there is no such table, or no database yet)."""
    from wbg.engine import ServerUrl

    if isinstance(db_path, ServerUrl):
        if raw_query(db_path, "SELECT to_regclass(?)", (table,))[0][0] is None:
            return 0
    elif not db_path.exists():
        return 0
    try:
        return raw_query(db_path, f"SELECT count(*) FROM {table}")[0][0]
    except sqlite3.OperationalError:  # a file without that table
        return 0


@contextlib.contextmanager
def write_lock_held(db_path: Path) -> Any:
    """Hold what makes every other writer wait: SQLite's exclusive lock on the file, or
    on a server an exclusive lock on wbg's tables (readers still read)."""
    from wbg.engine import ServerUrl

    if isinstance(db_path, ServerUrl):
        from wbg.engine import connect_server

        holder = connect_server(db_path)
        holder.execute("BEGIN")
        holder.execute(
            "LOCK TABLE runs, history, summary_metrics, run_output_pages IN EXCLUSIVE MODE"
        )
    else:
        holder = sqlite3.connect(db_path, isolation_level=None)
        holder.execute("BEGIN EXCLUSIVE")
    try:
        yield
    finally:
        holder.execute("COMMIT")
        holder.close()


def wait_for(predicate, timeout: float = 20.0, interval: float = 0.05) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(interval)
    raise AssertionError("condition not met in time")
