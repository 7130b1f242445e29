"""``wbg ui``: the workspace in the terminal (a Textual app, the optional extra ``ui``).

This module only parses options and checks them; the app lives in ``wbg.cli.ui_app``,
imported here on demand so that Textual (about 0.16 s to import, 10 MB installed) costs
nothing to any other command.
"""

from __future__ import annotations

from typing import Annotated

import typer

from wbg.cli.options import (
    AllProjectsOpt,
    DbOpt,
    GroupByOpt,
    GroupFilterOpt,
    JobTypeFilterOpt,
    ProjectFilterOpt,
    StateOpt,
    TagOpt,
    WhereOpt,
    complete_history_metric,
    filters_from,
)

HELP = """Open the workspace in the terminal: grouped runs table, grouped charts, live.

The runs table shows one row per group (mean ± std of each summary metric), or one row per
run with grouping off (key g); G picks the group-by keys. Charts draw each group's mean
(l: mean/median/min/max) with a band (b: none/min-max/std/stderr), x by step or time (x),
smoothing (s); Enter on a chart opens it full-screen. Enter on a row opens the group's or
the run's page. The view follows the database while runs record. ? lists every key.

Needs the ui extra: pip install 'wbg[ui]'.
"""


def register(app: typer.Typer) -> None:
    app.command("ui", help=HELP)(ui)


def ui(
    group_by: GroupByOpt = None,
    no_group: Annotated[
        bool, typer.Option("--no-group", help="Start with grouping off (one row per run).")
    ] = False,
    metric: Annotated[
        list[str] | None,
        typer.Option(
            "--metric",
            "-m",
            metavar="NAME",
            help="History metric to chart (repeatable; default: loss, else the first logged).",
            autocompletion=complete_history_metric,
        ),
    ] = None,
    project: ProjectFilterOpt = None,
    all_projects: AllProjectsOpt = False,
    group: GroupFilterOpt = None,
    job_type: JobTypeFilterOpt = None,
    state: StateOpt = None,
    tag: TagOpt = None,
    where: WhereOpt = None,
    db: DbOpt = None,
) -> None:
    import contextlib
    import os
    import sys

    from wbg import query
    from wbg.cli.options import open_db
    from wbg.errors import InvalidInput, MissingExtra

    try:
        import textual  # noqa: F401
    except ImportError:
        raise MissingExtra(
            "wbg ui needs textual, which is not installed: pip install 'wbg[ui]'"
        ) from None
    filters = filters_from(project, group, job_type, state, tag, where, all_projects)
    keys = query.grouping(group_by, no_group)
    conn, path = open_db(db, read_only=True)
    with contextlib.closing(conn):
        # Refuse typos before the screen opens (the checks of wbg table, without its work).
        query.check_filters(conn, filters)
        query.check_group_keys(conn, [query.resolve_key(name) for name in keys or ()])
        if metric:  # as wbg plot refuses them: unknown, or a summary value only
            from wbg import curves

            selection = curves.select_runs(conn, filters, keys)
            for name in metric:
                curves.check_metric(conn, name, selection)
    # A terminal to draw on and read keys from, unless Textual is given another driver
    # (textual serve runs the app on pipes with TEXTUAL_DRIVER set to its web driver).
    if not os.environ.get("TEXTUAL_DRIVER") and not (
        sys.stdin.isatty() and (sys.stdout.isatty() or sys.stderr.isatty())
    ):
        raise InvalidInput(
            "wbg ui needs a terminal: run it in one (for output to a pipe: wbg table, wbg plot)"
        )
    from wbg.cli.ui_app import Workspace, WorkspaceSettings

    settings = WorkspaceSettings(
        filters=filters,
        group_by=keys or None,
        grouped=not no_group,
        metrics=list(dict.fromkeys(metric or ())),
    )
    app = Workspace(path, settings, shown_path=str(db) if db is not None else None)
    app.run()
    if app.failure is not None:
        raise app.failure  # reported as every command reports a database error
