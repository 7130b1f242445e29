"""``wbg runs``: list, inspect and change individual runs."""

from __future__ import annotations

import contextlib
import itertools
import shlex
import sys
from collections.abc import Iterator
from typing import Annotated, Any

import typer

from wbg.cli.options import (
    AllProjectsOpt,
    DbOpt,
    DescOpt,
    FormatOpt,
    GroupFilterOpt,
    JobTypeFilterOpt,
    PrecisionOpt,
    ProjectFilterOpt,
    RunSortOpt,
    StateOpt,
    TagOpt,
    WhereOpt,
    WideOpt,
    complete_group,
    complete_metric,
    complete_run_id,
    filters_from,
    note_scope,
    open_db,
)

app = typer.Typer(
    help="List, inspect and change runs: list, show, diff, set, tag, move, delete.",
    no_args_is_help=True,
    rich_markup_mode=None,
)

RunIdArg = Annotated[
    str, typer.Argument(metavar="ID", help="Run id.", autocompletion=complete_run_id)
]
RunIdsArg = Annotated[
    list[str], typer.Argument(metavar="ID...", help="Run ids.", autocompletion=complete_run_id)
]

# What fits an 80-column terminal (long names, groups and job types are cut to fit)
DEFAULT_LIMIT = 50
NARROW_COLUMNS = ("id", "name", "group", "job_type", "state", "started", "duration_s")
LIST_COLUMNS = (
    "id",
    "name",
    "project",
    "group",
    "job_type",
    "state",
    "exit_code",
    "started",
    "duration_s",
)


@app.command("list")
def list_runs(
    project: ProjectFilterOpt = None,
    all_projects: AllProjectsOpt = False,
    group: GroupFilterOpt = None,
    job_type: JobTypeFilterOpt = None,
    state: StateOpt = None,
    tag: TagOpt = None,
    where: WhereOpt = None,
    limit: Annotated[
        int | None,
        typer.Option("--limit", min=1, metavar="N", help="At most N runs (default: 50)."),
    ] = None,
    all_runs: Annotated[bool, typer.Option("--all", help="Every run (no limit).")] = False,
    sort: RunSortOpt = None,
    desc: DescOpt = False,
    wide: WideOpt = False,
    fmt: FormatOpt = "simple",
    precision: PrecisionOpt = None,
    db: DbOpt = None,
) -> None:
    """List runs, newest first or by --sort (filters: --project --group --job-type --state
    --tag --where, on fields, config keys and summary metrics)."""
    from wbg import query, runs
    from wbg.cli import render

    render.check_format(fmt)
    filters = filters_from(project, group, job_type, state, tag, where, all_projects)
    conn, _ = open_db(db, read_only=True)
    with contextlib.closing(conn):
        query.check_filters(conn, filters)
        if limit is None and not all_runs:
            limit = DEFAULT_LIMIT
        if all_runs:
            limit = None
        records = runs.iter_runs(conn, filters, limit=limit, sort=sort, desc=desc)
        first = next(records, None)
        note_scope(filters)
        if first is None:
            if fmt == "json":
                typer.echo("[]")
            render.note_no_runs(filters)
            return
        shown = 0

        def counted() -> Iterator[dict[str, Any]]:  # streamed: 100,000 runs print at once
            nonlocal shown
            for record in itertools.chain([first], records):
                shown += 1
                yield record

        _write_runs(counted(), fmt, precision, wide)
        more = query.count_runs(conn, filters) - shown if shown == limit else 0
    if more:
        typer.echo(f"({more} more runs: --limit N or --all)", err=True)


def _write_runs(
    records: Iterator[dict[str, Any]], fmt: str, precision: int | None, wide: bool
) -> None:
    from wbg import runs
    from wbg.cli import render

    out = sys.stdout
    if fmt in ("json", "jsonl"):
        render.write_records(records, fmt, out)
        return
    if fmt == "csv":
        render.write_csv_streaming(records, runs.RECORD_FIELDS, out)
        return
    for number, page in enumerate(render.pages(records)):
        rows = [
            {**r, "name": render.shown_name(r), "started": render.short_time(r["started_at"], wide)}
            for r in page
        ]
        if wide:
            text = render.render(rows, LIST_COLUMNS, fmt, precision)
        else:
            text, _ = render.render_fitted(
                rows, NARROW_COLUMNS, [], fmt, precision, render.output_width(),
                labels={"duration_s": "duration"}, shrink=("name", "group", "job_type"),
            )  # fmt: skip
        out.write(("\n" if number else "") + text + "\n")
        out.flush()


