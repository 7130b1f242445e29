"""The store: path resolution, migrations, and refusing files it cannot use."""

from __future__ import annotations

import contextlib
import os
import sqlite3

import pytest
from helpers import history, no_database, raw_count, raw_query, records, run_wbg, sqlite_only

from wbg import db as dbmod
from wbg import runs
from wbg.engine import connect_server
from wbg.errors import DatabaseError, NewerSchema, NotADatabase
from wbg.settings import environ, resolve_db_path

EXPECTED_TABLES = {
    "runs": {
        "num", "id", "project", "name", "group", "job_type", "tags", "notes", "state",
        "exit_code", "command", "cwd", "host", "user", "pid", "git_commit", "git_dirty",
        "started_at", "ended_at", "config", "summary", "owner_pid", "reason", "heartbeat_at",
        "heartbeat_pid", "pid_ns",
    },
    "history": {"run", "step", "key", "value", "time"},
    "summary_metrics": {"run", "key", "value"},
    "run_output": {"run", "tail", "truncated"},
    "run_output_pages": {"run", "start", "data"},
    "wbg_migrations": {"id", "name", "applied_at"},
    # full-text search (migration 6): the FTS5 tables and their shadow tables
    "runs_fts": {"name", "notes", "command", "tags"},
    "run_output_fts": {"tail"},
    **{f"{t}_fts_{s}": ... for t in ("runs", "run_output") for s in ("data", "idx", "docsize", "config")},
}  # fmt: skip


def columns(conn: sqlite3.Connection, table: str) -> set[str]:
    return {row[1] for row in conn.execute(f'PRAGMA table_info("{table}")')}


def test_schema_from_nothing(db_path, engine):
    conn = dbmod.connect(db_path)
    if engine == "postgresql":  # no full-text search on a server (README "On a cluster")
        expected = {t: c for t, c in EXPECTED_TABLES.items() if "_fts" not in t}
        found: dict[str, set[str]] = {}
        for table, column in raw_query(
            db_path,
            "SELECT table_name, column_name FROM information_schema.columns "
            "WHERE table_schema = current_schema()",
        ):
            found.setdefault(table, set()).add(column)
        assert found == expected
    else:
        tables = {
            name for (name,) in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
        }
        assert tables == set(EXPECTED_TABLES)
        for table, expected_columns in EXPECTED_TABLES.items():
            if expected_columns is not ...:  # (FTS5's own tables: their layout is SQLite's)
                assert columns(conn, table) == expected_columns, table
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert dbmod.schema_version(conn) == len(dbmod.MIGRATIONS)
    applied = [name for (name,) in conn.execute("SELECT name FROM wbg_migrations ORDER BY id")]
    assert applied == [dbmod.migration_name(m) for m in dbmod.MIGRATIONS]
    conn.close()


def test_database_from_first_migration_upgrades_with_rows_intact(db_path, engine):
    if engine == "postgresql":
        raw = connect_server(db_path)
    else:
        raw = sqlite3.connect(db_path, isolation_level=None)
    dbmod.migrate(raw, upto=1)
    assert dbmod.schema_version(raw) == 1
    raw.execute(
        "INSERT INTO runs (id, project, name, state, started_at, ended_at, config, summary) "
        "VALUES ('abcd1234', 'p', 'old run', 'finished', 1000.0, 1010.0, '{\"lr\": 0.1}', "
        "'{\"loss\": 0.5}')"
    )
    raw.execute(
        "INSERT INTO history (run, step, key, value, time) VALUES (1, 0, 'loss', 0.5, 1001)"
    )
    raw.close()

    conn = dbmod.connect(db_path)
    assert dbmod.schema_version(conn) == len(dbmod.MIGRATIONS)
    conn.close()
    (record,) = records(db_path)
    assert record["name"] == "old run" and record["config"] == {"lr": 0.1}
    assert record["summary"] == {"loss": 0.5} and record["duration_s"] == 10.0
    assert history(db_path, "abcd1234") == [(0, "loss", 0.5)]


