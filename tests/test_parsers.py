"""Parsers: KEY=VALUE typing, scalar capture patterns, name rules (hypothesis where it pays)."""

from __future__ import annotations

import json
import math
import os

import pytest
from helpers import no_database
from hypothesis import given
from hypothesis import strategies as st

from wbg.capture import ScalarCapture, compile_patterns
from wbg.errors import InvalidInput, InvalidName
from wbg.values import (
    check_group,
    dumps,
    loads,
    parse_assignments,
    parse_value,
)

# Parsers and name rules: no database is opened.
pytestmark = no_database

keys = st.from_regex(r"[A-Za-z_][A-Za-z0-9_]{0,12}", fullmatch=True)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("3", 3), ("-2", -2), ("0.1", 0.1), ("1e-3", 0.001), ("true", True), ("false", False),
        ('"x"', "x"), ("'y'", "y"), ("[1,2]", [1, 2]), ('["a", 1]', ["a", 1]), ("adam", "adam"),
        ("1.2.3", "1.2.3"), ("2024-01-01", "2024-01-01"), ("{a=1}", "{a=1}"), (" 7 ", 7),
        ("inf", math.inf), ("hello world", "hello world"),
    ],
)  # fmt: skip
def test_parse_value_examples(text, expected):
    assert parse_value(text) == expected


@given(st.integers(min_value=-(10**15), max_value=10**15))
def test_integers_round_trip(number):
    assert parse_value(str(number)) == number


@given(st.floats(allow_nan=False, allow_infinity=False))
def test_floats_round_trip(number):
    assert parse_value(repr(number)) == number


@given(st.text(alphabet=st.characters(blacklist_categories=("Cs",)), min_size=1))
def test_parse_value_never_raises(text):
    value = parse_value(text)
    json.dumps(value)  # always JSON-serialisable


@given(st.dictionaries(keys, st.integers(), min_size=1, max_size=5))
def test_assignments_round_trip(config):
    items = [f"{k}={v}" for k, v in config.items()]
    assert parse_assignments(items) == config


def test_nested_assignments():
    assert parse_assignments(["a.b=1", "a.c=x", "d=2"]) == {"a": {"b": 1, "c": "x"}, "d": 2}


@pytest.mark.parametrize("item", ["novalue", "=1", "a=", "a..b=1", ".a=1"])
def test_malformed_assignments(item):
    with pytest.raises(InvalidInput):
        parse_assignments([item])


@given(
    st.recursive(
        st.none() | st.booleans() | st.integers() | st.floats() | st.text(),
        lambda children: (
            st.lists(children, max_size=3) | st.dictionaries(st.text(), children, max_size=3)
        ),
        max_leaves=10,
    )
)
def test_json_encoding_round_trips_non_finite(value):
    decoded = loads(dumps(value))

    def same(a, b):
        if isinstance(a, float) and math.isnan(a):
            return isinstance(b, float) and math.isnan(b)
        if isinstance(a, str) and a in ("NaN", "Infinity", "-Infinity"):
            return True  # such strings read back as floats, by design
        if isinstance(a, dict):
            return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
        if isinstance(a, list):
            return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
        return a == b

    assert same(value, decoded)


@given(
    st.text(min_size=1, max_size=128).filter(
        lambda s: all(ord(c) >= 32 and ord(c) != 127 for c in s)
    )
)
def test_any_printable_group_up_to_128_is_valid(name):
    assert check_group(name) == name


@given(st.text(min_size=1, max_size=20), st.sampled_from(["\n", "\t", "\x00", "\x1b", "\x7f"]))
def test_control_characters_are_refused(name, control):
    with pytest.raises(InvalidName):
        check_group(name + control)


def capture_all(lines, patterns=()):
    capture = ScalarCapture(compile_patterns(patterns))
    points = capture.feed("".join(line + "\n" for line in lines).encode())
    return points + capture.close()


def test_implicit_step_rule():
    lines = [f"{k}: {i}" for i, k in enumerate("xyyyxy")]
    assert [(s, k) for s, k, _ in capture_all(lines)] == [
        (0, "x"), (0, "y"), (1, "y"), (2, "y"), (2, "x"), (3, "y"),
    ]  # fmt: skip


@given(st.lists(st.sampled_from(["a", "b", "c"]), max_size=30))
def test_implicit_steps_never_repeat_a_key_within_a_step(sequence):
    points = capture_all([f"{k}: 1" for k in sequence])
    seen = set()
    for step, key, _ in points:
        assert (step, key) not in seen
        seen.add((step, key))
    steps = [s for s, _, _ in points]
    assert steps == sorted(steps)


@given(keys, st.floats(allow_nan=False, allow_infinity=False), st.integers(0, 10**6))
def test_key_value_with_step_suffix(key, value, step):
    points = capture_all([f"{key}: {value!r} (step {step})"])
    if key == "step":
        assert points == [(step, key, value)] or points == []
    else:
        assert points == [(step, key, value)]


@pytest.mark.parametrize(
    "line",
    [
        "Epoch 3/10", "loss = 0.5", "loss: high", "url: http://x", "  ", '{"a": "x"}',
        '{"a": true}', "[1, 2]", "12:30: meeting", "loss: 0.5 extra",
    ],
)  # fmt: skip
def test_lines_that_are_not_metrics(line):
    assert capture_all([line]) == []


def test_partial_lines_carriage_returns_and_ansi():
    capture = ScalarCapture()
    assert capture.feed(b"los") == []
    assert capture.feed(b"s: 0.5\r") == [(0, "loss", 0.5)]
    assert capture.feed(b"\x1b[1macc\x1b[0m: 0.9\n") == [(0, "acc", 0.9)]
    assert capture.feed(b'{"loss": 0.1, "step": 7}') == []
    assert capture.close() == [(7, "loss", 0.1)]


