"""Alignment and aggregation of grouped curves (store/curves.py) on hand-computed cases."""

from __future__ import annotations

import math
import statistics

import pytest
from helpers import both_engines
from hypothesis import given, settings
from hypothesis import strategies as st

from wbg import curves
from wbg.errors import InvalidInput

# Run A: the line 2x at steps 0, 2, 4 (one point every other step).
# Run B: the line x at steps 1 and 3 (starts late, ends early).
RUN_A = ([0, 2, 4], [0.0, 4.0, 8.0])
RUN_B = ([1, 3], [1.0, 3.0])


@both_engines
def test_union_of_steps_interpolation_and_no_extrapolation():
    curve = curves.aggregate("loss", "g", [RUN_A, RUN_B], "mean", "minmax")
    assert curve.x == [0, 1, 2, 3, 4]
    # A interpolated at 1 and 3 (2, 6); B interpolated at 2 (2); B absent at 0 and 4.
    assert curve.n == [1, 2, 2, 2, 1]
    assert curve.line == [0.0, 1.5, 3.0, 4.5, 8.0]
    assert curve.low == [0.0, 1.0, 2.0, 3.0, 8.0]
    assert curve.high == [0.0, 2.0, 4.0, 6.0, 8.0]
    assert curve.runs == 2


@both_engines
def test_std_and_stderr_bands_are_around_the_line_and_empty_for_one_run():
    std = curves.aggregate("loss", "g", [RUN_A, RUN_B], "mean", "std")
    # at x=1 the values are 2 and 1: sample std = sqrt(0.5)
    spread = math.sqrt(0.5)
    assert std.low[1] == pytest.approx(1.5 - spread)
    assert std.high[1] == pytest.approx(1.5 + spread)
    assert std.low[0] is None and std.high[0] is None  # one run: no spread, not zero
    assert std.low[4] is None and std.high[4] is None
    stderr = curves.aggregate("loss", "g", [RUN_A, RUN_B], "mean", "stderr")
    assert stderr.low[1] == pytest.approx(1.0)  # std / sqrt(2) = 0.5
    assert stderr.high[1] == pytest.approx(2.0)
    none = curves.aggregate("loss", "g", [RUN_A, RUN_B], "mean", "none")
    assert none.low == [None] * 5 and none.high == [None] * 5


@both_engines
def test_band_over_the_same_runs_as_a_max_line():
    curve = curves.aggregate("loss", "g", [RUN_A, RUN_B], "max", "std")
    assert curve.line == [0.0, 2.0, 4.0, 6.0, 8.0]
    # x=2: values 4 and 2, std sqrt(2), around the max line
    assert curve.low[2] == pytest.approx(4.0 - math.sqrt(2))
    assert curve.high[2] == pytest.approx(4.0 + math.sqrt(2))


@both_engines
def test_median_and_min_lines():
    runs = [([0, 1], [1.0, 10.0]), ([0, 1], [2.0, 20.0]), ([0, 1], [9.0, 30.0])]
    assert curves.aggregate("m", "g", runs, "median", "none").line == [2.0, 20.0]
    assert curves.aggregate("m", "g", runs[:2], "median", "none").line == [1.5, 15.0]
    assert curves.aggregate("m", "g", runs, "min", "none").line == [1.0, 10.0]


@both_engines
def test_single_point_run_counts_only_at_its_step():
    single = ([2], [100.0])
    curve = curves.aggregate("loss", "g", [RUN_A, single], "mean", "minmax")
    assert curve.x == [0, 2, 4]
    assert curve.n == [1, 2, 1]
    assert curve.line == [0.0, 52.0, 8.0]
    alone = curves.aggregate("loss", "g", [single], "mean", "std")
    assert (alone.x, alone.line, alone.low, alone.n) == ([2], [100.0], [None], [1])


@both_engines
def test_ema_is_per_run_before_aggregation():
    # EMA weight 0.5: A 0,10,0 -> 0,5,2.5; B 10,0,10 -> 10,5,7.5; max -> 10,5,7.5.
    # (The max of the raw runs is 10,10,10, whose EMA would stay 10.)
    assert curves.ema([0.0, 10.0, 0.0], 0.5) == [0.0, 5.0, 2.5]
    runs = [
        ([0, 1, 2], curves.ema([0.0, 10.0, 0.0], 0.5)),
        ([0, 1, 2], curves.ema([10.0, 0.0, 10.0], 0.5)),
    ]
    assert curves.aggregate("m", "g", runs, "max", "none").line == [10.0, 5.0, 7.5]


@both_engines
def test_downsample_keeps_the_band_envelope():
    curve = curves.aggregate(
        "m", "g", [(list(range(100)), [float(i % 7) for i in range(100)])], "mean", "minmax"
    )
    curve.low = [v - 1 if i != 50 else -100.0 for i, v in enumerate(curve.line)]
    curve.high = [v + 1 for v in curve.line]
    small = curves.downsample(curve, 10)
    assert len(small.x) == 10
    assert min(small.low) == -100.0
    assert max(small.high) == 7.0
    assert small.x[0] == pytest.approx(4.5)  # mean x of the first bucket, steps 0..9
    assert curves.downsample(curve, 1000) is curve


