"""``wbg ui`` driven headless through Textual's pilot, against real database files.

Every assertion reads what a widget shows (table cells, chart series, page text) and
compares it with what the other commands compute for the same file: ``wbg table``'s
cells, ``wbg plot --out csv``'s series, ``wbg group show``'s facts.
"""

from __future__ import annotations

import asyncio
import contextlib
import csv
import io
import os
import shlex
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import both_engines, postgresql_only, run_wbg, wait_for, wbg_executable
from views_helpers import add_run, fixture_experiment

from wbg import aggregate, db, query, runs
from wbg.cli.ui_app import (
    ChartScreen,
    ChartView,
    GroupScreen,
    MainScreen,
    Picker,
    RunScreen,
    Workspace,
    WorkspaceSettings,
    clean_output,
)

STEPS = 6


def add_history(path: Path, run_id: str, values: dict[int, float], metric: str = "loss") -> None:
    with contextlib.closing(db.connect(path)) as conn, runs.transaction(conn):
        num = runs.run_num(conn, run_id)
        runs.write_history(
            conn, [(num, step, metric, v, 1_700_000_000.0 + step) for step, v in values.items()]
        )


@pytest.fixture
def experiment(db_path: Path) -> dict[str, str]:
    """Two k-fold groups (3 train runs + 1 eval each) with loss and acc curves."""
    ids = fixture_experiment(db_path)
    for name, run_id in ids.items():
        if "train" in name:
            fold = int(name[-1])
            scale = 1.0 if "exp-a" in name else 2.0
            add_history(db_path, run_id, {s: scale * (10 - s) + fold for s in range(STEPS)})
            add_history(
                db_path, run_id, {s: 0.1 * s + 0.01 * fold for s in range(0, STEPS, 2)}, "acc"
            )
    return ids


def run_app(path: Path, scenario, settings: WorkspaceSettings | None = None, size=(100, 30)):
    """Start the app on ``path``, wait for its first screen, run ``scenario(app, pilot)``."""

    async def main():
        app = Workspace(path, settings or WorkspaceSettings(query.Filters()), shown_path="runs.db")
        async with app.run_test(size=size) as pilot:
            await settle(pilot)
            return await scenario(app, pilot)

    return asyncio.run(main())


async def settle(pilot) -> None:
    """Wait until no load runs or is queued and the screen has been refreshed."""
    for _ in range(1000):
        await pilot.pause(0.01)
        if pilot.app.idle:
            await pilot.pause()
            if pilot.app.idle:
                return
    raise AssertionError("the workspace kept loading")


async def press(pilot, *keys: str) -> None:
    for key in keys:
        await pilot.press(key)
        await settle(pilot)


async def search(pilot, text: str) -> None:
    pilot.app.screen.query_one("#search").value = text
    await settle(pilot)


def flat(text) -> str:
    return " ".join(str(text).split())


def group_rows(rows: list[list[str]]) -> list[list[str]]:
    """The group rows (label without the expand mark, run count)."""
    return [[row[0][2:], row[1]] for row in rows if row[0][:1] in "▸▾"]


def drawn_text(app) -> str:
    """The characters on screen (from the app's own screenshot), spaces normalised."""
    import html
    import re

    svg = app.export_screenshot()
    text = html.unescape(re.sub(r"<[^>]+>", "", svg)).replace("\xa0", " ")
    return flat(text)


def cells(app) -> list[list[str]]:
    table = app.screen.query_one("#runs")
    return [[str(c) for c in table.get_row_at(i)] for i in range(table.row_count)]


def headers(app, selector: str = "#runs") -> list[str]:
    table = app.screen.query_one(selector)
    return [str(column.label) for column in table.ordered_columns]


def plot_csv(path: Path, tmp_path: Path, *args: str) -> list[dict[str, str]]:
    out = tmp_path / "series.csv"
    proc = run_wbg("plot", "loss", "--db", str(path), "--out", str(out), *args)
    assert proc.returncode == 0, proc.stderr
    return list(csv.DictReader(io.StringIO(out.read_text())))


def chart_rows(view: ChartView) -> list[dict[str, str]]:
    """The series a chart widget holds, written as wbg plot writes its csv."""
    from wbg.cli.render import render

    assert view.panel is not None, view.message
    rows = [row for curve in view.panel.curves for row in curve.rows()]
    text = render(rows, ("metric", "x", "group", "line", "low", "high", "n"), "csv")
    return list(csv.DictReader(io.StringIO(text)))


