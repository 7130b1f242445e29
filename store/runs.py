"""Writing and reading run records (docs/design.md, "Runs").

Creating, finishing, updating and reading runs, their history and output (other modules
read runs too: ``wbg.query``, ``wbg.aggregate``, ``wbg.groups``). Config and summary are
JSON objects in the ``runs`` row (merged with SQLite's ``json_patch`` so concurrent
writers never lose each other's keys); numeric summary values are mirrored in
``summary_metrics`` for fast aggregation. History points live in ``history``, one row
per (run, key, step).
"""

from __future__ import annotations

import functools
import getpass
import itertools
import math
import os
import sqlite3
import time
from collections.abc import Iterator, Mapping, Sequence
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

from wbg import values
from wbg.db import transaction  # re-exported: runs.transaction is used widely
from wbg.engine import engine_of, pg_write_points, stream
from wbg.errors import UnknownRun, close_matches, did_you_mean
from wbg.ids import generate_id

if TYPE_CHECKING:  # pragma: no cover
    from wbg.query import Filters

STATES = ("running", "finished", "failed", "killed", "crashed")

RECORD_FIELDS = (
    "id",
    "project",
    "name",
    "group",
    "job_type",
    "tags",
    "notes",
    "state",
    "exit_code",
    "command",
    "cwd",
    "host",
    "user",
    "pid",
    "git_commit",
    "git_dirty",
    "started_at",
    "ended_at",
    "duration_s",
    "config",
    "summary",
)

_COLUMNS = (
    'id, project, name, "group", job_type, tags, notes, state, exit_code, command, cwd, '
    'host, "user", pid, git_commit, git_dirty, started_at, ended_at, config, summary, '
    "owner_pid, reason"
)


def insert_run(conn: sqlite3.Connection, columns: Mapping[str, Any]) -> int:
    """Insert a ``runs`` row from column name -> value (names from the schema, never from
    input); return its ``num``. Every run is inserted here (recorded or imported)."""
    engine = engine_of(conn)
    cursor = conn.execute(_insert_sql(tuple(columns), engine), tuple(columns.values()))
    return engine.inserted_num(cursor)


@functools.lru_cache(maxsize=16)
def _insert_sql(columns: tuple[str, ...], engine: Any) -> str:
    names = ", ".join(f'"{name}"' for name in columns)
    marks = ", ".join("?" * len(columns))
    return f"INSERT INTO runs ({names}) VALUES ({marks})" + engine.returning_num()


# Crash detection (README "Run state"): the recording process writes a heartbeat with its
# periodic flush. A `running` run whose heartbeat is older than HEARTBEAT_STALE_S reads as
# crashed on any host; on the host and in the PID namespace that wrote it, a heartbeat
# writer that is gone is also a crash. Stale is longer than the busy timeout (60 s), so a
# write lock held by another process does not make a live run look crashed.
HEARTBEAT_INTERVAL_S = 10.0
HEARTBEAT_STALE_S = 90.0
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1

# A history point as written: (runs.num, step, key, value, time)
Point = tuple[int, int, str, float, float]


@functools.cache
def hostname() -> str:
    """This machine's name, as socket.gethostname() gives it (without importing socket)."""
    if hasattr(os, "uname"):
        return os.uname().nodename
    import socket  # pragma: no cover - Windows

    return socket.gethostname()  # pragma: no cover


_namespace: str | None = None


def pid_namespace() -> str:
    """This host and PID namespace: where a recorded pid means this process table."""
    global _namespace
    if _namespace is None:
        try:
            inode = str(os.stat("/proc/self/ns/pid").st_ino)
        except OSError:  # no /proc (macOS): the host alone
            inode = ""
        _namespace = f"{hostname()}/{inode}"
    return _namespace


@functools.cache
def current_user() -> str | None:
    """The user name (asked once per process: a sweep records thousands of runs)."""
    try:
        return getpass.getuser()
    except Exception:  # no passwd entry and no USER variable (some containers)
        return None


