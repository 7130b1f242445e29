"""``wbg table``: aggregates against ``statistics``, formats, filters, sorting, errors."""

from __future__ import annotations

import contextlib
import csv
import io
import json
import math
import statistics
import tempfile
from pathlib import Path

import pytest
from helpers import both_engines
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from views_helpers import add_run, fixture_experiment

from wbg import aggregate, query
from wbg.db import connect, table_schema

# --- aggregates against statistics --------------------------------------------------------

finite = st.floats(min_value=-1e6, max_value=1e6, allow_nan=False, allow_subnormal=False)
metric_value = st.one_of(
    finite,
    finite,
    finite,
    st.just(math.nan),
    st.just(math.inf),
    st.just(-math.inf),
    st.none(),  # the run has no such metric
)
key_value = st.one_of(st.sampled_from([1, 2, 0.5, "x", "y", True]), st.none())  # None: missing
run_strategy = st.tuples(key_value, key_value, metric_value)


def _expected(values: list[float]) -> dict[str, float | None]:
    n = len(values)
    std = statistics.stdev(values) if n >= 2 else None
    return {
        "count": n,
        "mean": statistics.fmean(values) if n else None,
        "std": std,
        "stderr": None if std is None else std / math.sqrt(n),
        "min": min(values) if n else None,
        "max": max(values) if n else None,
        "median": statistics.median(values) if n else None,
    }


def _close(got: float | None, want: float | None, scale: float) -> bool:
    if want is None or got is None:
        return got is None and want is None
    return math.isclose(got, want, rel_tol=1e-9, abs_tol=1e-9 * max(scale, 1.0))


def _group_value(value):
    if value is True:
        return "true"
    return value


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(st.lists(run_strategy, min_size=1, max_size=25))
@both_engines
def test_aggregates_match_statistics(data):
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "runs.db"
        for a, b, value in data:
            config = {}
            if a is not None:
                config["a"] = a
            if b is not None:
                config["b"] = b
            summary = {"m": value} if value is not None else {"other": 1.0}
            add_run(path, config=config, summary=summary)
        with contextlib.closing(connect(path)) as conn:
            has_a = any(a is not None for a, _, _ in data)
            has_b = any(b is not None for _, b, _ in data)
            keys = [k for k, present in (("a", has_a), ("b", has_b)) if present]
            if not keys or not any(v is not None for _, _, v in data):
                return
            table = aggregate.build_table(
                conn, group_by=keys, metrics=["m"], aggregates=list(aggregate.AGGREGATES)
            )
    groups: dict[tuple, list] = {}
    for a, b, value in data:
        group = tuple(_group_value(v) for v, k in ((a, "a"), (b, "b")) if k in keys)
        groups.setdefault(group, []).append(value)
    assert len(table.rows) == len(groups)
    # 1 and True are different groups in JSON but equal in SQL; keep them apart here too
    for row in table.rows:
        group = tuple(row[k] for k in keys)
        values = groups[group]
        kept = [v for v in values if v is not None and math.isfinite(v)]
        excluded = [v for v in values if v is not None and not math.isfinite(v)]
        want = _expected(kept)
        scale = max((abs(v) for v in kept), default=1.0)
        assert row["runs"] == len(values)
        assert row["m.excluded"] == len(excluded)
        for agg, expected in want.items():
            assert _close(row[f"m.{agg}"], expected, scale), (agg, row, kept)


@both_engines
def test_std_is_stable_for_large_offsets(db_path):
    base = 1e9
    for value in (base + 1, base + 2, base + 3):
        add_run(db_path, group="g", summary={"m": value})
    with contextlib.closing(connect(db_path)) as conn:
        row = aggregate.build_table(conn, metrics=["m"]).rows[0]
    assert row["m.std"] == pytest.approx(1.0, rel=1e-9)


@both_engines
def test_single_run_has_empty_std_and_stderr(cli, db_path):
    add_run(db_path, group="g", summary={"acc": 0.5})
    result = cli("table", "-m", "acc", "--agg", "count,mean,std,stderr", "-f", "json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == [
        {
            "group": "g",
            "runs": 1,
            "acc.count": 1,
            "acc.mean": 0.5,
            "acc.std": None,
            "acc.stderr": None,
            "acc.excluded": 0,
        }
    ]
    csv_out = cli("table", "-m", "acc", "--agg", "mean,std", "-f", "csv").stdout
    assert csv_out.splitlines()[1] == "g,1,0.5,,0"


