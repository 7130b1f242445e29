"""Selecting runs: keys, filters and ``--where`` conditions, compiled to SQL.

See docs/design.md, "Keys and filters".

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
from wbg.engine import SQLITE, Engine, engine_of
from wbg.errors import InvalidInput, close_matches, did_you_mean

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
# run fields held as text (a number compared with one is compared as text, as SQLite does)
TEXT_FIELDS = frozenset(
    (
        "id",
        "project",
        "name",
        "group",
        "job_type",
        "notes",
        "state",
        "cwd",
        "host",
        "user",
        "git_commit",
    )
)
# The WHERE body that selects every run (both engines read it as true).
ALL_RUNS = "TRUE"
MULTI_VALUED = ("tags", "tag")
OPERATORS = ("=", "!=", "<", "<=", ">", ">=", "~")
# Other spellings users reach for: ``==`` (Python) means ``=``; the rest are refused with
# the operator they most likely meant.
OPERATOR_ALIASES = {"==": "="}
_MEANT = {"<>": "!=", "=>": ">=", "=<": "<=", "=!": "!=", "~=": "~", "=~": "~", "!": "!="}
# The operator is the whole run of operator characters, so ``=>`` is not read as ``=``
# followed by a value ``> 0.01``.
_WHERE = re.compile(r"^\s*(?P<key>[^\s=!<>~]+)\s*(?P<op>[=!<>~]+)\s*(?P<value>.*?)\s*$", re.DOTALL)


@dataclass(frozen=True)
class Key:
    """A resolved key: where its value lives and how to read it in SQL."""

    name: str  # as the user wrote it
    source: str  # "field", "config" or "summary"
    path: str  # column name, or the dotted path inside config/summary

    def sql(self, engine: Engine = SQLITE) -> tuple[str, list[Any]]:
        if self.source == "field":
            return FIELDS[self.path], []
        return engine.json_value(f"runs.{self.source}", self.path)

    def sql_type(self) -> str:
        """Its values' type on PostgreSQL (the column of a temporary table that holds them):
        JSON values stay ``jsonb``, each field has its column's type."""
        if self.source != "field":
            return "jsonb"
        if self.path in TEXT_FIELDS:
            return "TEXT"
        return "BIGINT" if self.path in ("exit_code", "pid", "git_dirty") else "DOUBLE PRECISION"

    def display_sql(self, engine: Engine = SQLITE) -> tuple[str, list[Any]]:
        """Like ``sql()``, but JSON booleans read ``true``/``false`` (not 1/0): group keys."""
        if self.source == "field":
            return self.sql(engine)
        return engine.json_display(f"runs.{self.source}", self.path)


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


def grouping(group_by: Sequence[str] | None, no_group: bool = False) -> list[str] | None:
    """The group keys of ``--group-by``/``--no-group`` (every grouped view): None for the
    default (by ``group`` when a selected run has one), ``[]`` for one per run."""
    if group_by and no_group:
        raise InvalidInput("--group-by and --no-group exclude each other")
    if no_group:
        return []
    return split_keys(group_by) if group_by else None


def default_grouping(
    conn: sqlite3.Connection, where: str = ALL_RUNS, params: Sequence[Any] = ()
) -> list[str]:
    """The group keys of a grouped view given none (``wbg table``, ``wbg plot``): by
    ``group`` when any selected run has one, else none (one row or curve per run)."""
    has_group = conn.execute(
        f'SELECT 1 FROM runs WHERE ({where}) AND runs."group" IS NOT NULL LIMIT 1', params
    ).fetchone()
    return ["group"] if has_group else []


def group_order_key(value: Any) -> tuple[int, Any]:
    """Where a group key's value sorts in every grouped view: numbers in numeric order,
    then text, the ``-`` group (no value) last."""
    if value is None:
        return (2, "")
    if isinstance(value, (int, float)):
        return (0, value)
    return (1, str(value))


