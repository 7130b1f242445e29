"""Exporting wbg runs as W&B offline runs: each run replayed through the ``wandb``
package itself in offline mode, so the result is exactly what ``wandb sync`` expects.
Needs the optional extra: ``pip install 'wbg[wandb]'``.
"""

from __future__ import annotations

import contextlib
import math
import os
import sqlite3
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from wbg import runs, values
from wbg.engine import engine_of
from wbg.query import Filters
from wbg.wandb_import import _WBG_FIELDS, WBG_SUMMARY_KEY, require_wandb

# --- exporting ---------------------------------------------------------------------------


@dataclass
class ExportResult:
    run_id: str
    status: str  # "exported", "present" (already in DIR), "running" (skipped), "error"
    path: Path | None = None
    message: str | None = None


def existing_export(directory: Path, run_id: str) -> Path | None:
    """The run folder an earlier export left for ``run_id`` in ``directory``, if any."""
    wandb_dir = directory / "wandb"
    if not wandb_dir.is_dir():
        return None
    for folder in sorted(wandb_dir.glob(f"*run-*-{run_id}")):
        if (folder / f"run-{run_id}.wandb").is_file():
            return folder
    return None


def _points_by_step(
    conn: sqlite3.Connection, num: int
) -> Iterator[tuple[int, dict[str, float], float]]:
    rows = conn.execute(
        "SELECT step, key, value, time FROM history WHERE run = ? ORDER BY step, key", (num,)
    )
    current: int | None = None
    metrics: dict[str, float] = {}
    latest = 0.0
    for step, key, value, when in rows:
        if step != current:
            if current is not None:
                yield current, metrics, latest
            current, metrics, latest = step, {}, when
        metrics[key] = math.nan if value is None else value
        latest = max(latest, when)
    if current is not None:
        yield current, metrics, latest


# Fields W&B has no place for travel in a hidden summary entry (W&B hides summary keys
# that start with "_"), so that exporting and importing again gives back the same run.
def _wbg_fields(row: Sequence[Any]) -> dict[str, Any]:
    fields = dict(zip(_WBG_FIELDS, row, strict=True))
    fields["command"] = values.loads(fields["command"])
    return {key: value for key, value in fields.items() if value is not None}


def _same_number(a: Any, b: Any) -> bool:
    if values.is_number(a) and values.is_number(b) and math.isnan(a) and math.isnan(b):
        return True
    return a == b


def _explicit_summary(
    summary: dict[str, Any], last: dict[str, float]
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The summary values W&B would not work out itself from the logged history.

    A value equal to its metric's last point is left to W&B (it sets the same). W&B turns
    a non-finite number set in the summary into null, so those travel separately.
    """
    explicit: dict[str, Any] = {}
    non_finite: dict[str, Any] = {}
    for key, value in summary.items():
        if key in last and _same_number(value, last[key]):
            continue
        if values.is_number(value) and not math.isfinite(value):
            non_finite[key] = value
        else:
            explicit[key] = value
    return explicit, non_finite


_QUOTED_FIELDS = ", ".join(f'"{name}"' for name in _WBG_FIELDS)  # "user" is a keyword


def export_runs(
    conn: sqlite3.Connection,
    directory: Path,
    filters: Filters | None = None,
    *,
    progress: Callable[[int, int, ExportResult], None] | None = None,
) -> list[ExportResult]:
    """Write the selected runs as W&B offline runs under ``directory/wandb/``.

    Each run is replayed through ``wandb.init(mode="offline")`` with its id, project,
    group, job_type, name, tags, notes and config; its history is logged step by step
    (with the original ``_timestamp``), its summary set, and it is finished with its exit
    code (a run that crashed is finished with exit code 1). Runs still ``running`` are
    skipped; a run already exported to ``directory`` is not written twice.
    """
    require_wandb("exporting to W&B")
    import wandb

    runs.reap_crashed(conn)
    directory.mkdir(parents=True, exist_ok=True)
    where, params = (filters or Filters()).sql(engine_of(conn))
    rows = conn.execute(
        'SELECT num, id, project, name, "group", job_type, tags, notes, state, exit_code, '
        f"config, summary, {_QUOTED_FIELDS} FROM runs WHERE {where} "
        "ORDER BY started_at, id",
        params,
    ).fetchall()
    results: list[ExportResult] = []
    with _without_run_variables():
        for index, row in enumerate(rows, start=1):
            run_id, state = row[1], row[8]
            existing = existing_export(directory, run_id)
            if state == "running":
                result = ExportResult(run_id, "running")
            elif existing is not None:
                result = ExportResult(run_id, "present", existing)
            else:
                try:
                    _replay(wandb, conn, directory, row)
                except Exception as exc:  # wandb refuses the run (a project name it forbids...)
                    result = ExportResult(run_id, "error", message=str(exc) or type(exc).__name__)
                else:
                    result = ExportResult(run_id, "exported", existing_export(directory, run_id))
            results.append(result)
            if progress is not None:
                progress(index, len(rows), result)
    return results


# What wandb.init reads from the environment when an argument is None: a run without a
# group must not pick up the group of the shell that runs the export.
_RUN_VARIABLES = (
    "WANDB_RUN_ID",
    "WANDB_RESUME",
    "WANDB_RUN_GROUP",
    "WANDB_JOB_TYPE",
    "WANDB_NAME",
    "WANDB_NOTES",
    "WANDB_TAGS",
    "WANDB_PROJECT",
    "WANDB_DIR",
    "WANDB_MODE",
)


@contextlib.contextmanager
def _without_run_variables() -> Iterator[None]:
    saved = {name: os.environ.pop(name) for name in _RUN_VARIABLES if name in os.environ}
    try:
        yield
    finally:
        os.environ.update(saved)


def _replay(wandb: Any, conn: sqlite3.Connection, directory: Path, row: Sequence[Any]) -> None:
    """One run, through the wandb package in offline mode."""
    num, run_id, project, name, group, job_type, tags, notes, _state, exit_code = row[:10]
    config, summary = values.loads(row[10], {}), values.loads(row[11], {})
    # A fresh Settings for each run: wandb.init writes the run's fields into it.
    settings = wandb.Settings(
        mode="offline",
        silent=True,
        console="off",
        save_code=False,
        disable_git=True,
        disable_job_creation=True,
        x_disable_stats=True,
    )
    run = wandb.init(
        id=run_id,
        project=project,
        group=group,
        job_type=job_type,
        name=name,
        tags=values.loads(tags, []) or None,
        notes=notes,
        config=config,
        dir=str(directory),
        settings=settings,
    )
    try:
        last: dict[str, float] = {}
        for step, metrics, when in _points_by_step(conn, num):
            # commit now: a step left pending would be written at finish and its values
            # would then overwrite the summary set below.
            run.log({**metrics, "_timestamp": when}, step=step, commit=True)
            last.update(metrics)
        explicit, non_finite = _explicit_summary(summary, last)
        wbg_fields = _wbg_fields(row[12:])
        if non_finite:
            wbg_fields["summary"] = values.dumps(non_finite)
        run.summary.update({**explicit, WBG_SUMMARY_KEY: wbg_fields})
    finally:
        run.finish(exit_code=exit_code if exit_code is not None else 1)
