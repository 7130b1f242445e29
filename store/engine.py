"""What differs between the two database engines, in one place (README "On a cluster").

wbg writes SQL once, in the dialect SQLite and PostgreSQL both accept, except for what
this module decides per engine: placeholders, DDL types, the migration lock, bulk history
writes, the larger-of-two function, temporary tables, JSON values of ``config`` and
``summary``, full-text search and opening a connection. Each difference is a method or
attribute of the engine, used where the SQL is built; SQLite's text is the one wbg has
always run (it is the fast path).

SQLite stays the default and the fast path: nothing here is imported for it beyond this
module, and ``psycopg`` is imported only when a ``postgresql://`` URL is opened. A
PostgreSQL connection is wrapped in ``PgConnection``, which speaks the part of the
``sqlite3`` connection API wbg uses (``execute``, ``executemany``, ``in_transaction``,
``close``) and raises ``sqlite3``'s exception classes, so callers catch one family.
"""

from __future__ import annotations

import functools
import itertools
import math
import re
import sqlite3
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    # For the type checker, a server URL stands where a database path stands and a server
    # connection where a SQLite connection does (the duck types below implement what wbg
    # uses of each); at run time they are plain classes.
    _PathLike = Path
    _ConnectionLike = sqlite3.Connection
else:
    _PathLike = _ConnectionLike = object

T = TypeVar("T")

SCHEMES = ("postgresql://", "postgres://")
MISSING_DRIVER = "a postgresql:// database needs the PostgreSQL driver: pip install 'wbg[postgres]'"


def is_server_url(value: object) -> bool:
    """Whether a --db / WBG_DB / settings value names a PostgreSQL server."""
    return isinstance(value, (str, ServerUrl)) and str(value).startswith(SCHEMES)


class ServerUrl(_PathLike):
    """A ``postgresql://`` database, standing where a database path stands.

    ``str()`` is the URL without its password (what every message shows); ``url`` is the
    URL as given, for the driver and for the children of ``wbg run``.
    """

    def __init__(self, url: str | ServerUrl) -> None:
        self.url: str = url.url if isinstance(url, ServerUrl) else str(url)

    def __str__(self) -> str:
        return redacted(self.url)

    def __fspath__(self) -> str:
        # The whole URL, for the environment of `wbg run`'s child (os.fspath(db_path)).
        return self.url

    def __repr__(self) -> str:
        return f"ServerUrl({str(self)!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ServerUrl) and other.url == self.url

    def __hash__(self) -> int:
        return hash(self.url)

    # The parts of Path that callers use on a database path.
    def resolve(self) -> ServerUrl:  # type: ignore[override]
        return self

    def expanduser(self) -> ServerUrl:
        return self

    def exists(self) -> bool:
        """Whether the server holds a wbg database here (asks the server)."""
        import contextlib

        from wbg.db import schema_version

        with contextlib.closing(connect_server(self, read_only=True)) as conn:
            return schema_version(conn) > 0

    def is_file(self) -> bool:
        return False

    @property
    def name(self) -> str:
        from urllib.parse import urlsplit

        return urlsplit(self.url).path.lstrip("/") or "postgres"

    @property
    def parent(self):  # noqa: ANN201 - a Path: where files saved by runs go
        from urllib.parse import urlsplit

        from wbg.settings import user_data_dir

        parts = urlsplit(self.url)
        return user_data_dir() / "servers" / f"{parts.hostname or 'local'}-{self.name}"


def redacted(url: str) -> str:
    """``url`` without its password (``user:secret@host`` -> ``user@host``; a
    ``password=`` parameter is left out too)."""
    from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

    parts = urlsplit(url)
    if parts.password is None and "password" not in parts.query:
        return url  # as given: urlunsplit would fold an empty host (postgresql:///db)
    if parts.password is not None:
        netloc = parts.netloc.rsplit("@", 1)[1]
        user = parts.username
        parts = parts._replace(netloc=f"{user}@{netloc}" if user else netloc)
    if "password" in parts.query:
        kept = [(k, v) for k, v in parse_qsl(parts.query) if k != "password"]
        parts = parts._replace(query=urlencode(kept))
    return urlunsplit(parts)


# --- per-engine SQL ---------------------------------------------------------------------