def fts_query(text: str) -> str:
    """``--search`` text as a full-text query: every word must appear (in any field), each
    word taken literally (quoted, so ``OR``, ``-`` or ``"`` in it mean nothing special)."""
    words = text.split()
    if not words:
        raise InvalidInput("--search is empty", hint="give one or more words to look for")
    return " ".join('"' + word.replace('"', '""') + '"' for word in words)


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
    op = OPERATOR_ALIASES.get(match.group("op"), match.group("op"))
    if op not in OPERATORS:
        meant = _MEANT.get(op)
        raise InvalidInput(
            f"unknown operator {op!r} in --where {text!r}",
            hint=(f"did you mean {meant!r}? " if meant else "")
            + "operators: "
            + " ".join(OPERATORS)
            + " (== is the same as =; ~ is a glob)",
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
    return Condition(resolve_key(match.group("key")), op, value)


def condition_sql(condition: Condition, engine: Engine = SQLITE) -> tuple[str, list[Any]]:
    key = condition.key
    expr, params = key.sql(engine)
    json = key.source != "field"
    value = condition.value
    if isinstance(value, bool) and not (json and engine is not SQLITE):
        value = int(value)  # SQLite reads JSON true as 1
    if condition.op == "~":
        sql, extra = engine.glob(expr, str(value), json)
        return sql, [*params, *extra]
    if json:
        compared, extra = engine.json_compare(expr, params, condition.op, value)
    else:
        compared, extra = engine.field_compare(expr, condition.op, value, key.path in TEXT_FIELDS)
    if condition.op == "!=":
        # A run without the key differs from any value.
        return f"({expr} IS NULL OR {compared})", [*params, *extra]
    return compared, extra


@dataclass
class Filters:
    """The run filters every reading command takes."""

    project: str | None = None
    group: str | None = None
    job_type: str | None = None
    state: str | None = None
    tag: str | None = None
    where: Sequence[str] = field(default_factory=tuple)
    # bare --where keys that name a summary metric, not a config key (set by check_filters)
    metric_keys: set[str] = field(default_factory=set)
    # where ``project`` came from when the user did not ask for it ($WANDB_PROJECT, the
    # settings file): then it may have no runs yet, and check_filters counts the others
    project_from: str | None = None
    other_projects: int = 0
    # words to find in a run's name, notes, command, tags or kept output (``--search``)
    search: str | None = None

    def sql(self, engine: Engine = SQLITE) -> tuple[str, list[Any]]:
        """A WHERE clause body over ``runs`` (``ALL_RUNS`` when nothing is filtered), for
        the database of ``engine`` (``engine_of(conn)``)."""
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
            clauses.append(engine.has_tag("runs.tags"))
            params.append(self.tag)
        if self.search is not None:
            sql, extra = engine.search(self.search)
            clauses.append(sql)
            params += extra
        for text in self.where:
            condition = parse_where(text)
            if condition.key.source == "config" and condition.key.name in self.metric_keys:
                metric = Key(condition.key.name, "summary", condition.key.name)
                condition = Condition(metric, condition.op, condition.value)
            sql, extra = condition_sql(condition, engine)
            clauses.append(sql)
            params.extend(extra)
        return (" AND ".join(clauses) or ALL_RUNS), params

    def describe(self) -> str:
        """The filters as options (``--group g --where 'lr > 1'``), for messages."""
        return " ".join(self.options())

    def options(self, short: bool = False) -> list[str]:
        """The filters as the options that give them, each value quoted for a shell;
        ``short``: ``-g g`` rather than ``--group g`` where an option has a short name."""
        import shlex

        return [
            f"{short_name if short and short_name else long} {shlex.quote(value)}"
            for long, short_name, value in (
                ("--project", "-p", self.project),
                ("--group", "-g", self.group),
                ("--job-type", "-j", self.job_type),
                ("--state", None, self.state),
                ("--tag", "-t", self.tag),
                *(("--where", "-w", text) for text in self.where),
                ("--search", "-s", self.search),
            )
            if value is not None
        ]

    def conditions(self) -> list[Condition]:
        return [parse_where(text) for text in self.where]


def resolve_in(conn: sqlite3.Connection, name: str) -> Key:
    """``resolve_key``, and a bare name that no run has in its config but some run has in
    its summary is that summary metric (``--sort val_acc``); unknown names are errors."""
    key = resolve_key(name)
    if key_exists(conn, key):
        return key
    metric = Key(name, "summary", name)
    if key.source == "config" and key.path == name and key_exists(conn, metric):
        return metric
    raise unknown_key_error(conn, key)


def sort_sql(conn: sqlite3.Connection, name: str, desc: bool = False) -> tuple[str, list[Any]]:
    """An ORDER BY list for ``--sort KEY`` on runs: runs without a value last either way,
    numbers before text."""
    engine = engine_of(conn)
    key = resolve_in(conn, name)
    expr, params = key.sql(engine)
    direction = "DESC" if desc else "ASC"
    return (
        f"({expr}) IS NULL, {engine.is_text(expr, key.source != 'field')}, ({expr}) {direction}",
        [*params, *params, *params],
    )


def count_runs(conn: sqlite3.Connection, filters: Filters) -> int:
    """How many runs ``filters`` select."""
    where, params = filters.sql(engine_of(conn))
    return conn.execute(f"SELECT count(*) FROM runs WHERE {where}", params).fetchone()[0]


def key_exists(
    conn: sqlite3.Connection, key: Key, where: str = ALL_RUNS, params: Iterable[Any] = ()
) -> bool:
    """Whether any selected run has a value at ``key`` (fields always exist)."""
    if key.source == "field":
        return True
    has, extra = engine_of(conn).json_has(f"runs.{key.source}", key.path)
    row = conn.execute(
        f"SELECT 1 FROM runs WHERE ({where}) AND {has} LIMIT 1", [*params, *extra]
    ).fetchone()
    return row is not None


def known_keys(
    conn: sqlite3.Connection,
    source: str = "config",
    limit: int = 20000,
    where: str = ALL_RUNS,
    params: Sequence[Any] = (),
) -> list[str]:
    """Dotted paths of the leaf keys present in config (or summary) of the newest ``limit``
    runs that ``where`` selects (all by default), for hints and completion."""
    rows = conn.execute(
        f"SELECT DISTINCT j.fullkey FROM (SELECT runs.{source} AS doc FROM runs WHERE {where} "
        f"ORDER BY started_at DESC LIMIT ?) AS r, {engine_of(conn).json_leaves('r.doc')} "
        "WHERE j.type NOT IN ('object', 'array') AND j.fullkey != '$'",
        (*params, limit),
    ).fetchall()
    return sorted(_dotted(fullkey) for (fullkey,) in rows if "[" not in fullkey)


def _dotted(fullkey: str) -> str:
    # json_tree writes $.a.b, or $."a b".c for keys that need quotes
    parts = re.findall(r'\.(?:"((?:[^"\\]|\\.)*)"|([^."\[]+))', fullkey)
    return ".".join(quoted or plain for quoted, plain in parts)


def check_group_keys(
    conn: sqlite3.Connection, keys: Sequence[Key], where: str = ALL_RUNS, params: Sequence[Any] = ()
) -> None:
    """Refuse group keys no run has (a typo). A key that only runs outside the selection
    have is not one: the selected runs fall into the ``-`` group. Close matches are looked
    for in the selection (``where``)."""
    for key in keys:
        if not key_exists(conn, key):
            raise unknown_key_error(conn, key, where, params)


def unknown_key_error(
    conn: sqlite3.Connection, key: Key, where: str = ALL_RUNS, params: Sequence[Any] = ()
) -> InvalidInput:
    """An error naming close matches among the fields and stored keys: those of the runs
    ``where`` selects first (what the user is looking at), then those of every run."""
    everything = (ALL_RUNS, ())
    for scope in ((where, params), everything) if where != ALL_RUNS else (everything,):
        candidates = _key_candidates(conn, *scope)
        close = close_matches(key.name, candidates)
        if close:
            break
    config = known_keys(conn, "config", where=where, params=params)
    hint = did_you_mean(close, "known keys: " + ", ".join([*FIELDS, *config][:40]))
    return InvalidInput(f"unknown key {key.name!r}: no selected run has it", hint=hint)


def _key_candidates(conn: sqlite3.Connection, where: str, params: Sequence[Any]) -> list[str]:
    config = known_keys(conn, "config", where=where, params=params)
    summary = known_keys(conn, "summary", where=where, params=params)
    return [
        *FIELDS,
        *config,
        *("config." + k for k in config),
        *summary,
        *("summary." + k for k in summary),
    ]


def check_filters(conn: sqlite3.Connection, filters: Filters) -> None:
    """Refuse filters that name nothing stored (a typo): unknown project, group, --where key.

    The error lists close matches; a filter that names something real but selects no run
    is not an error.
    """
    if filters.project_from is not None:
        filters.other_projects = conn.execute(
            "SELECT count(DISTINCT project) FROM runs WHERE project != ?", (filters.project,)
        ).fetchone()[0]
    for column, kind, value in (
        ("project", "project", None if filters.project_from else filters.project),
        ('"group"', "group", filters.group),
        ("job_type", "job_type", filters.job_type),
    ):
        if (
            value is not None
            and not conn.execute(
                f"SELECT 1 FROM runs WHERE {column} = ? LIMIT 1", (value,)
            ).fetchone()
        ):
            # close matches within the project asked for first, then anywhere
            scope = ("runs.project = ?", [filters.project]) if kind != "project" else None
            raise unknown_name_error(conn, kind, value, scope if filters.project else None)
    for condition in filters.conditions():
        if key_exists(conn, condition.key):
            continue
        metric = Key(condition.key.name, "summary", condition.key.name)
        if condition.key.name == condition.key.path and key_exists(conn, metric):
            # a bare name no config has but a summary has: the metric (val_acc > 0.9)
            filters.metric_keys.add(condition.key.name)
            continue
        raise unknown_key_error(conn, condition.key)


def distinct_values(
    conn: sqlite3.Connection,
    column: str,
    limit: int = 5000,
    where: str = ALL_RUNS,
    params: Sequence[Any] = (),
) -> list[str]:
    """Known names of a runs column (``project``, ``group``, ``job_type``) among the runs
    ``where`` selects (all by default), newest first."""
    quoted = {"project": "project", "group": '"group"', "job_type": "job_type"}[column]
    rows = conn.execute(
        f"SELECT {quoted} FROM runs WHERE {quoted} IS NOT NULL AND ({where}) GROUP BY {quoted} "
        "ORDER BY max(started_at) DESC LIMIT ?",
        (*params, limit),
    ).fetchall()
    return [value for (value,) in rows]


def unknown_name_error(
    conn: sqlite3.Connection,
    kind: str,
    value: str,
    scope: tuple[str, Sequence[Any]] | None = None,
) -> InvalidInput:
    """``unknown group 'x'`` with close matches among the stored names: those of the runs
    ``scope`` (a WHERE clause and its parameters) selects first, then all."""
    known = distinct_values(conn, kind)
    close: list[str] = []
    if scope is not None:
        close = close_matches(value, distinct_values(conn, kind, 5000, *scope))
    close = close or close_matches(value, known)
    if close:
        hint = did_you_mean(close)
    elif known:
        hint = f"known {kind}s: " + ", ".join(known[:20]) + (" ..." if len(known) > 20 else "")
    else:
        hint = f"no run has a {kind} yet"  # an empty database, or runs without one
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