def test_nan_and_inf_values_are_captured():
    points = capture_all(["loss: nan", "acc: -inf"])
    assert math.isnan(points[0][2]) and points[1][2] == -math.inf


def test_custom_patterns_need_key_and_value_groups():
    with pytest.raises(InvalidInput, match=r"lacks the named group\(s\) \(\?P<key>...\)"):
        compile_patterns([r"acc=(?P<value>\S+)"])
    assert capture_all(["val top1 = 0.5"], [r"val (?P<key>\w+) = (?P<value>\S+)"]) == [
        (0, "top1", 0.5)
    ]


def test_streams_keep_their_own_unfinished_lines():
    # stdout writes "loss:" and " 0.25\n" in pieces while stderr lines arrive between them
    capture = ScalarCapture()
    assert capture.feed(b"loss:", 1) == []
    assert capture.feed(b"warning: slow\n", 2) == []
    assert capture.feed(b" 0.25\nacc: 0.5", 1) == [(0, "loss", 0.25)]
    assert capture.feed(b"grad: 1", 2) == []
    assert sorted(capture.close()) == [(0, "acc", 0.5), (0, "grad", 1.0)]


def test_generated_ids_use_every_character_evenly():
    from collections import Counter

    from wbg.ids import ALPHABET, generate_id

    counts = Counter("".join(generate_id() for _ in range(4500)))  # 36,000 characters
    assert set(counts) == set(ALPHABET)
    # 1,000 expected per character. A plain `byte % 36` would favour a-d (8/256 each
    # instead of 7/256): 4,500 for the four together instead of 4,000 (sd about 63).
    assert sum(counts[c] for c in "abcd") < 4250
    assert min(counts.values()) > 800


def test_python_3_10_reads_toml_with_tomli(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    """The tomli branch (Python 3.10 has no tomllib) forced on this interpreter: values and
    the settings file read the same through it."""
    import sys
    import types

    import tomli

    from wbg import settings, values

    monkeypatch.setattr(values, "sys", types.SimpleNamespace(version_info=(3, 10, 14)))
    assert values.toml() is tomli
    assert values.parse_value("[1, 2.5, true]") == [1, 2.5, True]
    assert values.parse_value(".5") == 0.5
    assert values.parse_value("adam") == "adam"
    (tmp_path / "wbg.toml").write_text('group = "from-tomli"\n')
    assert settings.find_settings(tmp_path).get("group") == "from-tomli"
    (tmp_path / "wbg.toml").write_text("group = \n")
    with pytest.raises(InvalidInput, match="cannot read settings file"):
        settings.find_settings(tmp_path)
    monkeypatch.undo()
    assert values.toml() is sys.modules["tomllib"]


def test_a_settings_file_is_parsed_once_and_read_again_when_it_changes(tmp_path) -> None:
    """Each wbg.init looks up its settings; the parse is kept per file until its bytes
    change, including a rewrite within the file system's time-stamp tick, same size."""
    from wbg import settings

    path = tmp_path / "pyproject.toml"
    path.write_text('[tool.wbg]\nproject = "aaa"\n')
    first = settings.find_settings(tmp_path)
    assert first.get("project") == "aaa"
    assert settings.find_settings(tmp_path).values is first.values  # not parsed again
    path.write_text('[tool.wbg]\nproject = "bbb"\n')  # same size, same tick
    assert settings.find_settings(tmp_path).get("project") == "bbb"
    os.utime(path, (1e9, 1e9))  # long unchanged: its stat alone says it still is
    assert settings.find_settings(tmp_path).get("project") == "bbb"
    path.write_text('[tool.wbg]\nproject = "ccc"\n')
    assert settings.find_settings(tmp_path).get("project") == "ccc"
    path.write_bytes(b'[tool.wbg]\nproject = "\xff"\n')
    with pytest.raises(InvalidInput, match="cannot read settings file"):
        settings.find_settings(tmp_path)


def test_tables_render_without_importing_importlib_metadata() -> None:
    """tabulate reads its version through importlib.metadata at import; wbg's table
    commands import it without that (a scan of every installed package), and a later
    import of importlib.metadata still gets the real module."""
    import subprocess
    import sys

    code = (
        "import sys\n"
        "from wbg.cli import render\n"
        "print(render.render([{'a': 1}], ['a'], 'simple').splitlines()[-1].strip())\n"
        "print('importlib.metadata' in sys.modules)\n"
        "import importlib.metadata\n"
        "print(importlib.metadata.version('tabulate') != 'unknown')\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["1", "False", "True"]


def test_filters_read_back_as_the_options_that_give_them():
    """Messages and the ui's header show filters as options a shell takes back whole, even
    a hostile --where (quotes, spaces, $)."""
    import shlex

    from wbg.query import Filters

    hostile = "name = 'it''s $HOME'"
    filters = Filters(project="p", group="g 1", state="crashed", where=("lr > 1", hostile))
    assert filters.options(short=True) == [
        "-p p", "-g 'g 1'", "--state crashed", "-w 'lr > 1'", f"-w {shlex.quote(hostile)}",
    ]  # fmt: skip
    assert shlex.split(filters.describe()) == [
        "--project", "p", "--group", "g 1", "--state", "crashed",
        "--where", "lr > 1", "--where", hostile,
    ]  # fmt: skip
    assert Filters().options() == [] and Filters().describe() == ""