def test_newer_schema_is_refused(db_path, cli, engine):
    conn = dbmod.connect(db_path)
    newer = len(dbmod.MIGRATIONS) + 1
    if engine == "postgresql":  # a server's version is its last migration's id
        conn.execute("INSERT INTO wbg_migrations VALUES (?, 'from_the_future', 0)", (newer,))
    else:
        conn.execute(f"PRAGMA user_version = {newer}")
    conn.close()
    with pytest.raises(NewerSchema, match="written by a newer wbg"):
        dbmod.connect(db_path)
    result = cli("runs", "list")
    assert result.exit_code == 1
    assert result.stderr.splitlines()[0] == (
        f"Error: {db_path} was written by a newer wbg (schema version "
        f"{len(dbmod.MIGRATIONS) + 1}, this wbg knows {len(dbmod.MIGRATIONS)})"
    )


@sqlite_only("writes text where the database file goes")
def test_non_sqlite_file_is_refused_and_left_alone(db_path, cli):
    db_path.write_text("these are my notes, not a database\n")
    with pytest.raises(NotADatabase):
        dbmod.connect(db_path)
    result = cli("runs", "list")
    assert result.exit_code == 1
    assert (
        result.stderr.splitlines()[0]
        == f"Error: {db_path} is not a wbg database (not a SQLite file)"
    )
    assert db_path.read_text() == "these are my notes, not a database\n"


@sqlite_only("a database file in a directory that does not exist")
def test_missing_directory_is_a_clear_error(tmp_path, cli):
    target = tmp_path / "nope" / "runs.db"
    with pytest.raises(DatabaseError, match="directory .* does not exist"):
        dbmod.connect(target)
    result = cli("log", "x=1", "--run", "abcd1234", "--db", str(target))
    assert result.exit_code == 1
    assert result.stderr.startswith(
        f"Error: cannot create database {target}: directory {target.parent} does not exist"
    )
    # A read command never creates anything: there is no database there (exit 2).
    result = cli("runs", "list", "--db", str(target))
    assert result.exit_code == 2
    assert result.stderr.startswith(f"Error: no database at {target}\n")
    assert not target.parent.exists()


@sqlite_only("a database file in a read-only directory")
@pytest.mark.skipif(os.geteuid() == 0, reason="root can write to read-only directories")
def test_read_only_directory_is_a_clear_error(tmp_path):
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o555)
    try:
        with pytest.raises(DatabaseError, match="read-only"):
            dbmod.connect(folder / "runs.db")
    finally:
        folder.chmod(0o755)


@sqlite_only("a database file in a read-only directory")
def test_read_only_directory_check_for_root(tmp_path, monkeypatch):
    # Even as root, the check that decides "read-only" is the one a user would hit.
    folder = tmp_path / "ro"
    folder.mkdir()
    monkeypatch.setattr(os, "access", lambda path, mode: False)
    with pytest.raises(DatabaseError, match=f"directory {folder} is read-only"):
        dbmod.connect(folder / "runs.db")


@no_database
def test_path_precedence(tmp_path, monkeypatch):
    monkeypatch.setenv("WBG_DB", str(tmp_path / "env.db"))
    assert resolve_db_path(tmp_path / "flag.db") == tmp_path / "flag.db"
    assert resolve_db_path() == tmp_path / "env.db"
    monkeypatch.delenv("WBG_DB")
    project = tmp_path / "project"
    (project / "deep" / "er").mkdir(parents=True)
    (project / "pyproject.toml").write_text('[tool.wbg]\ndb = "store/runs.db"\n')
    monkeypatch.chdir(project / "deep" / "er")
    assert resolve_db_path() == (project / "store" / "runs.db").resolve()
    (project / "deep" / "wbg.toml").write_text('db = "near.db"\n')
    assert resolve_db_path() == (project / "deep" / "near.db").resolve()
    monkeypatch.chdir(tmp_path)
    assert resolve_db_path() == tmp_path / "xdg" / "wbg" / "runs.db"