class SQLiteEngine:
    name = "sqlite"
    begin_write = "BEGIN IMMEDIATE"  # takes the write lock up front
    main = "main."  # the file itself, past a temporary view of the same name

    def ddl(self, sql: str) -> str:
        return sql

    def support_functions(self) -> list[str]:
        return []

    def greatest(self, a: str, b: str) -> str:
        return f"max({a}, {b})"

    def returning_num(self) -> str:
        return ""

    def inserted_num(self, cursor: Any) -> int:
        return cursor.lastrowid

    # --- reading (README "On a cluster": every view runs its SQL on the server) ---
    temp = "temp."  # the schema of this connection's temporary tables
    is_ = "IS"  # equal, NULL equal to NULL
    analyze_temp = True  # statistics of a temporary table: its size, for the planner
    cross_join = "CROSS JOIN"  # SQLite: a join in the order written (... ON as for JOIN)
    infinity = "9e999"
    temp_store = "PRAGMA temp_store = MEMORY"
    # moves when another connection commits to the file (polled by `wbg ui`)
    change_counter = "PRAGMA data_version"

    def typed(self, column: str, sql_type: str) -> str:
        """A column of a temporary table: SQLite's hold any value (no type is given)."""
        return column

    def indexed_by(self, index: str) -> str:
        """An index hint (SQLite's planner needs them on temporary tables)."""
        return f" INDEXED BY {index}"

    def temp_index(self, name: str, table: str, columns: str) -> str | None:
        """An index of a temporary table (None: none is needed on this engine)."""
        return f"CREATE INDEX temp.{name} ON {table} ({columns})"

    def non_finite(self, column: str) -> str:
        """NaN (stored as NULL) or +-inf; spelled as in the partial index of migration 3
        (``summary_metrics_non_finite``) so that the planner uses it."""
        return f"({column} IS NULL OR abs({column}) >= 9e999)"

    def json_value(self, column: str, path: str) -> tuple[str, list[Any]]:
        """The typed value at dotted ``path`` of the JSON text column (``runs.config``)."""
        from wbg.query import json_path

        return f"json_extract({column}, ?)", [json_path(path)]

    def json_display(self, column: str, path: str) -> tuple[str, list[Any]]:
        """``json_value``, but JSON booleans read ``'true'``/``'false'`` (group keys)."""
        from wbg.query import json_path

        json = json_path(path)
        return (
            f"CASE json_type({column}, ?) WHEN 'true' THEN 'true' "
            f"WHEN 'false' THEN 'false' ELSE json_extract({column}, ?) END",
            [json, json],
        )

    def json_has(self, column: str, path: str) -> tuple[str, list[Any]]:
        """True when the JSON column has ``path`` (also when its value is JSON null)."""
        from wbg.query import json_path

        return f"json_type({column}, ?) IS NOT NULL", [json_path(path)]

    def json_compare(
        self, expr: str, params: list[Any], op: str, value: Any
    ) -> tuple[str, list[Any]]:
        """``expr OP value`` for a ``json_value`` expression (``params``: its own)."""
        return f"{expr} {op} ?", [*params, value]

    def field_compare(self, expr: str, op: str, value: Any, text: bool) -> tuple[str, list[Any]]:
        """``expr OP value`` for a run field (``text``: a TEXT column)."""
        return f"{expr} {op} ?", [value]

    def same(self, expr: str, value: Any, json: bool) -> tuple[str, list[Any]]:
        """``expr`` equals ``value``, NULL equal to None (a group's value: ``json``, as
        ``json_display`` gives it)."""
        return f"{expr} IS ?", [value]

    def glob(self, expr: str, pattern: str, json: bool) -> tuple[str, list[Any]]:
        """``expr`` as text matches the glob ``pattern`` (``*``, ``?``, ``[...]``)."""
        return f"CAST({expr} AS TEXT) GLOB ?", [pattern]

    def is_text(self, expr: str, json: bool) -> str:
        """True when the value of ``expr`` is text (sorting puts numbers first)."""
        return f"typeof({expr}) = 'text'"

    def has_tag(self, column: str) -> str:
        """True when the JSON array ``column`` holds the string given as the parameter."""
        return f"EXISTS (SELECT 1 FROM json_each({column}) WHERE json_each.value = ?)"

    def json_leaves(self, doc: str) -> str:
        """A FROM item ``j`` of the leaves of a JSON object: ``fullkey`` (``$.a."b c"``;
        array elements have ``[`` in theirs), ``type`` (SQLite's names) and ``value``."""
        return f"json_tree({doc}) AS j"

    def search(self, text: str) -> tuple[str, list[Any]]:
        """Runs (a condition on ``runs.num``) whose name, notes, command, tags or kept
        output hold every word of ``text`` (README "``wbg runs``")."""
        from wbg.query import fts_query

        match = fts_query(text)
        return (
            "runs.num IN (SELECT rowid FROM runs_fts WHERE runs_fts MATCH ? "
            "UNION SELECT rowid FROM run_output_fts WHERE run_output_fts MATCH ?)",
            [match, match],
        )


