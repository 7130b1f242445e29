"""The Python API: ``wbg.init`` and the ``Run`` it returns, shaped as wandb's (README,
"Coming from W&B", lists what is honoured, accepted and ignored, and kept differently).

Environment: ``WANDB_RUN_GROUP``, ``WANDB_JOB_TYPE``, ``WANDB_PROJECT``, ``WANDB_NAME``,
``WANDB_TAGS`` (comma-separated), ``WANDB_NOTES``, ``WANDB_MODE``, ``WANDB_RUN_ID``,
``WANDB_RESUME``, ``WANDB_DIR``, ``WANDB_ENTITY``, ``WBG_DB``; arguments win, then
``settings=``, then the variables.

Attach rule inside ``wbg run``: ``wbg run`` exports ``WBG_RUN_ID`` and ``WBG_RUN_PID``
(its own pid). The first ``init`` of a process whose parent *is* that ``wbg run`` process
(the command it started, also through ``exec``) logs into that run; any other process
(ranks, pool workers, K-fold workers started further down), and any later ``init`` of the
same process, gets a run of its own in the same group. The attached process does not set
the run's final state: ``wbg run`` records it from the exit code.
"""

from __future__ import annotations

import atexit
import fnmatch
import math
import os
import sqlite3
import sys
import threading
import time
from collections.abc import Iterable, Iterator, Mapping, MutableMapping
from pathlib import Path
from types import TracebackType
from typing import Any

from wbg import compat, runs, values
from wbg import db as dbmod
from wbg import settings as wbg_settings
from wbg.db import as_location
from wbg.engine import PgConnection, ServerUrl
from wbg.errors import ConfigError, Error, InvalidInput, UsageError
from wbg.settings import environ
from wbg.writer import FINAL, Recorder

_current: Run | DisabledRun | None = None  # ``wbg.run``: the run module-level calls use
_active: list[Run] = []  # every open run of this process (reinit="create_new" adds more)
_attached_pid: int | None = None  # the process whose first init attached to `wbg run`
_hooks_installed = False
_lock = threading.Lock()

MODES = ("online", "offline", "disabled", "shared", "dryrun", "run")
REINIT = ("default", "return_previous", "finish_previous", "create_new")
RESUME = ("allow", "must", "never", "auto")
# init() keywords that wbg accepts and cannot honour: named once when they ask for something.
_IGNORED = ("sync_tensorboard", "monitor_gym", "save_code", "anonymous", "force")


def _env_tags() -> list[str] | None:
    raw = environ("WANDB_TAGS")
    if not raw:
        return None
    return [tag.strip() for tag in raw.split(",") if tag.strip()]


def _attach_target(db_path: Path) -> str | None:
    """The id of the ``wbg run`` run this process should log into, if any."""
    run_id = environ("WBG_RUN_ID")
    if not run_id:  # not under `wbg run`
        return None
    owner = environ("WBG_RUN_PID")
    env_db = environ("WBG_DB")
    if not owner or not owner.isdigit() or int(owner) != os.getppid():
        return None
    if _attached_pid == os.getpid():  # this process already used its attachment
        return None
    if env_db and as_location(env_db).expanduser().resolve() != db_path.resolve():
        return None
    return run_id


def _pick(*candidates: Any) -> Any:
    """The first candidate given (not None, not empty text)."""
    for candidate in candidates:
        if candidate is not None and candidate != "":
            return candidate
    return None


def _resume_mode(resume: Any) -> str | None:
    if resume is None or resume is False:
        return None
    if resume is True:
        return "allow"
    text = str(resume).lower()
    if text in ("true", "1"):
        return "allow"
    if text not in RESUME:
        raise UsageError(f"resume must be one of {', '.join(RESUME)} or True, got {resume!r}")
    return "allow" if text == "auto" else text


def _reinit_mode(reinit: Any) -> str:
    if reinit is None:
        return "default"
    if reinit is True:
        return "finish_previous"
    if reinit is False:
        return "default"
    if reinit not in REINIT:
        raise UsageError(f"reinit must be one of {', '.join(REINIT)} or a bool, got {reinit!r}")
    return str(reinit)


def _check_run_id(run_id: Any) -> str:
    text = str(run_id)
    if not text or len(text) > 128 or any(c in text for c in "/\\#?%:") or text != text.strip():
        raise UsageError(
            f"invalid run id {text!r}: 1-128 characters, none of / \\ # ? % : or spaces at the ends"
        )
    values.check_key(text, "run id", dotted=False)
    return text


def _run_at_step(text: str, what: str) -> tuple[str, int]:
    """W&B's ``"RUN_ID?_step=N"`` (an ``entity/project/`` prefix is allowed)."""
    head, _, query_text = str(text).partition("?")
    run_id = head.rsplit("/", 1)[-1]
    step = query_text[len("_step=") :] if query_text.startswith("_step=") else ""
    if not run_id or not step.isdigit():
        raise UsageError(f"{what} must read RUN_ID?_step=N, got {text!r}")
    return _check_run_id(run_id), int(step)


def _config_dict(config: Any, include: Any, exclude: Any) -> dict[str, Any]:
    data = compat.config_from(config)
    if include:
        data = {k: v for k, v in data.items() if k in set(include)}
    if exclude:
        data = {k: v for k, v in data.items() if k not in set(exclude)}
    return _clean_config(data)