@both_engines
def test_missing_group_key_is_the_dash_group(cli, db_path):
    add_run(db_path, config={"lr": 0.1}, summary={"acc": 0.5})
    add_run(db_path, config={}, summary={"acc": 0.7})
    human = cli("table", "--group-by", "lr", "-m", "acc", "--agg", "mean")
    assert human.exit_code == 0, human.output
    assert human.stdout.splitlines()[2:] == ["0.1  1     0.5", "-    1     0.7"]
    rows = json.loads(cli("table", "-G", "lr", "-m", "acc", "--agg", "mean", "-f", "json").stdout)
    assert [r["lr"] for r in rows] == [0.1, None]


@both_engines
def test_nan_and_inf_are_excluded_and_counted(cli, db_path):
    for value in (1.0, 3.0, math.nan, math.inf, -math.inf):
        add_run(db_path, group="g", summary={"loss": value})
    result = cli("table", "-m", "loss", "-f", "json")
    row = json.loads(result.stdout)[0]
    assert (row["runs"], row["loss.count"], row["loss.mean"], row["loss.excluded"]) == (5, 2, 2, 3)
    human = cli("table", "-m", "loss")
    assert human.exit_code == 0
    assert "note: non-finite values (NaN, ±inf) left out of the aggregates: loss 3" in human.stderr


@both_engines
def test_default_grouping(cli, db_path):
    add_run(db_path, name="solo", summary={"acc": 0.5})
    result = cli("table", "-f", "csv", "-m", "acc", "--agg", "mean")
    assert result.stdout.splitlines()[0] == "id,name,runs,acc.mean,acc.excluded"
    add_run(db_path, group="g", summary={"acc": 0.7})
    result = cli("table", "-f", "csv", "-m", "acc", "--agg", "mean")
    assert result.stdout.splitlines() == [
        "group,runs,acc.mean,acc.excluded",
        "g,1,0.7,0",
        ",1,0.5,0",
    ]
    no_group = cli("table", "--no-group", "-f", "csv", "-m", "acc", "--agg", "mean")
    assert no_group.stdout.splitlines()[0] == "id,name,runs,acc.mean,acc.excluded"
    assert len(no_group.stdout.splitlines()) == 3


# --- formats and columns -----------------------------------------------------------------


@both_engines
def test_every_tabulate_format_is_accepted(cli, db_path):
    import tabulate

    fixture_experiment(db_path)
    for fmt in [*tabulate.tabulate_formats, "csv", "json", "jsonl"]:
        result = cli("table", "-f", fmt)
        assert result.exit_code == 0, (fmt, result.output)
        assert "exp-a" in result.stdout, fmt


@both_engines
def test_machine_columns_are_exact(cli, db_path):
    fixture_experiment(db_path)
    result = cli("table", "-f", "csv")
    assert result.exit_code == 0, result.output
    rows = list(csv.reader(io.StringIO(result.stdout)))
    header = ["group", "runs"]
    for metric in ("acc", "loss", "val_acc", "duration_s"):
        header += [f"{metric}.count", f"{metric}.mean", f"{metric}.std", f"{metric}.excluded"]
    assert rows[0] == header
    assert [r[:2] for r in rows[1:]] == [["exp-a", "4"], ["exp-b", "4"]]
    records = json.loads(cli("table", "-f", "json").stdout)
    assert [list(r) for r in records] == [header, header]
    assert records[0]["acc.mean"] == pytest.approx(0.91)  # unrounded: (0.9 + 0.91 + 0.92) / 3
    assert records[0]["duration_s.mean"] == pytest.approx((10 + 11 + 12 + 5) / 4)
    lines = cli("table", "-f", "jsonl", "-G", "group,job_type", "-m", "acc").stdout.splitlines()
    assert [json.loads(line)["job_type"] for line in lines] == ["eval", "train", "eval", "train"]


@both_engines
def test_human_format_is_compact(cli, db_path):
    fixture_experiment(db_path)
    result = cli("table", "-G", "group,job_type", "-m", "acc", "-m", "val_acc")
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines() == [
        "group  job_type  runs  acc            val_acc",
        "-----  --------  ----  -------------  -------",
        "exp-a  eval      1                    0.85",
        "exp-a  train     3     0.910 ± 0.010",
        "exp-b  eval      1                    0.75",
        "exp-b  train     3     0.810 ± 0.010",
    ]


