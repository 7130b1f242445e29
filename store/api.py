"""The Python API: ``wbg.init`` and the ``Run`` it returns (SPEC §4), a subset of wandb's.

Environment: ``WANDB_RUN_GROUP``, ``WANDB_JOB_TYPE``, ``WANDB_PROJECT``, ``WANDB_NAME``,
``WANDB_TAGS`` (comma-separated), ``WANDB_NOTES``, ``WBG_DB``; arguments win.

Attach rule inside ``wbg run``: ``wbg run`` exports ``WBG_RUN_ID`` and ``WBG_RUN_PID``
(its own pid). A process whose parent *is* that ``wbg run`` process (the command it
started, also through ``exec``) logs into that run; any other process (ranks, pool workers,
K-fold workers started further down) gets a run of its own in the same group. The attached
process does not set the run's final state: ``wbg run`` records it from the exit code.
"""

from __future__ import annotations

import atexit
import os
import sys
import threading
import time
from collections.abc import Iterable, Iterator, Mapping, MutableMapping
from pathlib import Path
from types import TracebackType
from typing import Any

from wbg import db as dbmod
from wbg import runs, settings, values
from wbg.writer import Recorder

_current: Run | None = None
_hooks_installed = False
_lock = threading.Lock()


def _env_tags() -> list[str] | None:
    raw = os.environ.get("WANDB_TAGS")
    if not raw:
        return None
    return [tag.strip() for tag in raw.split(",") if tag.strip()]


def _attach_target(db_path: Path) -> str | None:
    """The id of the ``wbg run`` run this process should log into, if any."""
    run_id = os.environ.get("WBG_RUN_ID")
    owner = os.environ.get("WBG_RUN_PID")
    env_db = os.environ.get("WBG_DB")
    if not run_id or not owner or not owner.isdigit() or int(owner) != os.getppid():
        return None
    if env_db and Path(env_db).expanduser().resolve() != db_path.resolve():
        return None
    return run_id


def init(
    project: str | None = None,
    group: str | None = None,
    job_type: str | None = None,
    name: str | None = None,
    config: Mapping[str, Any] | None = None,
    tags: Iterable[str] | None = None,
    notes: str | None = None,
    db: str | os.PathLike[str] | None = None,
) -> Run:
    """Start (or, inside ``wbg run``, attach to) a run and make it the current one.

    A run still open in this process is finished first.
    """
    global _current
    project, group, job_type = settings.resolve_grouping(project, group, job_type)
    name = settings.resolve(name, "WANDB_NAME", None, "name")
    notes = settings.resolve(notes, "WANDB_NOTES", None, "notes")
    tag_list = values.check_tags(list(tags) if tags is not None else _env_tags())
    config_dict = dict(config or {})
    values.check_config(config_dict)
    db_path = settings.resolve_db_path(db)

    with _lock:
        previous = _current
    if previous is not None and previous._pid == os.getpid() and not previous._finished:
        previous.finish()

    conn = dbmod.connect(db_path)
    attach_id = _attach_target(db_path)
    if attach_id is not None and runs.run_exists(conn, attach_id):
        num = runs.run_num(conn, attach_id)
        record = runs.get_run(conn, attach_id)
        run = Run(conn, attach_id, num, record, attached=True)
        if config_dict:
            run.config.update(config_dict)
    else:
        from wbg.gitinfo import git_info

        commit, dirty = git_info()
        run_id, num = runs.create_run(
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
        )
        run = Run(conn, run_id, num, runs.get_run(conn, run_id), attached=False)
    with _lock:
        _current = run
    _install_hooks()
    return run


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
    # A forked worker inherits the parent's run object and SQLite connection; neither may
    # be used there (the worker calls wbg.init() and gets a run of its own).
    global _current
    run = _current
    if run is not None:
        run._forked()
    _current = None


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


def finish(exit_code: int | None = None) -> None:
    """Finish the current run, if any (as ``wandb.finish``)."""
    with _lock:
        run = _current
    if run is not None and run._pid == os.getpid():
        run.finish(exit_code=exit_code)


class Config(MutableMapping[str, Any]):
    """The run's config: a dict whose changes are written to the database at once."""

    def __init__(self, run: Run, initial: Mapping[str, Any]) -> None:
        self._run = run
        self._data: dict[str, Any] = dict(initial)

    def __getitem__(self, key: str) -> Any:
        return self._data[key]

    def __setitem__(self, key: str, value: Any) -> None:
        self.update({key: value})

    def __delitem__(self, key: str) -> None:
        raise TypeError("config keys cannot be deleted from a recorded run")

    def __iter__(self) -> Iterator[str]:
        return iter(self._data)

    def __len__(self) -> int:
        return len(self._data)

    def __getattr__(self, key: str) -> Any:
        try:
            return self.__dict__["_data"][key]
        except KeyError:
            raise AttributeError(key) from None

    def update(self, other: Any = (), /, **kwargs: Any) -> None:  # type: ignore[override]
        changes = dict(other, **kwargs)
        if not changes:
            return
        values.check_config(changes)
        self._run._check_open()
        self._run._recorder.execute(lambda conn: runs.merge_config(conn, self._run.id, changes))
        values.deep_merge(self._data, changes)

    def __repr__(self) -> str:
        return repr(self._data)