class PostgresEngine:
    name = "postgresql"
    begin_write = "BEGIN"  # row locks: writers of different runs never wait for each other
    main = ""

    # SQLite DDL -> PostgreSQL DDL (cold path: migrations only). REAL is 8 bytes in SQLite.
    # Patterns as text, compiled on first use: start-up of every command imports this module.
    _DDL = (
        (r"\bnum INTEGER PRIMARY KEY\b", "num BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY"),
        (r"\bINTEGER\b", "BIGINT"),
        (r"\bREAL\b", "DOUBLE PRECISION"),
        (r"\bBLOB\b", "BYTEA"),
        (r"\)\s*WITHOUT ROWID", ")"),
        (r"(?m)^(\s*)user TEXT", r'\1"user" TEXT'),
        (r">= 9e999", "= 'Infinity'::float8"),
    )

    def ddl(self, sql: str) -> str:
        for pattern, replacement in self._DDL:
            sql = re.sub(pattern, replacement, sql)
        return sql

    def support_functions(self) -> list[str]:
        # SQLite's json_patch (RFC 7396 merge), so config/summary merges stay one statement
        # on both engines. Over `json`, not `jsonb`: key order and number text are kept.
        return [
            """
            CREATE OR REPLACE FUNCTION wbg_json_patch(target json, patch json) RETURNS json
            LANGUAGE plpgsql IMMUTABLE AS $fn$
            BEGIN
                IF patch IS NULL THEN RETURN target; END IF;
                IF json_typeof(patch) <> 'object' THEN RETURN patch; END IF;
                IF target IS NULL OR json_typeof(target) <> 'object' THEN
                    target := '{}'::json;
                END IF;
                RETURN (
                    SELECT coalesce(json_object_agg(k, v ORDER BY o), '{}'::json) FROM (
                        SELECT t.key AS k,
                               CASE WHEN p.key IS NULL THEN t.value
                                    ELSE wbg_json_patch(t.value, p.value) END AS v,
                               t.ord AS o
                        FROM json_each(target) WITH ORDINALITY AS t(key, value, ord)
                        LEFT JOIN json_each(patch) AS p ON p.key = t.key
                        WHERE p.key IS NULL OR json_typeof(p.value) <> 'null'
                        UNION ALL
                        SELECT p.key, wbg_json_patch(NULL, p.value), 1000000 + p.ord
                        FROM json_each(patch) WITH ORDINALITY AS p(key, value, ord)
                        WHERE json_typeof(p.value) <> 'null'
                          AND NOT EXISTS (SELECT 1 FROM json_each(target) AS t
                                          WHERE t.key = p.key)
                    ) AS merged
                );
            END
            $fn$
            """,
            "CREATE OR REPLACE FUNCTION json_patch(target text, patch text) RETURNS text "
            "LANGUAGE sql IMMUTABLE AS "
            "$fn$ SELECT wbg_json_patch(target::json, patch::json)::text $fn$",
        ]

    def greatest(self, a: str, b: str) -> str:
        return f"GREATEST({a}, {b})"

    def returning_num(self) -> str:
        return " RETURNING num"

    def inserted_num(self, cursor: Any) -> int:
        return cursor.fetchone()[0]

    # --- reading -------------------------------------------------------------------------
    temp = "pg_temp."
    is_ = "IS NOT DISTINCT FROM"
    # A table without statistics is planned from its size on disk, which is what the
    # grouped table's walks need (ANALYZE cost 0.09 s of 1.1 at 100,000 runs).
    analyze_temp = False
    cross_join = "JOIN"
    infinity = "'Infinity'::float8"
    temp_store = ""  # temporary tables live in the session's temp buffers
    # The newest row version (xmin) and the row count of each table a writer changes
    # (summaries and heartbeats update runs; points come with them): a committed insert,
    # update or delete moves one. (The server's log position would also move with the
    # temporary tables of every view.) A scan of runs: ~15 ms at 100,000.
    change_counter = "SELECT " + " || '/' || ".join(
        f"(SELECT count(*) || ':' || coalesce(max(CAST(CAST(xmin AS TEXT) AS BIGINT)), 0) "
        f"FROM {table})"
        for table in ("runs", "run_output", "run_output_pages")
    )

    def typed(self, column: str, sql_type: str) -> str:
        return f"{column} {sql_type}"

    def indexed_by(self, index: str) -> str:
        return ""

    def temp_index(self, name: str, table: str, columns: str) -> str | None:
        # None: the grouped table's walks are hash joins and hash aggregates here, which
        # an index of the selection would not speed up (building it cost 0.46 s of 2.5 at
        # 100,000 runs)
        return None

    def non_finite(self, column: str) -> str:
        return f"({column} IS NULL OR abs({column}) = 'Infinity'::float8)"

    # config/summary are JSON text: read as jsonb, whose values psycopg hands back as
    # Python numbers, strings and booleans (0.1 and 0.10 are one number, as in SQLite).
    @staticmethod
    def _jsonb(column: str, path: str) -> tuple[str, list[Any]]:
        return f"(CAST({column} AS jsonb) #> ?)", [path.split(".")]

    def json_value(self, column: str, path: str) -> tuple[str, list[Any]]:
        return self._jsonb(column, path)

    def json_display(self, column: str, path: str) -> tuple[str, list[Any]]:
        expr, params = self._jsonb(column, path)
        return (
            f"CASE jsonb_typeof({expr}) WHEN 'boolean' THEN to_jsonb({expr} #>> '{{}}') "
            f"ELSE {expr} END",
            [*params, *params, *params],
        )

    def json_has(self, column: str, path: str) -> tuple[str, list[Any]]:
        expr, params = self._jsonb(column, path)
        return f"{expr} IS NOT NULL", params

    def json_compare(
        self, expr: str, params: list[Any], op: str, value: Any
    ) -> tuple[str, list[Any]]:
        import json

        if isinstance(value, (int, float)) and not isinstance(value, bool):
            # As SQLite reads JSON: numbers (and true/false, as 1/0) by value, as doubles;
            # text, objects and arrays after every number; JSON null as no value.
            number = (
                f"CASE jsonb_typeof({expr}) WHEN 'number' THEN CAST({expr} AS DOUBLE PRECISION) "
                f"WHEN 'boolean' THEN CAST(CAST(CAST({expr} AS BOOLEAN) AS INTEGER) AS "
                "DOUBLE PRECISION) END"
            )
            after = f"jsonb_typeof({expr}) IN ('string', 'object', 'array')"
            otherwise = {"=": "FALSE", "!=": "TRUE", "<": "FALSE", "<=": "FALSE"}.get(op, after)
            return (
                f"coalesce({number} {op} ?, {otherwise})",
                [*params, *params, *params, value, *(params if otherwise == after else ())],
            )
        if op in ("=", "!="):
            return f"{expr} {op} CAST(? AS jsonb)", [*params, json.dumps(value)]
        # SQLite orders numbers before text (jsonb the other way): ranked first, as there
        rank = f"CASE jsonb_typeof({expr}) WHEN 'string' THEN 2 ELSE 1 END"
        return (
            f"({rank}, {expr}) {op} (?, CAST(? AS jsonb))",
            [*params, *params, 2 if isinstance(value, str) else 1, json.dumps(value)],
        )

    def field_compare(self, expr: str, op: str, value: Any, text: bool) -> tuple[str, list[Any]]:
        # SQLite turns a number compared with a TEXT column into text; a number column
        # compared with text is never equal (PostgreSQL would refuse either).
        if text:
            return f"{expr} {op} ?", [value if isinstance(value, str) else str(value)]
        if isinstance(value, str):
            return f"CAST({expr} AS TEXT) {op} ?", [value]
        return f"{expr} {op} ?", [value]

    def same(self, expr: str, value: Any, json: bool) -> tuple[str, list[Any]]:
        if json:
            import json as json_module

            param = None if value is None else json_module.dumps(value)
            return f"{expr} IS NOT DISTINCT FROM CAST(? AS jsonb)", [param]
        return f"{expr} IS NOT DISTINCT FROM ?", [value]

    def glob(self, expr: str, pattern: str, json: bool) -> tuple[str, list[Any]]:
        text = f"({expr} #>> '{{}}')" if json else f"CAST({expr} AS TEXT)"
        return f"{text} ~ ?", [_glob_regex(pattern)]

    def is_text(self, expr: str, json: bool) -> str:
        return f"jsonb_typeof({expr}) = 'string'" if json else "FALSE"

    def has_tag(self, column: str) -> str:
        return f"CAST({column} AS jsonb) @> jsonb_build_array(CAST(? AS TEXT))"

    def json_leaves(self, doc: str) -> str:
        # json_tree as SQLite has it, for objects (arrays are leaves here: callers leave
        # out paths into arrays).
        return (
            "LATERAL (WITH RECURSIVE t(fullkey, value) AS ("
            f"SELECT '$', CAST({doc} AS jsonb) UNION ALL "
            "SELECT t.fullkey || '.\"' || replace(replace(e.key, '\\', '\\\\'), '\"', "
            "'\\\"') || '\"', e.value FROM t, jsonb_each(CASE WHEN jsonb_typeof(t.value) = "
            "'object' THEN t.value ELSE '{}'::jsonb END) AS e) "
            "SELECT t.fullkey, CASE jsonb_typeof(t.value) WHEN 'string' THEN 'text' "
            "WHEN 'number' THEN 'real' WHEN 'boolean' THEN t.value #>> '{}' "
            "ELSE jsonb_typeof(t.value) END AS type, "
            "CASE jsonb_typeof(t.value) WHEN 'string' THEN t.value #>> '{}' "
            "ELSE CAST(t.value AS TEXT) END AS value FROM t) AS j"
        )

    def search(self, text: str) -> tuple[str, list[Any]]:
        from wbg.query import fts_query

        fts_query(text)  # refuses empty text as on SQLite
        match = pg_search_query(text)
        if match is None:  # no word has a letter or digit: nothing to find
            return "FALSE", []
        return (
            f"({PG_SEARCH_RUNS} @@ to_tsquery('simple', ?) "
            "OR runs.num IN (SELECT run FROM run_output "
            f"WHERE {PG_SEARCH_OUTPUT} @@ to_tsquery('simple', ?)))",
            [match, match],
        )