@both_engines
def test_check_options_refuses_bad_values():
    with pytest.raises(InvalidInput, match="--smooth must be at least 0 and below 1"):
        curves.check_options("mean", "minmax", "step", 1.0)
    with pytest.raises(InvalidInput, match="unknown --band 'range'"):
        curves.check_options("mean", "range", "step", 0.0)


finite = st.floats(min_value=-1e6, max_value=1e6, allow_nan=False)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.lists(finite, min_size=3, max_size=3), min_size=1, max_size=6))
@both_engines
def test_aggregates_match_statistics_on_a_shared_grid(values):
    runs = [([0, 1, 2], row) for row in values]
    for line, reference in (
        ("mean", statistics.fmean),
        ("median", statistics.median),
        ("min", min),
        ("max", max),
    ):
        curve = curves.aggregate("m", "g", runs, line, "std")
        for i in range(3):
            column = [row[i] for row in values]
            assert curve.line[i] == pytest.approx(reference(column), rel=1e-9, abs=1e-6)
            if len(values) > 1:
                spread = statistics.stdev(column)
                assert curve.high[i] - curve.line[i] == pytest.approx(spread, rel=1e-6, abs=1e-6)
            else:
                assert curve.high[i] is None


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.integers(0, 50), min_size=1, max_size=8, unique=True),
    st.lists(st.integers(0, 50), min_size=1, max_size=8, unique=True),
)
@both_engines
def test_interpolated_runs_stay_within_their_own_span(steps_a, steps_b):
    steps_a, steps_b = sorted(steps_a), sorted(steps_b)
    run_a = (steps_a, [float(s) for s in steps_a])  # the line y = x
    run_b = (steps_b, [2.0 * s for s in steps_b])  # the line y = 2x
    curve = curves.aggregate("m", "g", [run_a, run_b], "mean", "minmax")
    assert curve.x == sorted(set(steps_a) | set(steps_b))
    for x, n, low, high in zip(curve.x, curve.n, curve.low, curve.high, strict=True):
        in_a = steps_a[0] <= x <= steps_a[-1]
        in_b = steps_b[0] <= x <= steps_b[-1]
        assert n == in_a + in_b
        # both runs are straight lines, so interpolation is exact
        expected = [v for v, inside in ((float(x), in_a), (2.0 * x, in_b)) if inside]
        assert low == pytest.approx(min(expected))
        assert high == pytest.approx(max(expected))


def reference_interpolation(xs, vs, x):
    """The textbook definition: the run's value at x, or None outside its span."""
    if x < xs[0] or x > xs[-1]:
        return None
    for k in range(len(xs) - 1, -1, -1):  # the last point at or before x
        if xs[k] <= x:
            break
    if xs[k] == x or k == len(xs) - 1:
        return vs[k]
    return vs[k] + (vs[k + 1] - vs[k]) * (x - xs[k]) / (xs[k + 1] - xs[k])


@settings(max_examples=80, deadline=None)
@given(
    st.lists(
        st.lists(st.tuples(st.floats(0, 100, allow_nan=False), finite), min_size=1, max_size=12),
        min_size=1,
        max_size=4,
    ),
    st.sampled_from([None, 5, 20]),
)
@both_engines
def test_alignment_matches_the_definition(raw_runs, max_points):
    runs = []
    for points in raw_runs:
        by_x = dict(sorted(points))  # one value per x, ascending
        runs.append((list(by_x), list(by_x.values())))
    union, spans = curves.align(runs, max_points)
    assert union == sorted(set(union))
    every_x = sorted({x for xs, _ in runs for x in xs})
    if max_points is None or len(every_x) <= max_points:
        assert union == every_x
    else:
        assert len(union) <= max_points + 2 * len(runs)
        assert {xs[0] for xs, _ in runs} | {xs[-1] for xs, _ in runs} <= set(union)
    for (xs, vs), (first, values) in zip(runs, spans, strict=True):
        for i, x in enumerate(union):
            inside = first <= i < first + len(values)
            expected = reference_interpolation(xs, vs, x)
            assert inside == (expected is not None)
            if inside:
                assert values[i - first] == pytest.approx(expected, rel=1e-9, abs=1e-6)


@both_engines
def test_time_grid_keeps_each_runs_ends():
    runs = [
        ([0.0, 0.5, 1.0, 1.5, 2.0], [0.0, 1.0, 2.0, 3.0, 4.0]),
        ([0.3, 0.9, 1.7], [0.6, 1.8, 3.4]),
    ]
    curve = curves.aggregate("m", "g", runs, "mean", "minmax", max_points=3)
    assert curve.x == [0.0, 0.3, 1.0, 1.7, 2.0]
    assert curve.n == [1, 2, 2, 2, 1]
    assert curve.line == pytest.approx([0.0, 0.6, 2.0, 3.4, 4.0])
