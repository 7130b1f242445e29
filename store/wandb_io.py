"""Working beside W&B: import W&B run logs, export wbg runs as W&B offline runs.

Import reads ``run-<id>.wandb``, the record log every W&B run (offline or online) writes
in its run directory. The container is LevelDB's log format with W&B's own header and
checksum, decoded here (the ``wandb`` package no longer ships a reader for it):

- a 7-byte file header: ``:W&B``, magic 0xBEE1 (little-endian u16), version 0;
- then 32 KiB blocks, counted from the start of the file (the first block is 7 bytes
  shorter); a block holds chunks, each with a 7-byte header: CRC-32 (u32 LE), length
  (u16 LE), type (1 FULL, 2 FIRST, 3 MIDDLE, 4 LAST); fewer than 7 bytes left in a block
  are zero padding;
- the checksum is plain CRC-32 (zlib's, not LevelDB's masked CRC-32C) of the type byte
  followed by the data;
- a record is one FULL chunk or FIRST, MIDDLE..., LAST; its bytes are a protobuf
  ``Record`` of ``wandb.proto.wandb_internal_pb2`` (run, config, history, summary, exit...).

A run killed mid-way leaves a log cut inside a block (or a record whose LAST chunk never
came): what is complete is imported and the run is marked ``crashed``. So is a log that
ends without an exit record.

``RecordTail`` and ``RunDecoder`` read a log while W&B still writes it: ``wbg run`` uses
them for the W&B runs of its command (``wbg.wandb_follow``).

Export replays each run through the ``wandb`` package itself in offline mode, so the
result is exactly what ``wandb sync`` expects.

Both need the optional extra: ``pip install 'wbg[wandb]'``.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import sqlite3
import struct
import zlib
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from wbg import runs, values
from wbg.engine import engine_of
from wbg.errors import InvalidInput, MissingExtra, WbgError

FILE_HEADER = b":W&B" + struct.pack("<HB", 0xBEE1, 0)
HEADER_LEN = 7
BLOCK_LEN = 32 * 1024
FULL, FIRST, MIDDLE, LAST = 1, 2, 3, 4
# The CRC of a chunk starts from the CRC of its type byte.
_CRC_SEED = {kind: zlib.crc32(bytes([kind])) for kind in (FULL, FIRST, MIDDLE, LAST)}
_CHUNK = struct.Struct("<IHB")

DEFAULT_PROJECT = "uncategorized"  # what W&B calls a run's project when none was given
EXTRA_HINT = "install the extra: pip install 'wbg[wandb]'"


def require_wandb(purpose: str) -> Any:
    """The ``wandb`` package's protobuf module, or a clear error naming the extra."""
    try:
        from wandb.proto import wandb_internal_pb2
    except ImportError:
        raise MissingExtra(
            f"{purpose} needs the `wandb` package, which is not installed", hint=EXTRA_HINT
        ) from None
    return wandb_internal_pb2


# --- the record log ----------------------------------------------------------------------