@no_database
def test_path_under_home_follows_home(tmp_path, monkeypatch):
    # a --db / WBG_DB path is remembered per value, except under ~ ($HOME may change)
    monkeypatch.setenv("HOME", str(tmp_path / "one"))
    assert resolve_db_path("~/runs.db") == tmp_path / "one" / "runs.db"
    monkeypatch.setenv("HOME", str(tmp_path / "two"))
    assert resolve_db_path("~/runs.db") == tmp_path / "two" / "runs.db"
    monkeypatch.setenv("WBG_DB", "~/env.db")
    assert resolve_db_path() == tmp_path / "two" / "env.db"


@no_database
def test_environ_reads_as_os_environ(monkeypatch):
    """settings.environ is os.environ.get: set, empty, unset, undecodable bytes, changed
    by any of os.environ's own ways, and with os.environ replaced (a test's dict)."""
    monkeypatch.setenv("WBG_T_SET", "välue")
    monkeypatch.setenv("WBG_T_EMPTY", "")
    monkeypatch.delenv("WBG_T_UNSET", raising=False)
    os.environ["WBG_T_BYTES"] = os.fsdecode(b"\xff-raw")  # not UTF-8: surrogate escapes
    try:
        for name in ("WBG_T_SET", "WBG_T_EMPTY", "WBG_T_UNSET", "WBG_T_BYTES"):
            assert environ(name) == os.environ.get(name), name
        assert environ("WBG_T_SET") == "välue" and environ("WBG_T_UNSET") is None
        os.environ.pop("WBG_T_SET")
        os.environ.update({"WBG_T_UNSET": "now"})
        assert environ("WBG_T_SET") is None and environ("WBG_T_UNSET") == "now"
    finally:
        os.environ.pop("WBG_T_BYTES", None)
        os.environ.pop("WBG_T_UNSET", None)
    monkeypatch.setattr(os, "environ", {"WBG_T_SET": "from a dict"})
    assert environ("WBG_T_SET") == "from a dict" and environ("WBG_T_EMPTY") is None


@sqlite_only("the default database is a file in the user data directory")
def test_default_database_in_user_data_dir(monkeypatch, tmp_path):
    monkeypatch.delenv("WBG_DB")
    proc = run_wbg("run", "--", "true", env={"WBG_DB": ""})
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "xdg" / "wbg" / "runs.db").exists()
    assert run_wbg("db", "path", env={"WBG_DB": ""}).stdout.strip() == str(
        tmp_path / "xdg" / "wbg" / "runs.db"
    )


def test_db_info_and_migrate(cli, db_path):
    result = cli("db", "migrate")
    assert result.exit_code == 0
    assert result.stdout.strip() == (
        f"{db_path}: migrated from schema version 0 to {len(dbmod.MIGRATIONS)}"
    )
    assert cli("db", "migrate").stdout.strip().endswith("up to date")
    info = cli("db", "info")
    assert info.exit_code == 0
    assert f"path            {db_path}" in info.stdout
    assert "runs            0" in info.stdout


def test_concurrent_first_open_migrates_once(db_path):
    import threading

    errors = []

    def open_it():
        try:
            with contextlib.closing(dbmod.connect(db_path)):
                pass
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=open_it) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert raw_count(db_path, "wbg_migrations") == len(dbmod.MIGRATIONS)


@sqlite_only("POSIX locks on the database file")
def test_connect_never_opens_the_file_outside_sqlite(db_path, monkeypatch):
    """Closing any descriptor of a file drops every POSIX lock the process holds on it,
    SQLite's included. connect() once read the header itself; in a batch (a connection per
    child) another process then took the database for its own, removed the WAL, and our
    next write undid its summary update (seen as lost summaries, 1 run in 10)."""
    import builtins
    import io
    from pathlib import Path

    dbmod.connect(db_path).close()
    first = dbmod.connect(db_path)
    opened = []
    real_open, real_path_open, real_os_open = builtins.open, Path.open, os.open

    def watch(target, *args, **kwargs):
        if str(target).startswith(str(db_path)):
            opened.append(str(target))
        return target

    monkeypatch.setattr(builtins, "open", lambda f, *a, **k: real_open(watch(f), *a, **k))
    monkeypatch.setattr(io, "open", builtins.open)
    monkeypatch.setattr(Path, "open", lambda self, *a, **k: real_path_open(watch(self), *a, **k))
    monkeypatch.setattr(os, "open", lambda f, *a, **k: real_os_open(watch(f), *a, **k))
    second = dbmod.connect(db_path)
    dbmod.migrate_file(db_path)
    second.close()
    first.close()
    assert opened == []


