"""``wbg plot`` end to end: terminal chart, series files, images, errors."""

from __future__ import annotations

import json
import struct
import sys
from pathlib import Path

import pytest
from helpers import both_engines

from wbg import db, runs

DATA = Path(__file__).parent / "data"


def record(
    db_path: Path,
    points: dict[int, float],
    *,
    group: str | None = "g1",
    config: dict | None = None,
    metric: str = "loss",
    tags: tuple[str, ...] = (),
    started_at: float | None = None,
    times: dict[int, float] | None = None,
    state: str = "finished",
) -> str:
    """A finished run with history ``{step: value}`` of ``metric``."""
    conn = db.connect(db_path)
    with runs.transaction(conn):
        run_id, num = runs.create_run(
            conn, project="p", group=group, job_type="train", config=config or {}, tags=tags
        )
        if started_at is not None:
            conn.execute("UPDATE runs SET started_at = ? WHERE num = ?", (started_at, num))
        runs.write_history(
            conn,
            [
                (num, step, metric, value, (times or {}).get(step, 1000.0 + step))
                for step, value in points.items()
            ],
        )
        runs.finish_run(conn, run_id, state=state, exit_code=0 if state == "finished" else 1)
    conn.close()
    return run_id


@pytest.fixture
def two_groups(db_path):
    """Group a: the line 2x at even steps plus the line x at steps 1 and 3; group b: flat."""
    record(db_path, {0: 0.0, 2: 4.0, 4: 8.0}, group="a", config={"lr": 0.1})
    record(db_path, {1: 1.0, 3: 3.0}, group="a", config={"lr": 0.1})
    record(db_path, {0: 5.0, 4: 5.0}, group="b", config={"lr": 0.01})


@both_engines
def test_csv_series_exact(cli, two_groups, tmp_path):
    out = tmp_path / "series.csv"
    result = cli("plot", "loss", "--out", str(out))
    assert result.exit_code == 0, result.output
    assert result.stdout == ""
    assert result.stderr == f"Wrote {out}\n"
    assert out.read_text() == (
        "metric,x,group,line,low,high,n\n"
        "loss,0,a,0.0,0.0,0.0,1\n"
        "loss,1,a,1.5,1.0,2.0,2\n"
        "loss,2,a,3.0,2.0,4.0,2\n"
        "loss,3,a,4.5,3.0,6.0,2\n"
        "loss,4,a,8.0,8.0,8.0,1\n"
        "loss,0,b,5.0,5.0,5.0,1\n"
        "loss,4,b,5.0,5.0,5.0,1\n"
    )


@both_engines
def test_json_series_with_std_band_and_group_by(cli, two_groups, tmp_path):
    out = tmp_path / "series.json"
    result = cli("plot", "loss", "--group-by", "lr", "--band", "std", "--out", str(out))
    assert result.exit_code == 0, result.output
    rows = json.loads(out.read_text())
    assert [r["group"] for r in rows] == ["lr=0.01"] * 2 + ["lr=0.1"] * 5
    one_run = rows[2]
    assert one_run == {
        "metric": "loss", "x": 0, "group": "lr=0.1", "line": 0.0, "low": None, "high": None,
        "n": 1,
    }  # fmt: skip
    assert rows[3]["low"] == pytest.approx(1.5 - 0.5**0.5)


@both_engines
def test_smooth_is_applied_per_run(cli, db_path, tmp_path):
    record(db_path, {0: 0.0, 1: 10.0, 2: 0.0})
    record(db_path, {0: 10.0, 1: 0.0, 2: 10.0})
    out = tmp_path / "s.csv"
    result = cli(
        "plot", "loss", "--smooth", "0.5", "--line", "max", "--band", "none", "-o", str(out)
    )
    assert result.exit_code == 0, result.output
    assert out.read_text().splitlines()[1:] == [
        "loss,0,g1,10.0,,,2",
        "loss,1,g1,5.0,,,2",
        "loss,2,g1,7.5,,,2",
    ]


