"""`wbg merge`: databases recorded by separate processes (the per-node pattern) merged by
run id, idempotently, with conflicts reported and settled only on request."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from helpers import invoke, raw_count, reader, sqlite_only, wbg_executable

from wbg import db as wbg_db

RECORD = textwrap.dedent(
    """
    import json, sys, wbg
    rank, steps = int(sys.argv[1]), int(sys.argv[2])
    ids = []
    for job_type in ("train", "eval"):
        run = wbg.init(project="cluster", group="exp-7", job_type=job_type,
                       name=f"{job_type}-rank{rank}", tags=[f"rank{rank}"],
                       config={"rank": rank, "opt": {"lr": 0.1}})
        for step in range(steps):
            run.log({"loss": 1.0 / (step + 1 + rank), "acc": step / steps})
        run.summary["best"] = 0.5 + rank
        run.summary["label"] = f"rank {rank}"
        run.finish()
        ids.append(run.id)
    print(json.dumps(ids))
    """
)


def clean_env(db: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("WANDB_", "WBG_"))}
    env["WBG_DB"] = str(db)
    return env


def record_node(db: Path, rank: int, steps: int = 20) -> list[str]:
    """Runs recorded by their own processes into the node's own database."""
    made = subprocess.run(
        [sys.executable, "-c", RECORD, str(rank), str(steps)],
        env=clean_env(db),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert made.returncode == 0, made.stderr
    ids = json.loads(made.stdout)
    # and one through `wbg run`, so the output tail travels too
    launched = subprocess.run(
        [
            *wbg_executable(),
            "run",
            "-g",
            "exp-7",
            "-j",
            "data",
            "-p",
            "cluster",
            "--",
            sys.executable,
            "-c",
            f"print('rows: {100 + rank}')",
        ],
        env=clean_env(db),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert launched.returncode == 0, launched.stderr
    with sqlite3.connect(db) as conn:
        ids.append(conn.execute("SELECT id FROM runs WHERE job_type = 'data'").fetchone()[0])
    return ids


def run_dump(db: Path, run_id: str) -> dict:
    """Everything stored about a run, keyed by id (never by num)."""
    result = invoke("runs", "show", run_id, "--format", "json", "--history", "--db", os.fspath(db))
    assert result.exit_code == 0, result.output
    record = json.loads(result.stdout)
    with contextlib.closing(reader(db)) as conn:
        num = conn.execute("SELECT num FROM runs WHERE id = ?", (run_id,)).fetchone()[0]
        record["summary_metrics"] = sorted(
            conn.execute("SELECT key, value FROM summary_metrics WHERE run = ?", (num,))
        )
        record["output"] = conn.execute(
            "SELECT tail, truncated FROM run_output WHERE run = ?", (num,)
        ).fetchall()
    return record


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture
def nodes(tmp_path: Path) -> dict[str, object]:
    node_a, node_b = tmp_path / "node-a.db", tmp_path / "node-b.db"
    return {
        "a": node_a,
        "b": node_b,
        "a_ids": record_node(node_a, 0),
        "b_ids": record_node(node_b, 1),
    }


def test_merge_brings_every_run_with_its_history_summary_and_output(cli, nodes, db_path):
    before = {key: digest(nodes[key]) for key in ("a", "b")}
    result = cli("merge", str(nodes["a"]), str(nodes["b"]))
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines() == [
        f"{nodes['a']}: 3 new, 0 unchanged, 0 conflicts skipped",
        f"{nodes['b']}: 3 new, 0 unchanged, 0 conflicts skipped",
    ]
    assert result.stderr == ""
    for node, ids in (("a", nodes["a_ids"]), ("b", nodes["b_ids"])):
        for run_id in ids:
            assert run_dump(db_path, run_id) == run_dump(nodes[node], run_id)
    merged = run_dump(db_path, nodes["b_ids"][2])
    assert merged["output"] == [(b"rows: 101\n", 0)]
    assert merged["history"] == [
        {"step": 0, "key": "rows", "value": 101.0, "time": merged["history"][0]["time"]}
    ]
    # the other files are only read
    assert {key: digest(nodes[key]) for key in ("a", "b")} == before

    listed = cli("runs", "list", "--group", "exp-7", "--format", "json")
    assert len(json.loads(listed.stdout)) == 6


def test_merging_twice_adds_nothing(cli, nodes, db_path):
    assert cli("merge", str(nodes["a"]), str(nodes["b"])).exit_code == 0
    counts = [raw_count(db_path, t) for t in ("runs", "history", "summary_metrics", "run_output")]
    again = cli("merge", str(nodes["b"]), str(nodes["a"]))
    assert again.exit_code == 0, again.output
    assert again.stdout.splitlines() == [
        f"{nodes['b']}: 0 new, 3 unchanged, 0 conflicts skipped",
        f"{nodes['a']}: 0 new, 3 unchanged, 0 conflicts skipped",
    ]
    assert counts == [
        raw_count(db_path, t) for t in ("runs", "history", "summary_metrics", "run_output")
    ]


@sqlite_only("one node's file into another's: no database of the test's engine")
def test_merge_into_a_node_database_keeps_its_own_runs(cli, nodes):
    result = cli("merge", str(nodes["b"]), "--db", str(nodes["a"]))
    assert result.exit_code == 0, result.output
    with sqlite3.connect(nodes["a"]) as conn:
        ids = {row[0] for row in conn.execute("SELECT id FROM runs")}
        nums = [row[0] for row in conn.execute("SELECT num FROM runs ORDER BY num")]
    assert ids == {*nodes["a_ids"], *nodes["b_ids"]}
    assert nums == list(range(1, 7))  # new row numbers here, the same ids
    for run_id in nodes["b_ids"]:
        assert run_dump(nodes["a"], run_id) == run_dump(nodes["b"], run_id)


def changed_elsewhere(db: Path, run_id: str) -> None:
    """The run goes on in its node's database after a first merge."""
    logged = invoke("log", "loss=0.01", "--run", run_id, "--db", os.fspath(db))
    assert logged.exit_code == 0, logged.output


def test_a_conflicting_run_is_reported_and_skipped(cli, nodes, db_path):
    assert cli("merge", str(nodes["b"])).exit_code == 0
    train_b = nodes["b_ids"][0]
    ours = run_dump(db_path, train_b)
    changed_elsewhere(nodes["b"], train_b)

    result = cli("merge", str(nodes["b"]))
    assert result.exit_code == 0, result.output
    assert result.stdout == f"{nodes['b']}: 0 new, 2 unchanged, 1 conflicts skipped\n"
    assert result.stderr == (
        f"conflict: run {train_b} differs (summary, history): skipped\n"
        "settle conflicts with --prefer ours|theirs|newer\n"
    )
    assert run_dump(db_path, train_b) == ours


def test_prefer_settles_a_conflict(cli, nodes, db_path):
    assert cli("merge", str(nodes["b"])).exit_code == 0
    train_b = nodes["b_ids"][0]
    ours = run_dump(db_path, train_b)
    changed_elsewhere(nodes["b"], train_b)
    theirs = run_dump(nodes["b"], train_b)

    kept = cli("merge", str(nodes["b"]), "--prefer", "ours")
    assert kept.exit_code == 0, kept.output
    assert kept.stdout == f"{nodes['b']}: 0 new, 2 unchanged, 0 replaced, 1 kept ours\n"
    assert kept.stderr == f"conflict: run {train_b} differs (summary, history): kept ours\n"
    assert run_dump(db_path, train_b) == ours

    newer = cli("merge", str(nodes["b"]), "--prefer", "newer")
    assert newer.exit_code == 0, newer.output
    assert newer.stdout == f"{nodes['b']}: 0 new, 2 unchanged, 1 replaced, 0 kept ours\n"
    assert newer.stderr == f"conflict: run {train_b} differs (summary, history): took theirs\n"
    assert run_dump(db_path, train_b) == theirs

    # ours is now the newer one: --prefer newer keeps it, --prefer theirs does not
    changed_elsewhere(db_path, train_b)
    mine = run_dump(db_path, train_b)
    assert cli("merge", str(nodes["b"]), "--prefer", "newer").stdout.endswith("1 kept ours\n")
    assert run_dump(db_path, train_b) == mine
    assert cli("merge", str(nodes["b"]), "--prefer", "theirs").stdout.endswith(
        "1 replaced, 0 kept ours\n"
    )
    assert run_dump(db_path, train_b) == theirs


def test_two_different_runs_that_drew_the_same_id_conflict(cli, nodes, db_path):
    assert cli("merge", str(nodes["a"])).exit_code == 0
    clash = nodes["a_ids"][0]
    with sqlite3.connect(nodes["b"]) as conn:
        conn.execute("UPDATE runs SET id = ? WHERE id = ?", (clash, nodes["b_ids"][0]))
    result = cli("merge", str(nodes["b"]))
    assert result.exit_code == 0, result.output
    assert result.stdout == f"{nodes['b']}: 2 new, 0 unchanged, 1 conflicts skipped\n"
    first = result.stderr.splitlines()[0]
    assert first.startswith(f"conflict: run {clash} differs (name, tags, ")
    assert first.endswith("): skipped")
    assert run_dump(db_path, clash)["name"] == "train-rank0"


def make_schema_1_database(path: Path) -> None:
    """A database as the first wbg schema made it, with one run."""
    conn = sqlite3.connect(path, isolation_level=None)
    wbg_db.migrate(conn, upto=1)
    conn.execute(
        'INSERT INTO runs (id, project, name, "group", job_type, state, started_at, ended_at, '
        "config, summary) VALUES ('old00001', 'cluster', 'old', 'exp-7', 'train', 'finished', "
        "1700000000, 1700000060, '{\"lr\":0.1}', '{\"acc\":0.9}')"
    )
    conn.execute("INSERT INTO history VALUES (1, 0, 'acc', 0.9, 1700000030)")
    conn.close()


def test_an_older_database_is_merged_through_an_upgraded_copy(cli, tmp_path, db_path):
    old = tmp_path / "old.db"
    make_schema_1_database(old)
    before = digest(old)
    result = cli("merge", str(old))
    assert result.exit_code == 0, result.output
    assert result.stdout == (
        f"{old}: 1 new, 0 unchanged, 0 conflicts skipped "
        "(read through a copy upgraded from schema 1)\n"
    )
    assert digest(old) == before
    with sqlite3.connect(old) as conn:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == 1
    run = run_dump(db_path, "old00001")
    assert run["config"] == {"lr": 0.1} and run["summary"] == {"acc": 0.9}
    assert run["history_points"] == 1 and run["duration_s"] == 60


def test_merge_errors(cli, tmp_path, db_path):
    missing = tmp_path / "missing.db"
    result = cli("merge", str(missing))
    assert (result.exit_code, result.stderr) == (2, f"Error: no such database: {missing}\n")

    text = tmp_path / "notes.txt"
    text.write_text("hello")
    result = cli("merge", str(text))
    assert (result.exit_code, result.stderr) == (
        1,
        f"Error: {text} is not a wbg database (not a SQLite file)\n",
    )

    other_sqlite = tmp_path / "other.sqlite"
    with sqlite3.connect(other_sqlite) as conn:
        conn.execute("CREATE TABLE t (x)")
    result = cli("merge", str(other_sqlite))
    assert (result.exit_code, result.stderr) == (
        1,
        f"Error: {other_sqlite} is not a wbg database (it has no runs table)\n",
    )

    assert cli("runs", "list").exit_code == 0  # creates the database
    result = cli("merge", str(db_path))
    assert (result.exit_code, result.stderr) == (
        2,
        f"Error: {db_path} is the database being merged into\n",
    )

    newer = tmp_path / "newer.db"
    wbg_db.connect(newer).close()
    with sqlite3.connect(newer) as conn:
        conn.execute(f"PRAGMA user_version = {len(wbg_db.MIGRATIONS) + 1}")
    result = cli("merge", str(newer))
    assert result.exit_code == 1
    assert result.stderr.splitlines()[0] == (
        f"Error: {newer} was written by a newer wbg (schema version "
        f"{len(wbg_db.MIGRATIONS) + 1}, this wbg knows {len(wbg_db.MIGRATIONS)})"
    )

    result = cli("merge", str(newer), "--prefer", "mine")
    assert result.exit_code == 2
    assert "'mine' is not one of 'ours', 'theirs', 'newer'" in result.stderr


def test_a_database_is_taken_home_into_a_file(cli, nodes, db_path, tmp_path):
    # `wbg merge postgresql://... --db local.db` (and, on SQLite, file into file)
    assert cli("merge", str(nodes["a"])).exit_code == 0
    home = tmp_path / "home.db"
    result = cli("merge", os.fspath(db_path), "--db", str(home))
    assert result.exit_code == 0, result.output
    assert result.stdout == f"{db_path}: 3 new, 0 unchanged, 0 conflicts skipped\n"
    for run_id in nodes["a_ids"]:
        assert run_dump(home, run_id) == run_dump(nodes["a"], run_id)
    again = cli("merge", os.fspath(db_path), "--db", str(home))
    assert again.stdout == f"{db_path}: 0 new, 3 unchanged, 0 conflicts skipped\n"