@both_engines
def test_wide_table_drops_metrics_to_fit_columns(cli, db_path, monkeypatch):
    fixture_experiment(db_path)
    monkeypatch.setenv("COLUMNS", "60")
    result = cli("table", "--agg", "mean,std,min,max")
    assert result.exit_code == 0, result.output
    assert all(len(line) <= 60 for line in result.stdout.splitlines()), result.stdout
    assert "note: 3 metrics left out to fit the terminal: loss, val_acc, duration_s" in (
        result.stderr
    )
    monkeypatch.delenv("COLUMNS")
    full = cli("table", "--agg", "mean,std,min,max")
    assert "duration_s" in full.stdout and full.stderr == ""


# --- filters, sorting, errors ------------------------------------------------------------


@both_engines
def test_where_with_quotes_globs_and_numbers(cli, db_path):
    fixture_experiment(db_path)

    def groups(*args):
        result = cli("table", "-G", "fold", "-m", "acc", "--agg", "count", "-f", "csv", *args)
        assert result.exit_code == 0, result.output
        return [line.split(",")[:2] for line in result.stdout.splitlines()[1:]]

    assert groups("-w", "lr = 0.1", "-j", "train") == [["0", "1"], ["1", "1"], ["2", "1"]]
    assert groups("-w", "fold >= 1", "-w", "lr<0.05") == [["1", "1"], ["2", "1"]]
    assert groups("-w", "name ~ 'exp-a-fold*'") == [["0", "1"], ["1", "1"], ["2", "1"]]
    assert groups("-w", "name = 'exp-b-eval'") == [["", "1"]]
    assert groups("-w", 'model.name != "mlp"') == []


@both_engines
def test_hostile_where_matches_nothing_and_leaves_tables_intact(cli, db_path):
    fixture_experiment(db_path)
    with contextlib.closing(connect(db_path)) as conn:
        schema = table_schema(conn)
    hostile = "lr'); DROP TABLE runs;--"
    as_value = cli("table", "--where", f"name = {hostile}", "-f", "json")
    assert as_value.exit_code == 0, as_value.output
    assert json.loads(as_value.stdout) == []
    as_glob = cli("runs", "list", "--where", f"name ~ {hostile}*", "-f", "json")
    assert as_glob.exit_code == 0 and json.loads(as_glob.stdout) == []
    as_text = cli("table", "--where", hostile)
    assert as_text.exit_code == 2
    assert as_text.stderr.startswith(f"Error: malformed --where {hostile!r}")
    as_key = cli("table", "--where", '"x" = 1 OR 1=1; DROP TABLE runs;-- = 1')
    assert as_key.exit_code == 2
    with contextlib.closing(connect(db_path)) as conn:
        assert table_schema(conn) == schema
        assert conn.execute("SELECT count(*) FROM runs").fetchone()[0] == 8


@both_engines
def test_sort_by_metric_aggregate(cli, db_path):
    for group, values in (("low", [0.1, 0.25]), ("high", [0.8, 0.9]), ("mid", [0.5]), ("none", [])):
        for value in values:
            add_run(db_path, group=group, summary={"acc": value})
        if not values:
            add_run(db_path, group=group, summary={"other": 1.0})

    def order(*args):
        result = cli("table", "-m", "acc", "-f", "csv", *args)
        assert result.exit_code == 0, result.output
        return [line.split(",")[0] for line in result.stdout.splitlines()[1:]]

    assert order() == ["high", "low", "mid", "none"]
    assert order("--sort", "acc.mean") == ["low", "mid", "high", "none"]
    assert order("--sort", "acc.mean", "--desc") == ["high", "mid", "low", "none"]
    assert order("--sort", "acc.std", "--desc") == ["low", "high", "mid", "none"]
    assert order("--sort", "runs", "--desc", "--limit", "2") == ["high", "low"]
    bad = cli("table", "--sort", "acc.maen")
    assert bad.exit_code == 2
    assert (
        bad.stderr.splitlines()[0] == "Error: cannot sort by 'acc.maen': not a column of this table"
    )
    assert bad.stderr.splitlines()[1].startswith("did you mean: acc.mean")


@both_engines
def test_grouping_by_tags_is_refused_with_the_way_out(cli, db_path):
    add_run(db_path, group="g", tags=("a", "b"), summary={"acc": 1.0})
    for key in ("tags", "tag"):
        result = cli("table", "--group-by", key)
        assert result.exit_code == 2
        assert result.stderr.splitlines() == [
            "Error: cannot group or compare by tags: a run has many tags, so it would belong "
            "to several groups",
            "copy the tag into config (wbg runs set ID KEY=VALUE) and use that key",
        ]