# --- the runs table --------------------------------------------------------------------------


@both_engines
def test_group_rows_show_the_cells_of_wbg_table(experiment, db_path):
    from wbg.cli.common import human_rows

    async def scenario(app, pilot):
        assert isinstance(app.screen, MainScreen)
        return headers(app), cells(app), app.screen.query_one("#status").content

    shown_headers, shown, status = run_app(db_path, scenario)
    with contextlib.closing(db.connect(db_path)) as conn:
        table = aggregate.build_table(conn, query.Filters())
    expected, _, _ = human_rows(table, None)  # wbg table's default formatting
    assert shown_headers == ["group", "runs", "acc", "loss", "val_acc", "duration_s"]
    assert [row[:2] for row in shown] == [["▸ exp-a", "4"], ["▸ exp-b", "4"]]
    for row, want in zip(shown, expected, strict=True):
        assert row[2:] == [want[m] for m in table.metrics]
    assert shown[0][2] == "0.910 ± 0.010 (n=3)"  # the fixture's acc: 0.9, 0.91, 0.92
    assert "8 runs · groups 1-2 of 2" in str(status)
    assert "group by: group" in str(status)


@both_engines
def test_grouping_toggle_and_nested_group_by_picker(experiment, db_path):
    async def scenario(app, pilot):
        await press(pilot, "g")
        ungrouped = headers(app), cells(app)
        await press(pilot, "G")
        assert isinstance(app.screen, Picker)
        await press(pilot, *"lr", "enter")
        app.screen.query_one("#search").value = "job"
        await settle(pilot)
        await press(pilot, "enter", "escape")
        assert isinstance(app.screen, MainScreen)
        nested = headers(app), cells(app)
        await press(pilot, "g")
        return ungrouped, nested, cells(app)

    ungrouped, nested, off_again = run_app(db_path, scenario)
    assert ungrouped[0][:4] == ["run", "state", "group", "job_type"]
    assert len(ungrouped[1]) == 8
    assert sorted(row[0] for row in ungrouped[1]) == sorted(
        f"{g}-{kind} ({experiment[f'{g}-{key}']})"
        for g in ("exp-a", "exp-b")
        for kind, key in (
            ("fold0", "train-0"),
            ("fold1", "train-1"),
            ("fold2", "train-2"),
            ("eval", "eval"),
        )
    )
    assert {row[1] for row in ungrouped[1]} == {"finished"}
    assert nested[0][:2] == ["lr, job_type", "runs"]
    assert [row[:2] for row in nested[1]] == [
        ["▸ lr=0.01, job_type=eval", "1"],
        ["▸ lr=0.01, job_type=train", "3"],
        ["▸ lr=0.1, job_type=eval", "1"],
        ["▸ lr=0.1, job_type=train", "3"],
    ]
    assert len(off_again) == 8


@both_engines
def test_expanding_a_group_lists_its_runs_and_marks_running_ones(experiment, db_path):
    running = add_run(db_path, group="exp-a", job_type="train", name="live", state="running")

    async def scenario(app, pilot):
        await press(pilot, "space")
        return cells(app)

    shown = run_app(db_path, scenario)
    assert shown[0][:2] == ["▾ exp-a  ● 1 running", "5"]
    members = [row[0].strip() for row in shown[1:6]]
    assert members[0] == f"● live ({running})"  # newest first, marked running
    assert sorted(members[1:]) == sorted(
        f"exp-a-{n} ({experiment[f'exp-a-{k}']})"
        for n, k in (
            ("fold0", "train-0"),
            ("fold1", "train-1"),
            ("fold2", "train-2"),
            ("eval", "eval"),
        )
    )
    assert shown[6][0] == "▸ exp-b"


