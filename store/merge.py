"""Merging databases: runs recorded elsewhere (one file per node or rank) brought into this one.

Runs are matched by their id, never by ``runs.num`` (each file numbers its own rows).
A run only the other file has is copied with its history, summary metrics and output
tail; a run both files have with the same content is left alone, so merging twice adds
nothing. A run both have with different content (a run merged while it was still going,
or two runs that drew the same id) is a conflict: reported and skipped, unless
``prefer`` says which side wins:

- ``ours``: keep this database's run (reported, not copied);
- ``theirs``: replace ours with theirs;
- ``newer``: the run whose last sign of life (end time, else the latest history point or
  start time) is later wins; a tie keeps ours.

"Same content" compares every column of the two ``runs`` rows (config, summary, state,
times...) and the number of history points; the points themselves are not compared one
by one (a run that logged more points also has a different summary or end time).

The other file is never written to: it is attached read-only. One made by an older wbg
(an older schema) is first copied to a temporary file and migrated there, so merging
never changes a node's own database. The whole merge of one file is one transaction: it
lands completely or not at all.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import sqlite3
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from wbg import db as wbg_db
from wbg.engine import PgConnection, ServerUrl
from wbg.errors import DatabaseError, InvalidInput, NewerSchema, NotADatabase

PREFER = ("ours", "theirs", "newer")
ALIAS = "wbg_other"


@dataclass
class Conflict:
    """A run both databases hold with different content."""

    run_id: str
    fields: list[str]  # what differs: run fields, and "history" for the point count
    resolution: str  # "skipped", "kept ours", "took theirs"


@dataclass
class MergeResult:
    path: Path
    new: int = 0
    unchanged: int = 0
    replaced: int = 0
    conflicts: list[Conflict] = field(default_factory=list)
    migrated_from: int | None = None  # schema version of an older file (merged via a copy)

    @property
    def skipped(self) -> int:
        return sum(1 for c in self.conflicts if c.resolution != "took theirs")


def _main_path(conn: sqlite3.Connection) -> Path | None:
    for _seq, name, file in conn.execute("PRAGMA database_list"):
        if name == "main" and file:
            return Path(file)
    return None


def _read_only_uri(path: Path) -> str:
    return path.resolve().as_uri() + "?mode=ro"


def _schema_version_of(path: Path) -> int:
    try:
        with contextlib.closing(sqlite3.connect(_read_only_uri(path), uri=True)) as raw:
            version = raw.execute("PRAGMA user_version").fetchone()[0]
            has_runs = raw.execute(
                "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'runs'"
            ).fetchone()
    except sqlite3.DatabaseError as exc:
        raise NotADatabase(f"{path} is not a wbg database ({exc})") from None
    if not has_runs:
        raise NotADatabase(f"{path} is not a wbg database (it has no runs table)")
    if version == 0:
        raise NotADatabase(f"{path} is not a wbg database (it has no wbg schema version)")
    return version


def _check_other(conn: sqlite3.Connection, path: Path) -> None:
    if not path.exists():
        raise InvalidInput(f"no such database: {path}")
    if path.is_dir():
        raise InvalidInput(f"{path} is a directory, not a database")
    main = _main_path(conn)
    if main is not None and main.exists() and os.path.samefile(main, path):
        raise InvalidInput(f"{path} is the database being merged into")
    # Only now may the file be opened outside SQLite: closing a descriptor of the file our
    # own connection holds would drop its locks (see wbg.db._check_path).
    with path.open("rb") as handle:
        if handle.read(len(wbg_db.SQLITE_HEADER)) != wbg_db.SQLITE_HEADER:
            raise NotADatabase(f"{path} is not a wbg database (not a SQLite file)")


@contextlib.contextmanager
def _attached(conn: sqlite3.Connection, path: Path) -> Iterator[int | None]:
    """Attach ``path`` read-only as ``wbg_other`` (a migrated copy if its schema is older).

    Yields the older schema version when a copy was made, else None.
    """
    version = _schema_version_of(path)
    known = len(wbg_db.MIGRATIONS)
    if version > known:
        raise NewerSchema(
            f"{path} was written by a newer wbg (schema version {version}, this wbg knows {known})",
            hint="upgrade wbg (pip install -U wbg) to merge it",
        )
    workdir = None
    source = path
    if version < known:
        workdir = tempfile.mkdtemp(prefix="wbg-merge-")
        source = Path(workdir) / "other.db"
        with (
            contextlib.closing(sqlite3.connect(_read_only_uri(path), uri=True)) as src,
            contextlib.closing(sqlite3.connect(source)) as dst,
        ):
            src.backup(dst)
        wbg_db.connect(source).close()  # applies the missing migrations to the copy
    try:
        conn.execute(f"ATTACH DATABASE ? AS {ALIAS}", (_read_only_uri(source),))
        try:
            yield version if version < known else None
        finally:
            conn.execute(f"DETACH DATABASE {ALIAS}")
    finally:
        if workdir is not None:
            shutil.rmtree(workdir, ignore_errors=True)


def _run_columns(conn: sqlite3.Connection) -> list[str]:
    return [row[1] for row in conn.execute("PRAGMA main.table_info(runs)") if row[1] != "num"]


def _quoted(column: str) -> str:
    return f'"{column}"'


def merge_database(
    conn: sqlite3.Connection, other: Path | str, prefer: str | None = None
) -> MergeResult:
    """Bring the runs of database ``other`` into ``conn``'s (see the module docstring)."""
    if prefer is not None and prefer not in PREFER:
        raise InvalidInput(f"unknown --prefer {prefer!r}", hint="one of: " + ", ".join(PREFER))
    location = wbg_db.as_location(other)
    if isinstance(location, ServerUrl):
        return _merge_from_server(conn, location, prefer)
    path = location
    if isinstance(conn, PgConnection):
        return _merge_into_server(conn, path, prefer)
    _check_other(conn, path)
    result = MergeResult(path=path)
    try:
        with _attached(conn, path) as migrated_from:
            result.migrated_from = migrated_from
            _merge_attached(conn, result, prefer)
    except sqlite3.DatabaseError as exc:
        raise DatabaseError(f"merging {path} failed: {exc}") from None
    return result