class RecordTail:
    """The records of a ``.wandb`` file read as it grows: each ``read()`` yields the
    complete records written since the previous one.

    W&B writes its log a block (32 KiB) at a time while the run goes on and the rest when
    it ends, so a chunk that is not all there yet (or fails its checksum while its block is
    still being written) is simply read again next time. A damaged chunk in a whole block
    costs the rest of that block (the records in it are skipped, as LevelDB's log reader
    does) and reading goes on with the next block: ``skipped_bytes`` counts what was lost.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self.offset = 0  # where the next chunk starts; 0: the file header is not read yet
        self.problem: str | None = None  # why reading stopped for good
        self.skipped_bytes = 0
        self.first_damage: int | None = None
        self.last_damage: int | None = None
        self.read_since_damage = False
        self._pending: list[bytes] = []  # the chunks of a record not yet complete

    @property
    def in_record(self) -> bool:
        """True when the last chunk read began a record whose end has not come yet."""
        return bool(self._pending)

    def _stop(self, problem: str) -> None:
        self.problem = problem
        self._pending = []

    def damaged(self, at: int, skipped: int) -> None:
        """A chunk at byte ``at`` failed its checksum; ``skipped`` bytes are lost."""
        if self.first_damage is None:
            self.first_damage = at
        self.last_damage = at
        self.read_since_damage = False
        self.skipped_bytes += skipped
        self._pending = []  # a record begun before the damage is lost too

    def read(self) -> Iterator[bytes]:
        if self.problem is not None:
            return
        with self.path.open("rb") as handle:
            if self.offset == 0:
                header = handle.read(HEADER_LEN)
                if len(header) < HEADER_LEN:
                    return
                if header != FILE_HEADER:
                    raise InvalidInput(f"{self.path} is not a W&B run log (bad file header)")
                self.offset = HEADER_LEN
            handle.seek(self.offset)
            while True:
                block_start = self.offset - self.offset % BLOCK_LEN
                wanted = block_start + BLOCK_LEN - self.offset
                block = handle.read(wanted)
                whole = len(block) == wanted  # the block is written to its end
                pos = 0
                while len(block) - pos >= HEADER_LEN:
                    crc, length, kind = _CHUNK.unpack_from(block, pos)
                    if kind == 0 and length == 0:
                        if not whole:  # zeros at the end of what is written: nothing more yet
                            self.offset += pos
                            return
                        pos = len(block)  # zeros: the rest of this block is padding
                        break
                    end = pos + HEADER_LEN + length
                    at = self.offset + pos
                    if end > len(block):
                        if whole:  # a chunk never crosses a block's end
                            self._stop(f"cut off inside a chunk at byte {at}")
                        self.offset += pos  # else: the rest of the chunk comes later
                        return
                    data = block[pos + HEADER_LEN : end]
                    seed = _CRC_SEED.get(kind)
                    if seed is None or zlib.crc32(data, seed) != crc:
                        if not whole:  # perhaps not all written yet: look again later
                            self.offset += pos
                            return
                        self.damaged(at, len(block) - pos)
                        pos = len(block)  # resume with the next block
                        break
                    pos = end
                    record: bytes | None = None
                    if kind == FULL:
                        self._pending = []
                        record = data
                    elif kind == FIRST:
                        self._pending = [data]
                    elif not self._pending and self.skipped_bytes:
                        self.skipped_bytes += len(data) + HEADER_LEN  # its start was lost
                    elif not self._pending:
                        self._stop(f"chunk without its start at byte {self.offset + pos}")
                        return
                    elif kind == MIDDLE:
                        self._pending.append(data)
                    else:
                        record = b"".join([*self._pending, data])
                        self._pending = []
                    if record is not None:
                        self.read_since_damage = True
                        yield record
                if not whole:
                    self.offset += pos
                    return
                self.offset = block_start + BLOCK_LEN  # past the block, padding included

    def unread_tail(self) -> bytes:
        """The bytes after the last chunk read (what a cut-off or damaged write left)."""
        with self.path.open("rb") as handle:
            handle.seek(self.offset)
            return handle.read(BLOCK_LEN)


class RecordLog:
    """The records of one ``.wandb`` file, in order.

    Iterating yields each complete record's bytes. Afterwards ``complete`` tells whether
    the file ended cleanly (no record cut off); ``problem`` says why not. A damaged chunk
    in the middle costs the rest of its 32 KiB block (the records in it are skipped, as
    LevelDB's log reader does) and reading goes on with the next block; ``damage`` then
    says how many bytes were skipped.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self.complete = True
        self.problem: str | None = None
        self.skipped_bytes = 0
        self.first_damage: int | None = None

    @property
    def damage(self) -> str | None:
        if not self.skipped_bytes:
            return None
        return (
            f"damaged: {self.skipped_bytes} bytes skipped (from byte {self.first_damage}), "
            "the records in them lost"
        )

    def __iter__(self) -> Iterator[bytes]:
        tail = RecordTail(self.path)
        yield from tail.read()
        if tail.offset == 0:
            raise InvalidInput(f"{self.path} is not a W&B run log (bad file header)")
        self.problem = tail.problem or _end_problem(tail)
        self.complete = self.problem is None
        self.skipped_bytes, self.first_damage = tail.skipped_bytes, tail.first_damage


def _end_problem(tail: RecordTail) -> str | None:
    """Why a log read to its end is incomplete (None when it ended cleanly)."""
    rest = tail.unread_tail()
    if len(rest) >= HEADER_LEN:
        _crc, length, kind = _CHUNK.unpack_from(rest)
        if not (kind == 0 and length == 0):
            if HEADER_LEN + length > len(rest):
                return f"cut off inside a chunk at byte {tail.offset}"
            # a whole chunk left unread in the last block: its checksum failed
            tail.damaged(tail.offset, len(rest))
    if tail.skipped_bytes and not tail.read_since_damage:
        # nothing readable after the damage: the log ends there (a run killed mid-write),
        # as a cut-off log does
        tail.skipped_bytes, tail.first_damage = 0, None
        return f"damaged chunk at byte {tail.last_damage}"
    if any(rest):
        return f"cut off inside a chunk header at byte {tail.offset}"
    if tail.in_record:
        return "the last record was cut off"
    return None


# --- decoding a run ----------------------------------------------------------------------


@dataclass
class WandbRun:
    """What one W&B run log says about its run, in wbg's terms."""

    path: Path
    id: str = ""
    project: str = DEFAULT_PROJECT
    name: str | None = None
    group: str | None = None
    job_type: str | None = None
    tags: list[str] = field(default_factory=list)
    notes: str | None = None
    config: dict[str, Any] = field(default_factory=dict)
    summary: dict[str, Any] = field(default_factory=dict)
    # (step, key, value, time)
    history: list[tuple[int, str, float, float]] = field(default_factory=list)
    started_at: float | None = None
    ended_at: float | None = None
    exit_code: int | None = None
    state: str = "crashed"
    host: str | None = None
    user: str | None = None
    command: list[str] | None = None
    cwd: str | None = None
    pid: int | None = None
    git_commit: str | None = None
    git_dirty: bool | None = None
    reason: str | None = None
    complete: bool = True
    problem: str | None = None

    @property
    def steps(self) -> int:
        return len({point[0] for point in self.history})


def _json_value(text: str) -> Any:
    """A value W&B wrote as JSON text (an int stays an int; NaN and Infinity are read)."""
    try:
        return json.loads(text)
    except ValueError:
        return text


def _item_path(item: Any) -> tuple[str, ...]:
    return (item.key,) if item.key else tuple(item.nested_key)


def _item_name(item: Any) -> str:
    """A history or summary item's key; a nested one joined with dots."""
    name = item.key
    if not name:
        # W&B's own writer sends most keys as a one-part nested_key: skip the join then.
        nested = item.nested_key
        name = nested[0] if len(nested) == 1 else ".".join(nested)
    return name


def _flatten_numbers(prefix: str, value: Any, out: list[tuple[str, float]]) -> None:
    """History values: numbers kept (nested dicts as dotted keys), everything else dropped."""
    if values.is_number(value):
        out.append((prefix, float(value)))
    elif isinstance(value, dict) and not value.get("_type"):  # "_type": W&B media/histograms
        for key, item in value.items():
            _flatten_numbers(f"{prefix}.{key}", item, out)


def _set_path(target: dict[str, Any], path: Sequence[str], value: Any) -> None:
    node = target
    for part in path[:-1]:
        child = node.get(part)
        if not isinstance(child, dict):
            child = node[part] = {}
        node = child
    node[path[-1]] = value


def _remove_path(target: dict[str, Any], path: Sequence[str]) -> None:
    node: Any = target
    for part in path[:-1]:
        node = node.get(part) if isinstance(node, dict) else None
    if isinstance(node, dict):
        node.pop(path[-1], None)


def _apply_config(config: dict[str, Any], record: Any) -> None:
    for item in record.update:
        path = _item_path(item)
        if path and path[0] != "_wandb":
            _set_path(config, path, _json_value(item.value_json))
    for item in record.remove:
        _remove_path(config, _item_path(item))


def exit_state(exit_code: int) -> str:
    # wbg's reading of an exit code: 128+N is the mark of signal N (see `wbg run`).
    if exit_code == 0:
        return "finished"
    if 128 < exit_code < 128 + 65:
        return "killed"
    return "failed"


class RunDecoder:
    """Turns the records of one run log, fed in order, into a ``WandbRun``.

    ``take_history()`` hands over the points decoded so far (to store them as the log
    grows); ``finish()`` works out the summary, state and times once the log has ended.
    """

    def __init__(self, path: Path) -> None:
        self.pb = require_wandb("reading W&B runs")
        self.run = WandbRun(path=path)
        self.seen_run = False
        self.exited = False
        # Summary updates come with every logged step: keep the last JSON text per path
        # and decode when asked.
        self._summary_updates: dict[str, str] = {}
        self._removed: set[str] = set()
        self._last: dict[str, float] = {}  # the last logged value of each history key
        self._step_counter = 0
        self._last_time: float | None = None
        self._runtime: float | None = None
        self._record = self.pb.Record()

    def feed(self, payload: bytes) -> bool:
        """Decode one record; False when it cannot be decoded (the log ends there)."""
        record = self._record
        record.Clear()
        try:
            record.ParseFromString(payload)
        except Exception:  # protobuf's DecodeError
            return False
        run = self.run
        kind = record.WhichOneof("record_type")
        if kind == "history":
            self._history(record.history)
        elif kind == "summary":
            for item in record.summary.update:
                self._summary_updates[_item_name(item)] = item.value_json
            for item in record.summary.remove:
                name = _item_name(item)
                self._removed.add(name)
                for known in [
                    k for k in self._summary_updates if k == name or k.startswith(name + ".")
                ]:
                    del self._summary_updates[known]
        elif kind == "config":
            _apply_config(run.config, record.config)
        elif kind == "run" and not self.seen_run:
            self.seen_run = True
            _read_run_record(run, record.run, self._summary_updates)
        elif kind == "environment":
            env = record.environment
            run.host = run.host or env.host or None
            run.user = run.user or env.username or None
            if env.program and run.command is None:
                run.command = [env.program, *env.args]
            if env.HasField("git") and env.git.commit:
                run.git_commit = run.git_commit or env.git.commit
        elif kind == "exit":
            self.exited = True
            run.exit_code = record.exit.exit_code
            self._runtime = float(record.exit.runtime)
        return True

    def _history(self, history: Any) -> None:
        step, points, timestamp = None, [], None
        media: list[str] = []  # W&B media (an image, a table) are not metrics
        for item in history.item:
            name = _item_name(item)
            if not name:
                continue
            if name.endswith("._type"):
                media.append(name[: -len("_type")])
            text = item.value_json
            if text:
                value = _json_value(text)
            else:
                kind = item.WhichOneof("value")
                value = getattr(item, kind) if kind else None
            if name[0] != "_":
                _flatten_numbers(name, value, points)
            elif name == "_step" and values.is_number(value):
                step = int(value)
            elif name == "_timestamp" and values.is_number(value):
                timestamp = float(value)
        if history.HasField("step"):
            step = history.step.num
        if step is None:
            step = self._step_counter
        self._step_counter = step + 1
        if timestamp is not None:
            self._last_time = timestamp
        when = timestamp if timestamp is not None else (self._last_time or self.run.started_at)
        if media:
            points = [p for p in points if not p[0].startswith(tuple(media))]
        self.run.history.extend((step, key, value, when or 0.0) for key, value in points)
        self._last.update(points)

    def take_history(self) -> list[tuple[int, str, float, float]]:
        """The points decoded since the last call (they are no longer kept here)."""
        points, self.run.history = self.run.history, []
        return points

    def summary(self) -> tuple[dict[str, Any], dict[str, Any]]:
        """The summary so far (W&B's: the last value of each metric unless set
        explicitly) and what an export by wbg kept in its hidden summary entry."""
        updates = self._summary_updates
        # Current W&B writes the last values as summary records too; older writers only
        # wrote explicit sets, so the last history values are the base they update. A log
        # from a current writer (some logged key has a summary record) is read as it says:
        # a metric with define_metric(summary="none") has no summary there.
        current_writer = any(key in updates for key in self._last)
        summary: dict[str, Any] = {}
        if not current_writer:
            summary = {k: v for k, v in self._last.items() if k not in self._removed}
        wbg_fields: dict[str, Any] = {}
        # A media summary (W&B writes it as nested keys "img._type", "img.path"...) is kept
        # as one description: {"img": {"_type": "image-file", "path": ...}}.
        media = tuple(name[: -len("_type")] for name in updates if name.endswith("._type"))
        for name, text in updates.items():
            if name == WBG_SUMMARY_KEY or name.startswith(WBG_SUMMARY_KEY + "."):
                _set_path(wbg_fields, name.split("."), _json_value(text))
            elif media and name.startswith(media):
                prefix = next(m for m in media if name.startswith(m))
                _set_path(summary, [prefix[:-1], name[len(prefix) :]], _json_value(text))
            elif name and not name.startswith("_"):
                # A nested W&B key (a dict logged as a metric) is named with dots, as in
                # history.
                summary[name] = _json_value(text)
        return {k: v for k, v in summary.items() if v is not None}, wbg_fields

    def finish(
        self, complete: bool = True, problem: str | None = None, damage: str | None = None
    ) -> WandbRun:
        """The run as the whole log tells it (``complete``: the log ended cleanly;
        ``damage``: what a damaged middle cost)."""
        run = self.run
        if not self.seen_run or not run.id:
            raise _no_run_record(run.path)
        run.complete, run.problem = complete, problem or damage
        summary, wbg_fields = self.summary()
        run.summary.update(summary)
        if run.exit_code is not None and run.complete:
            run.state = exit_state(run.exit_code)
        else:
            run.state = "crashed"
            run.exit_code = None
        if not run.complete:
            run.reason = f"imported from an incomplete W&B log: {run.problem}"
        elif damage:
            run.reason = f"imported from a damaged W&B log: {damage}"
        elif run.exit_code is None:
            run.reason = "imported from a W&B log without an exit record (the run did not end)"
        # W&B stores the runtime in whole seconds; the last logged step is a finer end mark.
        ends = [t for t in (self._last_time,) if t is not None]
        if self._runtime is not None and run.started_at is not None:
            ends.append(run.started_at + self._runtime)
        run.ended_at = max(ends) if ends else None
        if run.ended_at is not None and run.started_at is not None:
            run.ended_at = max(run.ended_at, run.started_at)
        if WBG_SUMMARY_KEY in wbg_fields and run.complete:
            _apply_wbg_fields(run, wbg_fields[WBG_SUMMARY_KEY])
        return run


def decode_run(path: Path) -> WandbRun:
    """Read one ``run-<id>.wandb`` file into a ``WandbRun`` (what is complete of it)."""
    decoder = RunDecoder(path)
    log = RecordLog(path)
    complete, problem = True, None
    try:
        for payload in log:
            if not decoder.feed(payload):  # a record we cannot read ends the log
                complete, problem = False, "a record could not be decoded"
                break
        else:
            complete, problem = log.complete, log.problem
    except OSError as exc:
        raise WbgError(f"cannot read {path}: {exc.strerror or exc}") from None
    history = decoder.run.history
    run = decoder.finish(complete, problem, log.damage)
    run.history = history
    return run


def read_run_header(path: Path) -> WandbRun:
    """Only what the run record of a log says (id, project, group...): a cheap look."""
    pb = require_wandb("reading W&B runs")
    run = WandbRun(path=path)
    record = pb.Record()
    try:
        for payload in RecordLog(path):
            record.Clear()
            try:
                record.ParseFromString(payload)
            except Exception:  # protobuf's DecodeError
                break
            if record.WhichOneof("record_type") == "run":
                _read_run_record(run, record.run, {})
                return run
    except OSError as exc:
        raise WbgError(f"cannot read {path}: {exc.strerror or exc}") from None
    raise _no_run_record(path)


def _no_run_record(path: Path) -> InvalidInput:
    if path.stat().st_size <= BLOCK_LEN:
        return InvalidInput(
            f"{path} holds no run record: W&B writes its log 32 KiB at a time, and this "
            "run's process ended (was killed?) before the first block was written"
        )
    return InvalidInput(f"{path} holds no run record (not a W&B run log, or damaged)")


def _read_run_record(run: WandbRun, record: Any, summary_updates: dict[str, str]) -> None:
    run.id = record.run_id
    run.project = record.project or DEFAULT_PROJECT
    run.name = record.display_name or None
    run.group = record.run_group or None
    run.job_type = record.job_type or None
    run.tags = list(dict.fromkeys(record.tags))
    run.notes = record.notes or None
    run.host = record.host or None
    if record.HasField("start_time"):
        run.started_at = record.start_time.seconds + record.start_time.nanos / 1e9
    if record.HasField("git") and record.git.commit:
        run.git_commit = record.git.commit
    if record.HasField("config"):
        _apply_config(run.config, record.config)
    if record.HasField("summary"):
        for item in record.summary.update:
            summary_updates[_item_name(item)] = item.value_json


# --- finding run logs --------------------------------------------------------------------


def find_run_logs(paths: Iterable[Path]) -> list[Path]:
    """The ``.wandb`` files that ``paths`` name: files, run folders, ``wandb/`` folders.

    A folder is searched for ``run-*.wandb`` files at any depth (so a project folder that
    holds ``wandb/`` works too). Order: by path, which for W&B's ``run-<date>_<time>-<id>``
    folders is the order the runs started.
    """
    found: dict[Path, Path] = {}  # real path -> path as found (wandb/latest-run links)
    for path in paths:
        if path.is_file():
            found.setdefault(path.resolve(), path)
        elif path.is_dir():
            for log in sorted(path.rglob("run-*.wandb")):
                # wandb/latest-run links to the newest run folder: found once, by its name
                if log.is_file() and "latest-run" not in log.relative_to(path).parts:
                    found.setdefault(log.resolve(), log)
        else:
            raise InvalidInput(f"no such file or directory: {path}")
    return list(found.values())


# --- importing ---------------------------------------------------------------------------


@dataclass
class ImportResult:
    """What happened to one run log."""

    path: Path
    status: str  # "imported", "present" (already in the database), "error"
    run: WandbRun | None = None  # without its history, once stored
    message: str | None = None
    steps: int = 0


_INSERT_RUN = (
    'INSERT INTO runs (id, project, name, "group", job_type, tags, notes, state, exit_code, '
    'command, cwd, host, "user", pid, git_commit, git_dirty, started_at, ended_at, config, '
    "summary, owner_pid, reason) "
    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, '{}', NULL, ?)"
)


