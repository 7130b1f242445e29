"""Opening the SQLite file: checks, pragmas and the migrations registry (docs/design.md, "Storage").

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
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from wbg.engine import PgConnection, ServerUrl, engine_of, migration_lock, migration_unlock
from wbg.errors import (
    DatabaseError,
    DatabaseUnavailable,
    NewerSchema,
    NoDatabase,
    NotADatabase,
    close_matches,
)
from wbg.settings import resolve_db_path, user_data_dir

SQLITE_HEADER = b"SQLite format 3\x00"
BUSY_TIMEOUT_S = 60.0


def _ddl(conn: sqlite3.Connection, sql: str) -> None:
    conn.execute(engine_of(conn).ddl(sql))


def _m001_runs_and_history(conn: sqlite3.Connection) -> None:
    # Child tables point at runs.num (an integer) rather than the 8-character id: history
    # rows are the bulk of the file and integer keys make them smaller and faster to write.
    # Foreign keys are declared for readers (Datasette links them) but not enforced, so a
    # history insert costs no parent lookup; wbg deletes child rows itself.
    _ddl(
        conn,
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
        """,
    )
    _ddl(
        conn,
        """
        CREATE TABLE history (
            run INTEGER NOT NULL REFERENCES runs(num),
            step INTEGER NOT NULL,
            key TEXT NOT NULL,
            value REAL,
            time REAL NOT NULL,
            PRIMARY KEY (run, step, key)
        ) WITHOUT ROWID
        """,
    )
    for statement in engine_of(conn).support_functions():
        conn.execute(statement)


def _m002_output_summary_metrics_indexes(conn: sqlite3.Connection) -> None:
    # owner_pid: the process that records the run (wbg run itself, or the Python process
    # using the API); when it is gone on this host while the run says `running`, the run
    # crashed. reason: why a run failed before its command could start.
    _ddl(conn, "ALTER TABLE runs ADD COLUMN owner_pid INTEGER")
    _ddl(conn, "ALTER TABLE runs ADD COLUMN reason TEXT")
    _ddl(
        conn,
        """
        CREATE TABLE run_output (
            run INTEGER PRIMARY KEY REFERENCES runs(num),
            tail BLOB NOT NULL,
            truncated INTEGER NOT NULL DEFAULT 0
        )
        """,
    )
    # Numeric summary values, one row each, so aggregates are a plain GROUP BY. A NULL
    # value is a NaN (SQLite stores NaN as NULL); it is counted but not aggregated.
    _ddl(
        conn,
        """
        CREATE TABLE summary_metrics (
            run INTEGER NOT NULL REFERENCES runs(num),
            key TEXT NOT NULL,
            value REAL,
            PRIMARY KEY (run, key)
        ) WITHOUT ROWID
        """,
    )
    _ddl(conn, "CREATE INDEX summary_metrics_key ON summary_metrics(key, run)")
    conn.execute('CREATE INDEX runs_project_group ON runs(project, "group")')
    _ddl(conn, "CREATE INDEX runs_state ON runs(state)")
    _ddl(conn, "CREATE INDEX runs_started_at ON runs(started_at)")


def _m003_non_finite_summary_index(conn: sqlite3.Connection) -> None:
    # `wbg table` counts the NaN (NULL) and +-inf summary values it leaves out; they are
    # rare, so a partial index lists them and the count costs nothing when there are none.
    _ddl(
        conn,
        "CREATE INDEX summary_metrics_non_finite ON summary_metrics(run, key) "
        "WHERE (value IS NULL OR abs(value) >= 9e999)",
    )


def _m004_heartbeat(conn: sqlite3.Connection) -> None:
    # Crash detection by heartbeat (README "Run state"): the recording process writes
    # heartbeat_at (wall clock, comparable across hosts) and its pid with its periodic
    # flush; pid_ns names the host and PID namespace where that pid means something.
    _ddl(conn, "ALTER TABLE runs ADD COLUMN heartbeat_at REAL")
    _ddl(conn, "ALTER TABLE runs ADD COLUMN heartbeat_pid INTEGER")
    _ddl(conn, "ALTER TABLE runs ADD COLUMN pid_ns TEXT")