def _clean_config(data: Mapping[Any, Any]) -> dict[str, Any]:
    """Config as stored: string keys, JSON-friendly values. An empty key is left out (W&B's
    own record drops it too); a key with control characters is refused once, not raised."""
    clean: dict[str, Any] = {}
    for key, value in data.items():
        name = str(key)
        if not name.strip():
            continue
        if any(ord(c) < 32 or ord(c) == 127 for c in name):
            compat.note_once(
                f"config-key:{name!r}", f"config key {name!r} has control characters; skipped"
            )
            continue
        try:
            clean[name] = compat.plain(value)
        except RecursionError:  # values.check_config gives the same error for shallower ones
            raise InvalidInput(
                f"config nested more than {values.MAX_CONFIG_DEPTH} levels deep (at {name[:60]})"
            ) from None
    return clean


def init(
    entity: str | None = None,
    project: str | None = None,
    dir: str | os.PathLike[str] | None = None,  # noqa: A002 - wandb's keyword
    id: str | None = None,  # noqa: A002 - wandb's keyword
    name: str | None = None,
    notes: str | None = None,
    tags: Iterable[str] | None = None,
    config: Any = None,
    config_exclude_keys: Iterable[str] | None = None,
    config_include_keys: Iterable[str] | None = None,
    allow_val_change: bool | None = None,
    group: str | None = None,
    job_type: str | None = None,
    mode: str | None = None,
    force: bool | None = None,
    reinit: bool | str | None = None,
    resume: bool | str | None = None,
    resume_from: str | None = None,
    fork_from: str | None = None,
    save_code: bool | None = None,
    tensorboard: bool | None = None,
    sync_tensorboard: bool | None = None,
    monitor_gym: bool | None = None,
    settings: Any = None,
    anonymous: Any = None,
    db: str | os.PathLike[str] | None = None,
    **unknown: Any,
) -> Run | DisabledRun:
    """Start (or, inside ``wbg run``, attach to) a run and make it ``wbg.run``.

    Takes every keyword of ``wandb.init``. A second ``init`` while a run is open behaves as
    wandb's for the same ``reinit``: the open run is returned (``"default"``,
    ``"return_previous"``, False), finished first (``"finish_previous"``, True), or left
    open beside a new one (``"create_new"``, which does not change ``wbg.run``).
    """
    global _current, _attached_pid
    s = compat.settings_dict(settings)
    for key in unknown:
        compat.note_once(f"init:{key}", f"init({key}=...) is not supported; ignored")
    asked = {
        "sync_tensorboard": sync_tensorboard or tensorboard,
        "monitor_gym": monitor_gym,
        "save_code": save_code,
        "anonymous": anonymous if anonymous not in (None, "never") else None,
        "force": force,
    }
    for key in _IGNORED:
        if asked.get(key):
            compat.note_once(f"init:{key}", f"{key} is not supported; ignored")

    mode = _pick(mode, s.get("mode"), environ("WANDB_MODE"))
    if (environ("WANDB_DISABLED") or "").lower() in ("1", "true", "yes") and mode is None:
        mode = "disabled"
    if mode is not None and mode not in MODES:
        raise UsageError(f"mode must be one of {', '.join(MODES)}, got {mode!r}")
    reinit_mode = _reinit_mode(_pick(reinit, s.get("reinit")))
    resume_mode = _resume_mode(_pick(resume, s.get("resume"), environ("WANDB_RESUME")))

    with _lock:
        previous = _current
    if previous is not None and previous._open_here():
        if reinit_mode == "finish_previous":
            compat.termlog(f"Finishing previous runs because reinit is set to {reinit!r}.")
            for active in list(_active):
                active.finish()
            previous.finish()
        elif reinit_mode == "create_new":
            pass
        elif resume_mode == "must":
            raise Error(
                "Cannot resume a run while another run is active. You must either finish it "
                "using run.finish(), or use reinit='create_new' when calling wbg.init()."
            )
        else:
            compat.termlog(
                f"wbg.init() called while a run is active and reinit is set to "
                f"{reinit_mode!r}, so returning the previous run."
            )
            return previous

    project, group, job_type = wbg_settings.resolve_grouping(
        _pick(project, s.get("project")),
        _pick(group, s.get("run_group")),
        _pick(job_type, s.get("run_job_type")),
    )
    name = wbg_settings.resolve(_pick(name, s.get("run_name")), "WANDB_NAME", None, "name")
    notes = wbg_settings.resolve(_pick(notes, s.get("run_notes")), "WANDB_NOTES", None, "notes")
    tags = _pick(tags, s.get("run_tags"))
    tag_list = values.check_tags(list(tags) if tags is not None else _env_tags())
    entity = _pick(entity, s.get("entity"), environ("WANDB_ENTITY"))
    root = _pick(dir, s.get("root_dir"), environ("WANDB_DIR"))
    allow_change = bool(_pick(allow_val_change, s.get("allow_val_change")))
    config_dict = _config_dict(config, config_include_keys, config_exclude_keys)
    values.check_config(config_dict)
    run_id = _pick(id, s.get("run_id"), environ("WANDB_RUN_ID"))
    if run_id is not None:
        run_id = _check_run_id(run_id)
    rewind = fork = None
    if resume_from is not None:  # "RUN_ID?_step=N": continue that run from step N
        rewind = _run_at_step(resume_from, "resume_from")
        run_id, resume_mode = rewind[0], "must"
    elif fork_from is not None:  # a new run with that run's config and history up to N
        fork = _run_at_step(fork_from, "fork_from")

    facts = {
        "entity": entity,
        "root": root,
        "mode": mode or "offline",
        "allow_val_change": allow_change,
        "resumed": False,
        "settings": s,
    }
    if mode == "disabled":
        run: Run | DisabledRun = DisabledRun(
            project, group, job_type, name, notes, tag_list, config_dict, facts
        )
        if reinit_mode != "create_new" or _current is None:
            with _lock:
                _current = run
        return run

    db_path = _resolved(wbg_settings.resolve_db_path(db))
    conn = _take_connection(db_path)
    facts["db_path"] = db_path
    try:
        attach_id = _attach_target(db_path) if run_id is None else None
        if attach_id is not None and runs.run_exists(conn, attach_id):
            _attached_pid = os.getpid()
            record = runs.get_run(conn, attach_id)
            run = Run(conn, attach_id, runs.run_num(conn, attach_id), record, True, facts)
            if config_dict:
                run.config.update(config_dict, allow_val_change=True)
        elif run_id is not None and runs.run_exists(conn, run_id):
            if resume_mode == "never":
                raise UsageError(f"a run with id {run_id!r} exists and resume is 'never'")
            if resume_mode is None:
                compat.note_once(
                    f"resume:{run_id}",
                    f"run {run_id} exists: continuing it (as resume='allow')",
                )
            with dbmod.transaction(conn):
                runs.reopen_run(conn, run_id)
                if rewind is not None:
                    runs.history_until(conn, runs.run_num(conn, run_id), rewind[1])
            facts["resumed"] = True
            record = runs.get_run(conn, run_id)
            run = Run(conn, run_id, runs.run_num(conn, run_id), record, False, facts)
            if config_dict:
                run.config.update(config_dict, allow_val_change=True)
        else:
            if resume_mode == "must":
                raise UsageError(f"resume='must' but there is no run with id {run_id!r} to resume")
            source = None
            if fork is not None:
                if not runs.run_exists(conn, fork[0]):
                    raise UsageError(f"fork_from: there is no run with id {fork[0]!r}")
                source = runs.get_run(conn, fork[0])
                config_dict = {**source["config"], **config_dict}
                group = group if group is not None else source["group"]
            from wbg.gitinfo import git_info

            commit, dirty = git_info()
            new_id, num = runs.create_run(
                conn,
                project=project,
                group=group,
                job_type=job_type,
                name=name,
                tags=tag_list,
                notes=notes,
                config=config_dict,
                command=[sys.executable, *sys.argv],
                git_commit=commit,
                git_dirty=dirty,
                run_id=run_id,
            )
            record = {
                "name": name or new_id,
                "group": group,
                "job_type": job_type,
                "project": project,
                "tags": tag_list,
                "notes": notes,
                "config": config_dict,
                "summary": {},
            }  # as create_run stored it: no need to read it back
            if fork is not None:
                with runs.transaction(conn):
                    runs.history_until(conn, runs.run_num(conn, fork[0]), fork[1], into=num)
                record["summary"] = runs.get_run(conn, new_id)["summary"]
                facts["continues"] = True  # its steps go on after the copied ones
            run = Run(conn, new_id, num, record, attached=False, facts=facts)
    except BaseException:
        _give_back(conn, facts["db_path"])
        raise
    with _lock:
        _active.append(run)
        if reinit_mode != "create_new" or _current is None or not _current._open_here():
            _current = run
    _install_hooks()
    return run