@both_engines
def test_time_axis_is_seconds_since_each_run_started(cli, db_path, tmp_path):
    record(db_path, {0: 1.0, 1: 3.0}, started_at=100.0, times={0: 100.0, 1: 110.0})
    record(db_path, {0: 5.0, 1: 7.0}, started_at=500.0, times={0: 505.0, 1: 510.0})
    out = tmp_path / "t.csv"
    result = cli("plot", "loss", "--x", "time", "-o", str(out))
    assert result.exit_code == 0, result.output
    assert out.read_text().splitlines()[1:] == [
        "loss,0.0,g1,1.0,1.0,1.0,1",
        "loss,5.0,g1,3.5,2.0,5.0,2",
        "loss,10.0,g1,5.0,3.0,7.0,2",
    ]


@both_engines
def test_filters_select_runs(cli, db_path, tmp_path):
    record(db_path, {0: 1.0}, config={"lr": 0.1}, tags=("keep",))
    record(db_path, {0: 3.0}, config={"lr": 0.2}, tags=("keep",))
    record(db_path, {0: 100.0}, config={"lr": 0.3}, state="failed")
    out = tmp_path / "f.csv"
    for args, expected in (
        (("--tag", "keep"), "loss,0,g1,2.0,1.0,3.0,2"),
        (("--state", "failed"), "loss,0,g1,100.0,100.0,100.0,1"),
        (("--where", "lr >= 0.2"), "loss,0,g1,51.5,3.0,100.0,2"),
        (("--where", "lr > 0.1", "--where", "lr < 0.3"), "loss,0,g1,3.0,3.0,3.0,1"),
    ):
        result = cli("plot", "loss", *args, "-o", str(out))
        assert result.exit_code == 0, result.output
        assert out.read_text().splitlines()[1:] == [expected], args


@both_engines
def test_runs_without_group_get_one_line_each(cli, db_path, tmp_path):
    first = record(db_path, {0: 1.0}, group=None)
    second = record(db_path, {0: 2.0}, group=None)
    out = tmp_path / "r.csv"
    result = cli("plot", "loss", "-o", str(out))
    assert result.exit_code == 0, result.output
    assert out.read_text().splitlines()[1:] == [
        f"loss,0,{first},1.0,1.0,1.0,1",
        f"loss,0,{second},2.0,2.0,2.0,1",
    ]


@both_engines
def test_nan_points_are_left_out_and_counted(cli, db_path, tmp_path):
    record(db_path, {0: 1.0, 1: float("nan"), 2: 3.0, 3: float("inf")})
    out = tmp_path / "n.csv"
    result = cli("plot", "loss", "-o", str(out))
    assert result.exit_code == 0, result.output
    assert result.stderr.splitlines()[0] == "loss: 2 NaN/inf point(s) left out of the curves"
    assert out.read_text().splitlines()[1:] == [
        "loss,0,g1,1.0,1.0,1.0,1",
        "loss,2,g1,3.0,3.0,3.0,1",
    ]


@both_engines
def test_terminal_rendering_matches_stored_text(cli, two_groups):
    result = cli("plot", "loss", "--width", "60", "--height", "18")
    assert result.exit_code == 0, result.output
    assert "\x1b[" not in result.stdout  # not a terminal: no colour
    expected = (DATA / "plot_two_groups.txt").read_text()
    assert result.stdout == expected


@both_engines
def test_several_metrics_give_one_panel_each(cli, db_path):
    record(db_path, {0: 1.0, 1: 2.0}, metric="loss")
    record(db_path, {0: 0.5, 1: 0.7}, metric="acc")
    result = cli("plot", "loss", "acc", "--width", "50", "--height", "30")
    assert result.exit_code == 0, result.output
    titles = [line.strip() for line in result.stdout.splitlines() if "per group" in line]
    assert titles == ["loss (mean per group, band: min-max)", "acc (mean per group, band: min-max)"]


@both_engines
def test_colour_only_when_asked(two_groups, db_path):
    from wbg import curves, query
    from wbg.cli.plot import render_terminal

    conn = db.connect(db_path)
    panel = curves.panel(conn, "loss", curves.select_runs(conn, query.Filters(), None))
    coloured = render_terminal([panel], "mean", "minmax", 60, 18, color=True)
    plain = render_terminal([panel], "mean", "minmax", 60, 18, color=False)
    assert "\x1b[38;5;12m" in coloured
    assert "\x1b[" not in plain


