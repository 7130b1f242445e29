"""Parsing and checking what users type: ``KEY=VALUE`` pairs, config files, names.

Also the JSON encoding of config and summary: SQLite's JSON functions (3.40 here) reject
``NaN``/``Infinity`` tokens, so non-finite floats are stored as the strings ``"NaN"``,
``"Infinity"`` and ``"-Infinity"`` and turned back into floats when read.
"""

from __future__ import annotations

import json
import math
import re
import sys
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from wbg.errors import InvalidInput, InvalidName

MAX_GROUP = 128
MAX_JOB_TYPE = 64
MAX_TAG = 64

_NON_FINITE = {"NaN": math.nan, "Infinity": math.inf, "-Infinity": -math.inf}


_CONTROL = re.compile("[\x00-\x1f\x7f]")


def _has_control(text: str) -> bool:
    return _CONTROL.search(text) is not None


def check_name(kind: str, value: str | None, max_len: int) -> str | None:
    """Validate a group, job_type or tag (docs/design.md, "Runs"); None passes through."""
    if value is None:
        return None
    if not isinstance(value, str):
        raise InvalidName(f"{kind} must be a string, got {type(value).__name__}")
    if not value:
        raise InvalidName(f"{kind} must not be empty")
    if len(value) > max_len:
        raise InvalidName(f"{kind} is {len(value)} characters long; the limit is {max_len}")
    if _has_control(value):
        raise InvalidName(f"{kind} must not contain control characters or newlines: {value!r}")
    return value


def check_group(value: str | None) -> str | None:
    return check_name("group", value, MAX_GROUP)


def check_job_type(value: str | None) -> str | None:
    return check_name("job_type", value, MAX_JOB_TYPE)


def check_tags(tags: Iterable[str] | None) -> list[str]:
    checked: list[str] = []
    for tag in tags or ():
        check_name("tag", tag, MAX_TAG)
        if tag not in checked:
            checked.append(tag)
    return checked


def check_key(key: str, what: str = "config key", dotted: bool = True) -> str:
    """A key typed as a dotted path (``opt.lr``); ``dotted=False`` for a literal key, as
    stored (wandb accepts ``'a..b'`` as a config key, so a stored key may hold any dots)."""
    if not isinstance(key, str) or not key or not key.strip():
        raise InvalidName(f"{what} must not be empty")
    if _has_control(key):
        raise InvalidName(f"{what} must not contain control characters: {key!r}")
    if dotted and any(not part for part in key.split(".")):
        raise InvalidName(f"{what} has an empty part between dots: {key!r}")
    return key


def toml() -> Any:
    """The TOML parser: the standard library's from Python 3.11, else tomli."""
    if sys.version_info >= (3, 11):
        import tomllib
    else:  # tests/test_parsers.py forces this branch on newer Pythons
        import tomli as tomllib
    return tomllib


# Decimals that TOML refuses but Python reads: ``.001``, ``1.``, ``-.5``, ``1.e-3``.
_BARE_POINT = re.compile(r"^[+-]?(?:\d(?:_?\d)*\.(?:\d(?:_?\d)*)?|\.\d(?:_?\d)*)(?:[eE][+-]?\d+)?$")


def parse_value(text: str) -> Any:
    """Type a command-line value: a TOML/JSON scalar or array, else the string itself.

    ``3`` -> 3, ``0.1`` -> 0.1, ``true`` -> True, ``"x"`` -> "x", ``[1,2]`` -> [1, 2],
    ``adam`` -> "adam". Numbers are written as in Python or TOML: ``-5``, ``+1``, ``1e-3``,
    ``1_000``, and also ``.001`` and ``1.`` (floats, as Python reads them). TOML dates and
    tables stay the text that was typed.
    """
    stripped = text.strip()
    if not stripped:
        return text
    tomllib = toml()
    try:
        value = tomllib.loads(f"v = {stripped}")["v"]
    except (ValueError, KeyError):  # TOMLDecodeError is a ValueError, and so is a
        if _BARE_POINT.match(stripped):  # number beyond Python's digit limit for int()
            return float(stripped)
        try:
            value = json.loads(stripped)
        except ValueError:
            if _LONG_NUMBER.fullmatch(stripped):
                raise InvalidInput(
                    f"number too long: {stripped[:12]}... ({len(stripped)} characters)",
                    hint="quote it to keep it as text: KEY='\"...\"'",
                ) from None
            return text
    return value if _is_plain(value) else text


