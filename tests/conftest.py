"""Shared fixtures: every test gets its own database file and a clean W&B environment."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import helpers
import pytest

WBG_ENV = (
    "WBG_DB",
    "WBG_RUN_ID",
    "WBG_RUN_PID",
    "WANDB_RUN_GROUP",
    "WANDB_JOB_TYPE",
    "WANDB_PROJECT",
    "WANDB_NAME",
    "WANDB_TAGS",
    "WANDB_NOTES",
    "WANDB_MODE",
    "WANDB_RUN_ID",
    "WANDB_RESUME",
    "WANDB_DIR",
    "WANDB_ENTITY",
    "WANDB_DISABLED",
    "WANDB_SILENT",
    "NO_COLOR",
    # the width human tables are fitted to (pytest-xdist's workers get COLUMNS=80): a
    # test that wants a width sets it
    "COLUMNS",
    "LINES",
)


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--engine",
        choices=(*helpers.ENGINES, "both"),
        default="both",
        help="run the tests on this store engine only (default: both)",
    )


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "sqlite_only(reason): the test is meaningless on PostgreSQL, for this reason"
    )
    config.addinivalue_line(
        "markers", "postgresql_only(reason): the test is meaningless on SQLite, for this reason"
    )
    config.addinivalue_line(
        "markers", "no_database: the test touches no database; it runs once, on no engine"
    )


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Every test runs on both engines (ids ``[sqlite]`` and ``[postgresql]``); a test
    marked ``sqlite_only(reason)`` / ``postgresql_only(reason)`` is skipped on the other
    one with that reason, and a ``no_database`` test runs once."""
    if "engine" not in metafunc.fixturenames:
        return
    definition = metafunc.definition
    if definition.get_closest_marker("no_database"):
        return
    for marker in definition.iter_markers("parametrize"):
        names = marker.args[0]
        if isinstance(names, str):
            names = [name.strip() for name in names.split(",")]
        if "engine" in names:  # parametrised by hand (helpers.both_engines)
            return
    only = {
        "sqlite": definition.get_closest_marker("postgresql_only"),
        "postgresql": definition.get_closest_marker("sqlite_only"),
    }  # the marker that skips each engine
    chosen = metafunc.config.getoption("engine")
    params = []
    for name in helpers.ENGINES:
        if chosen not in ("both", name):
            continue
        marks = []
        skipping = only[name]
        if skipping is not None:
            reason = skipping.args[0] if skipping.args else skipping.kwargs["reason"]
            other = "SQLite" if name == "postgresql" else "PostgreSQL"
            marks.append(pytest.mark.skip(reason=f"{other} only: {reason}"))
        params.append(pytest.param(name, id=name, marks=marks))
    metafunc.parametrize("engine", params, indirect=True)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """``--engine``: also leave out the other engine of tests parametrised by hand."""
    chosen = config.getoption("engine")
    if chosen == "both":
        return
    kept, left_out = [], []
    for item in items:
        callspec = getattr(item, "callspec", None)
        engine = callspec.params.get("engine", chosen) if callspec else chosen
        (kept if engine == chosen else left_out).append(item)
    if left_out:
        config.hook.pytest_deselected(items=left_out)
        items[:] = kept


@pytest.fixture
def engine(request: pytest.FixtureRequest) -> str:
    """The store engine of this test (parametrised by ``pytest_generate_tests``)."""
    return getattr(request, "param", "sqlite")


@pytest.fixture(scope="session")
def pg_server() -> object:
    """A PostgreSQL server for the whole session (started on first use); its base URL."""
    from pg_server import running_server, server_bin

    problem = None
    try:
        import psycopg  # noqa: F401
    except ImportError:
        problem = "psycopg is not installed (pip install -e '.[test]')"
    if problem is None and server_bin() is None:
        problem = "PostgreSQL server binaries are missing (apt-get install postgresql)"
    if problem:
        if os.environ.get("CI"):
            pytest.fail(problem)
        pytest.skip(problem)
    with running_server() as base:
        yield base


_databases = iter(range(1, 10**9))


@pytest.fixture
def server_url(pg_server: str) -> Iterator[str]:
    """A new, empty database on the session's server (dropped after the test: a thousand
    tests would otherwise leave gigabytes behind)."""
    from pg_server import create_database, drop_database

    name = f"wbg_test_{os.getpid()}_{next(_databases)}"
    yield create_database(pg_server, name)
    drop_database(pg_server, name)


@pytest.fixture(autouse=True)
def db_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, engine: str, request: pytest.FixtureRequest
) -> Path:
    """Point WBG_DB at a fresh file (or server database); no test touches the user's data."""
    for name in WBG_ENV:
        monkeypatch.delenv(name, raising=False)
    if engine == "postgresql":
        from wbg.engine import ServerUrl

        path = ServerUrl(request.getfixturevalue("server_url"))
        monkeypatch.setenv("WBG_DB", path.url)
    else:
        path = tmp_path / "runs.db"
        monkeypatch.setenv("WBG_DB", str(path))
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    workdir = tmp_path / "work"
    workdir.mkdir()
    monkeypatch.chdir(workdir)
    return path


@pytest.fixture
def cli():
    """``cli("runs", "list")`` -> Result."""
    return helpers.invoke