def _merge_attached(conn: sqlite3.Connection, result: MergeResult, prefer: str | None) -> None:
    columns = _run_columns(conn)
    other_columns = {
        row[1] for row in conn.execute(f"PRAGMA {ALIAS}.table_info(runs)") if row[1] != "num"
    }
    if set(columns) - other_columns:
        raise NotADatabase(f"{result.path} is not a wbg database (its runs table differs)")
    same_row = " AND ".join(f"m.{_quoted(c)} IS o.{_quoted(c)}" for c in columns)
    column_list = ", ".join(_quoted(c) for c in columns)
    with wbg_db.transaction(conn):
        conn.execute("DROP TABLE IF EXISTS temp.merge_plan")
        conn.execute(
            "CREATE TEMP TABLE merge_plan (their_num INTEGER PRIMARY KEY, our_num INTEGER, "
            "id TEXT NOT NULL, status TEXT NOT NULL)"
        )
        # status: new (copy), same (nothing to do), conflict (decided below), take (replace)
        conn.execute(
            "INSERT INTO temp.merge_plan (their_num, our_num, id, status) "
            "SELECT o.num, m.num, o.id, CASE "
            "WHEN m.num IS NULL THEN 'new' "
            f"WHEN {same_row} AND "
            "(SELECT count(*) FROM main.history WHERE run = m.num) = "
            f"(SELECT count(*) FROM {ALIAS}.history WHERE run = o.num) THEN 'same' "
            "ELSE 'conflict' END "
            f"FROM {ALIAS}.runs AS o LEFT JOIN main.runs AS m ON m.id = o.id"
        )
        _decide_conflicts(conn, result, columns, prefer)
        counts = dict(
            conn.execute("SELECT status, count(*) FROM temp.merge_plan GROUP BY status").fetchall()
        )
        result.new = counts.get("new", 0)
        result.unchanged = counts.get("same", 0)
        result.replaced = counts.get("take", 0)

        conn.execute(
            f"INSERT INTO main.runs ({column_list}) "
            f"SELECT {', '.join('o.' + _quoted(c) for c in columns)} "
            f"FROM {ALIAS}.runs AS o JOIN temp.merge_plan AS p ON p.their_num = o.num "
            "WHERE p.status = 'new' ORDER BY o.num"
        )
        conn.execute(
            "UPDATE temp.merge_plan SET our_num = "
            "(SELECT num FROM main.runs WHERE main.runs.id = merge_plan.id) "
            "WHERE status = 'new'"
        )
        if result.replaced:
            for table in ("history", "summary_metrics", "run_output", "run_output_pages"):
                conn.execute(
                    f"DELETE FROM main.{table} WHERE run IN "
                    "(SELECT our_num FROM temp.merge_plan WHERE status = 'take')"
                )
            conn.execute(
                f"UPDATE main.runs SET ({column_list}) = "
                f"(SELECT {', '.join('o.' + _quoted(c) for c in columns)} FROM {ALIAS}.runs AS o "
                "JOIN temp.merge_plan AS p ON p.their_num = o.num WHERE p.our_num = runs.num) "
                "WHERE num IN (SELECT our_num FROM temp.merge_plan WHERE status = 'take')"
            )
        copied = "p.status IN ('new', 'take')"
        conn.execute(
            "INSERT INTO main.history (run, step, key, value, time) "
            "SELECT p.our_num, h.step, h.key, h.value, h.time FROM temp.merge_plan AS p "
            f"JOIN {ALIAS}.history AS h ON h.run = p.their_num WHERE {copied} "
            "ORDER BY p.our_num, h.step, h.key"
        )
        conn.execute(
            "INSERT INTO main.summary_metrics (run, key, value) "
            "SELECT p.our_num, s.key, s.value FROM temp.merge_plan AS p "
            f"JOIN {ALIAS}.summary_metrics AS s ON s.run = p.their_num WHERE {copied}"
        )
        conn.execute(
            "INSERT INTO main.run_output (run, tail, truncated) "
            "SELECT p.our_num, t.tail, t.truncated FROM temp.merge_plan AS p "
            f"JOIN {ALIAS}.run_output AS t ON t.run = p.their_num WHERE {copied}"
        )
        conn.execute("DROP TABLE temp.merge_plan")