def create_run(
    conn: sqlite3.Connection,
    *,
    project: str,
    group: str | None = None,
    job_type: str | None = None,
    name: str | None = None,
    tags: Sequence[str] = (),
    notes: str | None = None,
    config: Mapping[str, Any] | None = None,
    command: Sequence[str] | None = None,
    pid: int | None = None,
    owner_pid: int | None = None,
    git_commit: str | None = None,
    git_dirty: bool | None = None,
    run_id: str | None = None,
) -> tuple[str, int]:
    """Insert a new run in state ``running``; return its id and its row number (``num``)."""
    values.check_group(group)
    values.check_job_type(job_type)
    checked_tags = values.check_tags(tags)
    values.check_config(config or {})
    for _ in range(5):
        new_id = run_id or generate_id()
        try:
            now = time.time()
            owner = owner_pid if owner_pid is not None else os.getpid()
            num = insert_run(
                conn,
                {
                    "id": new_id,
                    "project": project,
                    "name": name or new_id,
                    "group": group,
                    "job_type": job_type,
                    "tags": values.dumps(checked_tags),
                    "notes": notes,
                    "state": "running",
                    "command": values.dumps(list(command)) if command is not None else None,
                    "cwd": os.getcwd(),
                    "host": hostname(),
                    "user": current_user(),
                    "pid": pid if pid is not None else os.getpid(),
                    "git_commit": git_commit,
                    "git_dirty": None if git_dirty is None else int(git_dirty),
                    "started_at": now,
                    "config": values.dumps(config or {}),
                    "summary": "{}",
                    "owner_pid": owner,
                    "heartbeat_at": now,
                    "heartbeat_pid": owner,
                    "pid_ns": pid_namespace(),
                },
            )
            return new_id, num
        except sqlite3.IntegrityError:
            if run_id:
                raise
    raise RuntimeError("could not draw a free run id")  # pragma: no cover


def record_not_started(
    conn: sqlite3.Connection,
    run_id: str,
    exit_code: int,
    reason: str,
    git_commit: str | None,
    git_dirty: bool | None,
) -> None:
    """Close a run whose command could not be started: failed, with the reason and no pid."""
    update_run(conn, run_id, pid=None, git_commit=git_commit, git_dirty=git_dirty)
    finish_run(conn, run_id, state="failed", exit_code=exit_code, reason=reason)


def update_run(conn: sqlite3.Connection, run_id: str, **fields: Any) -> None:
    """Set plain columns of a run (``pid``, ``git_commit``, ``git_dirty``, ``reason``...)."""
    # started_at: for a run recorded from another tool's log (W&B's start time)
    allowed = {
        "pid",
        "git_commit",
        "git_dirty",
        "reason",
        "owner_pid",
        "name",
        "notes",
        "started_at",
    }
    unknown = set(fields) - allowed
    if unknown:
        raise ValueError(f"not updatable here: {sorted(unknown)}")
    if not fields:
        return
    assignments = ", ".join(f"{name} = ?" for name in fields)
    # git_dirty is an INTEGER column (a bool would be refused by PostgreSQL)
    stored = [int(value) if isinstance(value, bool) else value for value in fields.values()]
    conn.execute(f"UPDATE runs SET {assignments} WHERE id = ?", (*stored, run_id))


def finish_run(
    conn: sqlite3.Connection,
    run_id: str,
    *,
    state: str,
    exit_code: int | None,
    reason: str | None = None,
    duration: float | None = None,
) -> None:
    """Close a run: final state, exit code and end time.

    ``duration``: seconds since the start on the recording process's monotonic clock; the
    end time is then the start plus that, so a wall clock stepped back meanwhile cannot
    give a negative (or wrong) duration. Without it the end is now, and never before the
    start.
    """
    if state not in STATES:
        raise ValueError(f"unknown state {state!r}")
    later = engine_of(conn).greatest("?4", "started_at")
    conn.execute(
        "UPDATE runs SET state = ?1, exit_code = ?2, "
        f"ended_at = CASE WHEN ?3 IS NOT NULL THEN started_at + ?3 ELSE {later} END, "
        "reason = COALESCE(?5, reason) WHERE id = ?6",
        (state, exit_code, duration, time.time(), reason, run_id),
    )


def heartbeat(conn: sqlite3.Connection, num: int, pid: int | None = None) -> None:
    """Record that run ``num``'s recording process (``pid``, default this one) is alive.

    A run a reader had marked ``crashed`` (its writer looked gone) that is heard from again
    is ``running`` again.
    """
    conn.execute(
        "UPDATE runs SET heartbeat_at = ?, heartbeat_pid = ?, state = CASE "
        "WHEN state = 'crashed' AND ended_at IS NULL THEN 'running' ELSE state END "
        "WHERE num = ?",
        (time.time(), os.getpid() if pid is None else pid, num),
    )