# Open connections not in use, per database, kept for the next run of this process: a
# sweep or K-fold loop opens the file once (opening and the checkpoint at the last close
# were a quarter of a short run's cost). Closed at exit.
_idle: dict[Path, list[tuple[Any, tuple[int, int]]]] = {}  # conn and the file's identity
_idle_pid = os.getpid()
_held: dict[int, tuple[int, int]] = {}  # id() of a connection in use -> its file's identity


def _identity(path: Path) -> tuple[int, int] | None:
    if isinstance(path, ServerUrl):  # a server has no file that could be replaced
        return 0, 0
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_dev, st.st_ino


_resolved_paths: dict[tuple[str, Path], Path] = {}


def _resolved(db_path: Path) -> Path:
    """The absolute, symlink-free path (remembered per working directory: resolving walks
    every component of the path)."""
    key = (os.getcwd(), db_path)
    path = _resolved_paths.get(key)
    if path is None:
        path = _resolved_paths[key] = db_path.resolve()
    return path


def _take_connection(path: Path) -> Any:
    """A connection to ``path``: an idle one of this process if the file is still the one
    it was opened on, else a new one."""
    global _idle_pid
    identity = _identity(path)
    stale = []
    with _lock:
        if _idle_pid != os.getpid():  # inherited through fork: never used here
            _idle.clear()
            _held.clear()
            _idle_pid = os.getpid()
        free = _idle.get(path, [])
        while free:
            conn, kept = free.pop()
            if kept == identity:
                _held[id(conn)] = identity
                return conn
            stale.append(conn)  # the file was removed or replaced since
    for conn in stale:
        conn.close()
    conn = dbmod.connect(path)
    with _lock:
        # a new file has its identity once opened ((0, 0): none, never matched again)
        _held[id(conn)] = identity or _identity(path) or (0, 0)
    return conn


def _give_back(conn: Any, path: Path) -> None:
    """Keep ``conn`` for the next run, marked with the file it was taken for (a file
    replaced since then is not this connection's: ``_take_connection`` closes it)."""
    with _lock:
        if _idle_pid != os.getpid():  # taken before a fork: the parent's, left alone
            return
        identity = _held.pop(id(conn), None)
        if identity is not None:
            _idle.setdefault(path, []).append((conn, identity))
            return
    conn.close()


def _close_idle() -> None:
    with _lock:
        if _idle_pid != os.getpid():
            return
        conns = [conn for free in _idle.values() for conn, _ in free]
        _idle.clear()
    for conn in conns:
        conn.close()


_mp_hook_pid: int | None = None


