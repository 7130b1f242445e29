"""The PostgreSQL store (README "On a cluster"): a real server started for the session,
real processes writing at once, migrations raced by first connections, the URL never
showing its password; and the network-filesystem warning of the SQLite side."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import textwrap

import pytest
from helpers import (
    PY,
    no_database,
    postgresql_only,
    raw_count,
    raw_query,
    records,
    run_wbg,
    sqlite_only,
)

from wbg import db as wbg_db
from wbg.engine import ServerUrl, connect_server, pg_sql, redacted

# What only a server has: a URL and its password, connections (dropped, refused, many at
# once), the advisory lock of migrations, the snapshot of reading commands.
postgresql = postgresql_only("a server's URL, connections, locks or snapshot")


@no_database
def test_placeholders_become_psycopg_ones_outside_quotes():
    assert pg_sql("SELECT ?, '?', \"a?\" FROM t WHERE x LIKE '5%' AND y = ?") == (
        "SELECT %s, '?', \"a?\" FROM t WHERE x LIKE '5%%' AND y = %s",
        False,
    )
    assert pg_sql("UPDATE runs SET a = ?1, b = ?2 WHERE c = ?1") == (
        "UPDATE runs SET a = %(p1)s, b = %(p2)s WHERE c = %(p1)s",
        True,
    )


@no_database
def test_the_password_is_never_shown():
    url = "postgresql://alice:s3cret@db.example:5432/wbg"
    assert redacted(url) == "postgresql://alice@db.example:5432/wbg"
    assert str(ServerUrl(url)) == "postgresql://alice@db.example:5432/wbg"
    assert os.fspath(ServerUrl(url)) == url  # what a `wbg run` child inherits
    assert redacted("postgresql:///wbg") == "postgresql:///wbg"  # a local socket
    in_query = "postgresql://bob@db/wbg?password=s3cret&sslmode=require"
    assert redacted(in_query) == "postgresql://bob@db/wbg?sslmode=require"


@postgresql
def test_db_commands_show_the_url_without_its_password(cli, db_path, pg_server):
    secret = db_path.url.replace("wbg@", "wbg:not-needed-but-secret@")
    assert cli("run", "--db", secret, "--", PY, "-c", "print('loss: 1')").exit_code == 0
    for args in (("db", "path"), ("db", "info"), ("db", "check"), ("db", "migrate")):
        result = cli(*args, "--db", secret)
        assert result.exit_code == 0, result.output
        assert "not-needed-but-secret" not in result.output
        assert str(db_path) in result.output
    info = cli("db", "info", "--db", secret).stdout
    assert "engine          postgresql 15" in info or "engine          postgresql " in info
    assert "runs            1" in info and "history         1" in info


@postgresql
def test_a_wrong_server_is_one_line_error(cli, pg_server):
    port = int(pg_server.rsplit(":", 1)[1])
    url = f"postgresql://wbg:pw@127.0.0.1:{port}/no_such_database"
    result = cli("runs", "list", "--db", url)
    assert result.exit_code == 1
    assert result.stderr.startswith("Error: cannot connect to postgresql://wbg@127.0.0.1:")
    assert "pw@" not in result.stderr and len(result.stderr.strip().splitlines()) == 1


@postgresql
def test_sixteen_first_connections_apply_each_migration_once(db_path):
    code = textwrap.dedent(
        """
        import sys
        from wbg import db
        db.connect(sys.argv[1]).close()
        print("ok")
        """
    )
    procs = [
        subprocess.Popen([PY, "-c", code, db_path.url], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True)
        for _ in range(16)
    ]  # fmt: skip
    for proc in procs:
        out, err = proc.communicate(timeout=120)
        assert (proc.returncode, out, err) == (0, "ok\n", "")
    with contextlib.closing(connect_server(db_path)) as conn:
        applied = conn.execute("SELECT id, name FROM wbg_migrations ORDER BY id").fetchall()
    assert [name for _, name in applied] == [wbg_db.migration_name(m) for m in wbg_db.MIGRATIONS]


@postgresql
def test_processes_logging_at_once_lose_and_duplicate_nothing(db_path):
    # 32 processes x 50,000 points (two metrics a step) through the API, all at once
    writers, points = 32, 25_000
    code = textwrap.dedent(
        """
        import sys, wbg
        with wbg.init(project="p", group="many", job_type=f"w{sys.argv[1]}") as run:
            for step in range(int(sys.argv[2])):
                run.log({"loss": step * 0.5, "acc": step / 10})
        print("ok")
        """
    )
    procs = [
        subprocess.Popen([PY, "-c", code, str(i), str(points)], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True)
        for i in range(writers)
    ]  # fmt: skip
    for proc in procs:
        out, err = proc.communicate(timeout=300)
        assert (proc.returncode, out, err) == (0, "ok\n", "")
    found = records(db_path)
    assert len(found) == writers and {r["state"] for r in found} == {"finished"}
    assert raw_count(db_path, "history") == writers * points * 2
    with contextlib.closing(connect_server(db_path)) as conn:
        per_run = conn.execute(
            "SELECT count(DISTINCT step), min(step), max(step) FROM history GROUP BY run"
        ).fetchall()
    assert per_run == [(points, 0, points - 1)] * writers


@postgresql
def test_wbg_run_children_at_once_each_get_their_run(db_path):
    children = 16
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "wbg.cli.main", "run", "-g", "fan", "-c", f"i={i}", "--",
             PY, "-c", "for s in range(200): print(f'loss: {s}')"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
        for i in range(children)
    ]  # fmt: skip
    for proc in procs:
        out, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err
    found = records(db_path)
    assert sorted(r["config"]["i"] for r in found) == list(range(children))
    assert {r["state"] for r in found} == {"finished"}
    assert raw_count(db_path, "history") == children * 200


@postgresql
def test_a_grid_with_parallel_trials(db_path):
    proc = run_wbg(
        "run", "-g", "sweep", "--grid", "lr=0.1,0.01", "--repeat", "2", "--parallel", "4",
        "--", PY, "-c", "print('acc: 0.5')",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    found = records(db_path)
    assert len(found) == 4 and {r["state"] for r in found} == {"finished"}


@postgresql
def test_completion_reads_an_empty_server_database_without_creating_anything(db_path):
    from wbg.complete import candidates

    with pytest.raises(Exception):  # noqa: B017 - callers treat any error as no candidates
        candidates(db_path, "group", "")
    assert raw_count(db_path, "runs") == 0
    with contextlib.closing(connect_server(db_path)) as conn:
        assert conn.execute("SELECT to_regclass('wbg_migrations')").fetchone()[0] is None


@postgresql
def test_missing_driver_names_the_extra(cli, db_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "psycopg", None)  # as if it were not installed
    result = cli("runs", "list")
    assert result.exit_code == 1
    assert result.stderr == (
        "Error: a postgresql:// database needs the PostgreSQL driver: pip install 'wbg[postgres]'\n"
    )


@no_database
def test_import_wbg_does_not_import_the_driver():
    code = "import sys, wbg; wbg.init; print('psycopg' in sys.modules)"
    out = subprocess.run([PY, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.stdout == "False\n", out.stderr


# --- SQLite on a network filesystem ---------------------------------------------------------


@no_database
def test_filesystem_type_is_read_from_the_mount_table(tmp_path):
    assert wbg_db.filesystem_type(tmp_path / "runs.db") is not None
    if os.path.isdir("/proc/self"):
        assert wbg_db.filesystem_type(__import__("pathlib").Path("/proc/self")) == "proc"


@sqlite_only("a database file on a network filesystem")
def test_network_filesystem_warning_once_naming_both_routes(db_path, monkeypatch, cli, capfd):
    here = wbg_db.filesystem_type(db_path)
    # This machine has no NFS mount to test on: count this one's type as a network one.
    monkeypatch.setattr(wbg_db, "NETWORK_FILESYSTEMS", (here,))
    monkeypatch.setattr(wbg_db, "_warned_paths", set())
    for _ in range(2):
        wbg_db.connect(db_path).close()
    err = capfd.readouterr().err
    assert err.count("WARNING") == 1
    assert f"is on a network filesystem ({here})" in err
    assert "one file per node" in err and "postgresql://" in err
    info = cli("db", "info")
    assert f"filesystem      {here}" in info.stdout


def test_db_info_names_the_engine(cli, db_path, engine):
    assert cli("run", "--", PY, "-c", "pass").exit_code == 0
    info = cli("db", "info")
    assert info.exit_code == 0, info.output
    assert f"engine          {engine}" in info.stdout


@postgresql
def test_the_settings_file_may_name_a_server(db_path, tmp_path, monkeypatch, cli):
    monkeypatch.delenv("WBG_DB")
    (tmp_path / "work" / "wbg.toml").write_text(f'db = "{db_path.url}"\n')
    assert cli("db", "path").stdout == f"{db_path}\n"
    assert cli("run", "-g", "from-settings", "--", PY, "-c", "pass").exit_code == 0
    assert [r["group"] for r in records(db_path)] == ["from-settings"]


@postgresql
def test_an_error_from_the_server_is_not_called_damage(db_path):
    from wbg.db import reading_error

    error = reading_error(str(db_path), 'syntax error at or near "PRAGMA"')
    assert error.message == f'database {db_path}: syntax error at or near "PRAGMA"'
    assert error.hint is None or "recover" not in error.hint


@postgresql
def test_a_reading_connection_sees_one_moment_even_for_tables_read_later(db_path):
    from wbg import runs

    writer = wbg_db.connect(db_path)
    run_id, num = runs.create_run(writer, project="p")
    runs.log_points(writer, num, {"loss": 1.0}, step=0)
    reader = wbg_db.connect(db_path, read_only=True)
    try:
        runs.log_points(writer, num, {"loss": 0.5}, step=1)  # after the reader's moment
        assert [p["step"] for p in runs.get_history(reader, run_id)] == [0]
    finally:
        reader.close()
        writer.close()
    with contextlib.closing(wbg_db.connect(db_path, read_only=True)) as later:
        assert [p["step"] for p in runs.get_history(later, run_id)] == [0, 1]


@postgresql
def test_a_run_outlives_its_connection_being_dropped_by_the_server(db_path):
    code = textwrap.dedent(
        """
        import sys, wbg
        run = wbg.init(project="p", group="restart")
        for step in range(100):
            run.log({"loss": float(step)})
        run.summary["half"] = 1
        print("ready", flush=True)
        sys.stdin.readline()
        for step in range(100, 200):
            run.log({"loss": float(step)})
        run.finish()
        print("done", flush=True)
        """
    )
    proc = subprocess.Popen([PY, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)  # fmt: skip
    assert proc.stdout.readline() == "ready\n"
    with contextlib.closing(connect_server(db_path)) as admin:
        dropped = admin.execute(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid()"
        ).fetchone()[0]
    assert dropped >= 1
    out, err = proc.communicate("go\n", timeout=120)
    assert (proc.returncode, out) == (0, "done\n"), err
    (record,) = records(db_path)
    assert record["state"] == "finished"
    assert raw_count(db_path, "history") == 200


@postgresql
def test_wbg_run_hands_its_child_the_whole_url_and_shows_it_nowhere(db_path):
    secret = db_path.url.replace("wbg@", "wbg:hunter2@")  # trust auth: the password is unused
    proc = run_wbg(
        "run", "--db", secret, "-g", "pw", "--", PY, "-c",
        "import os, wbg; print(os.environ['WBG_DB']); wbg.init().finish()",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == secret + "\n"  # the child reaches the same server
    assert "hunter2" not in proc.stderr
    assert [r["group"] for r in records(db_path)] == ["pw"]


@postgresql
def test_an_older_server_schema_is_migrated_once_by_db_migrate(db_path, cli):
    with contextlib.closing(connect_server(db_path)) as conn:
        wbg_db.migrate(conn, upto=len(wbg_db.MIGRATIONS) - 1)
    latest = len(wbg_db.MIGRATIONS)
    first = cli("db", "migrate")
    assert first.stdout == f"{db_path}: migrated from schema version {latest - 1} to {latest}\n"
    again = cli("db", "migrate")
    assert again.stdout == f"{db_path}: schema version {latest}, up to date\n"


@postgresql
def test_library_reads_on_a_writable_server_connection(db_path):
    # Reading functions on a connection that also writes (a script's own, wbg.db.connect)
    # run the same SQL as the views: JSON keys, --where, sorting, grouping and group pages.
    from views_helpers import add_run

    from wbg import aggregate, curves, groups, query, runs

    for lr, acc in ((0.1, 0.5), (0.01, 0.7), (0.01, 0.9)):
        add_run(db_path, group="exp", config={"lr": lr}, summary={"acc": acc})
    with contextlib.closing(wbg_db.connect(db_path)) as conn:
        assert not conn.in_transaction
        found = runs.list_runs(conn, query.Filters(where=("lr < 0.05",)), sort="acc", desc=True)
        assert [r["summary"]["acc"] for r in found] == [0.9, 0.7]
        table = aggregate.build_table(conn, group_by=["lr"], metrics=["acc"])
        assert [(row["lr"], row["runs"], row["acc.mean"]) for row in table.rows] == [
            (0.01, 2, pytest.approx(0.8)),
            (0.1, 1, 0.5),
        ]
        assert [g["runs"] for g in groups.list_groups(conn)] == [3]
        assert groups.group_page(conn, "exp")["varying_keys"] == ["lr"]
        selection = curves.select_runs(conn, query.Filters(), ["lr"])
        assert selection.order == ["lr=0.01", "lr=0.1"]
        assert not conn.in_transaction  # nothing left open: the next write is its own


@postgresql
def test_a_view_shows_a_crashed_run_as_crashed_and_writes_nothing(db_path, cli):
    from views_helpers import add_run

    from wbg.runs import HEARTBEAT_STALE_S

    run_id = add_run(db_path, name="lost", group="g", state="running")
    with contextlib.closing(connect_server(db_path)) as conn:
        conn.execute(
            "UPDATE runs SET heartbeat_at = heartbeat_at - ?, heartbeat_pid = 1 WHERE id = ?",
            (HEARTBEAT_STALE_S * 2, run_id),
        )
    listed = cli("runs", "list", "-f", "json")
    assert listed.exit_code == 0, listed.output
    assert [r["state"] for r in json.loads(listed.stdout)] == ["crashed"]
    assert [g["states"] for g in json.loads(cli("group", "list", "-f", "json").stdout)] == [
        {"crashed": 1}
    ]
    with contextlib.closing(connect_server(db_path)) as conn:
        state = conn.execute("SELECT state FROM runs WHERE id = ?", (run_id,)).fetchone()[0]
    assert state == "running"  # the view shadowed it; the next writer marks it


@postgresql
def test_an_older_server_database_gets_its_search_indexes_when_read(db_path, cli):
    from views_helpers import add_run

    add_run(db_path, name="before-search")
    with contextlib.closing(connect_server(db_path)) as conn:
        for index in ("runs_search", "run_output_search"):
            conn.execute(f"DROP INDEX {index}")
        conn.execute("DELETE FROM wbg_migrations WHERE id = 7")
    found = cli("runs", "search", "before", "-f", "json")
    assert found.exit_code == 0, found.output
    assert [r["name"] for r in json.loads(found.stdout)] == ["before-search"]
    with contextlib.closing(connect_server(db_path)) as conn:
        assert {"runs_search", "run_output_search"} <= set(wbg_db.table_schema(conn))


def test_completion_offers_the_same_candidates_on_both_engines(db_path):
    # The queries of the views, read-only: a server's candidates are a file's.
    from views_helpers import add_run

    from wbg.complete import candidates

    add_run(db_path, group="exp-a", job_type="train", config={"lr": 0.1, "opt": {"b 1": 2}})
    add_run(db_path, group="exp-b", config={"lr": 0.01, "tags": [1, 2]}, summary={"acc": 1.0})
    assert candidates(db_path, "group", "exp") == ["exp-b", "exp-a"]
    assert candidates(db_path, "job_type", "") == ["train"]
    keys = candidates(db_path, "key", "")
    assert [k for k in keys if k not in query_fields()] == ["lr", "opt.b 1"]
    assert candidates(db_path, "key", "lr,o") == ["lr,opt.b 1"]
    assert candidates(db_path, "metric", "") == ["acc", "duration_s"]
    assert len(candidates(db_path, "run", "")) == 2


def query_fields() -> list[str]:
    from wbg.query import FIELDS

    return list(FIELDS)


def test_a_run_started_in_a_dirty_git_tree_is_recorded(db_path, tmp_path):
    # `wbg run` sets git_dirty after the child starts (a bool): an INTEGER column on both
    from wbg import runs

    with contextlib.closing(wbg_db.connect(db_path)) as conn:
        run_id, _ = runs.create_run(conn, project="p")
        runs.update_run(conn, run_id, git_commit="abc", git_dirty=True)
        assert runs.get_run(conn, run_id)["git_dirty"] in (1, True)


@postgresql
def test_a_long_listing_is_read_a_slice_at_a_time_and_whole(db_path):
    from views_helpers import add_run

    for i in range(7):
        add_run(db_path, name=f"r{i}", config={"i": i})
    with contextlib.closing(wbg_db.connect(db_path, read_only=True)) as conn:
        assert conn.in_transaction  # a view's: the cursor lives in it
        sql = "SELECT name FROM runs WHERE num > ? ORDER BY num"
        whole = [row[0] for row in conn.execute(sql, (0,))]
        sliced = [row[0] for row in conn.stream(sql, (0,), size=3)]
        assert sliced == whole == [f"r{i}" for i in range(7)]
        exact = [row[0] for row in conn.stream(sql, (1,), size=3)]  # 6 rows: two full slices
        assert exact == whole[1:]
        assert conn.execute("SELECT count(*) FROM pg_cursors").fetchone()[0] == 0


@postgresql
def test_another_applications_tables_are_refused_and_left_unchanged(db_path, cli):
    with contextlib.closing(connect_server(db_path)) as conn:
        conn.execute("CREATE TABLE runs (body TEXT)")
        conn.execute("INSERT INTO runs VALUES ('mine')")
    for args in (["run", "--", "true"], ["runs", "list"], ["log", "--run", "x", "a=1"]):
        result = cli(*args)
        assert result.exit_code == 1, args
        assert result.stderr.startswith(
            f"Error: {db_path} has a runs table that is not wbg's; it was left unchanged"
        ), result.stderr
    assert raw_query(db_path, "SELECT body FROM runs") == [("mine",)]
    assert raw_query(db_path, "SELECT to_regclass('wbg_migrations')") == [(None,)]


@postgresql
def test_a_newer_server_schema_is_refused_before_any_change(db_path, cli):
    assert cli("run", "--", PY, "-c", "pass").exit_code == 0
    newer = len(wbg_db.MIGRATIONS) + 1
    with contextlib.closing(connect_server(db_path)) as conn:
        conn.execute("INSERT INTO wbg_migrations VALUES (?, 'from_the_future', 0)", (newer,))
    before = raw_query(db_path, "SELECT * FROM runs")
    for args in (["run", "--", "true"], ["runs", "list"], ["db", "migrate"]):
        result = cli(*args)
        assert result.exit_code == 1, args
        assert result.stderr.splitlines()[0] == (
            f"Error: {db_path} was written by a newer wbg (schema version {newer}, "
            f"this wbg knows {len(wbg_db.MIGRATIONS)})"
        )
    assert raw_query(db_path, "SELECT * FROM runs") == before