@both_engines
def test_unknown_names_get_close_matches(cli, db_path):
    fixture_experiment(db_path)
    cases = {
        ("table", "-G", "lrr"): (
            "Error: unknown key 'lrr': no selected run has it",
            "did you mean: lr",
        ),
        ("table", "-w", "foldd=1"): (
            "Error: unknown key 'foldd': no selected run has it",
            "did you mean: fold",
        ),
        ("table", "-m", "acc2"): (
            "Error: unknown metric 'acc2': no run has it in its summary",
            "did you mean: acc",
        ),
        ("table", "-g", "exp-c"): ("Error: unknown group 'exp-c'", "did you mean: exp-b, exp-a?"),
        ("runs", "list", "-p", "projj"): ("Error: unknown project 'projj'", "did you mean: proj?"),
        ("table", "--agg", "meen"): (
            "Error: unknown aggregate 'meen'",
            "did you mean: mean, median?",
        ),
        ("table", "-f", "githb"): ("Error: unknown format 'githb'", "did you mean: github"),
    }
    for args, (message, hint) in cases.items():
        result = cli(*args)
        assert result.exit_code == 2, (args, result.output)
        lines = result.stderr.splitlines()
        assert lines[0] == message, args
        assert lines[1].startswith(hint), (args, lines)
        assert result.stdout == ""


@both_engines
def test_filters_select_runs(cli, db_path):
    fixture_experiment(db_path)
    add_run(
        db_path, group="exp-a", job_type="train", state="failed", tags=("t1",), summary={"acc": 0}
    )
    result = cli("table", "-g", "exp-a", "--state", "finished", "-f", "csv", "-m", "acc")
    assert result.stdout.splitlines()[1].startswith("exp-a,4,3,")
    tagged = cli("table", "--tag", "t1", "-f", "csv", "-m", "acc")
    assert tagged.stdout.splitlines()[1].startswith("exp-a,1,1,0")
    bad_state = cli("table", "--state", "done")
    assert bad_state.exit_code == 2
    assert bad_state.stderr.startswith("Error: unknown state 'done'")


@both_engines
def test_key_resolution_is_shared_with_query():
    # group keys and --where use the same resolution: a bare key is config, fields win
    assert query.resolve_key("lr").source == "config"
    assert query.resolve_key("state").source == "field"
    assert query.split_keys(["a,b", "c", "a"]) == ["a", "b", "c"]


@both_engines
def test_migration_3_adds_the_non_finite_index_to_an_older_database(tmp_path):
    import sqlite3

    from wbg.db import migrate

    path = tmp_path / "old.db"
    with contextlib.closing(sqlite3.connect(path, isolation_level=None)) as raw:
        assert migrate(raw, upto=2) == [
            "m001_runs_and_history",
            "m002_output_summary_metrics_indexes",
        ]
        raw.execute(
            "INSERT INTO runs (id, project, state, started_at) "
            "VALUES ('abcd1234', 'p', 'finished', 0)"
        )
        raw.execute("INSERT INTO summary_metrics VALUES (1, 'loss', NULL), (1, 'acc', 0.5)")
    with contextlib.closing(connect(path)) as conn:
        assert "summary_metrics_non_finite" in table_schema(conn)
        row = aggregate.build_table(conn, no_group=True, metrics=["loss", "acc"]).rows[0]
    assert (row["loss.count"], row["loss.excluded"], row["acc.mean"]) == (0, 1, 0.5)


@both_engines
def test_default_metrics_are_those_of_the_selected_runs(cli, db_path):
    add_run(db_path, project="other", summary={f"m{i:02d}": float(i) for i in range(25)})
    add_run(db_path, project="mine", group="g", summary={"acc": 1.0, "m03": 2.0}, duration=4.0)
    add_run(db_path, project="mine", group="g", summary={"acc": 3.0}, duration=6.0)
    result = cli("table", "-p", "mine", "-f", "json", "--agg", "mean")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == [
        {
            "group": "g",
            "runs": 2,
            "acc.mean": 2.0,
            "acc.excluded": 0,
            "m03.mean": 2.0,
            "m03.excluded": 0,
            "duration_s.mean": 5.0,
            "duration_s.excluded": 0,
        }
    ]