def store_run(conn: sqlite3.Connection, run: WandbRun) -> bool:
    """Insert a decoded run with its history and summary; False when its id is present."""
    values.check_group(run.group)
    values.check_job_type(run.job_type)
    tags = values.check_tags(run.tags)
    values.check_config(run.config)
    started = run.started_at if run.started_at is not None else (run.ended_at or 0.0)
    with runs.transaction(conn):
        if runs.run_exists(conn, run.id):
            return False
        engine = engine_of(conn)
        cursor = conn.execute(
            _INSERT_RUN + engine.returning_num(),
            (
                run.id,
                run.project,
                run.name or run.id,
                run.group,
                run.job_type,
                values.dumps(tags),
                run.notes,
                run.state,
                run.exit_code,
                None if run.command is None else values.dumps(run.command),
                run.cwd,
                run.host,
                run.user,
                run.pid,
                run.git_commit,
                None if run.git_dirty is None else int(run.git_dirty),
                started,
                run.ended_at,
                values.dumps(run.config),
                run.reason,
            ),
        )
        num = engine.inserted_num(cursor)
        runs.write_history(conn, [(num, step, key, v, t) for step, key, v, t in run.history])
        runs.merge_summary(conn, num, run.summary)
    return True


def import_logs(
    conn: sqlite3.Connection,
    paths: Sequence[Path],
    *,
    project: str | None = None,
    progress: Callable[[int, int, ImportResult], None] | None = None,
) -> list[ImportResult]:
    """Import every run log ``paths`` names; a run id already present is left alone.

    ``project`` replaces the project the logs name. ``progress(done, total, result)`` is
    called after each file. A file that cannot be read is reported, not fatal.
    """
    require_wandb("importing W&B runs")
    logs = find_run_logs(paths)
    results: list[ImportResult] = []
    for index, path in enumerate(logs, start=1):
        try:
            header = read_run_header(path)
            if runs.run_exists(conn, header.id):
                run, stored = header, False
            else:
                run = decode_run(path)
                if project is not None:
                    run.project = project
                stored = store_run(conn, run)
            result = ImportResult(path, "imported" if stored else "present", run, steps=run.steps)
            run.history = []  # stored: do not keep every run's points until the end
        except MissingExtra:
            raise
        except WbgError as exc:
            message = exc.message if str(path) in exc.message else f"{path}: {exc.message}"
            result = ImportResult(path, "error", None, message)
        results.append(result)
        if progress is not None:
            progress(index, len(logs), result)
    return results