def png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    assert data[12:16] == b"IHDR"
    return struct.unpack(">II", data[16:24])


@both_engines
def test_png_written_and_read_back(cli, two_groups, tmp_path):
    pytest.importorskip("matplotlib", reason="the plot extra (matplotlib) is not installed")
    out = tmp_path / "loss.png"
    result = cli("plot", "loss", "--out", str(out))
    assert result.exit_code == 0, result.output
    assert png_size(out) == (900, 400)
    two = tmp_path / "two.png"
    result = cli("plot", "loss", "loss", "--band", "std", "--out", str(two))
    assert result.exit_code == 0, result.output
    assert png_size(two) == (900, 800)


@both_engines
def test_svg_written(cli, two_groups, tmp_path):
    pytest.importorskip("matplotlib", reason="the plot extra (matplotlib) is not installed")
    out = tmp_path / "loss.svg"
    result = cli("plot", "loss", "--out", str(out))
    assert result.exit_code == 0, result.output
    text = out.read_text()
    assert "<svg" in text and "a (2 runs)" in text


@both_engines
def test_image_without_matplotlib_names_the_extra(cli, two_groups, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import fails
    out = tmp_path / "loss.png"
    result = cli("plot", "loss", "--out", str(out))
    assert result.exit_code == 1
    assert result.stderr == (
        "Error: writing an image needs matplotlib, which is not installed\n"
        "install the plot extra: pip install 'wbg[plot]'\n"
    )
    assert not out.exists()


@pytest.mark.parametrize(
    ("args", "code", "stderr"),
    [
        (
            ("plot", "los"),
            2,
            "Error: unknown metric 'los': no selected run logged it\n"
            "did you mean: loss? metrics with history: loss\n",
        ),
        (
            ("plot", "best"),
            2,
            "Error: metric 'best' has no history in the selected runs, only a summary value\n"
            "metrics with history: loss\n",
        ),
        (
            ("plot", "loss", "--smooth", "1.5"),
            2,
            "Error: --smooth must be at least 0 and below 1, got 1.5\n"
            "0 is no smoothing; 0.6 to 0.99 smooths more and more\n",
        ),
        (
            ("plot", "loss", "--group-by", "optimizer"),
            2,
            "Error: unknown key 'optimizer': no selected run has it\n"
            "known keys: id, project, name, group, job_type, notes, state, exit_code, cwd, host, "
            "user, pid, git_commit, git_dirty, started_at, ended_at, duration_s, lr\n",
        ),
        (
            ("plot", "loss", "--group-by", "tags"),
            2,
            "Error: cannot group or compare by tags: a run has many tags, so it would belong "
            "to several groups\n"
            "copy the tag into config (wbg runs set ID KEY=VALUE) and use that key\n",
        ),
        (
            ("plot", "loss", "--out", "chart.pdf"),
            2,
            "Error: cannot tell the file type of 'chart.pdf'\n"
            "--out takes a .png, .svg, .csv or .json file\n",
        ),
        (("plot", "loss", "--group", "nope"), 2, "Error: unknown group 'nope'\nknown groups: g1\n"),
        (
            ("plot", "loss", "--group-by", "lr,"),
            2,
            "Error: malformed --group-by 'lr,'\nexpected KEY[,KEY...]\n",
        ),
        (
            ("plot", "loss", "--group-by", "lr", "--no-group"),
            2,
            "Error: --group-by and --no-group exclude each other\n",
        ),
        (
            ("plot", "loss", "--state", "done"),
            2,
            "Error: unknown state 'done'\nstates: running, finished, failed, killed, crashed\n",
        ),
        (
            ("plot", "loss", "--where", "lr"),
            2,
            "Error: malformed --where 'lr'\n"
            "expected 'KEY OP VALUE' with OP one of = != < <= > >= ~\n",
        ),
    ],
)
@both_engines
def test_errors(cli, db_path, args, code, stderr):
    num_id = record(db_path, {0: 1.0}, config={"lr": 0.1})
    conn = db.connect(db_path)
    with runs.transaction(conn):
        runs.merge_summary(conn, runs.run_num(conn, num_id), {"best": 0.5})
    conn.close()
    result = cli(*args)
    assert result.exit_code == code, result.output
    assert result.stdout == ""
    assert result.stderr == stderr


@pytest.mark.parametrize(
    ("option", "value", "message"),
    [
        (
            "--line",
            "avg",
            "Error: Invalid value for '--line': 'avg' is not one of 'mean', "
            "'median', 'min', 'max'.",
        ),
        (
            "--band",
            "range",
            "Error: Invalid value for '--band': 'range' is not one of 'none', "
            "'minmax', 'std', 'stderr'.",
        ),
        (
            "--x",
            "epoch",
            "Error: Invalid value for '--x': 'epoch' is not one of 'step', 'time'.",
        ),
        (
            "--width",
            "5",
            "Error: Invalid value for '--width': 5 is not in the range x>=30.",
        ),
        (
            "--smooth",
            "abc",
            "Error: Invalid value for '--smooth': 'abc' is not a valid float.",
        ),
    ],
)
@both_engines
def test_bad_option_values_are_usage_errors(cli, db_path, option, value, message):
    record(db_path, {0: 1.0})
    result = cli("plot", "loss", option, value)
    assert result.exit_code == 2
    assert result.stderr == message + "\nTry 'wbg plot --help' for help.\n"


@both_engines
def test_no_group_gives_one_line_per_run(cli, db_path, tmp_path):
    first = record(db_path, {0: 1.0}, group="a")
    second = record(db_path, {0: 3.0}, group="a")
    out = tmp_path / "r.csv"
    result = cli("plot", "loss", "--no-group", "-o", str(out))
    assert result.exit_code == 0, result.output
    assert out.read_text().splitlines()[1:] == [
        f"loss,0,{first},1.0,1.0,1.0,1",
        f"loss,0,{second},3.0,3.0,3.0,1",
    ]


@both_engines
def test_legend_wraps_to_the_width(cli, db_path):
    for name in ("alpha", "bravo", "charlie", "delta", "echo"):
        record(db_path, {0: 1.0, 1: 2.0}, group=name)
    result = cli("plot", "loss", "--width", "40", "--height", "16")
    assert result.exit_code == 0, result.output
    legend = result.stdout.splitlines()[-3:]
    assert legend == [
        "  •• alpha (1 run)  ++ bravo (1 run)",
        "  xx charlie (1 run)  oo delta (1 run)",
        "  ** echo (1 run)",
    ]
    assert len(result.stdout.splitlines()) == 16


@both_engines
def test_width_and_height_are_exact_even_beyond_the_terminal(cli, two_groups, monkeypatch):
    monkeypatch.setenv("COLUMNS", "40")
    monkeypatch.setenv("LINES", "10")
    result = cli("plot", "loss", "--width", "100", "--height", "30")
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert len(lines) == 30
    assert max(len(line) for line in lines) == 100


@both_engines
def test_default_size_is_the_terminals(cli, two_groups, monkeypatch):
    monkeypatch.setenv("COLUMNS", "70")
    monkeypatch.setenv("LINES", "21")
    result = cli("plot", "loss")
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert len(lines) == 20  # one row left for the prompt
    assert max(len(line) for line in lines) == 70


@both_engines
def test_a_single_point_is_drawn(cli, db_path):
    record(db_path, {3: 0.5}, group="solo")
    result = cli("plot", "loss", "--width", "40", "--height", "10")
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[-1] == "  •• solo (1 run)"
    assert sum(line.count("•") for line in lines[:-1]) == 1


@both_engines
def test_metric_names_and_group_by_keys_complete_from_the_database(db_path):
    import os
    import subprocess

    from helpers import wbg_executable

    import wbg

    with wbg.init(project="p", group="g", config={"seed": 1}) as run:
        run.log({"loss": 1.0, "lr_now": 0.1})

    def complete(words: str, index: int) -> list[str]:
        env = {**os.environ, "_WBG_COMPLETE": "complete_bash", "COMP_WORDS": words}
        env["COMP_CWORD"] = str(index)
        proc = subprocess.run(wbg_executable(), env=env, capture_output=True, text=True)
        assert proc.returncode == 0 and proc.stderr == ""
        return proc.stdout.split()

    assert complete("wbg plot l", 2) == ["loss", "lr_now"]
    assert "seed" in complete("wbg plot loss --group-by s", 4)