@both_engines
def test_group_by_is_spelled_the_same_on_table_and_plot(cli, db_path):
    import wbg

    with wbg.init(project="p", group="g", config={"lr": 0.1}) as run:
        run.log({"loss": 1.0})
    for command in (["table"], ["plot", "loss", "--width", "40", "--height", "10"]):
        bad = cli(*command, "--group-by", "lr,")
        assert (bad.exit_code, bad.stderr) == (
            2,
            "Error: malformed --group-by 'lr,'\nexpected KEY[,KEY...]\n",
        )
        assert cli(*command, "-G", "lr").exit_code == 0


@both_engines
def test_std_stays_exact_when_the_spread_is_tiny_next_to_the_values(cli, db_path):
    import statistics

    # One walk sums (x - K) and (x - K)**2 with K one of the metric's values; for group
    # "far" K is 1e9 away and the spread 0.1: its deviations must be summed exactly.
    far = [1e9 + 0.1, 1e9 + 0.2, 1e9 + 0.3]
    for value in [0.0, 1.0]:
        add_run(db_path, group="near", summary={"x": value})
    for value in far:
        add_run(db_path, group="far", summary={"x": value})
    result = cli("table", "-m", "x", "-f", "json", "--agg", "mean,std")
    assert result.exit_code == 0, result.output
    rows = {r["group"]: r for r in json.loads(result.stdout)}
    assert rows["far"]["x.std"] == pytest.approx(statistics.stdev(far), rel=1e-6)
    assert rows["near"]["x.std"] == pytest.approx(statistics.stdev([0.0, 1.0]), rel=1e-12)


# --- found by a mutation check of store/aggregate.py and store/query.py: each test below
# fails when the rule it names is broken, which no other test noticed -------------------------


@both_engines
def test_sort_without_a_column_and_by_a_bare_metric(cli, db_path):
    for group, values in (("low", [0.1, 0.2]), ("high", [0.8, 0.9]), ("mid", [0.5])):
        for value in values:
            add_run(db_path, group=group, summary={"acc": value})

    def order(*args):
        result = cli("table", "-m", "acc", "-f", "csv", *args)
        assert result.exit_code == 0, result.output
        return [line.split(",")[0] for line in result.stdout.splitlines()[1:]]

    assert order() == ["high", "low", "mid"]
    assert order("--desc") == ["mid", "low", "high"]  # --desc alone: group order reversed
    # a bare metric sorts by its mean (count would put mid, with one run, first)
    assert order("--sort", "acc") == ["low", "mid", "high"]
    assert order("--agg", "count,mean", "--sort", "acc") == ["low", "mid", "high"]


@both_engines
def test_repeated_metrics_and_aggregates_are_shown_once(cli, db_path):
    add_run(db_path, group="g", summary={"acc": 0.5})
    result = cli("table", "-m", "acc", "-m", "summary.acc", "--agg", "mean,mean", "-f", "csv")
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines()[0] == "group,runs,acc.mean,acc.excluded"


@both_engines
def test_unknown_metric_hint_falls_back_to_the_whole_file(cli, db_path):
    add_run(db_path, group="a", summary={"loss": 1.0})
    add_run(db_path, group="b", summary={"accuracy": 1.0})
    result = cli("table", "-g", "a", "-m", "accuracyy")
    assert result.exit_code == 2
    assert result.stderr.splitlines()[1].startswith("did you mean: accuracy? ")


@both_engines
def test_not_equal_includes_runs_without_the_key(db_path):
    add_run(db_path, config={"lr": 0.1})
    add_run(db_path, config={"lr": 0.01})
    add_run(db_path, config={"seed": 1})
    with contextlib.closing(connect(db_path)) as conn:
        assert query.count_runs(conn, query.Filters(where=("lr != 0.1",))) == 2
        assert query.count_runs(conn, query.Filters(where=("lr = 0.1",))) == 1


@both_engines
def test_sort_puts_numbers_before_text_and_missing_last(db_path):
    from wbg import runs

    for value in (2, "a", None, 1):
        add_run(db_path, name=str(value), config={} if value is None else {"v": value})
    with contextlib.closing(connect(db_path)) as conn:
        names = [r["name"] for r in runs.list_runs(conn, sort="v")]
        assert names == ["1", "2", "a", "None"]
        names = [r["name"] for r in runs.list_runs(conn, sort="v", desc=True)]
        assert names == ["2", "1", "a", "None"]  # numbers before text either way


@both_engines
def test_keys_with_backslashes_are_reached(db_path):
    # (a key with a double quote cannot be: SQLite's JSON paths end a quoted label at the
    # first quote, escaped or not)
    add_run(db_path, config={"c\\d": 2, "e": {"f\\": 3}})
    add_run(db_path, config={"other": 1})
    with contextlib.closing(connect(db_path)) as conn:
        for where in ("c\\d = 2", "e.f\\ = 3"):
            assert query.count_runs(conn, query.Filters(where=(where,))) == 1, where