# `wbg runs search` on a server: PostgreSQL's full-text search over the text SQLite's FTS5
# indexes, cut into words as FTS5's default tokenizer cuts it (runs of letters and digits;
# case folded), so that the same words find the same runs. These are the expressions of
# the GIN indexes of migration 7: a query repeats them exactly to use the indexes.
PG_SEARCH_RUNS = (
    "wbg_words(coalesce(name, '') || ' ' || coalesce(notes, '') || ' ' "
    "|| coalesce(command, '') || ' ' || coalesce(tags, ''))"
)
PG_SEARCH_OUTPUT = "wbg_words(wbg_output_text(tail))"
PG_SEARCH_FUNCTIONS = [
    # Kept output is bytes: read as UTF-8, or (when it is not) with the other bytes escaped.
    "CREATE OR REPLACE FUNCTION wbg_output_text(tail bytea) RETURNS text "
    "LANGUAGE plpgsql IMMUTABLE AS $fn$ BEGIN RETURN convert_from(tail, 'UTF8'); "
    "EXCEPTION WHEN others THEN RETURN encode(tail, 'escape'); END $fn$",
    # A tsvector holds at most 1 MB: a longer text (a MiB of output) keeps its newest part,
    # halved until it fits, so a write never fails for its index.
    "CREATE OR REPLACE FUNCTION wbg_words(body text) RETURNS tsvector "
    "LANGUAGE plpgsql IMMUTABLE AS $fn$ "
    "DECLARE words text := regexp_replace(lower(body), '[^[:alnum:]]+', ' ', 'g'); "
    "BEGIN LOOP BEGIN RETURN to_tsvector('simple', words); "
    "EXCEPTION WHEN program_limit_exceeded THEN "
    "IF length(words) < 2 THEN RAISE; END IF; "
    "words := right(words, length(words) / 2); END; END LOOP; END $fn$",
]