# --- exporting ---------------------------------------------------------------------------


@dataclass
class ExportResult:
    run_id: str
    status: str  # "exported", "present" (already in DIR), "running" (skipped), "error"
    path: Path | None = None
    message: str | None = None


def existing_export(directory: Path, run_id: str) -> Path | None:
    """The run folder an earlier export left for ``run_id`` in ``directory``, if any."""
    wandb_dir = directory / "wandb"
    if not wandb_dir.is_dir():
        return None
    for folder in sorted(wandb_dir.glob(f"*run-*-{run_id}")):
        if (folder / f"run-{run_id}.wandb").is_file():
            return folder
    return None


def _points_by_step(
    conn: sqlite3.Connection, num: int
) -> Iterator[tuple[int, dict[str, float], float]]:
    rows = conn.execute(
        "SELECT step, key, value, time FROM history WHERE run = ? ORDER BY step, key", (num,)
    )
    current: int | None = None
    metrics: dict[str, float] = {}
    latest = 0.0
    for step, key, value, when in rows:
        if step != current:
            if current is not None:
                yield current, metrics, latest
            current, metrics, latest = step, {}, when
        metrics[key] = math.nan if value is None else value
        latest = max(latest, when)
    if current is not None:
        yield current, metrics, latest


# Fields W&B has no place for travel in a hidden summary entry (W&B hides summary keys
# that start with "_"), so that exporting and importing again gives back the same run.
WBG_SUMMARY_KEY = "_wbg"
_WBG_FIELDS = (
    "state",
    "exit_code",
    "started_at",
    "ended_at",
    "command",
    "cwd",
    "host",
    "user",
    "pid",
    "git_commit",
    "git_dirty",
    "reason",
)