def _m005_output_pages(conn: sqlite3.Connection) -> None:
    # The kept output of a run still going, as pages appended as output arrives (the
    # oldest deleted past the kept size): saving it costs the new bytes, not a rewrite of
    # the whole tail. At the end the tail is written once to run_output and the pages go.
    _ddl(
        conn,
        """
        CREATE TABLE run_output_pages (
            run INTEGER NOT NULL REFERENCES runs(num),
            start INTEGER NOT NULL,
            data BLOB NOT NULL,
            PRIMARY KEY (run, start)
        )
        """,
    )


# What `wbg runs search` / `--search` look through: these columns of a run, and its kept
# output (run_output.tail, once the run has ended).
SEARCHED_RUN_COLUMNS = ("name", "notes", "command", "tags")


def _m006_full_text_search(conn: sqlite3.Connection) -> None:
    if isinstance(conn, PgConnection) or not conn.execute("PRAGMA database_list").fetchone()[2]:
        # SQLite's FTS5, for files only: a PostgreSQL server gets its own search indexes
        # (migration 7), and a database in memory has no search
        return
    # FTS5 indexes kept in step by triggers, so every writer (any wbg version from here on,
    # the sqlite-utils tool, a user's own SQL) keeps search right. The statements are the
    # ones sqlite-utils' enable_fts(create_triggers=True) writes, so its `search` command
    # reads these indexes (README "Where the data lives"). They are written out here:
    # importing sqlite-utils (which imports numpy and dateutil when they are installed)
    # made creating a database cost 0.2-0.5 s and 24 MB.
    for table, columns in (("runs", SEARCHED_RUN_COLUMNS), ("run_output", ("tail",))):
        _full_text_index(conn, table, columns)


def _full_text_index(conn: sqlite3.Connection, table: str, columns: Sequence[str]) -> None:
    names = ", ".join(f'"{c}"' for c in columns)
    old = ", ".join(f'old."{c}"' for c in columns)
    new = ", ".join(f'new."{c}"' for c in columns)
    fts = f'"{table}_fts"'
    conn.execute(f'CREATE VIRTUAL TABLE {fts} USING FTS5 (\n    {names},\n    content="{table}"\n)')
    conn.execute(f'INSERT INTO {fts} (rowid, {names}) SELECT rowid, {names} FROM "{table}"')
    delete = f"INSERT INTO {fts} ({fts}, rowid, {names}) VALUES('delete', old.rowid, {old});"
    insert = f"INSERT INTO {fts} (rowid, {names}) VALUES (new.rowid, {new});"
    # The update trigger fires only when an indexed column changes: a running run's row
    # changes with every heartbeat and summary flush, and recording costs no more for it.
    for name, event, body in (
        ("ai", "INSERT", insert),
        ("ad", "DELETE", delete),
        ("au", f"UPDATE OF {names}", f"{delete}\n  {insert}"),
    ):
        conn.execute(
            f'CREATE TRIGGER "{table}_{name}" AFTER {event} ON "{table}" BEGIN\n  {body}\nEND'
        )


def _m007_server_search(conn: sqlite3.Connection) -> None:
    # `wbg runs search` on PostgreSQL: its full-text search, through GIN indexes over the
    # expressions wbg.engine.search queries (a file has its FTS5 tables from migration 6).
    if not isinstance(conn, PgConnection):
        return
    from wbg.engine import PG_SEARCH_FUNCTIONS, PG_SEARCH_OUTPUT, PG_SEARCH_RUNS

    for statement in PG_SEARCH_FUNCTIONS:
        conn.execute(statement)
    conn.execute(f"CREATE INDEX runs_search ON runs USING gin ({PG_SEARCH_RUNS})")
    conn.execute(f"CREATE INDEX run_output_search ON run_output USING gin ({PG_SEARCH_OUTPUT})")


Migration = Callable[[sqlite3.Connection], None]
MIGRATIONS: list[Migration] = [
    _m001_runs_and_history,
    _m002_output_summary_metrics_indexes,
    _m003_non_finite_summary_index,
    _m004_heartbeat,
    _m005_output_pages,
    _m006_full_text_search,
    _m007_server_search,
]