def pg_search_query(text: str) -> str | None:
    """``--search`` words as a ``to_tsquery`` text: every word must appear, a word of
    several parts (``r-0.1``) as those parts in a row, as with FTS5's quoted phrases."""
    phrases = []
    for word in text.split():
        parts = [part.lower() for part in re.findall(r"[^\W_]+", word)]
        if parts:
            phrases.append("(" + " <-> ".join(f"'{part}'" for part in parts) + ")")
    return " & ".join(phrases) or None


def _glob_regex(pattern: str) -> str:
    """A GLOB pattern as an anchored POSIX regular expression (case-sensitive, as GLOB)."""
    out, i = ["^"], 0
    while i < len(pattern):
        char = pattern[i]
        if char == "*":
            out.append(".*")
        elif char == "?":
            out.append(".")
        elif char == "[":
            # a "]" first in the set (after "^", which negates it as in a regex) is a member
            first = i + (3 if pattern[i + 1 : i + 2] == "^" else 2)
            end = pattern.find("]", first)
            if end < 0:
                out.append("\\[")
            else:
                out.append("[" + pattern[i + 1 : end].replace("\\", "\\\\") + "]")
                i = end
        else:
            out.append(re.escape(char))
        i += 1
    return "".join(out) + "$"


SQLITE = SQLiteEngine()
POSTGRES = PostgresEngine()
Engine = SQLiteEngine | PostgresEngine  # what ``engine_of`` returns


def engine_of(conn: Any) -> Engine:
    return POSTGRES if isinstance(conn, PgConnection) else SQLITE


def stream(conn: Any, sql: str, params: Sequence[Any] = ()) -> Iterable[Any]:
    """Rows read as they are consumed (a long listing): SQLite's cursor already is; a
    server's rows come through ``PgConnection.stream``."""
    if isinstance(conn, PgConnection):
        return conn.stream(sql, params)
    return conn.execute(sql, params)


# --- placeholders -----------------------------------------------------------------------

_NUMBERED = re.compile(r"\?(\d+)")


@functools.lru_cache(maxsize=512)
def pg_sql(sql: str) -> tuple[str, bool]:
    """SQLite placeholders (``?``, ``?N``) as psycopg's (``%s``, ``%(pN)s``); literal ``%``
    doubled. Quoted strings and identifiers are left as they are. Returns the SQL and
    whether the placeholders are numbered (the parameters then go as a mapping)."""
    out: list[str] = []
    numbered = False
    i, n = 0, len(sql)
    while i < n:
        char = sql[i]
        if char in "'\"":
            end = i + 1
            while end < n:
                if sql[end] == char:
                    if end + 1 < n and sql[end + 1] == char:
                        end += 2
                        continue
                    break
                end += 1
            out.append(sql[i : end + 1].replace("%", "%%"))
            i = end + 1
            continue
        if char == "$" and sql.startswith("$fn$", i):  # a function body: copied as it is
            end = sql.find("$fn$", i + 4)
            end = n if end < 0 else end + 4
            out.append(sql[i:end].replace("%", "%%"))
            i = end
            continue
        if char == "?":
            match = _NUMBERED.match(sql, i)
            if match:
                numbered = True
                out.append(f"%(p{match.group(1)})s")
                i = match.end()
                continue
            out.append("%s")
        elif char == "%":
            out.append("%%")
        else:
            out.append(char)
        i += 1
    return "".join(out), numbered


def _nan_as_null(value: Any) -> Any:
    # SQLite stores a NaN as NULL; PostgreSQL would keep it. wbg reads NULL as NaN.
    if type(value) is float and math.isnan(value):
        return None
    # SQLite stores a bool as 0/1; PostgreSQL refuses a boolean for an integer column
    # (git_dirty), which failed the whole write it was in.
    if type(value) is bool:
        return int(value)
    return value


def _pg_params(params: Sequence[Any] | None, numbered: bool) -> Any:
    if not params:
        return {} if numbered else None
    params = [_nan_as_null(p) for p in params]
    if numbered:
        return {f"p{i}": value for i, value in enumerate(params, 1)}
    return params


