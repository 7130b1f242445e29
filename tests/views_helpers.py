"""Building small databases for the grouped-view tests, through the store's own functions."""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any

from wbg import runs
from wbg.db import connect


def add_run(
    path: Path,
    *,
    project: str = "proj",
    group: str | None = None,
    job_type: str | None = None,
    name: str | None = None,
    config: dict[str, Any] | None = None,
    summary: dict[str, Any] | None = None,
    tags: tuple[str, ...] = (),
    state: str = "finished",
    started_at: float | None = None,
    duration: float | None = None,
) -> str:
    """Record one run (finished unless ``state`` says otherwise); return its id."""
    with contextlib.closing(connect(path)) as conn:
        run_id, num = runs.create_run(
            conn,
            project=project,
            group=group,
            job_type=job_type,
            name=name,
            config=config or {},
            tags=tags,
        )
        with runs.transaction(conn):
            runs.merge_summary(conn, num, summary or {})
        if state != "running":
            runs.finish_run(conn, run_id, state=state, exit_code=0 if state == "finished" else 1)
        if started_at is not None:
            conn.execute("UPDATE runs SET started_at = ? WHERE num = ?", (started_at, num))
        if duration is not None:
            conn.execute("UPDATE runs SET ended_at = started_at + ? WHERE num = ?", (duration, num))
    return run_id


def fixture_experiment(path: Path) -> dict[str, str]:
    """Two groups of a k-fold experiment: 3 train folds + 1 eval each, fixed times."""
    ids: dict[str, str] = {}
    start = 1_700_000_000.0
    for g, lr in (("exp-a", 0.1), ("exp-b", 0.01)):
        for fold in range(3):
            ids[f"{g}-train-{fold}"] = add_run(
                path,
                group=g,
                job_type="train",
                name=f"{g}-fold{fold}",
                config={"lr": lr, "fold": fold, "model": {"name": "mlp"}},
                summary={
                    "acc": 0.8 + 0.01 * fold + (0.1 if lr == 0.1 else 0),
                    "loss": 0.5 - fold * 0.1,
                },
                started_at=start,
                duration=10.0 + fold,
            )
            start += 20
        ids[f"{g}-eval"] = add_run(
            path,
            group=g,
            job_type="eval",
            name=f"{g}-eval",
            config={"lr": lr, "split": "val", "model": {"name": "mlp"}},
            summary={"val_acc": 0.85 if lr == 0.1 else 0.75},
            started_at=start,
            duration=5.0,
        )
        start += 20
    return ids