def _install_multiprocessing_hook() -> None:
    """Finish the run in multiprocessing children, which leave through os._exit.

    They skip atexit but run multiprocessing's own exit finalizers; without this, a
    worker's open run would lose its last batch and read as crashed.
    """
    global _mp_hook_pid
    util = sys.modules.get("multiprocessing.util")
    if util is None or _mp_hook_pid == os.getpid():
        return
    _mp_hook_pid = os.getpid()
    util.Finalize(None, _at_exit, exitpriority=10)


def _after_fork_in_child() -> None:
    # A forked worker inherits the parent's runs and SQLite connections; none may be used
    # there (the worker calls wbg.init() and gets a run of its own).
    global _current, _attached_pid
    for run in _active:
        run._forked()
    _active.clear()
    _current = None
    _attached_pid = None


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


def current() -> Run | DisabledRun | None:
    """``wbg.run``: the current run of this process, None before ``init`` and after ``finish``."""
    run = _current
    return run if run is not None and run._open_here() else None


def finish(exit_code: int | None = None, quiet: bool | None = None) -> None:
    """Finish the current run, if any (as ``wandb.finish``)."""
    run = current()
    if run is not None:
        run.finish(exit_code=exit_code)


def _module_call(method: str) -> Any:
    def call(*args: Any, **kwargs: Any) -> Any:
        run = current()
        if run is None:
            raise Error(f"You must call wbg.init() before wbg.{method}()")
        return getattr(run, method)(*args, **kwargs)

    call.__name__ = method
    call.__doc__ = f"``wbg.{method}``: the current run's ``{method}`` (as wandb's)."
    return call


log = _module_call("log")
define_metric = _module_call("define_metric")
save = _module_call("save")
watch = _module_call("watch")
unwatch = _module_call("unwatch")
alert = _module_call("alert")
log_artifact = _module_call("log_artifact")
use_artifact = _module_call("use_artifact")
log_model = _module_call("log_model")
use_model = _module_call("use_model")
link_model = _module_call("link_model")
log_code = _module_call("log_code")
mark_preempting = _module_call("mark_preempting")


class Config(MutableMapping[str, Any]):
    """The run's config, as wandb's: item and attribute access, ``update``, ``setdefaults``.

    Changing a value already set raises ``ConfigError`` unless ``allow_val_change`` is
    given (to ``update`` or to ``init``). Changes are written to the database at once.
    """

    def __init__(
        self, run: Run | None, initial: Mapping[str, Any], allow_val_change: bool = False
    ) -> None:
        object.__setattr__(self, "_run", run)
        object.__setattr__(self, "_data", dict(initial))
        object.__setattr__(self, "_allow_val_change", allow_val_change)

    def __getitem__(self, key: str) -> Any:
        return self._data[key]

    def __setitem__(self, key: str, value: Any) -> None:
        self.update({key: value})

    def __setattr__(self, key: str, value: Any) -> None:
        if key.startswith("_"):
            object.__setattr__(self, key, value)
        else:
            self.update({key: value})

    def __getattr__(self, key: str) -> Any:
        try:
            return self.__dict__["_data"][key]
        except KeyError:
            raise AttributeError(key) from None

    def __delitem__(self, key: str) -> None:
        raise TypeError("config keys cannot be deleted from a recorded run")

    def __iter__(self) -> Iterator[str]:
        return iter(self._data)

    def __len__(self) -> int:
        return len(self._data)

    def __contains__(self, key: object) -> bool:
        return key in self._data

    def update(  # type: ignore[override]
        self, d: Any = None, allow_val_change: bool | None = None, **kwargs: Any
    ) -> None:
        """Set keys (a nested value replaces the old one whole, as wandb)."""
        changes = _clean_config({**compat.config_from(d), **kwargs})
        if not changes:
            return
        allow = self._allow_val_change if allow_val_change is None else allow_val_change
        if not allow:
            for key, value in changes.items():
                if key in self._data and self._data[key] != value:
                    raise ConfigError(
                        f'Attempted to change value of key "{key}" from {self._data[key]} to '
                        f"{value}\nIf you really want to do this, pass allow_val_change=True "
                        "to config.update()"
                    )
        values.check_config(changes)
        run = self._run
        if run is not None:
            run._check_open()
            try:
                run._recorder.execute(lambda conn: runs.set_config_keys(conn, run.id, changes))
            except sqlite3.OperationalError as exc:  # locked, full: never into the loop
                compat.note_once(f"config:{run.id}", f"config not written yet ({exc}); retrying")
                snapshot = {**self._data, **changes}
                run._recorder.defer(
                    "config", lambda conn: runs.set_config_keys(conn, run.id, snapshot)
                )
        self._data.update(changes)

    def setdefaults(self, d: Mapping[str, Any]) -> None:
        """Set the keys of ``d`` that the config does not hold yet."""
        self.update({k: v for k, v in _clean_config(d).items() if k not in self._data})

    def as_dict(self) -> dict[str, Any]:
        return dict(self._data)

    def persist(self) -> None:
        """Written at every change already."""

    def __repr__(self) -> str:
        return repr(self._data)


