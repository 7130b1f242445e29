"""Shared fixtures: every test gets its own database file and a clean W&B environment."""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

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


def wbg_executable() -> list[str]:
    """How to start the installed CLI as a real process."""
    found = shutil.which("wbg", path=os.path.dirname(sys.executable))
    return [found] if found else [sys.executable, "-m", "wbg.cli.main"]


class Result:
    """What a ``wbg`` invocation left: exit code, stdout, stderr."""

    def __init__(self, exit_code: int, stdout: str, stderr: str) -> None:
        self.exit_code = exit_code
        self.stdout = stdout
        self.stderr = stderr

    @property
    def output(self) -> str:
        return self.stdout + self.stderr

    def __repr__(self) -> str:
        return f"Result(exit_code={self.exit_code}, stdout={self.stdout!r}, stderr={self.stderr!r})"


def invoke(*args: str, input: str | None = None) -> Result:
    """Run ``wbg ARGS`` in-process through the real entry point (with its error mapping)."""
    from typer.testing import CliRunner

    from wbg.cli.main import main

    runner = CliRunner()
    with runner.isolation(input=input) as (stdout, stderr, _mixed):
        try:
            main(list(args))
            code = 0
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        sys.stdout.flush()
        sys.stderr.flush()
        return Result(code, stdout.getvalue().decode(), stderr.getvalue().decode())


@pytest.fixture
def cli():
    """``cli("runs", "list")`` -> Result."""
    return invoke
