"""Opening the SQLite file: checks, pragmas and the migrations registry (SPEC §3).

Every schema change is a small named function appended to ``MIGRATIONS``. Opening a
database applies the ones it lacks, each once, in its own transaction, and records it in
``wbg_migrations``; ``PRAGMA user_version`` holds the count so an up-to-date file is
recognised with one read. A database whose count is higher than ours came from a newer wbg.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path

from wbg.errors import (
    DatabaseError,
    DatabaseUnavailable,
    NewerSchema,
    NoDatabase,
    NotADatabase,
)
from wbg.settings import resolve_db_path, user_data_dir

SQLITE_HEADER = b"SQLite format 3\x00"
BUSY_TIMEOUT_S = 60.0


def _m001_runs_and_history(conn: sqlite3.Connection) -> None:
    # Child tables point at runs.num (an integer) rather than the 8-character id: history
    # rows are the bulk of the file and integer keys make them smaller and faster to write.
    # Foreign keys are declared for readers (Datasette links them) but not enforced, so a
    # history insert costs no parent lookup; wbg deletes child rows itself.
    conn.execute(
        """
        CREATE TABLE runs (
            num INTEGER PRIMARY KEY,
            id TEXT NOT NULL UNIQUE,
            project TEXT NOT NULL,
            name TEXT,
            "group" TEXT,
            job_type TEXT,
            tags TEXT NOT NULL DEFAULT '[]',
            notes TEXT,
            state TEXT NOT NULL,
            exit_code INTEGER,
            command TEXT,
            cwd TEXT,
            host TEXT,
            user TEXT,
            pid INTEGER,
            git_commit TEXT,
            git_dirty INTEGER,
            started_at REAL NOT NULL,
            ended_at REAL,
            config TEXT NOT NULL DEFAULT '{}',
            summary TEXT NOT NULL DEFAULT '{}'
        )
        """
    )
    conn.execute(
        """
        CREATE TABLE history (
            run INTEGER NOT NULL REFERENCES runs(num),
            step INTEGER NOT NULL,
            key TEXT NOT NULL,
            value REAL,
            time REAL NOT NULL,
            PRIMARY KEY (run, step, key)
        ) WITHOUT ROWID
        """
    )


def _m002_output_summary_metrics_indexes(conn: sqlite3.Connection) -> None:
    # owner_pid: the process that records the run (wbg run itself, or the Python process
    # using the API); when it is gone on this host while the run says `running`, the run
    # crashed. reason: why a run failed before its command could start.
    conn.execute("ALTER TABLE runs ADD COLUMN owner_pid INTEGER")
    conn.execute("ALTER TABLE runs ADD COLUMN reason TEXT")
    conn.execute(
        """
        CREATE TABLE run_output (
            run INTEGER PRIMARY KEY REFERENCES runs(num),
            tail BLOB NOT NULL,
            truncated INTEGER NOT NULL DEFAULT 0
        )
        """
    )
    # Numeric summary values, one row each, so aggregates are a plain GROUP BY. A NULL
    # value is a NaN (SQLite stores NaN as NULL); it is counted but not aggregated.
    conn.execute(
        """
        CREATE TABLE summary_metrics (
            run INTEGER NOT NULL REFERENCES runs(num),
            key TEXT NOT NULL,
            value REAL,
            PRIMARY KEY (run, key)
        ) WITHOUT ROWID
        """
    )
    conn.execute("CREATE INDEX summary_metrics_key ON summary_metrics(key, run)")
    conn.execute('CREATE INDEX runs_project_group ON runs(project, "group")')
    conn.execute("CREATE INDEX runs_state ON runs(state)")
    conn.execute("CREATE INDEX runs_started_at ON runs(started_at)")


def _m003_non_finite_summary_index(conn: sqlite3.Connection) -> None:
    # `wbg table` counts the NaN (NULL) and +-inf summary values it leaves out; they are
    # rare, so a partial index lists them and the count costs nothing when there are none.
    conn.execute(
        "CREATE INDEX summary_metrics_non_finite ON summary_metrics(run, key) "
        "WHERE (value IS NULL OR abs(value) >= 9e999)"
    )


def _m004_heartbeat(conn: sqlite3.Connection) -> None:
    # Crash detection by heartbeat (README "Run state"): the recording process writes
    # heartbeat_at (wall clock, comparable across hosts) and its pid with its periodic
    # flush; pid_ns names the host and PID namespace where that pid means something.
    conn.execute("ALTER TABLE runs ADD COLUMN heartbeat_at REAL")
    conn.execute("ALTER TABLE runs ADD COLUMN heartbeat_pid INTEGER")
    conn.execute("ALTER TABLE runs ADD COLUMN pid_ns TEXT")


def _m005_output_pages(conn: sqlite3.Connection) -> None:
    # The kept output of a run still going, as pages appended as output arrives (the
    # oldest deleted past the kept size): saving it costs the new bytes, not a rewrite of
    # the whole tail. At the end the tail is written once to run_output and the pages go.
    conn.execute(
        """
        CREATE TABLE run_output_pages (
            run INTEGER NOT NULL REFERENCES runs(num),
            start INTEGER NOT NULL,
            data BLOB NOT NULL,
            PRIMARY KEY (run, start)
        )
        """
    )


Migration = Callable[[sqlite3.Connection], None]
MIGRATIONS: list[Migration] = [
    _m001_runs_and_history,
    _m002_output_summary_metrics_indexes,
    _m003_non_finite_summary_index,
    _m004_heartbeat,
    _m005_output_pages,
]


def migration_name(migration: Migration) -> str:
    return migration.__name__.lstrip("_")


def schema_version(conn: sqlite3.Connection) -> int:
    return conn.execute("PRAGMA user_version").fetchone()[0]


def migrate(conn: sqlite3.Connection, upto: int | None = None) -> list[str]:
    """Apply the migrations this database lacks (up to ``upto``); return their names."""
    target = len(MIGRATIONS) if upto is None else upto
    version = schema_version(conn)
    if version > len(MIGRATIONS):
        raise _newer(conn, version)
    applied: list[str] = []
    while version < target:
        conn.execute("BEGIN IMMEDIATE")
        try:
            # Another process may have migrated while we waited for the write lock.
            version = schema_version(conn)
            if version >= target:
                conn.execute("COMMIT")
                break
            conn.execute(
                "CREATE TABLE IF NOT EXISTS wbg_migrations "
                "(id INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at REAL NOT NULL)"
            )
            migration = MIGRATIONS[version]
            migration(conn)
            conn.execute(
                "INSERT INTO wbg_migrations (id, name, applied_at) VALUES (?, ?, ?)",
                (version + 1, migration_name(migration), time.time()),
            )
            conn.execute(f"PRAGMA user_version = {version + 1}")
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        applied.append(migration_name(migration))
        version += 1
    return applied


def _newer(conn: sqlite3.Connection, version: int) -> NewerSchema:
    path = conn.execute("PRAGMA database_list").fetchone()[2]
    return NewerSchema(
        f"{path} was written by a newer wbg (schema version {version}, "
        f"this wbg knows {len(MIGRATIONS)})",
        hint="upgrade wbg (pip install -U wbg) to read it",
    )


def _check_path(path: Path, create: bool) -> None:
    # Never open the file itself here: closing any descriptor of a file drops every POSIX
    # lock this process holds on it, including those of SQLite connections already open
    # (a batch of runs opens one per child). A file that is not SQLite is reported from
    # SQLite's own error instead (see _translate).
    if path.exists():
        if path.is_dir():
            raise DatabaseError(f"database path is a directory: {path}")
        return
    if not create:
        return
    parent = path.parent
    if not parent.is_dir():
        raise DatabaseError(
            f"cannot create database {path}: directory {parent} does not exist",
            hint="create the directory first, or choose another --db / WBG_DB",
        )
    if not os.access(parent, os.W_OK | os.X_OK):
        raise DatabaseError(f"cannot create database {path}: directory {parent} is read-only")


def connect(
    path: Path | str | None = None, *, create: bool = True, read_only: bool = False
) -> sqlite3.Connection:
    """Open (and, with ``create``, create and migrate) the wbg database at ``path``.

    ``path`` None resolves it (``--db`` > ``WBG_DB`` > settings > user data dir).
    The connection is in autocommit mode: writers use short explicit transactions.
    ``read_only``: see ``connect_read``.

    Nothing is written to a file before it is known to be a wbg database of a schema this
    wbg knows (or an empty file): another application's SQLite file keeps its tables and
    its journal mode, and a newer wbg's file is refused before any pragma touches it.
    """
    db_path = Path(path) if path is not None else resolve_db_path()
    if read_only:
        return connect_read(db_path)
    if create and db_path.parent == user_data_dir():
        db_path.parent.mkdir(parents=True, exist_ok=True)
    _check_path(db_path, create)
    if not create and not db_path.exists():
        raise _no_database(db_path)
    uri = db_path.resolve().as_uri() + ("" if create else "?mode=rw")
    conn = None
    try:
        conn = sqlite3.connect(
            uri, uri=True, timeout=BUSY_TIMEOUT_S, isolation_level=None, check_same_thread=False
        )
        version = _check_ours(conn, db_path)
        if conn.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
            conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("PRAGMA synchronous = NORMAL")
        if version < len(MIGRATIONS):
            migrate(conn)
    except sqlite3.DatabaseError as exc:
        if conn is not None:
            conn.close()
        raise _translate(exc, db_path) from None
    except BaseException:
        if conn is not None:
            conn.close()
        raise
    return conn


def connect_read(path: Path | str | None = None) -> sqlite3.Connection:
    """Open the wbg database at ``path`` for reading only: nothing is created or written.

    A missing file is an error naming a close neighbour (a mistyped ``--db``). It works in
    a read-only directory and on a read-only file. One exception to "never written": a
    writable file of an older schema is migrated first (as any wbg command would), since
    this wbg cannot read the old layout; a read-only one is refused with the way out.
    """
    db_path = Path(path) if path is not None else resolve_db_path()
    _check_path(db_path, create=False)
    if not db_path.exists():
        raise _no_database(db_path)
    conn = None
    try:
        conn = _open_read_only(db_path)
        version = _check_ours(conn, db_path)
        if version < len(MIGRATIONS):
            conn.close()
            conn = None
            if not (os.access(db_path, os.W_OK) and os.access(db_path.parent, os.W_OK)):
                raise DatabaseError(
                    f"{db_path} has schema version {version}; this wbg reads version "
                    f"{len(MIGRATIONS)} and the file is read-only",
                    hint="run `wbg db migrate` where the file is writable",
                )
            connect(db_path, create=False).close()
            conn = _open_read_only(db_path)
            _check_ours(conn, db_path)
    except sqlite3.DatabaseError as exc:
        if conn is not None:
            conn.close()
        raise _translate(exc, db_path) from None
    except BaseException:
        if conn is not None:
            conn.close()
        raise
    return conn


def _open_read_only(path: Path) -> sqlite3.Connection:
    uri = path.resolve().as_uri()
    conn = sqlite3.connect(
        uri + "?mode=ro",
        uri=True,
        timeout=BUSY_TIMEOUT_S,
        isolation_level=None,
        check_same_thread=False,
    )
    try:
        conn.execute("SELECT 1 FROM sqlite_master LIMIT 1").fetchall()
    except sqlite3.OperationalError as exc:
        conn.close()
        # A WAL database needs its -shm file, which a read-only directory or mount cannot
        # get: nothing can be writing there, so read the file as it is (its last writer
        # checkpointed and removed the WAL on close).
        if "unable to open" not in str(exc) or os.access(path.parent, os.W_OK):
            raise
        conn = sqlite3.connect(
            uri + "?mode=ro&immutable=1",
            uri=True,
            isolation_level=None,
            check_same_thread=False,
        )
    return conn


def _check_ours(conn: sqlite3.Connection, path: Path) -> int:
    """The schema version of a wbg database (0: an empty file wbg may set up).

    Raises ``NotADatabase`` for a SQLite file of another application (its ``user_version``
    is its own business, never read as ours) and ``NewerSchema`` for a newer wbg's file.
    Only reads: nothing is written before this has passed.
    """
    conn.execute("BEGIN")  # one snapshot: another process may be migrating right now
    try:
        tables = {
            name for (name,) in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
        }
        version = schema_version(conn)
        application_id = conn.execute("PRAGMA application_id").fetchone()[0]
    finally:
        conn.execute("ROLLBACK")
    if not tables:
        if version != 0 or application_id != 0:
            raise _foreign(path, "an empty SQLite database that another application has set up")
        return 0
    if "wbg_migrations" not in tables or "runs" not in tables:
        shown = ", ".join(sorted(tables)[:5]) + (", ..." if len(tables) > 5 else "")
        raise _foreign(path, f"a SQLite database of another application, tables: {shown}")
    if version > len(MIGRATIONS):
        raise _newer(conn, version)
    return version


def _foreign(path: Path, what: str) -> NotADatabase:
    return NotADatabase(
        f"{path} is not a wbg database ({what}); it was left unchanged",
        hint="point --db or WBG_DB at a wbg database, or at a new file",
    )


def _no_database(path: Path) -> NoDatabase:
    import difflib

    hint = "run a `wbg run` or `wbg.init()` to create it, or see `wbg db path`"
    try:
        neighbours = [p.name for p in path.parent.iterdir() if p.is_file()]
    except OSError:
        neighbours = []
    close = difflib.get_close_matches(path.name, neighbours, n=1, cutoff=0.6)
    if close:
        hint = f"did you mean {path.parent / close[0]}?"
    return NoDatabase(f"no database at {path}", hint=hint)


def quick_check(conn: sqlite3.Connection) -> list[str]:
    """SQLite's quick_check (structure, not index contents; cheap): its problems, or []."""
    try:
        rows = [row[0] for row in conn.execute("PRAGMA quick_check")]
    except sqlite3.DatabaseError as exc:
        return [str(exc)]
    return [] if rows == ["ok"] else rows