_LONG_NUMBER = re.compile(r"[-+]?[\d_]{1000,}(?:\.\d*)?(?:[eE][-+]?\d+)?")


def storable_int(value: int) -> int | float:
    """``value`` itself when SQLite can store it as an integer (64 bits), else a float."""
    return value if -(2**63) <= value < 2**63 else as_float(value)


def _is_plain(value: Any) -> bool:
    if isinstance(value, (bool, int, float, str)):
        return True
    if isinstance(value, list):
        return all(_is_plain(item) for item in value)
    return False


def split_assignment(item: str, what: str = "config") -> tuple[str, str]:
    key, sep, raw = item.partition("=")
    if not sep:
        raise InvalidInput(f"malformed {what} {item!r}: expected KEY=VALUE")
    key = key.strip()
    check_key(key, f"{what} key")
    if raw == "":
        raise InvalidInput(f"malformed {what} {item!r}: the value is empty")
    return key, raw


def parse_assignments(items: Iterable[str], what: str = "config") -> dict[str, Any]:
    """``["lr=0.1", "opt.name=adam"]`` -> ``{"lr": 0.1, "opt": {"name": "adam"}}``."""
    result: dict[str, Any] = {}
    for item in items:
        key, raw = split_assignment(item, what)
        set_dotted(result, key, parse_value(raw))
    return result


# Dotted paths into nested tables (config, summary): ``"optimizer.lr"`` or, where a part
# may itself hold a dot (W&B's own records), the parts as a sequence. Every module reads,
# writes and removes nested keys through these three.


def _parts(key: str | Sequence[str]) -> Sequence[str]:
    return key.split(".") if isinstance(key, str) else key


def get_dotted(tree: Mapping[str, Any] | None, key: str | Sequence[str]) -> Any:
    """The value at ``key`` in ``tree``, or None when any part of the path is missing."""
    node: Any = tree
    for part in _parts(key):
        if not isinstance(node, Mapping) or part not in node:
            return None
        node = node[part]
    return node


def set_dotted(target: dict[str, Any], key: str | Sequence[str], value: Any) -> None:
    """Set ``key`` in ``target``, making (or replacing non-table values by) the tables on
    the way."""
    parts = _parts(key)
    node = target
    for part in parts[:-1]:
        child = node.get(part)
        if not isinstance(child, dict):
            child = node[part] = {}
        node = child
    node[parts[-1]] = value


def pop_dotted(target: dict[str, Any], key: str | Sequence[str], prune: bool = False) -> None:
    """Remove ``key`` from ``target`` when it is there; with ``prune``, also the tables the
    removal leaves empty."""
    *parents, last = _parts(key)
    trail = [target]
    for part in parents:
        node = trail[-1].get(part)
        if not isinstance(node, dict):
            return
        trail.append(node)
    trail[-1].pop(last, None)
    if prune:
        for parent, part in zip(reversed(trail[:-1]), reversed(parents), strict=True):
            if not parent[part]:
                del parent[part]


def flatten(tree: Any, prefix: str = "") -> dict[str, Any]:
    """Nested tables as dotted keys: ``{"a": {"b": 1}}`` -> ``{"a.b": 1}`` (with ``prefix``:
    ``PREFIX.a.b``). An empty table is a value of its own (``{"a": {}}`` keeps ``a``)."""
    found: dict[str, Any] = {}

    def walk(name: str, value: Any) -> None:
        if isinstance(value, Mapping) and value:
            for key, item in value.items():
                walk(f"{name}.{key}" if name else str(key), item)
        elif name:
            found[name] = value

    walk(prefix, tree)
    return found


def deep_merge(base: dict[str, Any], update: Mapping[str, Any]) -> dict[str, Any]:
    """Merge ``update`` into ``base`` (nested dicts merged, other values replaced)."""
    for key, value in update.items():
        if isinstance(value, Mapping) and isinstance(base.get(key), dict):
            deep_merge(base[key], value)
        else:
            base[key] = dict(value) if isinstance(value, Mapping) else value
    return base


MAX_CONFIG_DEPTH = 100  # nested tables; far beyond any real config, far below recursion


