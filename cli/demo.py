"""``wbg demo``: record a small realistic experiment through the real code paths."""

from __future__ import annotations

import contextlib
import os
import sys
from typing import Annotated

import typer

from wbg.cli.options import DbOpt, open_db

LEARNING_RATES = (0.1, 0.01)
SEEDS = (0, 1, 2)
DEMO_METRICS = ("acc", "loss", "val_acc")


def register(app: typer.Typer) -> None:
    app.command("demo")(demo)


def demo(
    epochs: Annotated[int, typer.Option("--epochs", min=1, help="Epochs per training run.")] = 30,
    db: DbOpt = None,
) -> None:
    """Record a demo experiment (2 learning rates x 3 seeds + evals); print its grouped table."""
    from wbg import aggregate, query
    from wbg.capture import ScalarCapture
    from wbg.cli.common import echo_table
    from wbg.db import connect
    from wbg.ids import generate_id
    from wbg.launch import RunSpec, launch

    conn, db_path = open_db(db)
    suffix = generate_id(4)
    project = "wbg-demo"
    recorded = []
    devnull = os.open(os.devnull, os.O_WRONLY)
    typer.echo(f"Recording a demo experiment into {db_path}", err=True)
    try:
        for lr in LEARNING_RATES:
            group = f"demo-{suffix}-lr{lr}"
            jobs = [("train", seed) for seed in SEEDS] + [("eval", SEEDS[0])]
            for job_type, seed in jobs:
                command = [
                    sys.executable,
                    "-m",
                    "wbg.cli.demo_scripts",
                    job_type,
                    "--lr",
                    str(lr),
                    "--seed",
                    str(seed),
                    "--epochs",
                    str(epochs),
                ]
                spec = RunSpec(
                    project=project,
                    group=group,
                    job_type=job_type,
                    name=f"{job_type}-lr{lr}-seed{seed}",
                    tags=["demo"],
                    config={"lr": lr, "seed": seed, "model": "mlp"},
                )
                result = launch(
                    conn,
                    db_path,
                    command,
                    spec,
                    capture=ScalarCapture(),
                    stdout_fd=devnull,
                    stderr_fd=devnull,
                    use_pty=False,
                )
                recorded.append(result.run_id)
                typer.echo(f"  {result.run_id}  {group}  {job_type:<5}  {result.state}", err=True)
        conn.close()
        # A fresh reading connection: on a server, a view reads in a transaction of its own
        # (README "On a cluster"); on a file it is the same data.
        with contextlib.closing(connect(db_path, read_only=True)) as reader:
            table = aggregate.build_table(
                reader,
                query.Filters(project=project, where=(f"group ~ demo-{suffix}-*",)),
                group_by=["group"],
                metrics=DEMO_METRICS,
            )
    finally:
        os.close(devnull)
    echo_table(table, "simple")
    typer.echo(
        f"\n{len(recorded)} runs in 2 groups of project {project}. Next: "
        f"wbg group show {table.rows[0]['group']}, wbg table -p {project} -G lr,job_type",
        err=True,
    )