@app.command("show")
def show(
    run_id: RunIdArg,
    output: Annotated[
        bool, typer.Option("--output", help="Print the kept tail of the run's output.")
    ] = False,
    history: Annotated[bool, typer.Option("--history", help="Include the history points.")] = False,
    keys: Annotated[
        list[str] | None,
        typer.Option(
            "--keys",
            metavar="KEY[,KEY...]",
            help="With --history: only these metrics (repeatable or comma-separated).",
            autocompletion=complete_metric,
        ),
    ] = None,
    tail: Annotated[
        int | None,
        typer.Option("--tail", min=1, metavar="N", help="With --history: the last N steps."),
    ] = None,
    wide: Annotated[
        bool,
        typer.Option("--wide", help="With --history: one row per step, one column per key."),
    ] = False,
    fmt: FormatOpt = "simple",
    precision: PrecisionOpt = None,
    db: DbOpt = None,
) -> None:
    """Show one run: its fields, config, summary and history size."""
    from wbg import runs
    from wbg.cli import render

    render.check_format(fmt)
    conn, _ = open_db(db, read_only=True)
    with contextlib.closing(conn):
        record = runs.get_run(conn, run_id)
        if output:
            kept = runs.get_output(conn, run_id)
            if kept is not None:
                # to a terminal, escapes that could act on it are shown, not obeyed;
                # to a pipe or a file, the bytes as the command wrote them
                tty = sys.stdout.isatty()
                sys.stdout.buffer.write(render.safe_output(kept[0]) if tty else kept[0])
                sys.stdout.buffer.flush()
            return
        record["history_points"] = runs.history_count(conn, run_id)
        wanted = [k.strip() for item in keys or () for k in item.split(",") if k.strip()]
        if (wanted or tail or wide) and not history:
            history = True  # --keys, --tail and --wide are about the history
        if history and wide and fmt not in ("json", "jsonl"):
            record["history"] = runs.get_history(conn, run_id, wanted or None, tail)
            typer.echo(_wide_history(record["history"], wanted, fmt, precision))
            return
        if history:  # streamed: points are read as they are written
            points = runs.iter_history(conn, run_id, wanted or None, tail)
            if fmt in ("json", "jsonl"):
                render.write_records_streaming(
                    [record], fmt, lambda _: points, sys.stdout, single=fmt == "json"
                )
                return
            typer.echo(_human_record(record, fmt, precision) + "\n")
            render.write_human_streaming(
                points, ("step", "key", "value", "time"), fmt, precision, sys.stdout
            )
            return
    if fmt == "json":
        typer.echo(render.render_object(record))
    elif fmt == "jsonl":
        typer.echo(render.render_records([record], "jsonl"))
    else:
        typer.echo(_human_record(record, fmt, precision))


def _wide_history(
    points: list[dict[str, Any]], keys: list[str], fmt: str, precision: int | None
) -> str:
    """One row per step, one column per key (in the order asked for, else by name)."""
    from wbg.cli import render

    rows: dict[int, dict[str, Any]] = {}
    for point in points:
        rows.setdefault(point["step"], {"step": point["step"]})[point["key"]] = point["value"]
    columns = keys or sorted({p["key"] for p in points})
    return render.render(list(rows.values()), ["step", *columns], fmt, precision)


def _flatten(prefix: str, value: Any, out: list[tuple[str, Any]]) -> None:
    if isinstance(value, dict) and value:
        for key, item in value.items():
            _flatten(f"{prefix}.{key}" if prefix else str(key), item, out)
    else:
        out.append((prefix, value))


def _human_record(record: dict[str, Any], fmt: str, precision: int | None) -> str:
    from wbg.cli import render

    fields: list[tuple[str, Any]] = []
    for key, value in record.items():
        if key in ("config", "summary"):
            _flatten(key, value, fields)
        elif key == "history":
            continue
        elif key == "command" and isinstance(value, list):
            fields.append((key, shlex.join(value)))  # as it would be typed
        else:
            fields.append((key, value))
    rows = [{"field": k, "value": v} for k, v in fields]
    return render.render(rows, ("field", "value"), fmt if fmt != "csv" else "csv", precision)