@both_engines
def test_pages_of_runs_at_scale(db_path):
    with contextlib.closing(db.connect(db_path)) as conn, runs.transaction(conn):
        for i in range(450):
            runs.create_run(conn, project="p", group=None, job_type=None, name=f"r{i:03d}")

    async def scenario(app, pilot):
        seen = [(len(cells(app)), str(app.screen.query_one("#status").content))]
        for key in ("right_square_bracket", "right_square_bracket", "right_square_bracket"):
            await press(pilot, key)
            seen.append((len(cells(app)), str(app.screen.query_one("#status").content)))
        last = cells(app)[-1][0]
        await press(pilot, "g")  # no run has a group: g asks what to group by
        picker = isinstance(app.screen, Picker)
        await press(pilot, *"quit")  # typed into the search box, not the quit key
        return seen, last, picker, app.screen.query_one("#search").value

    seen, last, picker, typed = run_app(db_path, scenario)
    assert picker
    assert typed == "quit"
    # no run has a group: one row per run by default, as wbg table
    assert [n for n, _ in seen] == [200, 200, 50, 50]
    assert "450 runs · runs 1-200 of 450" in seen[0][1]
    assert "runs 401-450 of 450" in seen[2][1]
    assert last.startswith("r000 ")  # newest first: the oldest run ends the last page


# --- charts -----------------------------------------------------------------------------------


@both_engines
def test_charts_hold_the_series_of_wbg_plot_csv(experiment, db_path, tmp_path):
    async def scenario(app, pilot):
        seen = {}
        view = app.screen.query_one(ChartView)
        seen["default"] = chart_rows(view)
        await press(pilot, "l", "b")  # median, std
        seen["median-std"] = chart_rows(app.screen.query_one(ChartView))
        await press(pilot, "x", "s")  # time, smooth 0.6
        seen["time-smooth"] = chart_rows(app.screen.query_one(ChartView))
        seen["status"] = str(app.screen.query_one("#status").content)
        await press(pilot, "x", *"sssss", "G")
        await search(pilot, "group")
        await press(pilot, "enter")  # off: the picker starts from the grouping in use
        await search(pilot, "fold")
        await press(pilot, "enter", "escape")
        seen["by-fold"] = chart_rows(app.screen.query_one(ChartView))
        await press(pilot, "g")
        seen["ungrouped"] = chart_rows(app.screen.query_one(ChartView))
        return seen

    seen = run_app(db_path, scenario)
    assert seen["default"] == plot_csv(db_path, tmp_path)
    assert {row["group"] for row in seen["default"]} == {"exp-a", "exp-b"}
    assert seen["median-std"] == plot_csv(db_path, tmp_path, "--line", "median", "--band", "std")
    assert seen["time-smooth"] == plot_csv(
        db_path, tmp_path, "--line", "median", "--band", "std", "--x", "time", "--smooth", "0.6"
    )
    assert "chart: median, band std, x time, smooth 0.6" in seen["status"]
    assert seen["by-fold"] == plot_csv(
        db_path, tmp_path, "--line", "median", "--band", "std", "-G", "fold"
    )
    assert seen["ungrouped"] == plot_csv(
        db_path, tmp_path, "--line", "median", "--band", "std", "--no-group"
    )


@both_engines
def test_keys_pressed_during_a_load_all_take_effect(experiment, db_path, tmp_path):
    async def scenario(app, pilot):
        await pilot.press("l", "l", "b")  # no waiting: later requests queue behind a load
        await settle(pilot)
        return chart_rows(app.screen.query_one(ChartView))

    shown = run_app(db_path, scenario)
    assert shown == plot_csv(db_path, tmp_path, "--line", "min", "--band", "std")


@both_engines
def test_a_load_asked_for_during_another_waits_and_the_newest_wins(experiment, db_path):
    import threading

    release = threading.Event()
    computed, applied = [], []

    def compute(n):
        def run():
            if n == 1:
                release.wait(30)
            computed.append(n)
            return n

        return run

    async def apply(result):
        applied.append(result)

    async def scenario(app, pilot):
        loader = app.screen.loader
        for n in (1, 2, 3):
            loader.start("x", compute(n), apply)
        queued = (set(loader.busy), list(loader.pending))
        release.set()
        await settle(pilot)
        return queued

    queued = run_app(db_path, scenario)
    assert queued == ({"x"}, ["x"])
    assert computed == [1, 3]  # never two at once; 2 was replaced by 3 while 1 ran
    assert applied == [1, 3]


@both_engines
def test_metric_picker_adds_a_chart_per_metric(experiment, db_path):
    async def scenario(app, pilot):
        await press(pilot, "m")
        picker = app.screen
        assert isinstance(picker, Picker)
        options = picker.query_one("#options")
        names = [options.get_option_at_index(i).id for i in range(options.option_count)]
        await press(pilot, *"acc", "enter", "escape")
        return names, [v.metric for v in app.screen.query(ChartView)], app.settings.metrics

    names, charted, chosen = run_app(db_path, scenario)
    assert names == ["acc", "loss", "val_acc"]
    assert chosen == ["loss", "acc"]  # the picker starts from the charts shown
    assert charted == chosen