def merge_config(conn: sqlite3.Connection, run_id: str, update: Mapping[str, Any]) -> None:
    """Deep-merge ``update`` into the run's config in one statement (safe under concurrency)."""
    if not update:
        return
    values.check_config(update)
    cursor = conn.execute(
        "UPDATE runs SET config = json_patch(config, ?) WHERE id = ?",
        (values.dumps(update), run_id),
    )
    if cursor.rowcount == 0:
        raise unknown_run(conn, run_id)


def set_config_keys(conn: sqlite3.Connection, run_id: str, update: Mapping[str, Any]) -> None:
    """Set top-level config keys as given (wandb's ``config.update``: a nested value replaces
    the old one whole, ``None`` is stored as null). Call inside a transaction."""
    if not update:
        return
    row = conn.execute("SELECT config FROM runs WHERE id = ?", (run_id,)).fetchone()
    if row is None:
        raise unknown_run(conn, run_id)
    config = values.loads(row[0], {})
    config.update(update)
    conn.execute("UPDATE runs SET config = ? WHERE id = ?", (values.dumps(config), run_id))


def forget_metrics(conn: sqlite3.Connection, num: int, keys: Sequence[str]) -> None:
    """Remove metrics from run ``num``: their history points and summary values.

    Call inside a transaction.
    """
    if not keys:
        return
    rows = [(num, key) for key in keys]
    conn.executemany("DELETE FROM history WHERE run = ? AND key = ?", rows)
    conn.executemany("DELETE FROM summary_metrics WHERE run = ? AND key = ?", rows)
    row = conn.execute("SELECT summary FROM runs WHERE num = ?", (num,)).fetchone()
    summary = values.loads(row[0], {}) if row else {}
    if any(key in summary for key in keys):
        for key in keys:
            summary.pop(key, None)
        conn.execute("UPDATE runs SET summary = ? WHERE num = ?", (values.dumps(summary), num))


def reopen_run(conn: sqlite3.Connection, run_id: str) -> None:
    """Make a run ``running`` again in this process (a resumed run: ``init(resume=...)``)."""
    conn.execute(
        "UPDATE runs SET state = 'running', exit_code = NULL, ended_at = NULL, reason = NULL, "
        "pid = ?, owner_pid = ? WHERE id = ?",
        (os.getpid(), os.getpid(), run_id),
    )


def history_until(conn: sqlite3.Connection, num: int, step: int, into: int | None = None) -> None:
    """Rewind run ``num`` to ``step`` (its later points removed), or, with ``into``, copy its
    points up to ``step`` into run ``into`` (a fork). The summary of the run written becomes
    the last value of each metric up to there. Call inside a transaction."""
    target = num if into is None else into
    if into is None:
        conn.execute("DELETE FROM history WHERE run = ? AND step > ?", (num, step))
    else:
        conn.execute(
            "INSERT INTO history (run, step, key, value, time) "
            "SELECT ?, step, key, value, time FROM history WHERE run = ? AND step <= ? "
            "ON CONFLICT (run, step, key) DO UPDATE SET value = excluded.value, "
            "time = excluded.time",
            (into, num, step),
        )
    last = {
        key: value
        for key, value in conn.execute(
            "SELECT key, value FROM history AS h WHERE run = ?1 AND step = "
            "(SELECT max(step) FROM history WHERE run = ?1 AND key = h.key)",
            (target,),
        )
    }
    conn.execute("UPDATE runs SET summary = '{}' WHERE num = ?", (target,))
    conn.execute("DELETE FROM summary_metrics WHERE run = ?", (target,))
    merge_summary(conn, target, {k: math.nan if v is None else v for k, v in last.items()})


def last_step(conn: sqlite3.Connection, num: int) -> int | None:
    """The highest step recorded for run ``num`` (None without history)."""
    return conn.execute("SELECT max(step) FROM history WHERE run = ?", (num,)).fetchone()[0]


def _numeric_leaves(prefix: str, value: Any, out: list[tuple[str, float]]) -> None:
    if values.is_number(value):
        out.append((prefix, values.as_float(value)))
    elif isinstance(value, Mapping) and "_type" not in value:  # not a media description
        for key, item in value.items():
            _numeric_leaves(f"{prefix}.{key}", item, out)