@contextlib.contextmanager
def transaction(conn: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    """A short write transaction (``BEGIN IMMEDIATE``: takes the write lock up front); the
    one way wbg writes several statements at once. Inside a transaction already: joins it."""
    if conn.in_transaction:
        yield conn
        return
    conn.execute(engine_of(conn).begin_write)
    try:
        yield conn
        conn.execute("COMMIT")
    except BaseException:
        # SQLite may have rolled back already (a full disk, an I/O error): the original
        # error is what the caller needs, not "no transaction is active".
        if conn.in_transaction:
            with contextlib.suppress(sqlite3.Error):
                conn.execute("ROLLBACK")
        raise


@contextlib.contextmanager
def _migration_transaction(conn: sqlite3.Connection) -> Iterator[None]:
    """The transaction one migration is applied in, one process at a time (on PostgreSQL
    behind an advisory lock taken before BEGIN: see ``wbg.engine.migration_lock``)."""
    migration_lock(conn)
    try:
        yield
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    finally:
        migration_unlock(conn)


def migration_name(migration: Migration) -> str:
    return migration.__name__.lstrip("_")


def schema_version(conn: sqlite3.Connection) -> int:
    if isinstance(conn, PgConnection):  # no user_version: the migrations table is the count
        if conn.execute("SELECT to_regclass('wbg_migrations')").fetchone()[0] is None:
            return 0
        return _migrations_applied(conn)
    return conn.execute("PRAGMA user_version").fetchone()[0]


def _migrations_applied(conn: Any) -> int:
    """A server's schema version, once its wbg_migrations table is known to exist."""
    return conn.execute("SELECT coalesce(max(id), 0) FROM wbg_migrations").fetchone()[0]


def migrate(conn: sqlite3.Connection, upto: int | None = None) -> list[str]:
    """Apply the migrations this database lacks (up to ``upto``); return their names."""
    target = len(MIGRATIONS) if upto is None else upto
    version = schema_version(conn)
    if version > len(MIGRATIONS):
        raise _newer(conn, version)
    applied: list[str] = []
    while version < target:
        with _migration_transaction(conn):
            # Another process may have migrated while we waited for the write lock.
            version = schema_version(conn)
            if version >= target:
                break
            _ddl(
                conn,
                "CREATE TABLE IF NOT EXISTS wbg_migrations "
                "(id INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at REAL NOT NULL)",
            )
            migration = MIGRATIONS[version]
            migration(conn)
            conn.execute(
                "INSERT INTO wbg_migrations (id, name, applied_at) VALUES (?, ?, ?)",
                (version + 1, migration_name(migration), time.time()),
            )
            if not isinstance(conn, PgConnection):
                conn.execute(f"PRAGMA user_version = {version + 1}")
        applied.append(migration_name(migration))
        version += 1
    return applied


def _newer(conn: sqlite3.Connection, version: int) -> NewerSchema:
    if isinstance(conn, PgConnection):
        path = str(conn.url)
    else:
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
    db_path = as_location(path) if path is not None else resolve_db_path()
    if isinstance(db_path, ServerUrl):
        return _connect_server(db_path, create=create, read_only=read_only)
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
        warn_network_filesystem(db_path)
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
    db_path = as_location(path) if path is not None else resolve_db_path()
    if isinstance(db_path, ServerUrl):
        return _connect_server(db_path, create=False, read_only=True)
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
    hint = "run a `wbg run` or `wbg.init()` to create it, or see `wbg db path`"
    try:
        neighbours = [p.name for p in path.parent.iterdir() if p.is_file()]
    except OSError:
        neighbours = []
    close = close_matches(path.name, neighbours, n=1)
    if close:
        hint = f"did you mean {path.parent / close[0]}?"  # one path: a question, no list
    return NoDatabase(f"no database at {path}", hint=hint)


def quick_check(conn: sqlite3.Connection) -> list[str]:
    """SQLite's quick_check (structure, not index contents; cheap): its problems, or []."""
    if isinstance(conn, PgConnection):
        return []  # the server checks its own pages (checksums, amcheck)
    try:
        rows = [row[0] for row in conn.execute("PRAGMA quick_check")]
    except sqlite3.DatabaseError as exc:
        return [str(exc)]
    return [] if rows == ["ok"] else rows


def check_integrity(path: Path | str | None = None) -> list[str]:
    """SQLite's integrity check of the database file (read-only): its problems, or []."""
    db_path = as_location(path) if path is not None else resolve_db_path()
    if isinstance(db_path, ServerUrl):
        with contextlib.closing(_connect_server(db_path, create=False, read_only=True)):
            return []  # reachable and a wbg database; the server checks its own pages
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


def reading_error(location: str, text: str) -> DatabaseError:
    """An error met while reading: damage of a file, or what a server reported."""
    from wbg.engine import is_server_url

    if is_server_url(location):
        return DatabaseError(f"database {location}: {text}")
    return damaged(location, text)


def table_schema(conn: sqlite3.Connection) -> dict[str, str]:
    """Name -> SQL of every table and index, for tests and ``wbg db info`` (on a server:
    each table's columns and types, each index's definition)."""
    if isinstance(conn, PgConnection):
        rows = conn.execute(
            "SELECT c.relname, CASE WHEN c.relkind = 'i' THEN pg_get_indexdef(c.oid) ELSE "
            "(SELECT string_agg(a.attname || ' ' || format_type(a.atttypid, a.atttypmod), "
            "', ' ORDER BY a.attnum) FROM pg_attribute AS a WHERE a.attrelid = c.oid "
            "AND a.attnum > 0 AND NOT a.attisdropped) END "
            "FROM pg_class AS c JOIN pg_namespace AS n ON n.oid = c.relnamespace "
            "WHERE n.nspname = current_schema() AND c.relkind IN ('r', 'i') ORDER BY c.relname"
        ).fetchall()
        return {name: sql for name, sql in rows}
    rows = conn.execute(
        "SELECT name, sql FROM sqlite_master WHERE sql IS NOT NULL ORDER BY name"
    ).fetchall()
    return {name: sql for name, sql in rows}


def describe(conn: sqlite3.Connection) -> dict[str, Any]:
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


def describe_location(path: Path | ServerUrl) -> dict[str, object]:
    """Where the database is, for ``wbg db info``: engine, size or server, filesystem."""
    if isinstance(path, ServerUrl):
        from wbg.engine import connect_server

        with contextlib.closing(connect_server(path, read_only=True)) as conn:
            version = conn.execute("SHOW server_version").fetchone()[0]
            size = conn.execute("SELECT pg_database_size(current_database())").fetchone()[0]
        return {"engine": f"postgresql {version}", "size": size, "filesystem": None}
    files = (path, path.with_name(path.name + "-wal"))
    return {
        "engine": f"sqlite {sqlite3.sqlite_version}",
        "size": sum(p.stat().st_size for p in files if p.exists()),
        "filesystem": filesystem_type(path),
    }


def migrate_file(path: Path) -> tuple[int, int]:
    """Open (creating or migrating) the database at ``path``; schema version before/after."""
    before = 0
    if isinstance(path, ServerUrl):
        from wbg.engine import connect_server

        with contextlib.closing(connect_server(path, read_only=True)) as conn:
            before = _check_server(conn, path)
    elif path.is_file() and path.stat().st_size:
        _check_path(path, create=False)
        try:
            with contextlib.closing(_open_read_only(path)) as raw:
                before = _check_ours(raw, path)
        except sqlite3.DatabaseError as exc:
            raise _translate(exc, path) from None
    with contextlib.closing(connect(path)) as conn:
        return before, schema_version(conn)


def as_location(path: Path | str | ServerUrl) -> Path | ServerUrl:
    """A database path, or a ServerUrl for a ``postgresql://`` URL."""
    from wbg.engine import is_server_url

    if isinstance(path, ServerUrl):
        return path
    if is_server_url(path):
        return ServerUrl(str(path))
    return Path(path)


def _connect_server(url: ServerUrl, *, create: bool, read_only: bool) -> Any:
    """A PostgreSQL database: a wbg one (set up and migrated when ``create``), or an error.

    ``read_only`` (views): a connection whose statements all run in one repeatable-read
    transaction, held until ``close()``: a view sees one moment of the server, as a SQLite
    reader sees one of the file (README "On a cluster"). The transaction may create
    temporary tables (the grouped table's), which a READ ONLY one may not; nothing in a
    view writes wbg's tables (``reading`` makes crash detection shadow, as on a read-only
    file). Completion and ``wbg db`` use ``engine.connect_server(read_only=True)``.
    """
    from wbg.engine import connect_server

    if read_only:
        conn = connect_server(url)
        try:
            version = _check_server(conn, url)
            if version == 0:
                raise NoDatabase(
                    f"no wbg database at {url}",
                    hint="run a `wbg run` or `wbg.init()` to create it",
                )
            if version < len(MIGRATIONS):  # as for a file: migrated first (see connect_read)
                migrate(conn)
            conn.reading = True
            conn.execute("BEGIN ISOLATION LEVEL REPEATABLE READ")
            conn.execute("SELECT 1")  # the moment: the first statement takes the snapshot
        except BaseException:
            conn.close()
            raise
        return conn
    conn = connect_server(url)
    try:
        version = _check_server(conn, url)
        if version < len(MIGRATIONS) and (create or version > 0):
            migrate(conn)
        elif version == 0 and not create:
            raise NoDatabase(f"no wbg database at {url}", hint="record a run into it first")
    except BaseException:
        conn.close()
        raise
    return conn


def _check_server(conn: Any, url: ServerUrl) -> int:
    """The schema version of a server's wbg tables (0: none yet); refuses a database whose
    ``runs`` table belongs to another application, and a newer wbg's schema."""
    # Both names in one statement, so one snapshot: between two statements another node
    # may commit the first migration, and its new runs table would read as a stranger's.
    ours, runs_table = conn.execute(
        "SELECT to_regclass('wbg_migrations'), to_regclass('runs')"
    ).fetchone()
    version = _migrations_applied(conn) if ours is not None else 0
    if ours is None and runs_table is not None:
        raise NotADatabase(
            f"{url} has a runs table that is not wbg's; it was left unchanged",
            hint="point --db or WBG_DB at another database",
        )
    if version > len(MIGRATIONS):
        raise _newer(conn, version)
    return version


# --- SQLite on a network filesystem (README "On a cluster") -------------------------------

# statfs types (as /proc/self/mountinfo names them) where SQLite's WAL is unsafe: its
# shared-memory index does not work across hosts, and locks there are unreliable.
NETWORK_FILESYSTEMS = (
    "nfs",
    "nfs4",
    "cifs",
    "smb3",
    "smbfs",
    "lustre",
    "gpfs",
    "beegfs",
    "9p",
    "fuse.sshfs",
    "ceph",
    "glusterfs",
    "fuse.glusterfs",
)
_warned_paths: set[str] = set()


def filesystem_type(path: Path) -> str | None:
    """The type of the filesystem holding ``path`` (Linux: from /proc/self/mountinfo)."""
    try:
        with open("/proc/self/mountinfo", encoding="utf-8", errors="replace") as handle:
            lines = handle.read().splitlines()
    except OSError:
        return None
    target = path.resolve() if path.exists() else path.parent.resolve()
    best, best_type = -1, None
    for line in lines:
        left, _, right = line.partition(" - ")
        fields = left.split()
        if len(fields) < 5 or not right:
            continue
        mount = fields[4].replace("\\040", " ")
        inside = str(target) == mount or str(target).startswith(mount.rstrip("/") + "/")
        if inside and len(mount) > best:
            best, best_type = len(mount), right.split()[0]
    return best_type


def warn_network_filesystem(path: Path) -> None:
    """Warn once per process when a SQLite database lies on a network filesystem."""
    key = str(path)
    if key in _warned_paths:
        return
    _warned_paths.add(key)
    fstype = filesystem_type(path)
    if fstype in NETWORK_FILESYSTEMS:
        from wbg import compat

        compat.termwarn(
            f"{path} is on a network filesystem ({fstype}): SQLite is unsafe there when "
            "several hosts write. Use one file per node (merge them with `wbg merge`) or a "
            'PostgreSQL server (WBG_DB=postgresql://...); see README "On a cluster".'
        )