@both_engines
def test_full_screen_chart_zooms_pans_and_logs(experiment, db_path):
    async def scenario(app, pilot):
        await press(pilot, "tab")
        assert isinstance(app.screen.focused, ChartView)
        await press(pilot, "enter")
        assert isinstance(app.screen, ChartScreen)
        view = app.screen.query_one(ChartView)
        seen = {"full": (view.x_range, view.text)}
        await press(pilot, "plus")
        seen["zoomed"] = view.x_range
        await press(pilot, "right")
        seen["panned"] = view.x_range
        await press(pilot, "y")
        await pilot.pause()
        seen["log"] = view.text
        await press(pilot, "0", "slash", *"acc", "enter")
        seen["metric"] = (view.metric, view.panel.metric)
        await press(pilot, "escape")
        seen["back"] = type(app.screen)
        return seen

    seen = run_app(db_path, scenario)
    assert seen["full"][0] is None
    assert "loss (mean per group, band: min-max)" in seen["full"][1]
    assert seen["zoomed"] == (1.25, 3.75)  # steps 0..5, half the width around the middle
    assert seen["panned"] == (1.875, 4.375)  # a quarter of the width to the right
    assert "log y" in seen["log"]
    assert seen["metric"] == ("acc", "acc")
    assert seen["back"] is MainScreen


# --- group and run pages ----------------------------------------------------------------------


@both_engines
def test_group_page_shows_wbg_group_show(experiment, db_path):
    async def scenario(app, pilot):
        await press(pilot, "enter")
        screen = app.screen
        assert isinstance(screen, GroupScreen)
        facts = str(screen.query_one("#facts").content)
        members = screen.query_one("#members")
        run_ids = [str(members.get_row_at(i)[0]) for i in range(members.row_count)]
        aggregates = screen.query_one("#aggregates")
        rows = [[str(c) for c in aggregates.get_row_at(i)] for i in range(aggregates.row_count)]
        await press(pilot, "3")
        charts = [chart_rows(v) for v in screen.query(ChartView)]
        await press(pilot, "escape")
        return facts, run_ids, rows, charts, type(app.screen)

    facts, run_ids, rows, charts, back = run_app(db_path, scenario)
    facts = flat(facts)
    assert "runs 4 (train 3, eval 1)" in facts
    assert "compute 38 s" in facts  # 10 + 11 + 12 + 5
    assert "config.lr 0.1 config.model.name mlp" in facts
    assert run_ids == [
        experiment[k] for k in ("exp-a-train-0", "exp-a-train-1", "exp-a-train-2", "exp-a-eval")
    ]
    assert [r[:2] for r in rows] == [["eval", "1"], ["train", "3"]]
    assert [row["group"] for row in charts[0]] == ["job_type=train"] * STEPS
    assert [float(row["line"]) for row in charts[0]] == [10 - s + 1 for s in range(STEPS)]
    assert back is MainScreen


@both_engines
def test_group_page_of_a_name_used_in_two_projects(db_path):
    for project in ("p1", "p2"):
        add_run(db_path, project=project, group="shared", summary={"acc": 0.5})

    async def scenario(app, pilot):
        await press(pilot, "enter")
        return flat(app.screen.query_one("#facts").content), app.screen.query_one(
            "#members"
        ).row_count

    facts, members = run_app(db_path, scenario)
    assert facts == "group shared runs 2"  # both projects' runs, as the table row counts them
    assert members == 2


@both_engines
def test_group_page_of_a_config_key_group(experiment, db_path):
    from wbg.cli.common import human_rows

    settings = WorkspaceSettings(query.Filters(), group_by=["lr"])

    async def scenario(app, pilot):
        await press(pilot, "down", "enter")  # lr=0.1
        screen = app.screen
        facts = flat(screen.query_one("#facts").content)
        aggregates = screen.query_one("#aggregates")
        rows = [[str(c) for c in aggregates.get_row_at(i)] for i in range(aggregates.row_count)]
        members = screen.query_one("#members")
        return facts, rows, members.row_count

    facts, rows, members = run_app(db_path, scenario, settings)
    assert facts == "group lr=0.1 runs 4"
    assert members == 4
    with contextlib.closing(db.connect(db_path)) as conn:
        table = aggregate.build_table(conn, query.Filters(), group_by=["lr", "job_type"])
    expected, _, _ = human_rows(table, None)  # wbg table's default formatting
    assert rows == [
        [row["job_type"], str(row["runs"]), *(row[m] for m in table.metrics)]
        for row in expected
        if row["lr"] == "0.1"
    ]