def _last_activity(conn: sqlite3.Connection, schema: str, num: int) -> float:
    row = conn.execute(
        f"SELECT max(coalesce(ended_at, started_at), "
        f"coalesce((SELECT max(time) FROM {schema}.history WHERE run = ?), started_at)) "
        f"FROM {schema}.runs WHERE num = ?",
        (num, num),
    ).fetchone()
    return row[0] or 0.0


JSON_COLUMNS = ("tags", "command", "config", "summary")


def _same_value(column: str, ours: object, theirs: object) -> bool:
    if ours == theirs:
        return True
    if column in JSON_COLUMNS and isinstance(ours, str) and isinstance(theirs, str):
        try:
            return json.loads(ours) == json.loads(theirs)
        except ValueError:
            return False
    return False


def _decide_conflicts(
    conn: sqlite3.Connection, result: MergeResult, columns: list[str], prefer: str | None
) -> None:
    selected = ", ".join(_quoted(c) for c in columns)
    conflicts = conn.execute(
        "SELECT their_num, our_num, id FROM temp.merge_plan WHERE status = 'conflict' ORDER BY id"
    ).fetchall()
    for their_num, our_num, run_id in conflicts:
        ours = conn.execute(f"SELECT {selected} FROM main.runs WHERE num = ?", (our_num,))
        theirs = conn.execute(f"SELECT {selected} FROM {ALIAS}.runs WHERE num = ?", (their_num,))
        differing = [
            column
            for column, a, b in zip(columns, ours.fetchone(), theirs.fetchone(), strict=True)
            if not _same_value(column, a, b)
        ]
        counts = [
            conn.execute(f"SELECT count(*) FROM {schema}.history WHERE run = ?", (num,)).fetchone()
            for schema, num in (("main", our_num), (ALIAS, their_num))
        ]
        if counts[0] != counts[1]:
            differing.append("history")
        if not differing:  # the JSON texts differed only in key order or spacing
            conn.execute(
                "UPDATE temp.merge_plan SET status = 'same' WHERE their_num = ?", (their_num,)
            )
            continue
        if prefer == "theirs":
            take = True
        elif prefer == "newer":
            take = _last_activity(conn, ALIAS, their_num) > _last_activity(conn, "main", our_num)
        else:
            take = False
        resolution = "took theirs" if take else ("kept ours" if prefer else "skipped")
        result.conflicts.append(Conflict(run_id, differing, resolution))
        conn.execute(
            "UPDATE temp.merge_plan SET status = ? WHERE their_num = ?",
            ("take" if take else "kept", their_num),
        )