def merge_summary(conn: sqlite3.Connection, num: int, update: Mapping[str, Any]) -> list[str]:
    """Set summary values (the JSON object and the numeric mirror) of run ``num``; return
    the keys left as they were.

    A string never replaces a numeric summary value (``"0.6"`` or ``"nan"`` logged as
    strings after numbers): the number stays, so the metric stays in
    tables and plots. This holds for every producer, since they all write through here.
    Call inside a transaction (``transaction(conn)``) so both stay in step.
    """
    update = {key: value for key, value in update.items() if value is not None}
    others = [key for key, value in update.items() if isinstance(value, str)]
    kept: list[str] = []
    if others:
        kept = [
            key
            for (key,) in conn.execute(
                f"SELECT key FROM summary_metrics WHERE run = ? AND key IN "
                f"({', '.join('?' * len(others))})",
                (num, *others),
            )
        ]
        for key in kept:
            del update[key]
    if not update:
        return kept
    conn.execute(
        "UPDATE runs SET summary = json_patch(summary, ?) WHERE num = ?",
        (values.dumps(update), num),
    )
    # The numeric mirror holds numbers, and the numeric leaves of a dict value as dotted
    # keys (a define_metric summary {"acc": {"max": 0.9}} is the metric "acc.max").
    numbers: list[tuple[str, float]] = []
    gone = []
    for key, value in update.items():
        if values.is_number(value):
            numbers.append((key, values.as_float(value)))
        else:
            gone.append((num, key))
            if isinstance(value, Mapping):
                _numeric_leaves(key, value, numbers)
    conn.executemany(
        "INSERT INTO summary_metrics (run, key, value) VALUES (?, ?, ?) "
        "ON CONFLICT (run, key) DO UPDATE SET value = excluded.value",
        [(num, key, value) for key, value in numbers],
    )
    if gone:
        conn.executemany("DELETE FROM summary_metrics WHERE run = ? AND key = ?", gone)
    return kept


# History points go in 50 rows per INSERT: one statement step per 50 points instead of
# one per point makes bulk writes about a third faster than executemany row by row.
_POINTS_PER_INSERT = 50
_INSERT_POINTS = "INSERT OR REPLACE INTO history (run, step, key, value, time) VALUES "
_INSERT_ONE = _INSERT_POINTS + "(?, ?, ?, ?, ?)"
_INSERT_MANY = _INSERT_POINTS + ", ".join(["(?, ?, ?, ?, ?)"] * _POINTS_PER_INSERT)


def write_history(conn: sqlite3.Connection, points: Sequence[Point]) -> int:
    """Store history points; a second value for the same (run, step, key) replaces the first
    (rows are applied in order, also within one statement).

    Returns how many points could not be stored at all. A value SQLite cannot take as it is
    (an integer beyond 64 bits, such as a FLOP count) is stored as a float; a point whose
    step is not a 64-bit integer, or whose key or value is not a string and a number, is
    left out and counted, never failing the points around it.
    """
    if engine_of(conn).name == "postgresql":
        storable = [point for point in map(_storable, points) if point is not None]
        pg_write_points(conn, storable)  # type: ignore[arg-type]  # a PgConnection
        return len(points) - len(storable)
    try:
        _insert_points(conn, points)
        return 0
    except (OverflowError, TypeError, ValueError, sqlite3.InterfaceError):
        # Statements before the failing one may already be in: INSERT OR REPLACE of the
        # same rows again is harmless.
        storable = [point for point in map(_storable, points) if point is not None]
        _insert_points(conn, storable)
        return len(points) - len(storable)


def _insert_points(conn: sqlite3.Connection, points: Sequence[Point]) -> None:
    size = _POINTS_PER_INSERT
    full = len(points) - len(points) % size
    if full:
        chain = itertools.chain.from_iterable
        conn.executemany(
            _INSERT_MANY, (tuple(chain(points[i : i + size])) for i in range(0, full, size))
        )
    if full < len(points):
        conn.executemany(_INSERT_ONE, points[full:])


def _storable(point: Point) -> Point | None:
    """``point`` as SQLite can store it, or None when it cannot be."""
    try:
        num, step, key, value, at = point
        if isinstance(step, float) and float(step).is_integer():
            step = int(step)
        if isinstance(step, bool) or not isinstance(step, int):
            return None
        if not INT64_MIN <= step <= INT64_MAX or not isinstance(key, str):
            return None
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return None
        if isinstance(value, int) and not INT64_MIN <= value <= INT64_MAX:
            value = values.as_float(value)
        return (int(num), step, key, value, float(at))
    except (TypeError, ValueError, OverflowError):
        return None


