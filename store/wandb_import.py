"""Importing W&B runs: the records of a run log (``wbg.wandb_log``) decoded with the
``wandb`` package's protobuf classes into a ``WandbRun``, one handler per record type,
and stored as a wbg run.

``RunDecoder`` also reads a log while W&B still writes it: ``wbg run`` uses it for the
W&B runs of its command (``wbg.wandb_follow``). Needs the optional extra: ``pip install
'wbg[wandb]'``.
"""

from __future__ import annotations

import contextlib
import json
import sqlite3
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from wbg import runs, values
from wbg.db import transaction
from wbg.errors import InvalidInput, MissingExtra, WbgError
from wbg.wandb_log import BLOCK_LEN, RecordLog, find_run_logs

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


def _apply_config(config: dict[str, Any], record: Any) -> None:
    for item in record.update:
        path = _item_path(item)
        if path and path[0] != "_wandb":
            values.set_dotted(config, path, _json_value(item.value_json))
    for item in record.remove:
        values.pop_dotted(config, _item_path(item))


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
        handler = self._HANDLERS.get(record.WhichOneof("record_type"))
        if handler is not None:
            handler(self, record)
        return True

    # --- one handler per record type (the others carry nothing wbg keeps) ---------------
    def _on_history(self, record: Any) -> None:
        self._history(record.history)

    def _on_summary(self, record: Any) -> None:
        for item in record.summary.update:
            self._summary_updates[_item_name(item)] = item.value_json
        for item in record.summary.remove:
            name = _item_name(item)
            self._removed.add(name)
            for known in [
                k for k in self._summary_updates if k == name or k.startswith(name + ".")
            ]:
                del self._summary_updates[known]

    def _on_config(self, record: Any) -> None:
        _apply_config(self.run.config, record.config)

    def _on_run(self, record: Any) -> None:
        if not self.seen_run:  # a resumed run writes it again: the first one is the run
            self.seen_run = True
            _read_run_record(self.run, record.run, self._summary_updates)

    def _on_environment(self, record: Any) -> None:
        run, env = self.run, record.environment
        run.host = run.host or env.host or None
        run.user = run.user or env.username or None
        if env.program and run.command is None:
            run.command = [env.program, *env.args]
        if env.HasField("git") and env.git.commit:
            run.git_commit = run.git_commit or env.git.commit

    def _on_exit(self, record: Any) -> None:
        self.exited = True
        self.run.exit_code = record.exit.exit_code
        self._runtime = float(record.exit.runtime)

    _HANDLERS: ClassVar[dict[str, Callable[[RunDecoder, Any], None]]] = {
        "history": _on_history,
        "summary": _on_summary,
        "config": _on_config,
        "run": _on_run,
        "environment": _on_environment,
        "exit": _on_exit,
    }

    def _history(self, history: Any) -> None:
        points: list[tuple[str, float]] = []
        step, timestamp = None, None
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
                values.set_dotted(wbg_fields, name.split("."), _json_value(text))
            elif media and name.startswith(media):
                prefix = next(m for m in media if name.startswith(m))
                values.set_dotted(summary, [prefix[:-1], name[len(prefix) :]], _json_value(text))
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


# --- importing ---------------------------------------------------------------------------


@dataclass
class ImportResult:
    """What happened to one run log."""

    path: Path
    status: str  # "imported", "present" (already in the database), "error"
    run: WandbRun | None = None  # without its history, once stored
    message: str | None = None
    steps: int = 0


def store_run(conn: sqlite3.Connection, run: WandbRun) -> bool:
    """Insert a decoded run with its history and summary; False when its id is present."""
    values.check_group(run.group)
    values.check_job_type(run.job_type)
    tags = values.check_tags(run.tags)
    values.check_config(run.config)
    started = run.started_at if run.started_at is not None else (run.ended_at or 0.0)
    with transaction(conn):
        if runs.run_exists(conn, run.id):
            return False
        num = runs.insert_run(
            conn,
            {
                "id": run.id,
                "project": run.project,
                "name": run.name or run.id,
                "group": run.group,
                "job_type": run.job_type,
                "tags": values.dumps(tags),
                "notes": run.notes,
                "state": run.state,
                "exit_code": run.exit_code,
                "command": None if run.command is None else values.dumps(run.command),
                "cwd": run.cwd,
                "host": run.host,
                "user": run.user,
                "pid": run.pid,
                "git_commit": run.git_commit,
                "git_dirty": None if run.git_dirty is None else int(run.git_dirty),
                "started_at": started,
                "ended_at": run.ended_at,
                "config": values.dumps(run.config),
                "summary": "{}",
                "reason": run.reason,
            },
        )
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