@both_engines
def test_group_page_of_the_missing_key_group(experiment, db_path, tmp_path):
    settings = WorkspaceSettings(query.Filters(), group_by=["split"])

    async def scenario(app, pilot):
        rows = cells(app)
        await press(pilot, "down", "enter", "3")  # the - group: runs without split
        screen = app.screen
        return (
            rows,
            flat(screen.query_one("#facts").content),
            chart_rows(screen.query_one(ChartView)),
        )

    rows, facts, chart = run_app(db_path, scenario, settings)
    assert group_rows(rows) == [["split=val", "2"], ["split=-", "6"]]
    assert facts == "group split=- runs 6"
    expected = plot_csv(db_path, tmp_path, "-w", "job_type = train", "-G", "job_type")
    assert chart == expected  # all six runs without split are the train runs


@both_engines
def test_run_page_follows_output_and_tags_moves_deletes(experiment, db_path):
    run_id = experiment["exp-b-eval"]
    with contextlib.closing(db.connect(db_path)) as conn:
        runs.set_output(
            conn,
            runs.run_num(conn, run_id),
            b"\x1b[31mred\x1b[0m\n10%\r50%\r100%\nbell\x07\n",
            False,
        )

    async def scenario(app, pilot):
        await press(pilot, "down", "space", "down")  # exp-b expanded: its newest run is the eval
        await press(pilot, "enter")
        screen = app.screen
        assert isinstance(screen, RunScreen)
        seen = {"log": list(screen.query_one("#log").lines)}
        seen["fields"] = str(screen.query_one("#fields").content)
        with contextlib.closing(db.connect(db_path)) as conn:  # the job writes more output
            runs.set_output(conn, runs.run_num(conn, run_id), b"red\nmore\n", False)
        assert app.poll()
        await settle(pilot)
        seen["followed"] = list(screen.query_one("#log").lines)
        await press(pilot, "t", *"+best -x", "enter")
        await press(pilot, "M", *"exp-a", "enter")
        await press(pilot, "d", "n")
        seen["kept"] = type(app.screen)
        await press(pilot, "d", "y")
        seen["after"] = (type(app.screen), cells(app))
        return seen

    seen = run_app(db_path, scenario)
    assert seen["log"] == ["red", "100%", "bell\\x07"]
    fields = flat(seen["fields"])
    assert f"id {run_id} project proj name exp-b-eval group exp-b job_type eval" in fields
    assert "config.split val" in fields
    assert "summary.val_acc 0.75" in fields
    assert seen["followed"] == ["red", "more"]
    assert seen["kept"] is RunScreen
    after_screen, after_cells = seen["after"]
    assert after_screen is MainScreen
    with contextlib.closing(db.connect(db_path)) as conn:
        assert not runs.run_exists(conn, run_id)
    assert group_rows(after_cells) == [["exp-a", "4"], ["exp-b", "3"]]


@both_engines
def test_tag_and_move_go_through_the_store(experiment, db_path):
    run_id = experiment["exp-b-eval"]

    async def scenario(app, pilot):
        await press(pilot, "down", "space", "down", "t", *"+best", "enter")
        await press(pilot, "M", *"exp-c", "enter")
        return cells(app)

    shown = run_app(db_path, scenario)
    with contextlib.closing(db.connect(db_path)) as conn:
        record = runs.get_run(conn, run_id)
    assert record["tags"] == ["best"]
    assert record["group"] == "exp-c"
    assert group_rows(shown) == [["exp-a", "4"], ["exp-b", "3"], ["exp-c", "1"]]


# --- live ------------------------------------------------------------------------------------