def log_points(
    conn: sqlite3.Connection, num: int, metrics: Mapping[str, float], step: int | None
) -> int:
    """Log one step of metrics now (``wbg log``); return the step used.

    Without ``step``, the capture rule applies: stay on the run's last step unless one of
    these keys is already there, else move to the next one.
    """
    with transaction(conn):
        if step is None:
            last = conn.execute("SELECT max(step) FROM history WHERE run = ?", (num,)).fetchone()[0]
            if last is None:
                step = 0
            else:
                taken = conn.execute(
                    "SELECT 1 FROM history WHERE run = ? AND step = ? AND key IN "
                    f"({', '.join('?' * len(metrics))}) LIMIT 1",
                    (num, last, *metrics),
                ).fetchone()
                step = last + 1 if taken else last
        now = time.time()
        write_history(
            conn, [(num, step, key, values.as_float(v), now) for key, v in metrics.items()]
        )
        merge_summary(conn, num, metrics)
    return step


OUTPUT_TAIL_BYTES = 1024 * 1024  # the kept output of a run: its last MiB


def set_output(conn: sqlite3.Connection, num: int, tail: bytes, truncated: bool) -> None:
    """The run's kept output, final (the pages written while it ran are dropped)."""
    # An upsert, not INSERT OR REPLACE: the replaced row's delete would not reach the
    # search index's triggers (they see it only with recursive_triggers on).
    conn.execute(
        "INSERT INTO run_output (run, tail, truncated) VALUES (?, ?, ?) "
        "ON CONFLICT (run) DO UPDATE SET tail = excluded.tail, truncated = excluded.truncated",
        (num, tail, int(truncated)),
    )
    conn.execute("DELETE FROM run_output_pages WHERE run = ?", (num,))


def append_output(conn: sqlite3.Connection, num: int, start: int, data: bytes) -> None:
    """Add output bytes ``start``.. (offsets in the whole output) to a running run's kept
    output; pages wholly before its last ``OUTPUT_TAIL_BYTES`` are deleted."""
    conn.execute(
        "INSERT INTO run_output_pages (run, start, data) VALUES (?, ?, ?) "
        "ON CONFLICT (run, start) DO UPDATE SET data = excluded.data",
        (num, start, data),
    )
    conn.execute(
        "DELETE FROM run_output_pages WHERE run = ? AND start + length(data) <= ?",
        (num, start + len(data) - OUTPUT_TAIL_BYTES),
    )


# --- reading -----------------------------------------------------------------------------


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    except OSError:
        return False
    return True


def crashed_runs(conn: sqlite3.Connection) -> list[int]:
    """The ``running`` runs (by ``num``) whose recording process is gone.

    Gone: the heartbeat is older than ``HEARTBEAT_STALE_S`` (on any host, so PID namespaces
    and other machines reading the file are judged by it alone), or the process that wrote
    the last heartbeat is absent from this host's, and this namespace's, process table.
    Runs recorded before heartbeats existed keep the old rule: same host, owner pid gone.
    """
    now = time.time()
    host, here = hostname(), pid_namespace()
    rows = conn.execute(
        "SELECT num, host, owner_pid, heartbeat_at, heartbeat_pid, pid_ns FROM runs "
        "WHERE state = 'running'"
    ).fetchall()
    dead = []
    for num, run_host, owner_pid, beat_at, beat_pid, namespace in rows:
        if beat_at is None:
            gone = run_host == host and (owner_pid is None or not pid_alive(owner_pid))
        elif now - beat_at > HEARTBEAT_STALE_S:
            gone = True
        else:
            gone = namespace == here and beat_pid is not None and not pid_alive(beat_pid)
        if gone:
            dead.append(num)
    return dead


def reap_crashed(conn: sqlite3.Connection) -> int:
    """Show the runs ``crashed_runs`` finds as ``crashed``; return how many there are.

    On a writable connection they are marked in the file (a heartbeat heard later makes
    them ``running`` again). A read-only connection never writes: a temporary view named
    ``runs`` shadows the table for this connection only, with those runs' state as
    ``crashed``, so every query of the reading command sees the same states.
    """
    dead = crashed_runs(conn)
    if not dead:
        return 0
    engine = engine_of(conn)
    if getattr(conn, "reading", False):  # a view of a server: it writes nothing
        _shadow_crashed(conn, dead)
        return len(dead)
    try:
        conn.executemany(
            f"UPDATE {engine.main}runs SET state = 'crashed' WHERE num = ? AND state = 'running'",
            [(num,) for num in dead],
        )
    except sqlite3.OperationalError:  # read-only file or connection: shadow, do not write
        _shadow_crashed(conn, dead)
    return len(dead)


