"""Scalar capture of printed Python dicts: HuggingFace ``Trainer`` logs with no tracker.

The Trainer prints each log as ``str(dict)``: numbers formatted as strings in recent
versions (``{'loss': '0.6879', 'epoch': '1.5'}``), plain numbers in older ones.
"""

from __future__ import annotations

import math

import pytest
from helpers import no_database
from hypothesis import given
from hypothesis import strategies as st

from wbg.capture import ScalarCapture, python_dict_numbers

# Scalar capture: no database is opened.
pytestmark = no_database

keys = st.from_regex(r"[A-Za-z_][A-Za-z0-9_/.\-]{0,15}", fullmatch=True).filter(
    lambda k: k != "step"
)
finite = st.floats(allow_nan=False, allow_infinity=False, width=64)
# How a number reaches the printed dict: as a float, an int, or a string the Trainer made.
numeric = st.one_of(
    finite.map(lambda v: (v, v)),
    st.integers(-(10**12), 10**12).map(lambda v: (v, float(v))),
    finite.map(lambda v: (f"{v:.4g}", float(f"{v:.4g}"))),
    finite.map(lambda v: (repr(v), v)),
    st.sampled_from([("nan", math.nan), ("-inf", -math.inf), ("Infinity", math.inf)]),
)
not_numeric = st.one_of(
    st.text(max_size=10).filter(lambda s: not _looks_numeric(s)),
    st.booleans(),
    st.none(),
    st.lists(st.integers(), max_size=3),
    st.dictionaries(st.text(max_size=3), st.integers(), max_size=2),
)


def _looks_numeric(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def same(a: float, b: float) -> bool:
    return (math.isnan(a) and math.isnan(b)) or a == b


def capture_lines(lines: list[str]) -> list[tuple[int, str, float]]:
    capture = ScalarCapture()
    return capture.feed("".join(line + "\n" for line in lines).encode()) + capture.close()


@given(
    st.dictionaries(
        keys, st.one_of(numeric.map(lambda p: ("num", p)), not_numeric.map(lambda v: ("x", v)))
    )
)
def test_printed_dict_gives_exactly_its_numbers(entries):
    printed = {
        key: value[1][0] if value[0] == "num" else value[1] for key, value in entries.items()
    }
    expected = {key: value[1][1] for key, value in entries.items() if value[0] == "num"}
    found = python_dict_numbers(str(printed))
    assert list(found) == list(expected)
    assert all(same(found[key], expected[key]) for key in expected)


@given(st.dictionaries(keys, numeric, min_size=1), st.integers(1, 5))
def test_repeated_logs_advance_the_step(entries, times):
    line = str({key: printed for key, (printed, _) in entries.items()})
    points = capture_lines([line] * times)
    assert [step for step, _, _ in points] == [s for s in range(times) for _ in entries]
    assert [key for _, key, _ in points] == list(entries) * times


@given(st.dictionaries(keys, numeric, min_size=1), st.integers(0, 10**6))
def test_a_step_entry_is_the_step(entries, step):
    line = str({"step": step, **{key: printed for key, (printed, _) in entries.items()}})
    assert [(s, k) for s, k, _ in capture_lines([line])] == [(step, key) for key in entries]


@given(st.text(max_size=60))
def test_any_text_in_braces_never_raises(text):
    capture_lines(["{" + text + "}"])


def test_trainer_log_lines():
    lines = [
        "{'loss': '0.6879', 'grad_norm': '0.2403', 'learning_rate': '0.000275', 'epoch': '1.5'}",
        "{'loss': 0.6512, 'grad_norm': 0.31, 'learning_rate': 0.00015, 'epoch': 3.0}",
        "{'eval_loss': '0.7', 'eval_runtime': '0.05', 'eval_model_preparation_time': '0.001', "
        "'epoch': '3.0'}",
        "{'train_runtime': '1.234', 'train_samples_per_second': '97.2', "
        "'train_steps_per_second': '12.1', 'train_loss': '0.66', 'epoch': '3.0'}",
    ]
    points = capture_lines(lines)
    by_step: dict[int, dict[str, float]] = {}
    for step, key, value in points:
        by_step.setdefault(step, {})[key] = value
    assert by_step == {
        0: {"loss": 0.6879, "grad_norm": 0.2403, "learning_rate": 0.000275, "epoch": 1.5},
        1: {"loss": 0.6512, "grad_norm": 0.31, "learning_rate": 0.00015, "epoch": 3.0},
        2: {"eval_loss": 0.7, "eval_runtime": 0.05, "eval_model_preparation_time": 0.001,
            "epoch": 3.0},
        3: {"train_runtime": 1.234, "train_samples_per_second": 97.2,
            "train_steps_per_second": 12.1, "train_loss": 0.66, "epoch": 3.0},
    }  # fmt: skip


@pytest.mark.parametrize(
    "line",
    [
        "{'name': 'bert', 'ok': True}", "{'a': [1, 2]}", "{}", "{'a': __import__('os')}",
        "{'a': 1 + 2}", "{'a': -'1'}", "{1: 2}", "{'a' 1}", "{'step': 1.5, 'x': 1}",
        "{'step': -1, 'x': 1}", "{'step': 3}", "{'a': '1_000'}", "{**x}",
    ],
)  # fmt: skip
def test_dicts_that_give_no_metric(line):
    assert capture_lines([line]) == []


def test_json_lines_keep_their_rule():
    # a JSON object must be all numbers; only a non-JSON (Python) dict skips other values
    assert capture_lines(['{"loss": 0.5, "name": "x"}']) == []
    assert capture_lines(["{'loss': 0.5, 'name': 'x'}"]) == [(0, "loss", 0.5)]
