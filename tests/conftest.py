"""Shared fixtures: every test gets its own database file and a clean W&B environment."""

from __future__ import annotations

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


@pytest.fixture(autouse=True)
def db_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Point WBG_DB at a fresh file; no test touches the user's data."""
    for name in WBG_ENV:
        monkeypatch.delenv(name, raising=False)
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