def _shadow_crashed(conn: sqlite3.Connection, nums: Sequence[int]) -> None:
    engine = engine_of(conn)
    # Changing temp_store drops every temporary object, so it is set first (to what the
    # grouped table sets it to, which then changes nothing).
    if engine.temp_store:
        conn.execute(engine.temp_store)
    conn.execute(
        engine.ddl("CREATE TEMP TABLE IF NOT EXISTS wbg_crashed (num INTEGER PRIMARY KEY)")
    )
    conn.executemany(
        f"INSERT INTO {engine.temp}wbg_crashed VALUES (?) ON CONFLICT (num) DO NOTHING",
        [(n,) for n in nums],
    )
    # (a temporary view of the same name shadows the table: on PostgreSQL too, whose
    # search path starts with the session's temporary schema)
    conn.execute(f"DROP VIEW IF EXISTS {engine.temp}runs")
    found = conn.execute(f"SELECT * FROM {engine.main}runs LIMIT 0")
    columns = [column[0] for column in found.description]
    select = ", ".join(
        f"CASE WHEN state = 'running' AND num IN (SELECT num FROM {engine.temp}wbg_crashed) "
        "THEN 'crashed' ELSE state END AS state"
        if column == "state"
        else f'"{column}"'
        for column in columns
    )
    conn.execute(f"CREATE TEMP VIEW runs AS SELECT {select} FROM {engine.main}runs")


def iso(timestamp: float | None) -> str | None:
    if timestamp is None:
        return None
    return datetime.fromtimestamp(timestamp, tz=timezone.utc).isoformat(timespec="milliseconds")


def record_from_row(row: Sequence[Any]) -> dict[str, Any]:
    """A run record with the field names of docs/design.md, "Runs" (times in ISO 8601 UTC)."""
    (
        run_id,
        project,
        name,
        group,
        job_type,
        tags,
        notes,
        state,
        exit_code,
        command,
        cwd,
        host,
        user,
        pid,
        git_commit,
        git_dirty,
        started_at,
        ended_at,
        config,
        summary,
        _owner_pid,
        reason,
    ) = row
    duration = None if ended_at is None else max(0.0, ended_at - started_at)
    record = {
        "id": run_id,
        "project": project,
        "name": name,
        "group": group,
        "job_type": job_type,
        "tags": values.loads(tags, []),
        "notes": notes,
        "state": state,
        "exit_code": exit_code,
        "command": values.loads(command),
        "cwd": cwd,
        "host": host,
        "user": user,
        "pid": pid,
        "git_commit": git_commit,
        "git_dirty": None if git_dirty is None else bool(git_dirty),
        "started_at": iso(started_at),
        "ended_at": iso(ended_at),
        "duration_s": None if duration is None else round(duration, 3),
        "config": values.loads(config, {}),
        "summary": values.loads(summary, {}),
    }
    if reason:
        record["reason"] = reason
    return record


def get_run(conn: sqlite3.Connection, run_id: str) -> dict[str, Any]:
    reap_crashed(conn)
    row = conn.execute(f"SELECT {_COLUMNS} FROM runs WHERE id = ?", (run_id,)).fetchone()
    if row is None:
        raise unknown_run(conn, run_id)
    return record_from_row(row)


def unknown_run(conn: sqlite3.Connection, run_id: str) -> UnknownRun:
    """The error for a run id that is not stored, with the ids it may have meant: those it
    starts, then close ones among the newest 5000."""
    ids = [r[0] for r in conn.execute("SELECT id FROM runs ORDER BY started_at DESC LIMIT 5000")]
    close = close_matches(run_id, ids, cutoff=0.5)
    prefixed = [i for i in ids if i.startswith(run_id)][:3] if run_id else []
    matches = list(dict.fromkeys(prefixed + close))
    hint = did_you_mean(matches) if matches else "see `wbg runs list`"
    return UnknownRun(f"no run with id {run_id!r}", hint=hint)


def list_runs(
    conn: sqlite3.Connection,
    filters: Filters | None = None,
    *,
    limit: int | None = None,
    oldest_first: bool = False,
    sort: str | None = None,
    desc: bool = False,
) -> list[dict[str, Any]]:
    """Run records, newest first, that ``filters`` select (all runs without it); ``sort``
    orders them by a field, config key or summary metric first (``wbg.query.sort_sql``)."""
    return list(
        iter_runs(conn, filters, limit=limit, oldest_first=oldest_first, sort=sort, desc=desc)
    )


