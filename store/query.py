"""Selecting runs: keys, filters and ``--where`` conditions, compiled to SQL (SPEC §2, §5).

One place decides what a key means:

- a run field (``group``, ``job_type``, ``state``, ``duration_s``...) is its column;
- ``config.a.b`` is the config value at that path, ``summary.x`` the summary value;
- a bare key that is not a run field (``lr``) means ``config.lr``; ``config.group`` reaches
  a config key that a field shadows.

Every user value and JSON path is a bound parameter: nothing a user types becomes SQL text.
"""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from wbg import values
from wbg.errors import InvalidInput

# run field -> SQL expression over the runs table
FIELDS: dict[str, str] = {
    "id": "runs.id",
    "project": "runs.project",
    "name": "runs.name",
    "group": 'runs."group"',
    "job_type": "runs.job_type",
    "notes": "runs.notes",
    "state": "runs.state",
    "exit_code": "runs.exit_code",
    "cwd": "runs.cwd",
    "host": "runs.host",
    "user": "runs.user",
    "pid": "runs.pid",
    "git_commit": "runs.git_commit",
    "git_dirty": "runs.git_dirty",
    "started_at": "runs.started_at",
    "ended_at": "runs.ended_at",
    "duration_s": "(runs.ended_at - runs.started_at)",
}
MULTI_VALUED = ("tags", "tag")
OPERATORS = ("!=", "<=", ">=", "=", "<", ">", "~")
_WHERE = re.compile(
    r"^\s*(?P<key>[^\s=!<>~]+)\s*(?P<op>!=|<=|>=|=|<|>|~)\s*(?P<value>.*?)\s*$", re.DOTALL
)


@dataclass(frozen=True)
class Key:
    """A resolved key: where its value lives and how to read it in SQL."""

    name: str  # as the user wrote it
    source: str  # "field", "config" or "summary"
    path: str  # column name, or the dotted path inside config/summary

    def sql(self) -> tuple[str, list[Any]]:
        if self.source == "field":
            return FIELDS[self.path], []
        return f"json_extract(runs.{self.source}, ?)", [json_path(self.path)]

    def display_sql(self) -> tuple[str, list[Any]]:
        """Like ``sql()``, but JSON booleans read ``true``/``false`` (not 1/0): group keys."""
        if self.source == "field":
            return self.sql()
        path = json_path(self.path)
        return (
            f"CASE json_type(runs.{self.source}, ?) WHEN 'true' THEN 'true' "
            f"WHEN 'false' THEN 'false' ELSE json_extract(runs.{self.source}, ?) END",
            [path, path],
        )


def split_keys(items: Sequence[str] | None) -> list[str]:
    """``--group-by`` values: ``["lr,seed", "model"]`` -> ``["lr", "seed", "model"]``.

    Repeats are dropped; an empty part (``"lr,"``) is a malformed option, not ignored.
    """
    keys: list[str] = []
    for item in items or ():
        parts = [part.strip() for part in item.split(",")]
        if not all(parts):
            raise InvalidInput(f"malformed --group-by {item!r}", hint="expected KEY[,KEY...]")
        keys += parts
    return list(dict.fromkeys(keys))


def json_path(dotted: str) -> str:
    """``a.b`` -> ``$."a"."b"`` (every part quoted, so any characters are safe)."""
    parts = dotted.split(".")
    return "$" + "".join(
        '."' + part.replace("\\", "\\\\").replace('"', '\\"') + '"' for part in parts
    )


def resolve_key(name: str) -> Key:
    """What ``name`` means (see the module docstring); tags are refused with the way out."""
    values.check_key(name, "key")
    if name in MULTI_VALUED:
        raise InvalidInput(
            "cannot group or compare by tags: a run has many tags, so it would belong to "
            "several groups",
            hint="copy the tag into config (wbg runs set ID KEY=VALUE) and use that key",
        )
    if name in FIELDS:
        return Key(name, "field", name)
    for source in ("config", "summary"):
        prefix = source + "."
        if name.startswith(prefix) and len(name) > len(prefix):
            return Key(name, source, name[len(prefix) :])
    return Key(name, "config", name)