@both_engines
def test_known_names_in_hints_are_newest_first(db_path):
    for i, group in enumerate(("old-one", "mid-one", "new-one")):
        add_run(db_path, group=group, started_at=1_700_000_000.0 + i)
    with contextlib.closing(connect(db_path)) as conn:
        assert query.distinct_values(conn, "group") == ["new-one", "mid-one", "old-one"]


@both_engines
def test_quoted_values_compare_as_text_and_huge_numbers_do_not_overflow(db_path):
    add_run(db_path, name="text", config={"v": "1"})
    add_run(db_path, name="number", config={"v": 1})
    with contextlib.closing(connect(db_path)) as conn:

        def names(where: str) -> list[str]:
            from wbg import runs

            return [r["name"] for r in runs.list_runs(conn, query.Filters(where=(where,)))]

        assert names("v = '1'") == ["text"]
        assert names("v = 1") == ["number"]
        assert names("v < 99999999999999999999") == ["number"]  # beyond 64 bits: a float


@both_engines
def test_unknown_group_hint_says_when_the_list_is_cut(cli, db_path):
    for i in range(25):
        add_run(db_path, group=f"g{i:02d}")
    result = cli("table", "-g", "zzzzzz")
    assert result.exit_code == 2
    hint = result.stderr.splitlines()[1]
    assert hint.startswith("known groups: ") and hint.endswith(" ...")
    assert len(hint.removeprefix("known groups: ").removesuffix(" ...").split(", ")) == 20


@both_engines
def test_a_streamed_per_run_table_is_the_whole_table(db_path, monkeypatch):
    import contextlib

    from wbg import aggregate
    from wbg.db import connect

    # Slices of 7, then 50 runs: rows, metrics and excluded counts across their edges
    # must be those of the table worked out at once.
    monkeypatch.setattr(aggregate, "STREAM_FIRST", 7)
    monkeypatch.setattr(aggregate, "STREAM_SLICE", 50)
    for i in range(130):
        summary = {"acc": i / 130, "loss": float("nan") if i % 17 == 0 else 1 - i / 130}
        if i % 5:
            summary["f1"] = (i % 7) / 7
        add_run(db_path, name=f"r{i % 11}", summary=summary, duration=float(i % 13))
    with contextlib.closing(connect(db_path)) as conn:
        for aggs in (None, "count,mean,std,min,max,median,stderr"):
            whole = aggregate.build_table(conn, no_group=True, aggregates=aggs)
            streamed = aggregate.build_table(conn, no_group=True, aggregates=aggs, stream=True)
            assert len(streamed.rows) == len(whole.rows) == 130
            assert streamed.metrics == whole.metrics
            assert list(streamed.rows) == whole.rows
            assert streamed.excluded() == whole.excluded() == {"loss": 8}
        picked = aggregate.build_table(conn, no_group=True, metrics=["f1"], stream=True)
        assert list(picked.rows) == aggregate.build_table(conn, no_group=True, metrics=["f1"]).rows


@both_engines
def test_a_streamed_filtered_table_has_the_metrics_of_its_runs_only(db_path):
    import contextlib

    from wbg import aggregate, query
    from wbg.db import connect

    add_run(db_path, group="a", summary={"acc": 0.5})
    add_run(db_path, group="b", summary={"loss": 0.25, "f1": 0.1})
    with contextlib.closing(connect(db_path)) as conn:

        def streamed(group: str) -> list[str]:
            filters = query.Filters(group=group)
            return aggregate.build_table(conn, filters, no_group=True, stream=True).metrics

        assert streamed("a") == ["acc", "duration_s"]
        assert streamed("b") == ["f1", "loss", "duration_s"]
    # past 20 metric names in the file, the selection's are found by one walk
    add_run(db_path, group="c", summary={f"m{i:02d}": i for i in range(25)})
    with contextlib.closing(connect(db_path)) as conn:
        assert streamed("a") == ["acc", "duration_s"]
        assert len(streamed("c")) == 26


def test_an_unknown_group_where_no_run_has_one_says_so(cli, db_path):
    add_run(db_path)  # a run without a group: the database is not empty
    result = cli("table", "-g", "nosuch")
    assert result.exit_code == 2
    assert result.stderr.splitlines() == ["Error: unknown group 'nosuch'", "no run has a group yet"]