@both_engines
def test_live_refresh_follows_other_writers_and_is_idle_otherwise(experiment, db_path):
    async def scenario(app, pilot):
        seen = {"quiet": app.poll()}
        new = add_run(
            db_path, group="exp-a", job_type="train", summary={"acc": 0.5}, state="running"
        )
        add_history(db_path, new, {0: 100.0})
        seen["changed"] = app.poll()
        await settle(pilot)
        seen["rows"] = cells(app)
        seen["chart"] = chart_rows(app.screen.query_one(ChartView))
        seen["quiet again"] = app.poll()
        return seen

    seen = run_app(db_path, scenario)
    assert seen["quiet"] is False
    assert seen["changed"] is True
    assert seen["quiet again"] is False
    assert seen["rows"][0][:2] == ["▸ exp-a  ● 1 running", "5"]
    assert seen["chart"][0] == {
        "metric": "loss", "x": "0", "group": "exp-a", "line": str((10 + 11 + 12 + 100) / 4),
        "low": "10.0", "high": "100.0", "n": "4",
    }  # fmt: skip


@both_engines
def test_a_recording_run_is_followed_live(db_path, tmp_path):
    """A real `wbg run` child: marked running, its output and curve followed, then ended."""
    go = tmp_path / "go"
    script = (
        "import pathlib, time\n"
        "print('loss: 2.0', flush=True)\n"
        f"while not pathlib.Path({str(go)!r}).exists():\n"
        "    time.sleep(0.05)\n"
        "print('loss: 1.0')\nprint('done')\n"
    )
    child = subprocess.Popen(
        [*wbg_executable(), "run", "-g", "live", "-n", "job", "--", sys.executable, "-c", script],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )

    def logged() -> bool:
        with contextlib.closing(db.connect(db_path)) as conn:
            found = runs.list_runs(conn)
            return bool(found) and runs.get_output(conn, found[0]["id"]) is not None

    async def until(pilot, predicate) -> None:
        for _ in range(3000):
            pilot.app.poll()
            await settle(pilot)
            if predicate():
                return
            await pilot.pause(0.02)
        raise AssertionError("the screen did not follow the run")

    try:
        wait_for(logged, timeout=60)

        async def scenario(app, pilot):
            seen = {"row": cells(app)[0]}
            await press(pilot, "enter")
            screen = app.screen
            await until(pilot, lambda: "loss: 2.0" in screen.query_one("#log").lines)
            seen["title"] = str(screen.query_one("#title").content)
            go.write_text("")
            await until(pilot, lambda: "done" in screen.query_one("#log").lines)
            await until(pilot, lambda: "finished" in str(screen.query_one("#title").content))
            seen["log"] = list(screen.query_one("#log").lines)
            await press(pilot, "3")
            seen["curve"] = chart_rows(screen.query_one(ChartView))
            return seen

        settings = WorkspaceSettings(query.Filters(), grouped=False)
        seen = run_app(db_path, scenario, settings)
        assert child.wait(timeout=60) == 0
    finally:
        go.write_text("")
        child.wait(timeout=60)
    assert seen["row"][0].startswith("job (")
    assert seen["row"][1:3] == ["● running", "live"]
    assert seen["title"].endswith("· ● running")
    assert seen["log"] == ["loss: 2.0", "loss: 1.0", "done"]
    assert [(row["x"], row["line"]) for row in seen["curve"]] == [("0", "2.0"), ("1", "1.0")]


@both_engines
def test_a_run_whose_process_was_killed_turns_crashed_on_screen(db_path):
    from wbg.cli.ui_app import REAP_EVERY

    owner = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
    try:
        run_id = add_run(db_path, name="victim", state="running")
        with contextlib.closing(db.connect(db_path)) as conn:  # the owner's heartbeat
            runs.heartbeat(conn, runs.run_num(conn, run_id), pid=owner.pid)

        async def scenario(app, pilot):
            before = cells(app)[0][1]
            owner.kill()  # SIGKILL: the process writes nothing on its way out
            owner.wait()
            app.polls = 0  # the timer's polls so far do not count
            changed = [app.poll() for _ in range(REAP_EVERY)]
            await settle(pilot)
            return before, changed, cells(app)[0][1]

        before, changed, after = run_app(db_path, scenario)
    finally:
        owner.kill()
        owner.wait()
    assert before == "● running"
    assert changed == [False] * (REAP_EVERY - 1) + [True]
    assert after == "crashed"


# --- help, colour, size ----------------------------------------------------------------------