# --- PostgreSQL on either side (README "On a cluster") ----------------------------------


def _merge_from_server(conn: sqlite3.Connection, url: ServerUrl, prefer: str | None) -> MergeResult:
    """A server's runs into a file: its snapshot, saved to a temporary file, merged as one."""
    if isinstance(conn, PgConnection):
        if conn.url == url:  # as for a file merged into itself
            raise InvalidInput(f"{url} is the database being merged into")
        raise InvalidInput(f"{url}: merging one server into another is not supported")
    workdir = tempfile.mkdtemp(prefix="wbg-merge-")
    try:
        copy = Path(workdir) / "server.db"
        _copy_from_server(url, copy)
        result = merge_database(conn, copy, prefer)
        result.path = url
        return result
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


# A server's tables, in the order of their keys (rows come in key order: faster inserts).
_SERVER_TABLES = {
    "runs": "num",
    "summary_metrics": "run, key",
    "history": "run, step, key",
    "run_output": "run",
    "run_output_pages": "run, start",
}


def _copy_from_server(url: ServerUrl, path: Path) -> None:
    """Every wbg table of a server into a new SQLite file, as of one moment (a view's
    repeatable-read transaction)."""
    with (
        contextlib.closing(wbg_db.connect(url, read_only=True)) as server,
        contextlib.closing(sqlite3.connect(path, isolation_level=None)) as local,
    ):
        wbg_db.migrate(local)
        local.execute("BEGIN")
        for table, order in _SERVER_TABLES.items():
            columns = [row[1] for row in local.execute(f"PRAGMA table_info({table})")]
            quoted = ", ".join(f'"{c}"' for c in columns)
            insert = f"INSERT INTO {table} ({quoted}) VALUES ({', '.join('?' * len(columns))})"
            rows = server.execute(f"SELECT {quoted} FROM {table} ORDER BY {order}")
            while chunk := rows.fetchmany(5000):
                local.executemany(insert, chunk)
        local.execute("COMMIT")


def runs_columns() -> list[str]:
    """The columns of ``runs`` in this wbg's schema (read from a scratch database)."""
    with contextlib.closing(sqlite3.connect(":memory:", isolation_level=None)) as scratch:
        wbg_db.migrate(scratch)
        return [row[1] for row in scratch.execute("PRAGMA table_info(runs)")]


def _merge_into_server(server: PgConnection, path: Path, prefer: str | None) -> MergeResult:
    """A file's runs into a server, with the rules of ``merge_database``, in one transaction.

    The file is read through a scratch SQLite connection (attached as for a file merge, so
    an older schema is read through an upgraded copy); the plan is made in Python.
    """
    scratch = sqlite3.connect(":memory:", isolation_level=None)
    result = MergeResult(path=path)
    try:
        if not path.exists():
            raise InvalidInput(f"no such database: {path}")
        if path.is_dir():
            raise InvalidInput(f"{path} is a directory, not a database")
        with path.open("rb") as handle:
            if handle.read(len(wbg_db.SQLITE_HEADER)) != wbg_db.SQLITE_HEADER:
                raise NotADatabase(f"{path} is not a wbg database (not a SQLite file)")
        with _attached(scratch, path) as migrated_from:
            result.migrated_from = migrated_from
            _copy_into_server(server, scratch, result, prefer)
    except sqlite3.DatabaseError as exc:
        raise DatabaseError(f"merging {path} failed: {exc}") from None
    finally:
        scratch.close()
    return result


