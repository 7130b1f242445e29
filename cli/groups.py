"""``wbg group``: list groups, the group page, rename and delete."""

from __future__ import annotations

import contextlib
import sys
from typing import Annotated, Any

import typer

from wbg.cli.options import (
    AllProjectsOpt,
    DbOpt,
    DescOpt,
    FormatOpt,
    JobTypeFilterOpt,
    LimitOpt,
    MetricOpt,
    PrecisionOpt,
    ProjectFilterOpt,
    RunSortOpt,
    StateOpt,
    TagOpt,
    WhereOpt,
    WideOpt,
    complete_group,
    filters_from,
    note_scope,
    open_db,
)

app = typer.Typer(
    help="Groups (experiments): list, show, rename, delete.",
    no_args_is_help=True,
    rich_markup_mode=None,
)

GroupArg = Annotated[
    str, typer.Argument(metavar="NAME", help="Group name.", autocompletion=complete_group)
]
InProjectOpt = Annotated[
    str | None,
    typer.Option("--project", "-p", help="The group's project (needed when several have it)."),
]
YesOpt = Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")]


def _counts(counts: dict[str, int]) -> str:
    return ", ".join(f"{name} {n}" for name, n in counts.items())


@app.command("list")
def list_groups(
    project: ProjectFilterOpt = None,
    all_projects: AllProjectsOpt = False,
    job_type: JobTypeFilterOpt = None,
    state: StateOpt = None,
    tag: TagOpt = None,
    where: WhereOpt = None,
    limit: LimitOpt = None,
    wide: WideOpt = False,
    fmt: FormatOpt = "simple",
    db: DbOpt = None,
) -> None:
    """List groups: name, project, runs, job types, states, first start, last end."""
    from wbg import groups
    from wbg.cli import render

    render.check_format(fmt)
    filters = filters_from(project, None, job_type, state, tag, where, all_projects)
    conn, _ = open_db(db, read_only=True)
    with contextlib.closing(conn):
        rows = groups.list_groups(conn, filters)
    if limit is not None:
        rows = rows[:limit]
    note_scope(filters)
    if not rows:
        if fmt == "json":
            typer.echo("[]")
        render.note_no_runs(filters, "groups")
        return
    columns = ["group", "project", "runs", "job_types", "states", "first_start", "last_end"]
    if fmt in render.MACHINE_FORMATS:
        text = render.render(rows, columns, fmt)
        if text:
            typer.echo(text)
        return
    rows = [
        {
            **row,
            "job_types": _counts(row["job_types"]),
            "states": _counts(row["states"]),
            "first_start": render.short_time(row["first_start"], wide),
            "last_end": render.short_time(row["last_end"], wide) or "(running)",
        }
        for row in rows
    ]
    if wide:
        typer.echo(render.render(rows, columns, fmt))
        return
    if len({row["project"] for row in rows}) <= 1:
        columns.remove("project")  # one project: said once by --wide or the filter
    columns.remove("first_start")  # the last end says how recent; --wide has both
    text, _ = render.render_fitted(
        rows, columns, [], fmt, None, render.output_width(),
        labels={"last_end": "ended"},
        shrink=("project", "job_types", "states"),  # the group name is what one types
        cut_end=("job_types", "states"),
    )  # fmt: skip
    typer.echo(text)


# Config keys that differ, as columns of a human group page: more would never fit a
# terminal (a group whose runs each carry keys of their own can have thousands).
MAX_VARYING_SHOWN = 12


@app.command("show")
def show(
    name: GroupArg,
    project: InProjectOpt = None,
    metric: MetricOpt = None,
    sort: RunSortOpt = None,
    desc: DescOpt = False,
    max_runs: Annotated[
        int,
        typer.Option(
            "--runs",
            min=0,
            help="Runs listed in human formats (oldest first; 0 = all). Machine formats list all.",
        ),
    ] = 50,
    fmt: FormatOpt = "simple",
    precision: PrecisionOpt = None,
    db: DbOpt = None,
) -> None:
    """Show the group page: facts, runs (with the config that differs), common config,
    aggregates per job_type. --format json gives it as one object; csv gives the runs."""
    from wbg import groups
    from wbg.cli import render

    render.check_format(fmt)
    conn, _ = open_db(db, read_only=True)
    human = fmt not in render.MACHINE_FORMATS
    with contextlib.closing(conn):
        page = groups.group_page(
            conn,
            name,
            project,
            (max_runs or None) if human else None,
            metrics=metric,
            sort=sort,
            desc=desc,
        )
    varying = page["varying_keys"]
    left_out = 0
    if human:
        varying = groups.keys_to_show(page["run_records"], varying, MAX_VARYING_SHOWN)
        left_out = len(page["varying_keys"]) - len(varying)
    rows = [groups.run_row(r, varying) for r in page["run_records"]]
    if fmt in ("json", "jsonl"):
        obj = {k: v for k, v in page.items() if k not in ("run_records", "aggregates")}
        obj["runs_table"] = rows
        obj["aggregates"] = groups.summary_of(page["aggregates"])
        typer.echo(
            render.render_records([obj], "jsonl") if fmt == "jsonl" else render.render_object(obj)
        )
        return
    if fmt == "csv":
        typer.echo(render.render(rows, _run_columns(rows), "csv"))
        return
    text, dropped = _human_page(page, rows, fmt, precision, chosen=bool(metric))
    typer.echo(text)
    render.note_dropped(dropped)
    if left_out:
        typer.echo(
            f"note: {left_out} more config keys differ between runs, not shown "
            "(-f json or -f csv has them all)",
            err=True,
        )