@both_engines
def test_help_and_quit(experiment, db_path):
    async def scenario(app, pilot):
        await press(pilot, "question_mark")
        text = str(app.screen.query_one("#help").content)
        await press(pilot, "escape", "q")
        return text, app.return_code

    text, code = run_app(db_path, scenario)
    assert "G        group by: config keys, group, job_type" in text
    assert code == 0


def test_ctrl_c_quits_and_a_picker_takes_its_own_ctrl_c(experiment, db_path):
    async def scenario(app, pilot):
        await press(pilot, "m")  # the metrics picker: its Ctrl-C cancels it alone
        picker = type(app.screen).__name__
        await press(pilot, "ctrl+c")
        after_picker = (type(app.screen).__name__, app.is_running)
        await pilot.press("ctrl+c")
        await pilot.pause()
        return picker, after_picker, app.is_running, app.return_code

    picker, after_picker, running, code = run_app(db_path, scenario)
    assert (picker, after_picker) == ("Picker", ("MainScreen", True))
    assert (running, code) == (False, 0)


@postgresql_only("a server ends the app's session: a file has no session to end")
def test_a_database_that_stops_answering_closes_the_screen(experiment, db_path):
    """A server restarted (or an administrator ending the session) while the workspace is
    open: the screen closes with the error kept for `wbg ui` to report in one line (exit
    1, as any command), instead of Textual's traceback and exit 0."""

    async def scenario(app, pilot):
        with contextlib.closing(db.connect(db_path)) as admin:
            ended = admin.execute(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                "WHERE datname = current_database() AND pid <> pg_backend_pid()"
            ).fetchone()[0]
        for _ in range(200):  # the next poll (twice a second) meets the closed session
            await pilot.pause(0.05)
            if not app.is_running:
                break
        return ended, app.is_running, app.return_code, app.failure

    ended, running, code, failure = run_app(db_path, scenario)
    assert ended >= 1
    assert (running, code) == (False, 1)
    assert isinstance(failure, sqlite3.OperationalError), failure
    error = db.reading_error(str(db_path), str(failure))
    assert error.message.startswith(f"database {db_path}: ") and "\n" not in error.message


@both_engines
def test_no_color_draws_charts_with_markers_only(experiment, db_path, monkeypatch):
    monkeypatch.setenv("NO_COLOR", "1")

    async def scenario(app, pilot):
        view = app.screen.query_one(ChartView)
        return app.no_color, view.render()

    no_color, rendered = run_app(db_path, scenario)
    assert no_color
    assert not rendered.spans and not rendered.style
    assert "•• exp-a (3 runs)" in rendered.plain and "++ exp-b (3 runs)" in rendered.plain


def test_whole_screen_at_80x24(experiment, db_path, snap_compare):
    app = Workspace(db_path, WorkspaceSettings(query.Filters()), shown_path="runs.db")
    assert snap_compare(app, terminal_size=(80, 24), run_before=settle)


@both_engines
def test_clean_output_escapes_control_sequences():
    assert clean_output("\x1b]0;title\x07a\x1b[1mb\x1b[0m\r\n\x00z\n") == [
        "\\x1b]0;title\\x07ab",
        "\\x00z",
    ]


@both_engines
def test_names_from_runs_are_shown_literally(db_path):
    """Rich markup and control characters in run names, groups and config are text."""
    run_id = add_run(
        db_path,
        group="[bold]exp[/",
        name="[red]run\x1b[2J",
        config={"note": "[link=x]y"},
        summary={"acc": 0.5},
    )

    async def scenario(app, pilot):
        seen = {"groups": cells(app), "drawn": drawn_text(app)}
        await press(pilot, "space")
        seen["member"] = cells(app)[1][0]
        await press(pilot, "down", "enter")
        seen["title"] = str(app.screen.query_one("#title").content)
        seen["fields"] = flat(app.screen.query_one("#fields").content)
        return seen

    seen = run_app(db_path, scenario)
    assert seen["groups"][0][:2] == ["▸ [bold]exp[/", "1"]
    assert "▸ [bold]exp[/" in seen["drawn"]  # drawn as typed, not read as markup
    assert seen["member"] == f"    [red]run\\x1b[2J ({run_id})"
    assert seen["title"] == f"run [red]run\\x1b[2J ({run_id}) · finished"
    assert "config.note [link=x]y" in seen["fields"]


# --- the command -----------------------------------------------------------------------------