class Summary(MutableMapping[str, Any]):
    """The run's summary: the last logged value of each metric unless set explicitly.

    Reading it writes what is buffered first, so it always shows what is recorded.
    """

    def __init__(self, run: Run, initial: Mapping[str, Any]) -> None:
        object.__setattr__(self, "_run", run)
        run._recorder.last_values.update(initial)

    def _values(self) -> dict[str, Any]:
        # What is recorded plus what is buffered, worked out in memory: reading the summary
        # never waits on the database (a write lock held elsewhere, a full disk).
        return self._run._recorder.summary_now()

    def __getitem__(self, key: str) -> Any:
        return self._values()[key]

    def __setitem__(self, key: str, value: Any) -> None:
        self.update({key: value})

    def __getattr__(self, key: str) -> Any:
        if key.startswith("_"):
            raise AttributeError(key)
        try:
            return self._values()[key]
        except KeyError:
            raise AttributeError(key) from None

    def __setattr__(self, key: str, value: Any) -> None:
        if key.startswith("_"):
            object.__setattr__(self, key, value)
        else:
            self.update({key: value})

    def __delitem__(self, key: str) -> None:
        raise TypeError("summary keys cannot be deleted")

    def __iter__(self) -> Iterator[str]:
        return iter(dict(self._values()))

    def __len__(self) -> int:
        return len(self._values())

    def update(self, other: Any = (), /, **kwargs: Any) -> None:
        changes = {str(k): compat.plain(v) for k, v in dict(other, **kwargs).items()}
        self._run._check_open()
        self._run._recorder.add([], changes)

    def __repr__(self) -> str:
        return repr(self._values())


class _Aggregate:
    """A define_metric summary of one metric: the ops asked for, over the values logged."""

    __slots__ = ("ops", "count", "total", "low", "high", "first", "last")

    def __init__(self, ops: tuple[str, ...]) -> None:
        self.ops = ops
        self.count = 0
        self.total = 0.0
        self.low = math.inf
        self.high = -math.inf
        self.first: float | None = None
        self.last: float | None = None

    def add(self, value: float) -> dict[str, Any] | None:
        if self.first is None:
            self.first = value
        self.last = value
        if value == value:  # NaN takes no part in min, max and mean
            self.count += 1
            self.total += value
            self.low = min(self.low, value)
            self.high = max(self.high, value)
        out: dict[str, Any] = {}
        for op in self.ops:
            if op == "min" and self.count:
                out["min"] = self.low
            elif op == "max" and self.count:
                out["max"] = self.high
            elif op == "mean" and self.count:
                out["mean"] = self.total / self.count
            elif op == "first":
                out["first"] = self.first
            elif op == "last":
                out["last"] = self.last
        return out or None


SUMMARY_OPS = ("min", "max", "mean", "last", "first", "none", "copy")