@dataclass(frozen=True)
class Condition:
    key: Key
    op: str
    value: Any


def parse_where(text: str) -> Condition:
    """``'lr >= 0.01'``, ``"name ~ 'bert-*'"`` -> Condition. Values typed like ``-c``."""
    match = _WHERE.match(text)
    if not match:
        raise InvalidInput(
            f"malformed --where {text!r}",
            hint="expected 'KEY OP VALUE' with OP one of " + " ".join(OPERATORS),
        )
    raw = match.group("value")
    if raw == "":
        raise InvalidInput(f"malformed --where {text!r}: the value is empty")
    if len(raw) >= 2 and raw[0] == raw[-1] and raw[0] in "'\"":
        value: Any = raw[1:-1]  # quoted: always a string
    else:
        value = values.parse_value(raw)
        if isinstance(value, list):
            value = raw
        elif values.is_number(value) and isinstance(value, int):
            value = values.storable_int(value)  # SQLite compares big integers as floats
    return Condition(resolve_key(match.group("key")), match.group("op"), value)


def condition_sql(condition: Condition) -> tuple[str, list[Any]]:
    expr, params = condition.key.sql()
    value = condition.value
    if isinstance(value, bool):
        value = int(value)
    if condition.op == "~":
        return f"CAST({expr} AS TEXT) GLOB ?", [*params, str(value)]
    op = "!=" if condition.op == "!=" else condition.op
    if condition.op == "!=":
        # A run without the key differs from any value.
        return f"({expr} IS NULL OR {expr} != ?)", [*params, *params, value]
    return f"{expr} {op} ?", [*params, value]


@dataclass
class Filters:
    """The run filters every reading command takes."""

    project: str | None = None
    group: str | None = None
    job_type: str | None = None
    state: str | None = None
    tag: str | None = None
    where: Sequence[str] = field(default_factory=tuple)

    def sql(self) -> tuple[str, list[Any]]:
        """A WHERE clause body over ``runs`` (``1`` when nothing is filtered)."""
        clauses: list[str] = []
        params: list[Any] = []
        for column, value in (
            ("runs.project", self.project),
            ('runs."group"', self.group),
            ("runs.job_type", self.job_type),
            ("runs.state", self.state),
        ):
            if value is not None:
                clauses.append(f"{column} = ?")
                params.append(value)
        if self.tag is not None:
            clauses.append("EXISTS (SELECT 1 FROM json_each(runs.tags) WHERE json_each.value = ?)")
            params.append(self.tag)
        for text in self.where:
            sql, extra = condition_sql(parse_where(text))
            clauses.append(sql)
            params.extend(extra)
        return (" AND ".join(clauses) or "1"), params

    def conditions(self) -> list[Condition]:
        return [parse_where(text) for text in self.where]


def key_exists(
    conn: sqlite3.Connection, key: Key, where: str = "1", params: Iterable[Any] = ()
) -> bool:
    """Whether any selected run has a value at ``key`` (fields always exist)."""
    if key.source == "field":
        return True
    row = conn.execute(
        f"SELECT 1 FROM runs WHERE ({where}) AND json_type(runs.{key.source}, ?) IS NOT NULL "
        "LIMIT 1",
        [*params, json_path(key.path)],
    ).fetchone()
    return row is not None


def known_keys(conn: sqlite3.Connection, source: str = "config", limit: int = 20000) -> list[str]:
    """Dotted paths of the leaf keys present in config (or summary), for hints/completion."""
    rows = conn.execute(
        f"SELECT DISTINCT j.fullkey FROM (SELECT {source} AS doc FROM runs "
        "ORDER BY started_at DESC LIMIT ?) AS r, json_tree(r.doc) AS j "
        "WHERE j.type NOT IN ('object', 'array') AND j.fullkey != '$'",
        (limit,),
    ).fetchall()
    return sorted(_dotted(fullkey) for (fullkey,) in rows if "[" not in fullkey)