def check_integrity(path: Path | str | None = None) -> list[str]:
    """SQLite's integrity check of the database file (read-only): its problems, or []."""
    db_path = Path(path) if path is not None else resolve_db_path()
    _check_path(db_path, create=False)
    if not db_path.exists():
        raise _no_database(db_path)
    try:
        with contextlib.closing(_open_read_only(db_path)) as conn:
            rows = [row[0] for row in conn.execute("PRAGMA integrity_check")]
    except sqlite3.DatabaseError as exc:
        return [str(exc)]
    return [] if rows == ["ok"] else rows


def _translate(exc: sqlite3.DatabaseError, path: Path) -> DatabaseError:
    """Turn a low-level SQLite error met while opening into a message about the path."""
    text = str(exc)
    if "file is not a database" in text:
        return NotADatabase(
            f"{path} is not a wbg database (not a SQLite file)",
            hint="point --db or WBG_DB at a wbg database, or at a new file",
        )
    if "malformed" in text or "corrupt" in text:
        return damaged(path, text)
    if "not a database" in text:
        return NotADatabase(f"{path} is not a wbg database ({text})")
    if "disk is full" in text or "disk I/O error" in text or "locked" in text:
        return DatabaseUnavailable(f"database {path}: {text}")
    if "readonly" in text or "read-only" in text:
        return DatabaseError(f"database {path} is read-only")
    if "unable to open" in text:
        return DatabaseError(f"cannot open database {path}: {text}")
    return DatabaseError(f"database {path}: {text}")