def _wbg_fields(row: Sequence[Any]) -> dict[str, Any]:
    fields = dict(zip(_WBG_FIELDS, row, strict=True))
    fields["command"] = values.loads(fields["command"])
    return {key: value for key, value in fields.items() if value is not None}


def _apply_wbg_fields(run: WandbRun, fields: Any) -> None:
    """Take back what an export by wbg kept in the hidden summary entry."""
    if not isinstance(fields, dict):
        return
    if fields.get("state") in runs.STATES:
        run.state = fields["state"]
        code = fields.get("exit_code")
        run.exit_code = code if isinstance(code, int) and not isinstance(code, bool) else None
    for name in ("started_at", "ended_at"):
        if values.is_number(fields.get(name)):
            setattr(run, name, float(fields[name]))
    for name in ("cwd", "host", "user", "git_commit", "reason"):
        if isinstance(fields.get(name), str):
            setattr(run, name, fields[name])
    if isinstance(fields.get("pid"), int):
        run.pid = fields["pid"]
    if isinstance(fields.get("git_dirty"), (bool, int)):
        run.git_dirty = bool(fields["git_dirty"])
    if isinstance(fields.get("summary"), str):
        with contextlib.suppress(ValueError):
            extra = values.loads(fields["summary"])
            if isinstance(extra, dict):
                run.summary.update(extra)
    command = fields.get("command")
    if isinstance(command, list) and all(isinstance(part, str) for part in command):
        run.command = command