def iter_runs(
    conn: sqlite3.Connection,
    filters: Filters | None = None,
    *,
    limit: int | None = None,
    oldest_first: bool = False,
    sort: str | None = None,
    desc: bool = False,
) -> Iterator[dict[str, Any]]:
    """``list_runs`` read as it is consumed: a view of 100,000 runs prints its first row at
    once and holds one record at a time."""
    from wbg.query import Filters, sort_sql

    reap_crashed(conn)
    clause, params = (filters or Filters()).sql(engine_of(conn))
    order = "started_at, id" if oldest_first else "started_at DESC, id"
    if sort is not None:
        by, extra = sort_sql(conn, sort, desc)
        order = f"{by}, {order}"
        params = [*params, *extra]
    sql = f"SELECT {_COLUMNS} FROM runs WHERE {clause} ORDER BY {order}"
    if limit is not None:
        sql += f" LIMIT {int(limit)}"
    for row in stream(conn, sql, params):
        yield record_from_row(row)


def run_num(conn: sqlite3.Connection, run_id: str) -> int:
    """The row number of run ``run_id``; ``UnknownRun`` (with close matches) when absent."""
    row = conn.execute("SELECT num FROM runs WHERE id = ?", (run_id,)).fetchone()
    if row is None:
        raise unknown_run(conn, run_id)
    return row[0]


def history_count(conn: sqlite3.Connection, run_id: str) -> int:
    return conn.execute(
        "SELECT count(*) FROM history WHERE run = (SELECT num FROM runs WHERE id = ?)",
        (run_id,),
    ).fetchone()[0]


def get_history(
    conn: sqlite3.Connection,
    run_id: str,
    keys: Sequence[str] | None = None,
    tail: int | None = None,
) -> list[dict[str, Any]]:
    return list(iter_history(conn, run_id, keys, tail))


def iter_history(
    conn: sqlite3.Connection,
    run_id: str,
    keys: Sequence[str] | None = None,
    tail: int | None = None,
) -> Iterator[dict[str, Any]]:
    """A run's points in step order, read as they are consumed (memory stays flat however
    many points the run has): of ``keys`` only when given, of the last ``tail`` steps only
    when given."""
    sql = (
        "SELECT step, key, value, time FROM history WHERE run = (SELECT num FROM runs WHERE id = ?)"
    )
    params: list[Any] = [run_id]
    if keys:
        sql += f" AND key IN ({', '.join('?' * len(keys))})"
        params += keys
    if tail is not None:
        sql += (
            " AND step >= coalesce((SELECT min(step) FROM (SELECT DISTINCT h.step FROM history "
            "AS h WHERE h.run = (SELECT num FROM runs WHERE id = ?)"
            + (f" AND h.key IN ({', '.join('?' * len(keys))})" if keys else "")
            + " ORDER BY h.step DESC LIMIT ?) AS last_steps), 0)"
        )
        params += [run_id, *(keys or ()), tail]
    for step, key, value, t in conn.execute(sql + " ORDER BY step, key", params):
        yield {
            "step": step,
            "key": key,
            "value": math.nan if value is None else value,
            "time": iso(t),
        }


def get_output(conn: sqlite3.Connection, run_id: str) -> tuple[bytes, bool] | None:
    """The run's kept output and whether older output was cut; None when there is none."""
    row = conn.execute(
        "SELECT tail, truncated FROM run_output WHERE run = (SELECT num FROM runs WHERE id = ?)",
        (run_id,),
    ).fetchone()
    if row is not None:
        return bytes(row[0]), bool(row[1])
    pages = conn.execute(  # a run still going (or one that never ended)
        "SELECT start, data FROM run_output_pages "
        "WHERE run = (SELECT num FROM runs WHERE id = ?) ORDER BY start",
        (run_id,),
    ).fetchall()
    if not pages:
        return None
    data = b"".join(bytes(page) for _, page in pages)
    return data[-OUTPUT_TAIL_BYTES:], pages[0][0] > 0 or len(data) > OUTPUT_TAIL_BYTES


def run_exists(conn: sqlite3.Connection, run_id: str) -> bool:
    return conn.execute("SELECT 1 FROM runs WHERE id = ?", (run_id,)).fetchone() is not None


# --- changing runs after the fact (wbg runs set|tag|move|delete, wbg group delete) -------