# --- the PostgreSQL connection ----------------------------------------------------------


def _driver() -> Any:
    try:
        import psycopg
    except ImportError:
        from wbg.errors import DatabaseError

        raise DatabaseError(MISSING_DRIVER) from None
    return psycopg


def _translate(exc: Exception) -> sqlite3.Error:
    """A psycopg error as the sqlite3 exception class callers already catch."""
    psycopg = _driver()
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    if isinstance(exc, psycopg.errors.IntegrityError):
        return sqlite3.IntegrityError(text)
    if isinstance(exc, psycopg.errors.ReadOnlySqlTransaction):
        return sqlite3.OperationalError(f"attempt to write a readonly database ({text})")
    if isinstance(exc, (psycopg.OperationalError, psycopg.errors.ProgrammingError)):
        return sqlite3.OperationalError(text)
    if isinstance(exc, psycopg.DataError):
        return sqlite3.InterfaceError(text)
    return sqlite3.DatabaseError(text)


class PgCursor:
    """The rows of one statement, read as from a sqlite3 cursor."""

    def __init__(self, cursor: Any) -> None:
        self._cursor = cursor
        self.lastrowid = None

    def _result(self) -> Any:
        return self._cursor

    @property
    def rowcount(self) -> int:
        return self._result().rowcount

    @property
    def description(self) -> Any:
        return self._result().description

    def fetchone(self) -> Any:
        return self._result().fetchone() if self.description else None

    def fetchall(self) -> list[Any]:
        return self._result().fetchall() if self.description else []

    def fetchmany(self, size: int = 1) -> list[Any]:
        return self._result().fetchmany(size) if self.description else []

    def __iter__(self):  # noqa: ANN204
        if self.description:
            yield from self._result()
        return


class _Answer:
    """One statement's answer, kept when the batch it was sent in came back."""

    def __init__(self, description: Any, rows: list[Any], rowcount: int) -> None:
        self.description = description
        self.rowcount = rowcount
        self._rows = iter(rows)

    def fetchone(self) -> Any:
        return next(self._rows, None)

    def fetchall(self) -> list[Any]:
        return list(self._rows)

    def fetchmany(self, size: int = 1) -> list[Any]:
        return list(itertools.islice(self._rows, size))

    def __iter__(self):  # noqa: ANN204
        return self._rows


class _Queued(PgCursor):
    """A statement of a batch (``PgConnection.batched``): reading its answer sends the
    statements queued so far."""

    def __init__(self, conn: PgConnection) -> None:
        self._conn = conn
        self._answer: _Answer | None = None
        self.lastrowid = None

    def _result(self) -> Any:
        if self._answer is None:
            self._conn._send_batch()
        assert self._answer is not None
        return self._answer