class Run:
    """A recorded run, shaped as wandb's ``Run``: ``log``, ``config``, ``summary``,
    ``define_metric``, ``finish`` (or ``with``)."""

    def __init__(
        self,
        conn: Any,
        run_id: str,
        num: int,
        record: Mapping[str, Any],
        attached: bool,
        facts: Mapping[str, Any] | None = None,
    ) -> None:
        facts = facts or {}
        self._pid = os.getpid()
        self._conn = conn
        self._recorder = Recorder(conn, num)
        self._num = num
        self._finished = False
        self._unusable = False  # finished, or inherited through fork: log() must refuse
        self._attached = attached
        self._keys: set[str] = set()  # every metric logged; a superset of any batch's keys
        self._recorder.keys_hint = self._keys
        self._pending: dict[str, Any] | None = None  # a row logged with commit=False
        self._step = 0
        self._dropped = 0
        self._rules: list[tuple[str, tuple[str, ...]]] = []  # define_metric(name, summary=)
        self._aggregates: dict[str, _Aggregate | None] = {}  # per key: its rule, if any
        self._entity: str | None = facts.get("entity")
        self._root = facts.get("root")
        self._db_path: Path = facts.get("db_path") or as_location(conn_path(conn))
        self._mode: str = facts.get("mode", "offline")
        self._resumed: bool = bool(facts.get("resumed"))
        self._settings = compat.Settings(**dict(facts.get("settings") or {}))
        self._dir: Path | None = None
        self.id: str = run_id
        self._name: str = record["name"]
        self.group: str | None = record["group"]
        self.job_type: str | None = record["job_type"]
        self.project: str = record["project"]
        self._tags: tuple[str, ...] = tuple(record["tags"])
        self._notes: str | None = record["notes"]
        self.start_time: float = time.time()
        self._started = time.monotonic()
        self.config = Config(self, record["config"], bool(facts.get("allow_val_change")))
        self.summary = Summary(self, record["summary"])
        if attached or self._resumed or facts.get("continues"):
            # Continue after what the run already holds (captured output lines, a run resumed).
            last = runs.last_step(conn, num)
            self._step = 0 if last is None else last + 1
        self.starting_step = self._step

    def _open_here(self) -> bool:
        return not self._finished and self._pid == os.getpid()

    # --- fields a script reads and writes --------------------------------------------

    @property
    def name(self) -> str:
        return self._name

    @name.setter
    def name(self, value: str) -> None:
        self._check_open()
        self._recorder.execute(lambda conn: runs.update_run(conn, self.id, name=str(value)))
        self._name = str(value)

    @property
    def notes(self) -> str | None:
        return self._notes

    @notes.setter
    def notes(self, value: str | None) -> None:
        self._check_open()
        self._recorder.execute(lambda conn: runs.update_run(conn, self.id, notes=value))
        self._notes = value

    @property
    def tags(self) -> tuple[str, ...]:
        return self._tags

    @tags.setter
    def tags(self, value: Iterable[str]) -> None:
        self._check_open()
        wanted = values.check_tags(list(value))
        old = self._tags
        self._recorder.execute(
            lambda conn: runs.set_tags(
                conn, self.id, add=wanted, remove=[t for t in old if t not in wanted]
            )
        )
        self._tags = tuple(wanted)

    @property
    def entity(self) -> str | None:
        return self._entity

    @property
    def path(self) -> str:
        return "/".join(p for p in (self._entity, self.project, self.id) if p)

    @property
    def url(self) -> None:
        """No web page: wbg has no server (``wbg runs show ID`` shows the run)."""
        return None

    def get_url(self) -> None:
        return None

    def get_project_url(self) -> None:
        return None

    def get_sweep_url(self) -> None:
        return None

    def project_name(self) -> str:
        return self.project

    @property
    def sweep_id(self) -> None:
        return None

    @property
    def resumed(self) -> bool:
        return self._resumed

    @property
    def offline(self) -> bool:
        return self._mode != "online"

    @property
    def disabled(self) -> bool:
        return False

    @property
    def settings(self) -> compat.Settings:
        return self._settings

    @property
    def dir(self) -> str:
        """A folder for the run's files, created on first use: ``DIR/wandb/wbg-ID/files``
        with ``dir=``/``WANDB_DIR``, else ``files/ID`` beside the database."""
        if self._dir is None:
            if self._root:
                folder = Path(self._root).expanduser() / "wandb" / f"wbg-{self.id}" / "files"
            else:
                folder = self._db_path.parent / "files" / self.id
            folder.mkdir(parents=True, exist_ok=True)
            self._dir = folder
        return str(self._dir)

    @property
    def step(self) -> int:
        """The step the next ``log`` without ``step=`` will use."""
        return self._step

    # --- logging ---------------------------------------------------------------------

    def log(
        self, data: Mapping[str, Any], step: int | None = None, commit: bool | None = None
    ) -> None:
        """Record metrics, as ``wandb.log``: at the current step, which advances unless
        ``commit=False``; ``step=`` moves to a later step (a lower one is dropped with a
        warning). Numbers become history points; nested dicts are named ``a.b``; other
        values only go to the summary."""
        if self._unusable:
            self._check_open()
        if step is not None or commit is not None or self._pending is not None:
            self._log_row(data, step, commit)
            return
        if type(data) is not dict and not isinstance(data, Mapping):
            raise TypeError("wbg.log must be passed a dictionary")
        # The common call (no step=, no commit=) writes its row at once; this loop is the
        # one place a row becomes points.
        step = self._step
        now = time.time()
        num = self._num
        keys = self._keys
        points = []
        others: dict[str, Any] | None = None
        nested: list[tuple[str, Any]] | None = None
        for key, value in data.items():
            kind = type(value)
            if kind is not float and kind is not int:
                if isinstance(value, Mapping) and "_type" not in value:
                    if nested is None:
                        nested = []
                    _flatten(_metric_key(key), value, nested)
                    continue
                value = compat.plain(value)
                if not values.is_number(value):
                    if others is None:
                        others = {}
                    others[_metric_key(key)] = value
                    continue
            if key not in keys:
                self._new_key(key)
            points.append((num, step, key, value, now))
        if nested:
            for key, value in nested:
                if values.is_number(value):
                    if key not in keys:
                        self._new_key(key)
                    points.append((num, step, key, value, now))
                else:
                    if others is None:
                        others = {}
                    others[key] = value
        if self._rules and points:
            others = self._apply_rules(points, others)
        self._step = step + 1
        if others is not None:
            self._recorder.warn_not_numbers(others)
        self._recorder.add(points, others, now)

    def _log_row(self, data: Mapping[str, Any], step: Any, commit: bool | None) -> None:
        """wandb's row rules: ``commit=False`` keeps the row open; ``step=`` above the
        current step commits the open row and moves there; below it, the data is dropped."""
        if not isinstance(data, Mapping):
            raise TypeError("wbg.log must be passed a dictionary")
        if step is not None:
            step = _check_step(step)
            if step < self._step:
                self._drop(step)
                return
            if step > self._step:
                if self._pending is not None:
                    self._commit()
                self._step = step
            self._merge(data)
            if commit:
                self._commit()
            return
        self._merge(data)
        if commit is not False:
            self._commit()

    def _merge(self, data: Mapping[str, Any]) -> None:
        if self._pending is None:
            self._pending = {}
        self._pending.update(data)

    def _commit(self) -> None:
        row, self._pending = self._pending, None
        if row:
            self.log(row)  # with no row open, log() writes at the current step and advances
        else:
            self._step += 1

    def _drop(self, step: int) -> None:
        self._dropped += 1
        if self._dropped == 1:
            compat.termwarn(
                f"Tried to log to step {step} that is less than the current step {self._step}. "
                "Steps must be monotonically increasing, so this data will be ignored "
                "(further cases are counted at finish)."
            )

    def _new_key(self, key: Any) -> None:
        _metric_key(key)
        self._keys.add(key)
        if self._rules:
            self._aggregates[key] = self._rule_for(key)

    def _rule_for(self, key: str) -> _Aggregate | None:
        ops: tuple[str, ...] | None = None
        for pattern, rule_ops in self._rules:  # the last define_metric that matches wins
            if pattern == key or ("*" in pattern and fnmatch.fnmatchcase(key, pattern)):
                ops = rule_ops
        if ops is None:
            return None
        self._recorder.summary_skip.add(key)
        return _Aggregate(ops)

    def _apply_rules(
        self, points: list[Any], others: dict[str, Any] | None
    ) -> dict[str, Any] | None:
        aggregates = self._aggregates
        for point in points:
            aggregate = aggregates.get(point[2])
            if aggregate is not None:
                value = aggregate.add(float(point[3]))
                if value is not None:
                    if others is None:
                        others = {}
                    others[point[2]] = value
        return others

    def define_metric(
        self,
        name: str,
        step_metric: Any = None,
        step_sync: bool | None = None,
        hidden: bool | None = None,
        summary: str | None = None,
        overwrite: bool | None = None,
        goal: str | None = None,
        **kwargs: Any,
    ) -> Any:
        """As ``wandb.define_metric``: ``summary="min,max,mean,first,last,none"`` sets what
        the summary keeps for the metric (``{"min": ...}``); names may end in ``*``.
        ``step_metric``, ``hidden`` and ``goal`` are accepted (they shape W&B's charts)."""
        if not isinstance(name, str) or not name:
            raise Error("define_metric() needs a metric name")
        if summary:
            ops = tuple(op.strip().lower() for op in summary.split(","))
            for op in ops:
                if op not in SUMMARY_OPS:
                    raise Error(f"Unhandled define_metric() arg: summary op: {op}")
            ops = tuple("last" if op == "copy" else op for op in ops if op != "none")
            self._rules.append((name, ops))
            for key in self._keys:
                if key == name or ("*" in name and fnmatch.fnmatchcase(key, name)):
                    self._aggregates[key] = self._rule_for(key)
        return _Metric(name)

    # --- accepted, not honoured ------------------------------------------------------

    def save(self, glob_str: Any = None, base_path: Any = None, policy: str = "live") -> list[str]:
        compat.note_once("save", "save() keeps no files (use run.dir); ignored")
        return []

    def watch(self, *args: Any, **kwargs: Any) -> None:
        compat.note_once("watch")

    def unwatch(self, *args: Any, **kwargs: Any) -> None:
        pass

    def alert(self, title: str, text: str, level: Any = None, wait_duration: Any = None) -> None:
        """No notification service: the alert is printed on stderr."""
        compat.termlog(f"alert [{level or 'INFO'}] {title}: {text}")

    def log_artifact(
        self, artifact_or_path: Any, name: str | None = None, type: str | None = None, **kw: Any
    ) -> Any:
        compat.note_once("artifacts", "artifacts are not stored by wbg; ignored")
        if isinstance(artifact_or_path, compat.Artifact):
            return artifact_or_path
        return compat.Artifact(name or Path(str(artifact_or_path)).name, type or "unspecified")

    def use_artifact(self, artifact_or_name: Any, type: str | None = None, **kw: Any) -> Any:
        compat.note_once("artifacts", "artifacts are not stored by wbg; ignored")
        if isinstance(artifact_or_name, compat.Artifact):
            return artifact_or_name
        return compat.Artifact(str(artifact_or_name), type or "unspecified")

    def log_model(self, *args: Any, **kwargs: Any) -> None:
        compat.note_once("artifacts", "artifacts are not stored by wbg; ignored")

    def use_model(self, name: str, *args: Any, **kwargs: Any) -> str:
        raise Error(f"model {name!r} cannot be used: wbg stores no artifacts")

    def link_model(self, *args: Any, **kwargs: Any) -> None:
        compat.note_once("artifacts", "artifacts are not stored by wbg; ignored")

    def link_artifact(self, *args: Any, **kwargs: Any) -> None:
        compat.note_once("artifacts", "artifacts are not stored by wbg; ignored")

    def log_code(self, *args: Any, **kwargs: Any) -> None:
        compat.note_once("log_code")

    def mark_preempting(self) -> None:
        pass

    def display(self, *args: Any, **kwargs: Any) -> bool:
        return False

    def _label(self, *args: Any, **kwargs: Any) -> None:
        """Integrations tag their runs with this (HuggingFace, Lightning); nothing to keep."""

    # --- ending ----------------------------------------------------------------------

    def _forked(self) -> None:
        self._unusable = True

    def finish(self, exit_code: int | None = None, quiet: bool | None = None) -> None:
        """Write what is buffered and close the run (``finished``, or ``failed`` if non-zero)."""
        if self._finished or self._pid != os.getpid():
            return
        code = 0 if exit_code is None else int(exit_code)
        self._close("finished" if code == 0 else "failed", code)

    def _close(self, state: str, exit_code: int) -> None:
        global _current
        if self._finished:
            return
        if self._pending is not None:
            self._commit()
        self._finished = True
        self._unusable = True
        recorder = self._recorder
        try:
            if not self._attached:
                # On the monotonic clock: a wall clock stepped back cannot shorten it.
                duration = None if self._resumed else time.monotonic() - self._started
                recorder.defer(
                    FINAL,
                    wake=False,
                    write=lambda conn: runs.finish_run(
                        conn, self.id, state=state, exit_code=exit_code, duration=duration
                    ),
                )
            # The last points and the final state in one transaction.
            if not recorder.close():
                lost = f"{recorder.dropped} points" if recorder.dropped else "its final state"
                later = "" if self._attached else "; the run will read as crashed"
                compat.termwarn(
                    f"run {self.id}: {lost} could not be stored ({recorder.failing}){later}"
                )
        finally:
            _give_back(self._conn, self._db_path)
            with _lock:
                if self in _active:
                    _active.remove(self)
                if _current is self:
                    _current = None
        if self._dropped > 1:
            compat.termwarn(f"run {self.id}: {self._dropped} logs to earlier steps were ignored")

    def _check_open(self) -> None:
        if self._pid != os.getpid():
            raise UsageError(
                f"run {self.id} belongs to process {self._pid}; call wbg.init() in this process"
            )
        if self._finished:
            raise UsageError(
                f"Run ({self.id}) is finished. The call will be ignored. Please make sure that "
                "you are using an active run."
            )

    def __enter__(self) -> Run:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc_type is None:
            self.finish()
        elif issubclass(exc_type, KeyboardInterrupt):
            self._close("killed", 130)
        elif issubclass(exc_type, SystemExit):
            code = exc.code if isinstance(exc, SystemExit) else None
            code = code if isinstance(code, int) else (0 if code is None else 1)
            self._close("finished" if code == 0 else "failed", code)
        else:
            self._close("failed", 1)

    def __repr__(self) -> str:
        return f"<wbg.Run {self.id} group={self.group!r} job_type={self.job_type!r}>"