@app.command("set", no_args_is_help=True)
def set_config(
    run_id: RunIdArg,
    assignments: Annotated[
        list[str] | None,
        typer.Argument(
            metavar="[KEY=VALUE...]",
            help="Config values (typed like -c: 3, 0.1, true, [1,2]; dotted keys nest).",
        ),
    ] = None,
    name: Annotated[
        str | None, typer.Option("--name", "-n", metavar="NEW", help="Rename the run.")
    ] = None,
    db: DbOpt = None,
) -> None:
    """Edit the config of an ended run (then group by it): wbg runs set ID fold=3; rename
    it with --name NEW."""
    from wbg import runs, values
    from wbg.errors import InvalidInput

    if not assignments and name is None:
        raise InvalidInput("nothing to set", hint="give KEY=VALUE pairs and/or --name NEW")
    update = values.parse_assignments(assignments or ())
    conn, _ = open_db(db)
    with contextlib.closing(conn):
        if name is not None:
            runs.set_name(conn, run_id, name)
        if update:
            runs.set_config(conn, run_id, update)
    done = [a.partition("=")[0] for a in assignments or ()] + (["name"] if name else [])
    typer.echo(f"set {', '.join(done)} on {run_id}", err=True)


@app.command("diff", no_args_is_help=True)
def diff(
    run_a: RunIdArg,
    run_b: RunIdArg,
    only: Annotated[
        bool, typer.Option("--only-diff", "-d", help="Only the rows that differ.")
    ] = False,
    fmt: FormatOpt = "simple",
    precision: PrecisionOpt = None,
    db: DbOpt = None,
) -> None:
    """Compare two runs side by side: fields, config and summary; * marks differences."""
    from wbg import runs
    from wbg.cli import render

    render.check_format(fmt)
    conn, _ = open_db(db, read_only=True)
    with contextlib.closing(conn):
        a, b = runs.get_run(conn, run_a), runs.get_run(conn, run_b)
    rows = [row for row in runs.diff_records(a, b) if not (only and row["same"])]
    if fmt in render.MACHINE_FORMATS:
        typer.echo(render.render(rows, ["key", "a", "b", "same"], fmt))
        return
    shown = [{**row, "mark": "" if row["same"] else "*"} for row in rows]
    text, _ = render.render_fitted(
        shown, ["mark", "key", "a", "b"], [], fmt, precision, render.output_width(),
        labels={"mark": "", "a": run_a, "b": run_b}, shrink=("key", "a", "b"),
    )  # fmt: skip
    typer.echo(text)


@app.command(
    "tag",
    no_args_is_help=True,
    context_settings={"ignore_unknown_options": True},
)
def tag(
    run_id: RunIdArg,
    changes: Annotated[
        list[str],
        typer.Argument(metavar="+TAG|-TAG...", help="+name adds a tag, -name removes it."),
    ],
    db: DbOpt = None,
) -> None:
    """Add and remove tags: wbg runs tag ID +best -draft (a bare name adds)."""
    from wbg import runs

    add: dict[str, None] = {}
    remove: dict[str, None] = {}
    for change in changes:  # in order: a later change to the same tag wins
        if change.startswith("-"):
            add.pop(change[1:], None)
            remove[change[1:]] = None
        else:
            name = change[1:] if change.startswith("+") else change
            remove.pop(name, None)
            add[name] = None
    conn, _ = open_db(db)
    with contextlib.closing(conn):
        tags = runs.set_tags(conn, run_id, list(add), list(remove))
    typer.echo(" ".join(tags))


@app.command("move", no_args_is_help=True)
def move(
    run_ids: RunIdsArg,
    group: Annotated[
        str,
        typer.Option(
            "--group",
            "-g",
            metavar="NAME",
            help="The group to move the runs into.",
            autocompletion=complete_group,
        ),
    ],
    db: DbOpt = None,
) -> None:
    """Move runs into another group (--group G)."""
    from wbg import runs

    conn, _ = open_db(db)
    with contextlib.closing(conn):
        n = runs.move_runs(conn, run_ids, group)
    typer.echo(f"moved {n} run(s) to group {group}", err=True)


@app.command("delete", no_args_is_help=True)
def delete(
    run_ids: RunIdsArg,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")] = False,
    force: Annotated[
        bool, typer.Option("--force", help="Also delete runs that are still running.")
    ] = False,
    db: DbOpt = None,
) -> None:
    """Delete runs with their history and output (asks first unless --yes)."""
    from wbg import runs
    from wbg.cli.groups import check_running, confirm_delete

    conn, _ = open_db(db)
    with contextlib.closing(conn):
        nums = [runs.run_num(conn, run_id) for run_id in run_ids]
        confirm_delete(f"{len(set(nums))} run(s)", yes)
        check_running(runs.running_ids(conn, nums), force)
        n = runs.delete_runs(conn, nums)
    typer.echo(f"deleted {n} run(s)", err=True)