class PgConnection(_ConnectionLike):
    """A psycopg connection with the sqlite3-shaped API wbg uses (autocommit; explicit
    BEGIN/COMMIT as on SQLite)."""

    def __init__(self, raw: Any, url: ServerUrl, read_only: bool = False) -> None:
        self._raw = raw
        self.url = url
        self.read_only = read_only
        self._psycopg = _driver()
        self._closed = False
        self.has_points_table = False  # the temporary table of pg_write_points
        # A view's connection (db.connect(read_only=True)): it never writes wbg's tables.
        self.reading = False
        # While ``batched`` runs: the statements not sent yet (SQL with its values bound)
        # and their cursors, and whether a BEGIN among them is still open.
        self._batch: list[str] | None = None
        self._queued: list[_Queued] = []
        self._batch_open = False

    @property
    def in_transaction(self) -> bool:
        if self._batch_open:
            return True
        status = self._raw.info.transaction_status
        return status != self._psycopg.pq.TransactionStatus.IDLE

    def _cursor(self) -> Any:
        # A connection the server dropped (a restart, a failover, an idle timeout) is
        # opened again on the next statement: a training job outlives a server restart.
        # The statement that met the drop failed; the transaction around it rolls back and
        # its writer retries the whole batch (README "Reliability").
        if self._raw.closed and not self._closed:
            if self._batch is not None:  # never the rest of a batch on a new connection
                raise sqlite3.OperationalError("the server closed the connection")
            try:
                self._raw = _open(self.url, self.read_only)
            except self._psycopg.Error as exc:
                raise _translate(exc) from None
            self.has_points_table = False
        return self._raw.cursor()

    def execute(  # type: ignore[override]  # sqlite3's shape, psycopg's cursor
        self, sql: str, params: Sequence[Any] | None = ()
    ) -> PgCursor:
        text, numbered = pg_sql(sql)
        if self._batch is not None:
            return self._queue(text, _pg_params(params, numbered))
        cursor = self._cursor()
        try:
            cursor.execute(text, _pg_params(params, numbered))
        except self._psycopg.OperationalError as exc:
            # A BEGIN that finds the connection dropped is safe to send again on a new one
            # (nothing was done yet): a run's final write is not lost to an idle drop.
            if not (self._raw.closed and text.lstrip().upper().startswith("BEGIN")):
                raise _translate(exc) from None
            cursor = self._cursor()
            try:
                cursor.execute(text, _pg_params(params, numbered))
            except self._psycopg.Error as again:
                raise _translate(again) from None
        except self._psycopg.Error as exc:
            raise _translate(exc) from None
        return PgCursor(cursor)

    def executemany(  # type: ignore[override]
        self, sql: str, rows: Iterable[Sequence[Any]]
    ) -> PgCursor:
        text, numbered = pg_sql(sql)
        if self._batch is not None:
            queued = None
            for row in rows:
                queued = self._queue(text, _pg_params(row, numbered))
            return queued or PgCursor(self._cursor())
        cursor = self._cursor()
        try:
            cursor.executemany(text, [_pg_params(row, numbered) for row in rows])
        except self._psycopg.Error as exc:
            raise _translate(exc) from None
        return PgCursor(cursor)

    def stream(self, sql: str, params: Sequence[Any] | None = (), size: int = 2000) -> Any:
        """The rows of a SELECT read ``size`` at a time through a server-side cursor (in a
        view's transaction): a view of 100,000 runs holds one slice, not all of them, as
        a SQLite cursor does. Outside a transaction: all rows at once, as ``execute``."""
        if not self.in_transaction:
            yield from self.execute(sql, params)
            return
        text, numbered = pg_sql(sql)
        cursor = self._cursor()
        name = f"wbg_stream_{id(cursor)}"
        try:
            bound = cursor.mogrify(text, _pg_params(params, numbered))
            cursor.execute(f"DECLARE {name} NO SCROLL CURSOR FOR {bound}")
            while True:
                cursor.execute(f"FETCH {int(size)} FROM {name}")
                rows = cursor.fetchall()
                yield from rows
                if len(rows) < size:
                    break
            cursor.execute(f"CLOSE {name}")
        except self._psycopg.Error as exc:
            raise _translate(exc) from None

    # --- a write in one round trip ---------------------------------------------------

    def batched(self, write: Callable[[PgConnection], T]) -> T:
        """``write(self)`` with its statements sent to the server together, as one string,
        when it ends (or when a result is read inside): one round trip, one wake-up of
        the server and one call into the driver for a whole write transaction, instead
        of one each per statement (a short run's end took seven).

        ``write`` must be idempotent (upserts, as every batch of the writer is): when the
        server had dropped the connection, it is sent once more on a new one, as a BEGIN
        is in ``execute``. Nothing is left half done: a failed write is rolled back.
        """
        for attempt in (1, 2):
            self._cursor()  # a dropped connection is opened again first
            self._batch, self._queued, self._batch_open = [], [], False
            try:
                result = write(self)
                self._send_batch()
                return result
            except (self._psycopg.Error, sqlite3.Error):
                self._abandon()
                if attempt == 1 and self._raw.closed and not self._closed:
                    continue
                raise
            except BaseException:
                self._abandon()
                raise
            finally:
                self._batch, self._queued, self._batch_open = None, [], False
        raise AssertionError("unreachable")  # pragma: no cover

    def _queue(self, text: str, params: Any) -> _Queued:
        assert self._batch is not None
        cursor = self._raw.cursor()
        try:
            bound = cursor.mogrify(text, params) if params is not None else text % ()
        except self._psycopg.Error as exc:
            raise _translate(exc) from None
        word = bound.lstrip()[:8].upper()
        if word.startswith("BEGIN"):
            self._batch_open = True
        elif word.startswith(("COMMIT", "ROLLBACK")):
            self._batch_open = False
        self._batch.append(bound)
        queued = _Queued(self)
        self._queued.append(queued)
        return queued

    def _send_batch(self) -> None:
        """Send the queued statements as one string; keep each one's answer."""
        batch, queued = self._batch, self._queued
        if not batch:
            return
        self._batch, self._queued = [], []
        cursor = self._cursor()
        try:
            cursor.execute(";\n".join(batch))
            for i, statement in enumerate(queued):
                if i:
                    cursor.nextset()
                rows = cursor.fetchall() if cursor.description else []
                statement._answer = _Answer(cursor.description, rows, cursor.rowcount)
        except self._psycopg.Error as exc:
            raise _translate(exc) from None

    def _abandon(self) -> None:
        """After a failed batch: roll back what it began (the connection stays usable)."""
        self._batch, self._queued, self._batch_open = None, [], False
        if self._raw.closed:
            return
        try:
            if self._raw.info.transaction_status != self._psycopg.pq.TransactionStatus.IDLE:
                self._raw.execute("ROLLBACK")
        except self._psycopg.Error:
            self._raw.close()  # in an unknown state: a new one is opened on next use

    def commit(self) -> None:
        if self.in_transaction:
            self.execute("COMMIT")

    def rollback(self) -> None:
        if self.in_transaction:
            self.execute("ROLLBACK")

    def close(self) -> None:
        self._closed = True
        self._raw.close()

    @property
    def closed(self) -> bool:
        return self._closed

    def copy_rows(self, table: str, columns: Sequence[str], rows: Iterable[Sequence[Any]]) -> None:
        """Bulk load with COPY (history of a merge)."""
        cols = ", ".join(f'"{c}"' for c in columns)
        try:
            with self._cursor().copy(f"COPY {table} ({cols}) FROM STDIN") as copy:
                for row in rows:
                    copy.write_row([_nan_as_null(value) for value in row])
        except self._psycopg.Error as exc:
            raise _translate(exc) from None