class _Metric:
    """What ``define_metric`` returns (scripts discard it)."""

    def __init__(self, name: str) -> None:
        self.name = name


def _metric_key(key: Any) -> str:
    if type(key) is not str:
        raise TypeError("Key values passed to `wbg.log` must be strings.")
    return key


def _flatten(prefix: str, value: Mapping[str, Any], out: list[tuple[str, Any]]) -> None:
    """A nested dict logged as a metric: its leaves named with dots, as W&B names them."""
    for key, item in value.items():
        name = f"{prefix}.{_metric_key(key)}"
        if isinstance(item, Mapping) and "_type" not in item:
            _flatten(name, item, out)
        else:
            out.append((name, compat.plain(item)))


def conn_path(conn: Any) -> str:
    """The file a connection has open (the URL of a server)."""
    if isinstance(conn, PgConnection):
        return conn.url.url
    row = conn.execute("PRAGMA database_list").fetchone()
    return row[2] if row and row[2] else os.getcwd()


def _check_step(step: Any) -> int:
    if isinstance(step, bool) or not isinstance(step, (int, float)):
        item = getattr(step, "item", None)  # numpy/torch integers
        step = item() if callable(item) else step
    if isinstance(step, float) and step.is_integer():
        step = int(step)
    if not isinstance(step, int) or isinstance(step, bool):
        raise TypeError(f"step must be an integer, got {step!r}")
    if not 0 <= step < 2**63:
        raise ValueError(f"step must be between 0 and 2**63-1, got {step}")
    return step