def _dotted(fullkey: str) -> str:
    # json_tree writes $.a.b, or $."a b".c for keys that need quotes
    parts = re.findall(r'\.(?:"((?:[^"\\]|\\.)*)"|([^."\[]+))', fullkey)
    return ".".join(quoted or plain for quoted, plain in parts)


def unknown_key_error(conn: sqlite3.Connection, key: Key) -> InvalidInput:
    """An error naming close matches among the fields and stored keys."""
    import difflib

    config = known_keys(conn, "config")
    summary = ["summary." + k for k in known_keys(conn, "summary")]
    candidates = [*FIELDS, *config, *("config." + k for k in config), *summary]
    close = difflib.get_close_matches(key.name, candidates, n=3, cutoff=0.6)
    hint = f"did you mean: {', '.join(close)}? " if close else ""
    shown = [*FIELDS, *config][:40]
    hint += "known keys: " + ", ".join(shown)
    return InvalidInput(f"unknown key {key.name!r}: no selected run has it", hint=hint)


def check_filters(conn: sqlite3.Connection, filters: Filters) -> None:
    """Refuse filters that name nothing stored (a typo): unknown project, group, --where key.

    The error lists close matches; a filter that names something real but selects no run
    is not an error.
    """
    for column, kind, value in (
        ("project", "project", filters.project),
        ('"group"', "group", filters.group),
        ("job_type", "job_type", filters.job_type),
    ):
        if (
            value is not None
            and not conn.execute(
                f"SELECT 1 FROM runs WHERE {column} = ? LIMIT 1", (value,)
            ).fetchone()
        ):
            raise unknown_name_error(conn, kind, value)
    for condition in filters.conditions():
        if not key_exists(conn, condition.key):
            raise unknown_key_error(conn, condition.key)


def distinct_values(conn: sqlite3.Connection, column: str, limit: int = 5000) -> list[str]:
    """Known names of a runs column (``project``, ``group``, ``job_type``), newest first."""
    quoted = {"project": "project", "group": '"group"', "job_type": "job_type"}[column]
    rows = conn.execute(
        f"SELECT {quoted} FROM runs WHERE {quoted} IS NOT NULL GROUP BY {quoted} "
        "ORDER BY max(started_at) DESC LIMIT ?",
        (limit,),
    ).fetchall()
    return [value for (value,) in rows]


def unknown_name_error(conn: sqlite3.Connection, kind: str, value: str) -> InvalidInput:
    """``unknown group 'x'`` with close matches among the stored names."""
    import difflib

    known = distinct_values(conn, kind)
    close = difflib.get_close_matches(value, known, n=3, cutoff=0.6)
    if close:
        hint = f"did you mean: {', '.join(close)}?"
    elif known:
        hint = f"known {kind}s: " + ", ".join(known[:20]) + (" ..." if len(known) > 20 else "")
    else:
        hint = "the database has no runs yet"
    return InvalidInput(f"unknown {kind} {value!r}", hint=hint)


def dotted_key(fullkey: str) -> str:
    """A ``json_tree`` path (``$.a."b c"``) as a dotted key (``a.b c``)."""
    return _dotted(fullkey)


def metric_names(conn: sqlite3.Connection) -> list[str]:
    """Every key of ``summary_metrics``, sorted, by jumping through its index (one seek
    per distinct key) instead of reading all of its rows as SELECT DISTINCT does."""
    rows = conn.execute(
        "WITH RECURSIVE k(key) AS (SELECT min(key) FROM summary_metrics "
        "UNION ALL SELECT (SELECT min(key) FROM summary_metrics WHERE key > k.key) "
        "FROM k WHERE k.key IS NOT NULL) SELECT key FROM k WHERE key IS NOT NULL"
    )
    return [key for (key,) in rows]
