"""``wbg group``: list groups, the group page, rename and delete."""

from __future__ import annotations

import contextlib
import sys
from typing import Annotated, Any

import typer

from wbg.cli.options import (
    DbOpt,
    FormatOpt,
    JobTypeFilterOpt,
    LimitOpt,
    PrecisionOpt,
    ProjectFilterOpt,
    StateOpt,
    TagOpt,
    WhereOpt,
    complete_group,
    filters_from,
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


def _short_time(iso: str | None) -> str:
    return "" if not iso else iso[:19].replace("T", " ")


@app.command("list")
def list_groups(
    project: ProjectFilterOpt = None,
    job_type: JobTypeFilterOpt = None,
    state: StateOpt = None,
    tag: TagOpt = None,
    where: WhereOpt = None,
    limit: LimitOpt = None,
    fmt: FormatOpt = "simple",
    db: DbOpt = None,
) -> None:
    """List groups: name, project, runs, job types, states, first start, last end."""
    from wbg import groups
    from wbg.cli import render

    render.check_format(fmt)
    filters = filters_from(project, None, job_type, state, tag, where)
    conn, _ = open_db(db, read_only=True)
    with contextlib.closing(conn):
        rows = groups.list_groups(conn, filters)
    if limit is not None:
        rows = rows[:limit]
    columns = ["group", "project", "runs", "job_types", "states", "first_start", "last_end"]
    if fmt not in render.MACHINE_FORMATS:
        rows = [
            {
                **row,
                "job_types": _counts(row["job_types"]),
                "states": _counts(row["states"]),
                "first_start": _short_time(row["first_start"]),
                "last_end": _short_time(row["last_end"]) or "(running)",
            }
            for row in rows
        ]
    text = render.render(rows, columns, fmt)
    if text:
        typer.echo(text)


@app.command("show")
def show(
    name: GroupArg,
    project: InProjectOpt = None,
    max_runs: Annotated[
        int,
        typer.Option(
            "--runs",
            min=0,
            help="Runs listed in human formats (oldest first; 0 = all). Machine formats list all.",
        ),
    ] = 50,
    fmt: FormatOpt = "simple",
    precision: PrecisionOpt = 4,
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
        page = groups.group_page(conn, name, project, (max_runs or None) if human else None)
    rows = [groups.run_row(r, page["varying_keys"]) for r in page["run_records"]]
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
    typer.echo(_human_page(page, rows, fmt, precision))


def _run_columns(rows: list[dict[str, Any]]) -> list[str]:
    seen: dict[str, None] = {}  # ordered, and a set: thousands of config keys stay linear
    for row in rows:
        seen.update(dict.fromkeys(row))
    columns = list(seen)
    fixed = [c for c in columns if not c.startswith("summary.")]
    return fixed + sorted(c for c in columns if c.startswith("summary."))


def _human_page(page: dict[str, Any], rows: list[dict[str, Any]], fmt: str, precision: int) -> str:
    from wbg.cli import render
    from wbg.cli.table import human_rows

    span = f"{_short_time(page['first_start'])} -> "
    span += _short_time(page["last_end"]) or "(running)"
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
    fixed = [c for c in columns if not c.startswith("summary.")]
    blocks = [(c, [c]) for c in columns if c.startswith("summary.")]
    shown = [{**row, **{c: row.get(c) for c in columns}} for row in rows]
    fixed_set = set(fixed)
    shown = [
        {k: ("" if v is None else v) if k in fixed_set else v for k, v in r.items()} for r in shown
    ]
    # summary.x columns are labelled by the metric name alone on the page
    # metrics are labelled by name unless a config key or field has the same name
    labels = {c: c[len("summary.") :] for c, _ in blocks if c[len("summary.") :] not in fixed}
    text, dropped = render.render_fitted(
        shown, fixed, blocks, fmt, precision, render.output_width(), labels
    )
    parts.append("Runs (summary values on the right)\n" + text)
    if hidden:
        parts[-1] += f"\n({hidden} more runs not listed: --runs 0 lists all)"
    if dropped:
        parts[-1] += f"\n({len(dropped)} summary column(s) left out to fit: {', '.join(dropped)})"
    common = [{"key": k, "value": v} for k, v in page["common_config"].items()]
    if common:
        parts.append("Config common to all runs\n" + render.render(common, ["key", "value"], fmt))
    table = page["aggregates"]
    agg_rows, agg_fixed, agg_blocks = human_rows(table, precision)
    agg_text, _ = render.render_fitted(
        agg_rows, agg_fixed, agg_blocks, fmt, precision, render.output_width()
    )
    parts.append("Aggregates per job_type (mean ± std)\n" + agg_text)
    return "\n\n".join(parts)


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