class _DisabledSummary(dict):
    def __getattr__(self, key: str) -> Any:
        try:
            return self[key]
        except KeyError:
            raise AttributeError(key) from None

    def __setattr__(self, key: str, value: Any) -> None:
        self[key] = value


class DisabledRun:
    """``mode="disabled"`` (or ``WANDB_MODE=disabled``): nothing is recorded and every call
    is a cheap no-op, as wandb's; config and summary work in memory."""

    def __init__(
        self,
        project: str,
        group: str | None,
        job_type: str | None,
        name: str | None,
        notes: str | None,
        tags: list[str],
        config: Mapping[str, Any],
        facts: Mapping[str, Any],
    ) -> None:
        from wbg.ids import generate_id

        self._pid = os.getpid()
        self._finished = False
        self.id = generate_id()
        self.name = name or self.id
        self.project, self.group, self.job_type = project, group, job_type
        self.notes, self.tags = notes, tuple(tags)
        self.entity = facts.get("entity")
        self.config = Config(None, config, allow_val_change=True)
        self.summary = _DisabledSummary()
        self.step = 0
        self.disabled = True
        self.offline = True
        self.resumed = False
        self.url = None
        self.path = self.id
        self.sweep_id = None
        self.starting_step = 0
        self.start_time = time.time()
        self.settings = compat.Settings(mode="disabled")
        self._dir: str | None = None

    @property
    def dir(self) -> str:
        """A scratch folder, as wandb's disabled run has: scripts save files into it."""
        import tempfile

        if self._dir is None:
            self._dir = tempfile.mkdtemp(prefix=f"wbg-disabled-{self.id}-")
        return self._dir

    def _open_here(self) -> bool:
        return not self._finished and self._pid == os.getpid()

    def log(
        self, data: Mapping[str, Any], step: int | None = None, commit: bool | None = None
    ) -> None:
        self.summary.update(data)

    def define_metric(self, name: str, *args: Any, **kwargs: Any) -> _Metric:
        return _Metric(name)

    def save(self, *args: Any, **kwargs: Any) -> bool:
        return False

    def use_artifact(self, artifact_or_name: Any, *args: Any, **kwargs: Any) -> Any:
        if isinstance(artifact_or_name, compat.Artifact):
            return artifact_or_name
        return compat.Artifact(str(artifact_or_name), "unspecified")

    def log_artifact(self, artifact_or_path: Any, *args: Any, **kwargs: Any) -> Any:
        return self.use_artifact(artifact_or_path)

    def _noop(self, *args: Any, **kwargs: Any) -> None:
        return None

    watch = unwatch = alert = log_model = link_model = link_artifact = log_code = _noop
    mark_preempting = display = _label = _noop

    def use_model(self, name: str, *args: Any, **kwargs: Any) -> str:
        raise Error(f"model {name!r} cannot be used: wbg stores no artifacts")

    def project_name(self) -> str:
        return self.project

    def get_url(self) -> None:
        return None

    def finish(self, exit_code: int | None = None, quiet: bool | None = None) -> None:
        global _current
        self._finished = True
        with _lock:
            if _current is self:
                _current = None

    def __enter__(self) -> DisabledRun:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.finish()

    def __repr__(self) -> str:
        return f"<wbg.Run {self.id} (disabled)>"


def _install_hooks() -> None:
    """Close the open runs on interpreter exit, as failed on an uncaught exception."""
    global _hooks_installed
    _install_multiprocessing_hook()
    if _hooks_installed:
        return
    _hooks_installed = True
    previous_hook = sys.excepthook

    def excepthook(exc_type, exc, tb):
        for run in list(_active):
            if run._pid == os.getpid():
                if issubclass(exc_type, KeyboardInterrupt):
                    run._close("killed", 130)
                else:
                    run._close("failed", 1)
        previous_hook(exc_type, exc, tb)

    sys.excepthook = excepthook
    atexit.register(_at_exit)


def _at_exit() -> None:
    for run in list(_active):
        if run._pid == os.getpid():
            run.finish()
    _close_idle()
