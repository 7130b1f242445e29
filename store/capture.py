"""Scalar capture: metrics printed by a command become history points (SPEC §4).

Recognised lines (after ANSI escapes are removed; ``\\r`` ends a line like ``\\n``):

- ``key: number``, optionally followed by ``(step N)`` (Guild AI's convention);
- ``step: N`` sets the step of the following points;
- a JSON object whose values are all numbers: ``{"step": 3, "loss": 0.2}``;
- a Python dict literal, as HuggingFace's ``Trainer`` prints its logs when it reports to no
  tracker: ``{'loss': '0.6879', 'learning_rate': '0.000275', 'epoch': '1.5'}`` (numbers as
  strings, in recent versions) or ``{'loss': 0.6879, 'epoch': 1.5}``; values that are not
  numbers (or strings of one) are skipped, and a ``'step'`` value is the step;
- any ``--capture-pattern`` regex with named groups ``key`` and ``value`` (and optionally
  ``step``), tried before the built-in patterns.

Implicit step rule: without an explicit step, the step starts at 0 and advances by one
when a key repeats within the current step (keys x, y, y, y, x, y get 0, 0, 1, 2, 2, 3).
"""

from __future__ import annotations

import ast
import json
import math
import re
from collections.abc import Iterable

from wbg.errors import InvalidInput
from wbg.values import as_float

MAX_LINE = 64 * 1024
ANSI = re.compile(rb"\x1b\[[0-?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)|\x1b[@-Z\\-_]")
NUMBER = r"[-+]?(?:(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?|nan|inf(?:inity)?)"
KEY_VALUE = re.compile(
    rf"^\s*(?P<key>[A-Za-z_][\w.\-/]*)\s*:\s*(?P<value>{NUMBER})"
    r"(?:\s*\(step\s+(?P<step>\d+)\))?\s*$",
    re.IGNORECASE,
)

# (step, key, value)
Captured = tuple[int, str, float]

MAX_STEP = 2**63 - 1  # steps are SQLite integers


def compile_patterns(patterns: Iterable[str]) -> list[re.Pattern[str]]:
    """Check user patterns: valid regexes with named groups ``key`` and ``value``."""
    compiled = []
    for pattern in patterns:
        try:
            regex = re.compile(pattern)
        except re.error as exc:
            raise InvalidInput(f"invalid --capture-pattern {pattern!r}: {exc}") from None
        missing = {"key", "value"} - set(regex.groupindex)
        if missing:
            raise InvalidInput(
                f"--capture-pattern {pattern!r} lacks the named group(s) "
                + ", ".join(f"(?P<{name}>...)" for name in sorted(missing))
            )
        compiled.append(regex)
    return compiled


def _to_float(text: str) -> float | None:
    try:
        return float(text)
    except ValueError:
        return None