def damaged(path: Path | str, text: str) -> DatabaseError:
    """The error for a database file SQLite finds damaged, with the way to recover."""
    return DatabaseError(
        f"database {path} is damaged ({text})",
        hint=f"see `wbg db check`; recover what is readable with "
        f"`sqlite3 {path} .recover | sqlite3 recovered.db`",
    )


def table_schema(conn: sqlite3.Connection) -> dict[str, str]:
    """Name -> SQL of every table and index, for tests and ``wbg db info``."""
    rows = conn.execute(
        "SELECT name, sql FROM sqlite_master WHERE sql IS NOT NULL ORDER BY name"
    ).fetchall()
    return {name: sql for name, sql in rows}


def describe(conn: sqlite3.Connection) -> dict[str, object]:
    """Schema version and row counts, for ``wbg db info``."""
    counts = {
        table: conn.execute(f'SELECT count(*) FROM "{table}"').fetchone()[0]
        for table in ("runs", "history", "summary_metrics", "run_output")
    }
    return {
        "schema_version": schema_version(conn),
        "known_version": len(MIGRATIONS),
        "counts": counts,
    }


def migrate_file(path: Path) -> tuple[int, int]:
    """Open (creating or migrating) the database at ``path``; schema version before/after."""
    before = 0
    if path.is_file() and path.stat().st_size:
        _check_path(path, create=False)
        try:
            with contextlib.closing(_open_read_only(path)) as raw:
                before = _check_ours(raw, path)
        except sqlite3.DatabaseError as exc:
            raise _translate(exc, path) from None
    with contextlib.closing(connect(path)) as conn:
        return before, schema_version(conn)