def _same_number(a: Any, b: Any) -> bool:
    if values.is_number(a) and values.is_number(b) and math.isnan(a) and math.isnan(b):
        return True
    return a == b


def _explicit_summary(
    summary: dict[str, Any], last: dict[str, float]
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The summary values W&B would not work out itself from the logged history.

    A value equal to its metric's last point is left to W&B (it sets the same). W&B turns
    a non-finite number set in the summary into null, so those travel separately.
    """
    explicit: dict[str, Any] = {}
    non_finite: dict[str, Any] = {}
    for key, value in summary.items():
        if key in last and _same_number(value, last[key]):
            continue
        if values.is_number(value) and not math.isfinite(value):
            non_finite[key] = value
        else:
            explicit[key] = value
    return explicit, non_finite


def export_runs(
    conn: sqlite3.Connection,
    directory: Path,
    where: str = "1",
    params: Sequence[Any] = (),
    *,
    progress: Callable[[int, int, ExportResult], None] | None = None,
) -> list[ExportResult]:
    """Write the selected runs as W&B offline runs under ``directory/wandb/``.

    Each run is replayed through ``wandb.init(mode="offline")`` with its id, project,
    group, job_type, name, tags, notes and config; its history is logged step by step
    (with the original ``_timestamp``), its summary set, and it is finished with its exit
    code (a run that crashed is finished with exit code 1). Runs still ``running`` are
    skipped; a run already exported to ``directory`` is not written twice.
    """
    require_wandb("exporting to W&B")
    import wandb

    runs.reap_crashed(conn)
    directory.mkdir(parents=True, exist_ok=True)
    rows = conn.execute(
        'SELECT num, id, project, name, "group", job_type, tags, notes, state, exit_code, '
        f"config, summary, {', '.join(_WBG_FIELDS)} FROM runs WHERE {where} "
        "ORDER BY started_at, id",
        list(params),
    ).fetchall()
    results: list[ExportResult] = []
    with _without_run_variables():
        for index, row in enumerate(rows, start=1):
            run_id, state = row[1], row[8]
            existing = existing_export(directory, run_id)
            if state == "running":
                result = ExportResult(run_id, "running")
            elif existing is not None:
                result = ExportResult(run_id, "present", existing)
            else:
                try:
                    _replay(wandb, conn, directory, row)
                except Exception as exc:  # wandb refuses the run (a project name it forbids...)
                    result = ExportResult(run_id, "error", message=str(exc) or type(exc).__name__)
                else:
                    result = ExportResult(run_id, "exported", existing_export(directory, run_id))
            results.append(result)
            if progress is not None:
                progress(index, len(rows), result)
    return results


# What wandb.init reads from the environment when an argument is None: a run without a
# group must not pick up the group of the shell that runs the export.
_RUN_VARIABLES = (
    "WANDB_RUN_ID",
    "WANDB_RESUME",
    "WANDB_RUN_GROUP",
    "WANDB_JOB_TYPE",
    "WANDB_NAME",
    "WANDB_NOTES",
    "WANDB_TAGS",
    "WANDB_PROJECT",
    "WANDB_DIR",
    "WANDB_MODE",
)


@contextlib.contextmanager
def _without_run_variables() -> Iterator[None]:
    saved = {name: os.environ.pop(name) for name in _RUN_VARIABLES if name in os.environ}
    try:
        yield
    finally:
        os.environ.update(saved)


def _replay(wandb: Any, conn: sqlite3.Connection, directory: Path, row: Sequence[Any]) -> None:
    """One run, through the wandb package in offline mode."""
    num, run_id, project, name, group, job_type, tags, notes, _state, exit_code = row[:10]
    config, summary = values.loads(row[10], {}), values.loads(row[11], {})
    # A fresh Settings for each run: wandb.init writes the run's fields into it.
    settings = wandb.Settings(
        mode="offline",
        silent=True,
        console="off",
        save_code=False,
        disable_git=True,
        disable_job_creation=True,
        x_disable_stats=True,
    )
    run = wandb.init(
        id=run_id,
        project=project,
        group=group,
        job_type=job_type,
        name=name,
        tags=values.loads(tags, []) or None,
        notes=notes,
        config=config,
        dir=str(directory),
        settings=settings,
    )
    try:
        last: dict[str, float] = {}
        for step, metrics, when in _points_by_step(conn, num):
            # commit now: a step left pending would be written at finish and its values
            # would then overwrite the summary set below.
            run.log({**metrics, "_timestamp": when}, step=step, commit=True)
            last.update(metrics)
        explicit, non_finite = _explicit_summary(summary, last)
        wbg_fields = _wbg_fields(row[12:])
        if non_finite:
            wbg_fields["summary"] = values.dumps(non_finite)
        run.summary.update({**explicit, WBG_SUMMARY_KEY: wbg_fields})
    finally:
        run.finish(exit_code=exit_code if exit_code is not None else 1)