class ScalarCapture:
    """Turns a byte stream of output into ``(step, key, value)`` points."""

    def __init__(self, patterns: Iterable[re.Pattern[str]] = ()) -> None:
        self.patterns = list(patterns)
        self.step = 0
        self._seen: set[str] = set()
        # An unfinished line per stream: stdout and stderr arrive interleaved, and a piece
        # of one must not be glued to a line of the other.
        self._partial: dict[int, bytes] = {}
        # Streams in the middle of an over-long line: the rest of it, up to the next
        # newline, is no metric either.
        self._skipping: set[int] = set()
        self.skipped = 0  # lines that looked like metrics but had an impossible step
        self.skip_reason: str | None = None  # the first of them, for the warning

    def feed(self, data: bytes, stream: int = 1) -> list[Captured]:
        """Consume output bytes of ``stream`` (any id, e.g. the fd they were read from);
        return the points of the lines they complete."""
        points: list[Captured] = []
        buffer = self._partial.get(stream, b"") + data
        lines = re.split(rb"\r\n|\r|\n", buffer)
        rest = lines.pop()
        if stream in self._skipping and lines:  # the end of the over-long line
            self._skipping.discard(stream)
            lines.pop(0)
        if len(rest) > MAX_LINE or stream in self._skipping:  # endless: no metric
            self._skipping.add(stream)
            rest = b""
        self._partial[stream] = rest
        for line in lines:
            if len(line) <= MAX_LINE:
                points.extend(self.parse_line(line))
        return points

    def close(self) -> list[Captured]:
        """The points of the last lines left without a newline."""
        rests, self._partial = self._partial, {}
        self._skipping = set()
        return [point for rest in rests.values() if rest for point in self.parse_line(rest)]

    def parse_line(self, raw: bytes) -> list[Captured]:
        text = ANSI.sub(b"", raw).decode("utf-8", "replace").strip()
        if not text:
            return []
        for regex in self.patterns:
            match = regex.search(text)
            if match:
                value = _to_float(match.group("value"))
                if value is None:
                    return []
                step = match.groupdict().get("step")
                return self._points({match.group("key"): value}, _int(step), text)
        if text[0] == "{" and text[-1] == "}":
            return self._json_line(text)
        match = KEY_VALUE.match(text)
        if not match:
            return []
        key, value = match.group("key"), float(match.group("value"))
        if key == "step" and match.group("step") is None:
            if value.is_integer() and 0 <= value <= MAX_STEP:
                self._set_step(int(value))
            elif value.is_integer():
                self._skip(text)
            return []
        return self._points({key: value}, _int(match.group("step")), text)

    def _json_line(self, text: str) -> list[Captured]:
        try:
            data = json.loads(text)
        except ValueError:
            return self._python_dict_line(text)
        if not isinstance(data, dict) or not data:
            return []
        if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in data.values()):
            return []
        step = data.pop("step", None)
        if step is not None and not (isinstance(step, int) or float(step).is_integer()):
            return []
        return self._points(
            {str(k): as_float(v) for k, v in data.items()},
            None if step is None else int(step),
            text,
        )

    def _python_dict_line(self, text: str) -> list[Captured]:
        metrics = python_dict_numbers(text)
        if not metrics:
            return []
        step = metrics.pop("step", None)
        if step is not None and not (math.isfinite(step) and step.is_integer() and step >= 0):
            return []
        if not metrics:
            return []
        return self._points(metrics, None if step is None else int(step))

    def _set_step(self, step: int) -> None:
        self.step = step
        self._seen = set()

    def _skip(self, text: str) -> None:
        self.skipped += 1
        if self.skip_reason is None:
            shown = text if len(text) <= 80 else text[:77] + "..."
            self.skip_reason = f"step out of range (0 to 2**63-1) in {shown!r}"

    def _points(
        self, metrics: dict[str, float], step: int | None, text: str = ""
    ) -> list[Captured]:
        if step is not None and not 0 <= step <= MAX_STEP:
            self._skip(text)
            return []
        if step is not None:
            if step != self.step:
                self._set_step(step)
        elif self._seen.intersection(metrics):
            self._set_step(self.step + 1)
        self._seen.update(metrics)
        return [(self.step, key, value) for key, value in metrics.items()]


_NAMED_NUMBERS = {"nan": math.nan, "inf": math.inf}


def _literal_number(node: ast.expr) -> float | None:
    """The number a dict value stands for: ``0.5``, ``-1``, ``'0.5'``, ``nan``; else None."""
    sign = 1.0
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
        sign = -1.0 if isinstance(node.op, ast.USub) else 1.0
        node = node.operand
        if not isinstance(node, (ast.Constant, ast.Name)) or (
            isinstance(node, ast.Constant) and isinstance(node.value, str)
        ):
            return None
    if isinstance(node, ast.Name):  # repr() of a float nan / inf, printed without quotes
        value = _NAMED_NUMBERS.get(node.id)
        return None if value is None else sign * value
    if not isinstance(node, ast.Constant):
        return None
    value = node.value
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return sign * float(value)
    if isinstance(value, str) and re.fullmatch(NUMBER, value.strip(), re.IGNORECASE):
        return float(value)
    return None


def python_dict_numbers(text: str) -> dict[str, float]:
    """The numeric entries of a printed Python dict (``str(dict)``), in order.

    Parsed, never evaluated: only literal keys and values are read; a value that is no
    number (nor a string holding one) is skipped. Anything that is not a dict literal
    gives an empty dict.
    """
    try:
        tree = ast.parse(text, mode="eval")
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return {}
    if not isinstance(tree.body, ast.Dict):
        return {}
    numbers: dict[str, float] = {}
    for key, node in zip(tree.body.keys, tree.body.values, strict=True):
        if isinstance(key, ast.Constant) and isinstance(key.value, str) and key.value:
            value = _literal_number(node)
            if value is not None:
                numbers[key.value] = value
    return numbers


def _int(text: str | None) -> int | None:
    """A step as captured: None when absent, -1 (out of range) when not an integer."""
    if text is None:
        return None
    try:
        return int(text)
    except ValueError:  # a --capture-pattern step group that matched no integer
        return -1