def _run_columns(rows: list[dict[str, Any]]) -> list[str]:
    seen: dict[str, None] = {}  # ordered, and a set: thousands of config keys stay linear
    for row in rows:
        seen.update(dict.fromkeys(row))
    columns = list(seen)
    fixed = [c for c in columns if not c.startswith("summary.")]
    return fixed + sorted(c for c in columns if c.startswith("summary."))


def _human_page(
    page: dict[str, Any],
    rows: list[dict[str, Any]],
    fmt: str,
    precision: int | None,
    chosen: bool = False,
) -> tuple[str, list[str]]:
    """The page as text, and the metrics left out to fit; ``chosen``: -m picked them."""
    from wbg.cli import render
    from wbg.cli.table import human_rows

    span = f"{render.short_time(page['first_start'], wide=True)} -> "
    span += render.short_time(page["last_end"], wide=True) or "(running)"
    facts = [
        ("group", page["group"]),
        ("project", page["project"]),
        ("runs", f"{page['runs']} ({_counts(page['job_types'])})"),
        ("states", _counts(page["states"])),
        ("time span", span),
        ("compute", f"{render.format_number(page['compute_s'], precision)} s (sum of durations)"),
    ]
    width = max(len(k) for k, _ in facts)
    parts = ["\n".join(f"{k:<{width}}  {render.safe_text(str(v))}" for k, v in facts)]
    hidden = page["runs"] - len(rows)
    columns = _run_columns(rows)
    # duration_s is bookkeeping: after the metrics, and the first to go when narrow
    fixed = [c for c in columns if not c.startswith("summary.") and c != "duration_s"]
    fixed_set = set(fixed)  # a group's runs can hold 10,000 config keys: no list lookups
    # summary columns: the page's metrics (logged ones first, or -m), then other values
    names = list(page["metrics"])
    if not chosen:  # every summary value, the non-numeric ones last
        names += sorted(c[len("summary.") :] for c in columns if c.startswith("summary."))
    names = list(dict.fromkeys(n for n in names if f"summary.{n}" in columns))
    blocks = [(n, [f"summary.{n}"]) for n in names] + [("duration_s", ["duration_s"])]
    shown = [
        {**{k: ("" if v is None and k in fixed_set else v) for k, v in row.items()},
         "name": render.shown_name(row)}
        for row in rows
    ]  # fmt: skip
    # metrics are labelled by name unless a config key or field has the same name
    labels = {f"summary.{n}": n for n in names if n not in fixed_set}
    text, dropped = render.render_fitted(
        shown, fixed, blocks, fmt, precision, render.output_width(), labels,
        shrink=[c for c in fixed if c not in ("id", "state")],
    )  # fmt: skip
    parts.append("Runs (summary values on the right)\n" + text)
    if hidden:
        parts[-1] += f"\n({hidden} more runs not listed: --runs 0 lists all)"
    common = [{"key": k, "value": v} for k, v in page["common_config"].items()]
    if common:
        parts.append("Config common to all runs\n" + render.render(common, ["key", "value"], fmt))
    table = page["aggregates"]
    agg_rows, agg_fixed, agg_blocks = human_rows(table, precision)
    agg_text, agg_dropped = render.render_fitted(
        agg_rows, agg_fixed, agg_blocks, fmt, precision, render.output_width()
    )
    parts.append("Aggregates per job_type (mean ± std)\n" + agg_text)
    return "\n\n".join(parts), list(dict.fromkeys([*dropped, *agg_dropped]))


@app.command("rename")
def rename(
    old: GroupArg,
    new: Annotated[str, typer.Argument(metavar="NEW", help="New group name.")],
    project: InProjectOpt = None,
    db: DbOpt = None,
) -> None:
    """Rename a group (all its runs) within its project."""
    from wbg import groups

    conn, _ = open_db(db)
    with contextlib.closing(conn):
        project_name, n = groups.rename_group(conn, old, new, project)
    typer.echo(f"renamed group {old} -> {new} ({n} runs, project {project_name})", err=True)


@app.command("delete")
def delete(
    name: GroupArg,
    project: InProjectOpt = None,
    yes: YesOpt = False,
    force: Annotated[
        bool, typer.Option("--force", help="Also delete runs that are still running.")
    ] = False,
    db: DbOpt = None,
) -> None:
    """Delete a group: its runs with their history (asks first unless --yes)."""
    from wbg import groups, runs

    conn, _ = open_db(db)
    with contextlib.closing(conn):
        nums = groups.group_runs(conn, name, project)
        confirm_delete(f"group {name!r} ({len(nums)} runs)", yes)
        check_running(runs.running_ids(conn, nums), force)
        n = runs.delete_runs(conn, nums)
    typer.echo(f"deleted group {name} ({n} runs)", err=True)


def confirm_delete(what: str, yes: bool) -> None:
    """Ask before deleting; with no terminal to ask and no --yes, refuse."""
    from wbg.errors import InvalidInput

    if yes:
        return
    if not sys.stdin.isatty():
        raise InvalidInput(
            f"not deleting {what}: no terminal to confirm on", hint="pass --yes to delete"
        )
    if not typer.confirm(f"Delete {what}?", default=False, err=True):
        raise typer.Abort()


def check_running(running: list[str], force: bool) -> None:
    from wbg.errors import InvalidInput

    if running and not force:
        raise InvalidInput(
            f"{len(running)} run(s) still running: {', '.join(running[:5])}",
            hint="wait for them to end, or pass --force",
        )