class Summary(MutableMapping[str, Any]):
    """The run's summary: the last logged value of each metric unless set explicitly.

    Reading it writes what is buffered first, so it always shows what is recorded.
    """

    def __init__(self, run: Run, initial: Mapping[str, Any]) -> None:
        self._run = run
        self._run._recorder.last_values.update(initial)

    def _values(self) -> dict[str, Any]:
        recorder = self._run._recorder
        if not self._run._finished and self._run._pid == os.getpid():
            recorder.flush()
        return recorder.last_values

    def __getitem__(self, key: str) -> Any:
        return self._values()[key]

    def __setitem__(self, key: str, value: Any) -> None:
        self.update({key: value})

    def __delitem__(self, key: str) -> None:
        raise TypeError("summary keys cannot be deleted")

    def __iter__(self) -> Iterator[str]:
        return iter(dict(self._values()))

    def __len__(self) -> int:
        return len(self._values())

    def update(self, other: Any = (), /, **kwargs: Any) -> None:  # type: ignore[override]
        changes = {
            values.check_key(str(k), "summary key"): _plain(v)
            for k, v in dict(other, **kwargs).items()
        }
        self._run._check_open()
        self._run._recorder.add([], changes)

    def __repr__(self) -> str:
        return repr(self._values())


def _plain(value: Any) -> Any:
    """Numbers as Python numbers (numpy/torch scalars through ``.item()``), else as given."""
    if values.is_number(value) or isinstance(value, (str, bool)) or value is None:
        return value
    item = getattr(value, "item", None)
    if callable(item):
        try:
            converted = item()
        except (TypeError, ValueError):
            return value
        if values.is_number(converted) or isinstance(converted, bool):
            return converted
    if isinstance(value, (list, tuple, dict)):
        return value
    return str(value)


class Run:
    """A recorded run. Use ``log``, ``config``, ``summary``, ``finish`` (or ``with``)."""

    def __init__(
        self, conn: Any, run_id: str, num: int, record: Mapping[str, Any], attached: bool
    ) -> None:
        self._pid = os.getpid()
        self._conn = conn
        self._recorder = Recorder(conn, num)
        self._num = num
        self._finished = False
        self._unusable = False  # finished, or inherited through fork: log() must refuse
        self._attached = attached
        self._keys: set[str] = set()  # every metric logged; a superset of any batch's keys
        self._recorder.keys_hint = self._keys
        self._step = 0
        self.id: str = run_id
        self.name: str = record["name"]
        self.group: str | None = record["group"]
        self.job_type: str | None = record["job_type"]
        self.project: str = record["project"]
        self.tags: list[str] = list(record["tags"])
        self.config = Config(self, record["config"])
        self.summary = Summary(self, record["summary"])
        if attached:
            # Continue after what the run already holds (e.g. captured output lines).
            row = conn.execute("SELECT max(step) FROM history WHERE run = ?", (num,)).fetchone()
            self._step = 0 if row[0] is None else row[0] + 1

    @property
    def step(self) -> int:
        """The step the next ``log`` without ``step=`` will use."""
        return self._step

    def log(self, data: Mapping[str, Any], step: int | None = None) -> None:
        """Record metrics at ``step`` (default: one past the last step logged).

        Numbers become history points; other values only go to the summary.
        """
        if self._unusable:
            self._check_open()
        if step is None:
            step = self._step
            self._step = step + 1
        else:
            step = int(step)
            if step >= self._step:
                self._step = step + 1
        now = time.time()
        num = self._num
        points = []
        others = None
        for key, value in data.items():
            kind = type(value)
            if kind is not float and kind is not int:
                value = _plain(value)
                if not values.is_number(value):
                    if others is None:
                        others = {}
                    others[str(key)] = value
                    continue
            if key not in self._keys:
                values.check_key(key, "metric name")
                self._keys.add(key)
            points.append((num, step, key, value, now))
        if others is not None:
            self._recorder.warn_not_numbers(others)
        self._recorder.add(points, others, now)

    def _forked(self) -> None:
        self._unusable = True

    def finish(self, exit_code: int | None = None) -> None:
        """Write what is buffered and close the run (``finished``, or ``failed`` if non-zero)."""
        if self._finished or self._pid != os.getpid():
            return
        code = 0 if exit_code is None else int(exit_code)
        self._close("finished" if code == 0 else "failed", code)

    def _close(self, state: str, exit_code: int) -> None:
        global _current
        if self._finished:
            return
        self._finished = True
        self._unusable = True
        try:
            self._recorder.close()
            if not self._attached:
                self._recorder.execute(
                    lambda conn: runs.finish_run(conn, self.id, state=state, exit_code=exit_code)
                )
        finally:
            self._conn.close()
            with _lock:
                if _current is self:
                    _current = None

    def _check_open(self) -> None:
        if self._pid != os.getpid():
            raise RuntimeError(
                f"run {self.id} belongs to process {self._pid}; call wbg.init() in this process"
            )
        if self._finished:
            raise RuntimeError(f"run {self.id} is finished")

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


def _install_hooks() -> None:
    """Close the current run on interpreter exit, as failed on an uncaught exception."""
    global _hooks_installed
    _install_multiprocessing_hook()
    if _hooks_installed:
        return
    _hooks_installed = True
    previous_hook = sys.excepthook

    def excepthook(exc_type, exc, tb):  # type: ignore[no-untyped-def]
        run = _current
        if run is not None and run._pid == os.getpid():
            if issubclass(exc_type, KeyboardInterrupt):
                run._close("killed", 130)
            else:
                run._close("failed", 1)
        previous_hook(exc_type, exc, tb)

    sys.excepthook = excepthook
    atexit.register(_at_exit)


def _at_exit() -> None:
    run = _current
    if run is not None and run._pid == os.getpid():
        run.finish()