@both_engines
def test_bad_input_is_refused_before_the_screen_opens(experiment, cli, db_path, tmp_path):
    result = cli("ui", "-G", "lrr")
    assert result.exit_code == 2
    assert result.stderr.startswith(
        "Error: unknown key 'lrr': no selected run has it\ndid you mean: lr"
    )
    result = cli("ui", "-g", "exp-z")
    assert (result.exit_code, result.stderr.splitlines()[0]) == (2, "Error: unknown group 'exp-z'")
    result = cli("ui", "-m", "los")
    assert result.exit_code == 2
    assert result.stderr == (
        "Error: unknown metric 'los': no selected run logged it\n"
        "did you mean: loss? metrics with history: acc, loss\n"
    )
    result = cli("ui", "--db", str(tmp_path / "none.db"))  # as every reading command
    assert result.exit_code == 2
    assert result.stderr.startswith(f"Error: no database at {tmp_path / 'none.db'}\n")
    assert not (tmp_path / "none.db").exists()


@both_engines
def test_without_a_terminal_it_says_so_and_draws_nothing(experiment, db_path):
    proc = run_wbg("ui")  # stdin /dev/null, output to pipes
    assert (proc.returncode, proc.stdout) == (2, "")
    assert proc.stderr == (
        "Error: wbg ui needs a terminal: run it in one (for output to a pipe: wbg table, wbg plot)\n"
    )


@both_engines
def test_without_textual_one_line_names_the_extra(experiment, db_path):
    code = (
        "import sys; sys.modules['textual'] = None\nfrom wbg.cli.main import main; main(['ui'])\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=os.environ, timeout=60
    )
    assert proc.returncode == 1
    assert (
        proc.stderr
        == "Error: wbg ui needs textual, which is not installed: pip install 'wbg[ui]'\n"
    )


@both_engines
def test_other_commands_do_not_import_textual(experiment, db_path):
    code = (
        "import sys; from wbg.cli.main import main\n"
        "try:\n    main(['table'])\nexcept SystemExit:\n    pass\n"
        "print('textual' in sys.modules, file=sys.stderr)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.stderr.strip().endswith("False"), proc.stderr
    assert "exp-a" in proc.stdout


@both_engines
def test_in_a_real_terminal_through_tmux(experiment, db_path, tmp_path):
    """`wbg ui` on a real 80x24 terminal: first screen, keys, help, q quits with 0."""
    tmux = shutil.which("tmux")
    if tmux is None:
        pytest.skip("tmux is not installed (.ci/run installs it): no real-terminal check")
    socket = str(tmp_path / "tmux.sock")  # a server of its own: the user's tmux is not touched
    command = shlex.join([*wbg_executable(), "ui", "--db", str(db_path)])
    subprocess.run(
        [tmux, "-S", socket, "new-session", "-d", "-s", "ui", "-x", "80", "-y", "24",
         f"{command}; echo EXIT=$?; sleep 600"],
        check=True,
        env={**os.environ, "TERM": "xterm-256color"},
    )  # fmt: skip

    def screen() -> str:
        proc = subprocess.run(
            [tmux, "-S", socket, "capture-pane", "-p", "-t", "ui"], capture_output=True, text=True
        )
        return proc.stdout

    def keys(*names: str) -> None:
        subprocess.run([tmux, "-S", socket, "send-keys", "-t", "ui", *names], check=True)

    try:
        drawn = ("▸ exp-b", "q Quit", "loss (mean per group, band: min-max)")
        wait_for(lambda: all(part in screen() for part in drawn), timeout=60)
        first = screen().splitlines()
        assert len(first) == 24
        assert first[0].startswith(" 8 runs · groups 1-2 of 2 · filter: none · db")
        assert first[1].startswith(" group by: group · chart: mean, band minmax, x step")
        assert first[3].startswith(" ▸ exp-a  4     0.910 ± 0.010 (n=3)")
        keys("g")
        wait_for(lambda: "exp-a-fold0 (" in screen(), timeout=30)
        assert "group by: off (g)" in screen()
        keys("?")
        wait_for(lambda: "wbg ui — keys" in screen(), timeout=30)
        keys("Escape")
        wait_for(lambda: "wbg ui — keys" not in screen(), timeout=30)
        keys("q")
        wait_for(lambda: "EXIT=0" in screen(), timeout=30)
    finally:
        subprocess.run([tmux, "-S", socket, "kill-server"], capture_output=True)