def connect_server(url: ServerUrl, *, read_only: bool = False) -> PgConnection:
    """Open a PostgreSQL connection. Credentials come from the URL, PGPASSWORD, ~/.pgpass
    and the libpq environment (libpq reads them); no message ever shows the password."""
    psycopg = _driver()
    from wbg.errors import DatabaseError

    try:
        raw = _open(url, read_only)
    except psycopg.Error as exc:
        from urllib.parse import urlsplit

        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        if url.url in first or (urlsplit(url.url).password or "\0") in first:
            first = "connection failed"
        raise DatabaseError(f"cannot connect to {url}: {first}") from None
    return PgConnection(raw, url, read_only)


def _open(url: ServerUrl, read_only: bool) -> Any:
    psycopg = _driver()
    options = "-c default_transaction_read_only=on" if read_only else None
    return psycopg.connect(
        url.url,
        autocommit=True,
        cursor_factory=psycopg.ClientCursor,
        application_name="wbg",
        connect_timeout=10,
        **({"options": options} if options else {}),
    )


# --- history, written in bulk -----------------------------------------------------------

_PG_POINTS_PER_INSERT = 500
_PG_INSERT_POINTS = "INSERT INTO history (run, step, key, value, time) VALUES "
_PG_UPSERT_POINTS = (
    " ON CONFLICT (run, step, key) DO UPDATE SET value = excluded.value, time = excluded.time"
)
# From this many points on, a batch goes through COPY into a temporary table and one
# INSERT ... SELECT from it: psycopg encodes COPY rows in C, where a multi-row VALUES
# statement is built value by value in Python.
_PG_COPY_FROM = 200
_PG_POINTS_TABLE = (
    "CREATE TEMP TABLE IF NOT EXISTS wbg_points (run BIGINT, step BIGINT, key TEXT, "
    "value DOUBLE PRECISION, time DOUBLE PRECISION) ON COMMIT DELETE ROWS"
)


def pg_write_points(conn: PgConnection, points: Sequence[Sequence[Any]]) -> None:
    """History points into PostgreSQL: the last value of a (run, step, key) wins, as with
    SQLite's INSERT OR REPLACE (one statement cannot update a row twice, so repeats are
    dropped here first)."""
    latest = {(p[0], p[1], p[2]): p for p in points}
    rows = list(latest.values())
    if len(rows) >= _PG_COPY_FROM:
        own = not conn.in_transaction
        if own:
            conn.execute("BEGIN")
        try:
            if not conn.has_points_table:
                conn.execute(_PG_POINTS_TABLE)
                conn.has_points_table = True
            conn.copy_rows("wbg_points", ("run", "step", "key", "value", "time"), rows)
            conn.execute(
                "INSERT INTO history (run, step, key, value, time) "
                "SELECT run, step, key, value, time FROM wbg_points" + _PG_UPSERT_POINTS
            )
            conn.execute("DELETE FROM wbg_points")
            if own:
                conn.execute("COMMIT")
        except BaseException:
            if own:
                conn.rollback()
            raise
        return
    size = _PG_POINTS_PER_INSERT
    for start in range(0, len(rows), size):
        chunk = rows[start : start + size]
        sql = _PG_INSERT_POINTS + ", ".join(["(?, ?, ?, ?, ?)"] * len(chunk)) + _PG_UPSERT_POINTS
        conn.execute(sql, [value for row in chunk for value in row])


def batched(conn: Any, write: Callable[[Any], T], points: int = 0) -> T:
    """``write(conn)``; on PostgreSQL in one round trip (``PgConnection.batched``) when its
    history is small enough to go without COPY (``points``), which a batch cannot carry.
    SQLite: called as it is."""
    if isinstance(conn, PgConnection) and points < _PG_COPY_FROM:
        return conn.batched(write)
    return write(conn)


MIGRATION_LOCK_KEY = 7741957265  # every wbg process on every node takes the same lock


def migration_lock(conn: Any) -> None:
    """Begin the transaction in which one migration is applied: one process at a time.

    PostgreSQL: a session advisory lock taken *before* BEGIN (``migration_unlock`` releases
    it), so the transaction starts after the previous migrator committed and sees its
    tables (a backend's catalog cache is refreshed when a transaction starts, not when an
    advisory lock is granted inside one).
    """
    if isinstance(conn, PgConnection):
        conn.execute("SELECT pg_advisory_lock(?)", (MIGRATION_LOCK_KEY,))
        conn.execute("BEGIN")
    else:
        conn.execute("BEGIN IMMEDIATE")


def migration_unlock(conn: Any) -> None:
    """After COMMIT or ROLLBACK of a migration (see ``migration_lock``)."""
    if isinstance(conn, PgConnection):
        conn.execute("SELECT pg_advisory_unlock(?)", (MIGRATION_LOCK_KEY,))