def _running_check(conn: sqlite3.Connection, run_id: str, action: str) -> None:
    reap_crashed(conn)
    row = conn.execute("SELECT state FROM runs WHERE id = ?", (run_id,)).fetchone()
    if row is None:
        raise unknown_run(conn, run_id)
    if row[0] == "running":
        from wbg.errors import InvalidInput

        raise InvalidInput(
            f"run {run_id} is still running: cannot {action} it",
            hint="wait for it to end (or set config from inside it: run.config[KEY] = VALUE)",
        )


def set_config(conn: sqlite3.Connection, run_id: str, update: Mapping[str, Any]) -> None:
    """Edit the config of an ended run (``wbg runs set ID KEY=VALUE``; dotted keys nest)."""
    _running_check(conn, run_id, "edit the config of")
    with transaction(conn):
        merge_config(conn, run_id, update)


def set_name(conn: sqlite3.Connection, run_id: str, name: str) -> None:
    """Rename a run (``wbg runs set ID --name NEW``); a name is 1-128 characters."""
    values.check_name("name", name, values.MAX_GROUP)
    with transaction(conn):
        cursor = conn.execute("UPDATE runs SET name = ? WHERE id = ?", (name, run_id))
        if cursor.rowcount == 0:
            raise unknown_run(conn, run_id)


DIFF_FIELDS = ("project", "group", "job_type", "name", "state", "exit_code", "duration_s",
               "host", "git_commit", "git_dirty", "command", "tags")  # fmt: skip


def diff_records(a: Mapping[str, Any], b: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Two runs side by side (``wbg runs diff``): the fields that describe a run, then every
    config and summary key (dotted), each row ``{key, a, b, same}``."""
    import shlex

    def field(record: Mapping[str, Any], name: str) -> Any:
        value = record.get(name)
        return shlex.join(value) if name == "command" and isinstance(value, list) else value

    rows = [{"key": f, "a": field(a, f), "b": field(b, f)} for f in DIFF_FIELDS]
    for section in ("config", "summary"):
        left, right = values.flatten(a.get(section) or {}), values.flatten(b.get(section) or {})
        for key in sorted({*left, *right}):
            rows.append({"key": f"{section}.{key}", "a": left.get(key), "b": right.get(key)})
    for row in rows:
        row["same"] = values.dumps(row["a"]) == values.dumps(row["b"])
    return rows


def set_tags(
    conn: sqlite3.Connection, run_id: str, add: Sequence[str] = (), remove: Sequence[str] = ()
) -> list[str]:
    """Add and remove tags of a run; return its tags afterwards."""
    values.check_tags(add)
    with transaction(conn):
        row = conn.execute("SELECT tags FROM runs WHERE id = ?", (run_id,)).fetchone()
        if row is None:
            raise unknown_run(conn, run_id)
        tags = [t for t in values.loads(row[0], []) if t not in remove]
        tags += [t for t in values.check_tags(add) if t not in tags]
        conn.execute("UPDATE runs SET tags = ? WHERE id = ?", (values.dumps(tags), run_id))
    return tags


def move_runs(conn: sqlite3.Connection, run_ids: Sequence[str], group: str | None) -> int:
    """Put runs into ``group`` (None: no group); every id must exist, else nothing moves."""
    values.check_group(group)
    with transaction(conn):
        for run_id in run_ids:
            run_num(conn, run_id)
        conn.executemany(
            'UPDATE runs SET "group" = ? WHERE id = ?', [(group, run_id) for run_id in run_ids]
        )
    return len(set(run_ids))


def delete_runs(conn: sqlite3.Connection, nums: Sequence[int]) -> int:
    """Delete runs (by ``num``) with their history, summary metrics and output."""
    with transaction(conn):
        for table in ("history", "summary_metrics", "run_output", "run_output_pages"):
            conn.executemany(f"DELETE FROM {table} WHERE run = ?", [(n,) for n in nums])
        conn.executemany("DELETE FROM runs WHERE num = ?", [(n,) for n in nums])
    return len(set(nums))


def running_ids(conn: sqlite3.Connection, nums: Sequence[int]) -> list[str]:
    """Ids of the runs among ``nums`` that are still running (after reaping)."""
    reap_crashed(conn)
    found = []
    for num in nums:
        row = conn.execute(
            "SELECT id FROM runs WHERE num = ? AND state = 'running'", (num,)
        ).fetchone()
        if row:
            found.append(row[0])
    return found