def _copy_into_server(
    server: PgConnection, scratch: sqlite3.Connection, result: MergeResult, prefer: str | None
) -> None:
    columns = [
        row[1] for row in scratch.execute(f"PRAGMA {ALIAS}.table_info(runs)") if row[1] != "num"
    ]
    known = [c for c in runs_columns() if c != "num"]
    if set(known) - set(columns):
        raise NotADatabase(f"{result.path} is not a wbg database (its runs table differs)")
    columns = known
    selected = ", ".join(_quoted(c) for c in columns)
    theirs = {
        row[1]: row
        for row in scratch.execute(f"SELECT num, {selected} FROM {ALIAS}.runs ORDER BY num")
    }
    their_counts = dict(
        scratch.execute(f"SELECT run, count(*) FROM {ALIAS}.history GROUP BY run").fetchall()
    )
    server.execute("BEGIN")
    try:
        # Merges into one server take turns, so two nodes merging the same file copy it once.
        server.execute("SELECT pg_advisory_xact_lock(7741957266)")
        ours = {
            row[1]: row
            for row in server.execute(
                f"SELECT num, {selected} FROM runs WHERE id = ANY(?)", (list(theirs),)
            )
        }
        our_counts = dict(
            server.execute(
                "SELECT run, count(*) FROM history WHERE run = ANY(?) GROUP BY run",
                ([row[0] for row in ours.values()],),
            ).fetchall()
        )
        copy: list[tuple[int, int]] = []  # (their num, our num)
        new_rows: list[tuple] = []
        for run_id, their_row in theirs.items():
            our_row = ours.get(run_id)
            if our_row is None:
                new_rows.append(their_row)
                continue
            differing = [
                c
                for c, a, b in zip(columns, our_row[1:], their_row[1:], strict=True)
                if not _same_value(c, a, b)
            ]
            if our_counts.get(our_row[0], 0) != their_counts.get(their_row[0], 0):
                differing.append("history")
            if not differing:
                result.unchanged += 1
                continue
            if prefer == "theirs":
                take = True
            elif prefer == "newer":
                take = _last_activity(scratch, ALIAS, their_row[0]) > _server_activity(
                    server, our_row[0]
                )
            else:
                take = False
            resolution = "took theirs" if take else ("kept ours" if prefer else "skipped")
            result.conflicts.append(Conflict(run_id, differing, resolution))
            if take:
                result.replaced += 1
                for table in ("history", "summary_metrics", "run_output", "run_output_pages"):
                    server.execute(f"DELETE FROM {table} WHERE run = ?", (our_row[0],))
                assignments = ", ".join(f"{_quoted(c)} = ?" for c in columns)
                server.execute(
                    f"UPDATE runs SET {assignments} WHERE num = ?", (*their_row[1:], our_row[0])
                )
                copy.append((their_row[0], our_row[0]))
        copy += _insert_runs(server, columns, new_rows)
        result.new = len(new_rows)
        _copy_children(server, scratch, copy)
        server.execute("COMMIT")
    except BaseException:
        server.rollback()
        raise


def _insert_runs(
    server: PgConnection, columns: list[str], rows: list[tuple]
) -> list[tuple[int, int]]:
    """New runs, 500 per statement; (their num, our num) of each."""
    selected = ", ".join(_quoted(c) for c in columns)
    one = "(" + ", ".join("?" * len(columns)) + ")"
    at = columns.index("id") + 1  # rows are (their num, *columns)
    theirs = {row[at]: row[0] for row in rows}
    pairs = []
    for start in range(0, len(rows), 500):
        chunk = rows[start : start + 500]
        inserted = server.execute(
            f"INSERT INTO runs ({selected}) VALUES {', '.join([one] * len(chunk))} "
            "RETURNING num, id",
            [value for row in chunk for value in row[1:]],
        )
        pairs += [(theirs[run_id], num) for num, run_id in inserted]
    return pairs


def _copy_children(
    server: PgConnection, scratch: sqlite3.Connection, copy: list[tuple[int, int]]
) -> None:
    scratch.execute("DROP TABLE IF EXISTS temp.merge_map")
    scratch.execute("CREATE TEMP TABLE merge_map (their_num INTEGER PRIMARY KEY, our_num INTEGER)")
    scratch.executemany("INSERT INTO temp.merge_map VALUES (?, ?)", copy)
    for table, columns in (
        ("history", ("step", "key", "value", "time")),
        ("summary_metrics", ("key", "value")),
        ("run_output", ("tail", "truncated")),
    ):
        rows = scratch.execute(
            f"SELECT m.our_num, {', '.join('t.' + c for c in columns)} FROM temp.merge_map AS m "
            f"JOIN {ALIAS}.{table} AS t ON t.run = m.their_num"
        )
        server.copy_rows(table, ("run", *columns), rows)
    scratch.execute("DROP TABLE temp.merge_map")


def _server_activity(server: PgConnection, num: int) -> float:
    row = server.execute(
        "SELECT GREATEST(coalesce(ended_at, started_at), "
        "coalesce((SELECT max(time) FROM history WHERE run = ?), started_at)) "
        "FROM runs WHERE num = ?",
        (num, num),
    ).fetchone()
    return row[0] or 0.0