@pytest.mark.parametrize("count", [0, 1, 49, 50, 51, 137])
def test_write_history_stores_every_point_and_the_last_of_duplicates(db_path, count):
    conn = dbmod.connect(db_path)
    run_id, num = runs.create_run(conn, project="p")
    points = [(num, i // 2, "ab"[i % 2], float(i), 1.0) for i in range(count)]
    # a second value for an existing (step, key), inside the same batch: it must win
    points += [(num, 0, "a", -1.0, 2.0)] if count else []
    with runs.transaction(conn):
        runs.write_history(conn, points)
    stored = {(p["step"], p["key"]): p["value"] for p in runs.get_history(conn, run_id)}
    expected = {(step, key): value for _, step, key, value, _ in points}
    assert stored == expected
    assert runs.history_count(conn, run_id) == len(expected)
    conn.close()


def test_batch_summary_is_the_last_value_of_each_key_with_and_without_hint(db_path):
    from wbg.writer import Recorder

    conn = dbmod.connect(db_path)
    run_id, num = runs.create_run(conn, project="p")
    recorder = Recorder(conn, num)
    points = [(num, 0, "a", 1.0, 0.0), (num, 0, "b", 2.0, 0.0), (num, 1, "a", 3.0, 0.0)]
    assert recorder._last_values(points) == {"a": 3.0, "b": 2.0}
    recorder.keys_hint = {"a", "b", "c"}  # c was logged before, not in this batch
    assert recorder._last_values(points) == {"a": 3.0, "b": 2.0}
    recorder.keys_hint = {"a", "b"}
    assert recorder._last_values(points) == {"a": 3.0, "b": 2.0}
    recorder.add(points)
    recorder.close()
    assert runs.get_run(conn, run_id)["summary"] == {"a": 3.0, "b": 2.0}
    conn.close()


def test_a_batched_write_reads_inside_and_is_all_or_nothing(db_path):
    """The writer's batches (wbg.engine.batched: on a server, one round trip): a result
    read inside sends what is queued so far; a statement the database refuses leaves
    nothing of the batch behind, and the connection goes on."""
    from wbg.engine import batched

    conn = dbmod.connect(db_path)
    run_id, num = runs.create_run(conn, project="p")

    def log(points, summary):
        def write(c):
            with runs.transaction(c):
                runs.write_history(c, points)
                return runs.merge_summary(c, num, summary)  # reads when a value is text

        return batched(conn, write, len(points))

    assert log([(num, 0, "loss", 1.0, 0.0)], {"loss": 1.0, "phase": "warmup"}) == []
    assert log([(num, 1, "acc", 0.5, 0.0)], {"acc": 0.5, "loss": "0.6"}) == ["loss"]

    def refused(c):
        with runs.transaction(c):
            runs.write_history(c, [(num, 2, "loss", 2.0, 0.0)])
            runs.merge_summary(c, num, {"late": 1.0})
            c.execute("INSERT INTO runs (id) VALUES (NULL)")  # NOT NULL: refused

    with pytest.raises(sqlite3.IntegrityError):
        batched(conn, refused)
    assert not conn.in_transaction
    conn.close()
    assert history(db_path, run_id) == [(0, "loss", 1.0), (1, "acc", 0.5)]
    assert records(db_path)[0]["summary"] == {"loss": 1.0, "phase": "warmup", "acc": 0.5}
