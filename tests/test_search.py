"""Full-text search (``wbg runs search``, ``runs list --search``): what it finds, that the
index follows every change through its triggers, and that it costs the hot paths nothing."""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import PY, both_engines, run_wbg, sqlite_only, wbg_executable
from views_helpers import add_run

from wbg import db as dbmod
from wbg import runs


def found(cli, *args: str) -> list[str]:
    result = cli("runs", "search", *args, "-f", "json")
    assert result.exit_code == 0, result.output
    return sorted(r["name"] for r in json.loads(result.stdout or "[]"))


def fts_ok(db_path: Path) -> None:
    """SQLite's own check that both indexes agree with the rows they index (a server: its
    search indexes are there; PostgreSQL keeps them in step itself)."""
    if not isinstance(db_path, Path):
        with contextlib.closing(dbmod.connect(db_path)) as conn:
            assert {"runs_search", "run_output_search"} <= set(dbmod.table_schema(conn))
        return
    with contextlib.closing(sqlite3.connect(db_path)) as conn:
        for table in ("runs_fts", "run_output_fts"):
            conn.execute(f"INSERT INTO {table} ({table}) VALUES ('integrity-check')")


@both_engines
def test_search_finds_name_notes_command_tags_and_output(cli, db_path):
    done = run_wbg(
        "run", "-g", "g1", "-n", "bert-base", "-t", "baseline", "--notes", "first try",
        "--", PY, "-c", "print('Gradient EXPLODED at step 7')",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    add_run(db_path, group="g2", name="resnet", tags=("sota",))
    assert found(cli, "bert") == ["bert-base"]  # a word of the name
    assert found(cli, "TRY") == ["bert-base"]  # notes, any case
    assert found(cli, "baseline") == ["bert-base"]  # tags
    assert found(cli, "print") == ["bert-base"]  # the command
    assert found(cli, "exploded") == ["bert-base"]  # the kept output
    assert found(cli, "bert", "sota") == []  # every word must appear
    assert found(cli, "resnet sota") == ["resnet"]
    assert found(cli, "sota", "-g", "g1") == []  # with the other filters
    listed = cli("runs", "list", "--search", "exploded", "-f", "csv")
    assert listed.exit_code == 0, listed.output
    assert len(listed.stdout.splitlines()) == 2 and ",bert-base," in listed.stdout
    # words are taken literally: query syntax and quotes are not errors
    for text in ('"', "OR", "bert*", "a-b", "NEAR(x y)", "lr=0.1"):
        result = cli("runs", "search", text)
        assert result.exit_code == 0, (text, result.output)
    none = cli("runs", "search", "nothing-like-this")
    assert none.exit_code == 0 and none.stderr == "no runs match --search nothing-like-this\n"
    empty = cli("runs", "search", "  ")
    assert empty.exit_code == 2
    assert empty.stderr.startswith("Error: --search is empty\n")
    fts_ok(db_path)


@both_engines
def test_the_index_follows_renames_tags_output_and_deletes(cli, db_path):
    run_id = add_run(db_path, name="alpha", tags=("red",))
    other = add_run(db_path, name="beta")
    assert cli("runs", "set", run_id, "--name", "gamma").exit_code == 0
    assert found(cli, "alpha") == [] and found(cli, "gamma") == ["gamma"]
    assert cli("runs", "tag", run_id, "+blue", "-red").exit_code == 0
    assert found(cli, "red") == [] and found(cli, "blue") == ["gamma"]
    with contextlib.closing(dbmod.connect(db_path)) as conn:
        num = runs.run_num(conn, other)
        with dbmod.transaction(conn):
            runs.set_output(conn, num, b"first words", False)
        with dbmod.transaction(conn):
            runs.set_output(conn, num, b"second words", False)  # replaces the first
    assert found(cli, "first") == [] and found(cli, "second") == ["beta"]
    fts_ok(db_path)
    assert cli("runs", "delete", other, "--yes").exit_code == 0
    assert found(cli, "second") == [] and found(cli, "beta") == []
    fts_ok(db_path)


@sqlite_only(
    "the FTS5 tables and triggers of migration 6 (a server's search indexes come with "
    "migration 7: test_postgres.py checks that an older server database gets them)"
)
def test_an_older_database_gets_its_existing_runs_indexed(cli, db_path):
    raw = sqlite3.connect(db_path, isolation_level=None)
    dbmod.migrate(raw, upto=5)
    raw.close()
    add_run(db_path, name="before-search")  # add_run opens the file: migration 6 runs
    with contextlib.closing(sqlite3.connect(db_path)) as conn:
        conn.execute("DELETE FROM wbg_migrations WHERE id >= 6")
        conn.execute("DROP TABLE runs_fts")
        conn.execute("DROP TABLE run_output_fts")
        for (trigger,) in conn.execute("SELECT name FROM sqlite_master WHERE type = 'trigger'"):
            conn.execute(f"DROP TRIGGER {trigger}")
        conn.execute("PRAGMA user_version = 5")
        conn.commit()
    assert found(cli, "before") == ["before-search"]  # reading migrates, then finds
    fts_ok(db_path)


@sqlite_only("about FTS5's update trigger (a server's GIN indexes are kept by PostgreSQL)")
def test_a_heartbeat_or_summary_flush_does_not_touch_the_index(db_path):
    add_run(db_path, name="steady")
    with contextlib.closing(dbmod.connect(db_path)) as conn:
        (sql,) = conn.execute("SELECT sql FROM sqlite_master WHERE name = 'runs_au'").fetchone()
        assert 'AFTER UPDATE OF "name", "notes", "command", "tags" ON "runs"' in sql
        before = conn.execute("SELECT count(*) FROM runs_fts_data").fetchone()[0]
        with dbmod.transaction(conn):
            runs.merge_summary(conn, 1, {"loss": 0.5})
            runs.heartbeat(conn, 1, os.getpid())
        assert conn.execute("SELECT count(*) FROM runs_fts_data").fetchone()[0] == before


@pytest.mark.parametrize(
    ("args", "existing"),
    [
        (("new-group",), True),
        (("run", "--", "true"), True),
        (("table",), True),
        (("runs", "list"), True),
        (("run", "--", "true"), False),
    ],
    ids=["new-group", "run", "table", "runs-list", "run-creates"],
)
@both_engines
def test_hot_paths_do_not_import_sqlite_utils(db_path, args, existing):
    # Neither on an existing, migrated file (the everyday case) nor when the command
    # creates the database: its search indexes are made without sqlite-utils (which
    # imports numpy and dateutil when they are installed).
    if existing:
        add_run(db_path, name="exists")
    command = wbg_executable()
    if len(command) == 1:  # the console script: run it through this Python with -X
        command = [sys.executable, "-X", "importtime", "-m", "wbg.cli.main"]
    else:
        command = [sys.executable, "-X", "importtime", *command[1:]]
    done = subprocess.run([*command, *args], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    imported = [line for line in done.stderr.splitlines() if line.startswith("import time:")]
    assert imported, "no -X importtime output"
    assert not [line for line in imported if "sqlite_utils" in line]