def check_config(config: Mapping[str, Any], prefix: str = "", depth: int = 1) -> None:
    """Every key valid, nesting at most ``MAX_CONFIG_DEPTH`` deep (checked without recursion,
    so a hostile config gets this error and not a RecursionError)."""
    stack: list[tuple[Mapping[str, Any], str, int]] = [(config, prefix, depth)]
    while stack:
        node, path, depth = stack.pop()
        if depth > MAX_CONFIG_DEPTH:
            raise InvalidInput(
                f"config nested more than {MAX_CONFIG_DEPTH} levels deep (at {path[:60]}...)"
            )
        for key, value in node.items():
            name = str(key)
            if not name.strip() or _has_control(name):  # the message only when it is needed
                check_key(name, f"config key {path}{key!r}", dotted=False)
            if isinstance(value, Mapping):
                stack.append((value, f"{path}{key}.", depth + 1))
            elif isinstance(value, (list, tuple)):
                _check_list_depth(value, f"{path}{key}", depth + 1)


def _check_list_depth(items: Any, path: str, depth: int) -> None:
    stack = [(items, depth)]
    while stack:
        node, level = stack.pop()
        if level > MAX_CONFIG_DEPTH:
            raise InvalidInput(
                f"config nested more than {MAX_CONFIG_DEPTH} levels deep (at {path})"
            )
        for item in node:
            if isinstance(item, (list, tuple)):
                stack.append((item, level + 1))
            elif isinstance(item, Mapping):
                check_config(item, f"{path}[].", level + 1)  # rare: a table in a list


def load_config_file(path: str | Path) -> dict[str, Any]:
    """Read a TOML or JSON config file (by extension; other names are tried as both)."""
    file = Path(path)
    try:
        text = file.read_text(encoding="utf-8")
    except OSError as exc:
        raise InvalidInput(f"cannot read config file {file}: {exc.strerror or exc}") from None
    suffix = file.suffix.lower()
    errors = []
    for kind in (["json"] if suffix == ".json" else ["toml"] if suffix == ".toml" else []) or [
        "toml",
        "json",
    ]:
        try:
            data = _parse_config_text(text, kind)
        except RecursionError:
            raise InvalidInput(f"config file {file} is nested too deeply") from None
        except ValueError as exc:
            errors.append(f"{kind.upper()}: {exc}")
            continue
        if not isinstance(data, dict):
            raise InvalidInput(f"config file {file} must hold a table/object at the top level")
        check_config(data)
        return data
    raise InvalidInput(f"cannot parse config file {file}: {'; '.join(errors)}")


def _parse_config_text(text: str, kind: str) -> Any:
    if kind == "json":
        return json.loads(text)
    return _plain_toml(toml().loads(text))


def _plain_toml(value: Any) -> Any:
    """TOML dates/times become their ISO text so the config stays JSON."""
    if isinstance(value, dict):
        return {k: _plain_toml(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain_toml(v) for v in value]
    if hasattr(value, "isoformat"):
        return value.isoformat()
    return value


def _encode(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")
    if isinstance(value, Mapping):
        return {str(k): _encode(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_encode(v) for v in value]
    return value


# Values json.dumps writes as _encode would have them: a flat dict of these with string
# keys (most configs, every summary update) skips the copy _encode makes.
_PLAIN = frozenset((str, int, bool, type(None)))


def dumps(value: Any) -> str:
    """JSON text SQLite can read: non-finite floats as strings, other objects as str()."""
    if type(value) is dict and all(
        type(k) is str
        and (type(v) in _PLAIN or (type(v) is float and v - v == 0))  # finite (not inf/nan)
        for k, v in value.items()
    ):
        return json.dumps(value, default=str, separators=(",", ":"))
    return json.dumps(_encode(value), allow_nan=False, default=str, separators=(",", ":"))


def _decode(value: Any) -> Any:
    if isinstance(value, str):
        return _NON_FINITE.get(value, value)
    if isinstance(value, dict):
        return {k: _decode(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_decode(v) for v in value]
    return value


def loads(text: str | None, default: Any = None) -> Any:
    if text is None:
        return default
    return _decode(json.loads(text))


def as_float(value: float) -> float:
    """``float(value)``, with integers beyond a double's range as +-inf instead of an error."""
    try:
        return float(value)
    except OverflowError:
        return math.inf if value > 0 else -math.inf


def is_number(value: Any) -> bool:
    """A value that becomes a history point: int or float, not bool."""
    return isinstance(value, (int, float)) and not isinstance(value, bool)
