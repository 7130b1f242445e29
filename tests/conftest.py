"""Shared fixtures: every test gets its own database file and a clean W&B environment."""

from __future__ import annotations

import os
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
)


@pytest.fixture
def engine(request: pytest.FixtureRequest) -> str:
    """The store engine of this test: "sqlite" unless parametrised with both_engines."""
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
def server_url(pg_server: str) -> str:
    """A new, empty database on the session's server."""
    from pg_server import create_database

    return create_database(pg_server, f"wbg_test_{os.getpid()}_{next(_databases)}")


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
