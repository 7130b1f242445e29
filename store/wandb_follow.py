"""The real ``wandb`` under ``wbg run``: the W&B runs a command writes become its wbg run.

A script that keeps ``import wandb`` (or a framework that calls it: HuggingFace
``Trainer``, Lightning's ``WandbLogger``) writes each W&B run to a run folder,
``<root>/wandb/[offline-]run-<date>_<time>-<id>/run-<id>.wandb``, in every mode but
``disabled``. ``WandbFollower`` finds those folders and reads their logs as they grow with
the reader of ``wbg import wandb`` (``wbg.wandb_import``), so W&B itself is left alone (an
online run still syncs).

Where it looks: ``WANDB_DIR`` as the child got it, wbg's working directory (the child's
at start), the working directory of every process of the child's tree and the run folders
those processes hold open (a ``dir=`` passed to ``wandb.init``). A run folder counts when
it appeared after the child started and the process that wrote it (the pid in its
``logs/debug.log``) belongs to the child's process tree: several ``wbg run`` in one folder
never take each other's runs.

What it records: the first W&B run of the tree fills the wbg run of the command (config,
summary, tags and history; the group and job_type stay the ones ``wbg run`` exported);
each further one (a second ``wandb.init``, another rank) becomes a run of its own, in the
W&B run's group (the exported one unless the script chose another), as ``wbg.init``
would do there. A W&B run resumed in a new folder continues the same wbg run.

W&B writes its log 32 KiB at a time while a run goes on, so data arrives in steps while
the command runs, and completely when it ends.
"""

from __future__ import annotations

import contextlib
import functools
import os
import re
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from wbg import runs, values
from wbg.errors import WbgError
from wbg.writer import Recorder

# W&B adds "-1", "-2"... to a folder name already taken (a run resumed within a second)
RUN_FOLDER = re.compile(r"(?:offline-)?run-\d{8}_\d{6}-[A-Za-z0-9_-]+")
# wandb's debug.log lines: "2026-12-02 00:34:31,628 INFO    MainThread:6130 [wandb_setup.py..."
DEBUG_LOG_PID = re.compile(rb":(\d+) \[")
# How long the end waits for a log still being written (the W&B service writes the rest
# of it after the script's process has gone).
SETTLE_S = 5.0
SETTLE_STEP_S = 0.1
SETTLE_QUIET_S = 1.0


def shadowed_keys(wandb_keys: Iterable[str]) -> set[str]:
    """The printed metric names that stand for the same numbers as ``wandb_keys``.

    A key W&B logged, the part after any ``/`` (HuggingFace logs ``loss`` as
    ``train/loss``) and the key with ``/`` written as ``_`` (``eval_loss`` as
    ``eval/loss``): scalar capture drops these, W&B's values are kept.
    """
    names: set[str] = set()
    for key in wandb_keys:
        names.add(key)
        names.add(key.replace("/", "_"))
        parts = key.split("/")
        names.update("/".join(parts[i:]) for i in range(1, len(parts)))
    return names


def process_tree(root: int) -> list[int]:
    """``root`` and its living descendants (Linux ``/proc``; elsewhere ``root`` alone)."""
    tree, queue = [], [root]
    while queue:
        pid = queue.pop()
        tree.append(pid)
        try:
            tasks = os.listdir(f"/proc/{pid}/task")
        except OSError:
            continue
        for task in tasks:
            try:
                with open(f"/proc/{pid}/task/{task}/children") as handle:
                    queue.extend(int(child) for child in handle.read().split())
            except (OSError, ValueError):
                continue
    return tree


def _environ_has(pid: int, entry: bytes) -> bool:
    try:
        with open(f"/proc/{pid}/environ", "rb") as handle:
            return entry in handle.read().split(b"\0")
    except OSError:
        return False


def writer_pid(run_folder: Path) -> int | None:
    """The pid of the process that started the W&B run (from its ``logs/debug.log``)."""
    try:
        with open(run_folder / "logs" / "debug.log", "rb") as handle:
            first = handle.readline(4096)
    except OSError:
        return None
    match = DEBUG_LOG_PID.search(first)
    return int(match.group(1)) if match else None


@dataclass
class Target:
    """A wbg run that W&B runs are written into."""

    run_id: str | None  # None until the writer has created it (a run of its own)
    num: int | None
    own: bool  # a run made for a W&B run (else: the wbg run of the command)
    ended: bool = False
    keys: set[str] = field(default_factory=set)  # history keys written so far
    config: dict[str, Any] = field(default_factory=dict)  # config values written so far
    tags: set[str] = field(default_factory=set)


@dataclass
class Followed:
    """One W&B run folder of the child's tree, read as it grows."""

    folder: Path
    decoder: Any  # wandb_import.RunDecoder
    tail: Any = None  # wandb_log.RecordTail, once the log is there
    target: Target | None = None
    broken: str | None = None  # why reading stopped


class WandbFollower:
    """Finds the W&B runs of one child's process tree and records them (see the module)."""

    def __init__(
        self,
        run_id: str,
        num: int,
        recorder: Recorder,
        env: Mapping[str, str],
        root_pid: int,
        started_at: float,
    ) -> None:
        self.main = Target(run_id, num, own=False)
        self.recorder = recorder
        self.root_pid = root_pid
        self.started_at = started_at
        self.marker = f"WBG_RUN_ID={run_id}".encode()
        self.shadowed: set[str] = set()  # printed names that W&B's keys stand for
        self.problems: list[str] = []
        self._lock = threading.Lock()  # the queue is filled here, emptied by the writer
        self._operations: list[Callable[[sqlite3.Connection], Any]] = []
        self._beat_at = time.monotonic()
        self._folded = False
        self._by_wandb_id: dict[str, Target] = {}
        self._followed: dict[Path, Followed] = {}
        self._rejected: set[Path] = set()
        self._seen_pids: set[int] = {root_pid}
        self._wandb_dirs: dict[Path, None] = {}
        self._before: set[Path] = set()
        roots = [Path.cwd()]
        if env.get("WANDB_DIR"):
            roots.insert(0, Path(env["WANDB_DIR"]))
        for root in roots:
            self._add_wandb_dir(root / "wandb", at_start=True)

    def _add_wandb_dir(self, path: Path, at_start: bool = False) -> None:
        path = path.absolute()
        if path in self._wandb_dirs:
            return
        self._wandb_dirs[path] = None
        if at_start:
            self._before.update(self._run_folders(path))

    @staticmethod
    def _run_folders(wandb_dir: Path) -> list[Path]:
        try:
            names = os.listdir(wandb_dir)
        except OSError:
            return []
        return [wandb_dir / name for name in sorted(names) if RUN_FOLDER.fullmatch(name)]

    # --- finding -----------------------------------------------------------------------
    def watch_tree(self) -> None:
        """Note the processes of the child's tree (cheap: call it often). A W&B run is
        only taken from a process seen here, or one still alive with our run's id in its
        environment, so a process that starts and ends between two looks is missed."""
        self._seen_pids.update(process_tree(self.root_pid))

    def _look_at_tree(self) -> None:
        for pid in process_tree(self.root_pid):
            self._seen_pids.add(pid)
            with contextlib.suppress(OSError):
                self._add_wandb_dir(Path(os.readlink(f"/proc/{pid}/cwd")) / "wandb")
            try:
                fds = os.listdir(f"/proc/{pid}/fd")
            except OSError:
                continue
            for fd in fds:
                try:
                    target = Path(os.readlink(f"/proc/{pid}/fd/{fd}"))
                except OSError:
                    continue
                # <wandb dir>/<run folder>/logs/debug.log, or the run log itself
                for folder in (target.parent.parent, target.parent):
                    if RUN_FOLDER.fullmatch(folder.name):
                        self._add_wandb_dir(folder.parent)

    def _owned(self, folder: Path, final: bool) -> bool | None:
        """True: the child's tree wrote it; False: not ours; None: cannot tell yet."""
        pid = writer_pid(folder)
        if pid is None:
            return False if final else None
        return pid in self._seen_pids or _environ_has(pid, self.marker)

    def _discover(self, final: bool) -> None:
        for wandb_dir in list(self._wandb_dirs):
            for folder in self._run_folders(wandb_dir):
                if folder in self._followed or folder in self._rejected:
                    continue
                if folder in self._before or not self._new_enough(folder):
                    self._rejected.add(folder)
                    continue
                owned = self._owned(folder, final)
                if owned is None:
                    continue
                if not owned:
                    self._rejected.add(folder)
                    continue
                self._follow(folder)

    def _new_enough(self, folder: Path) -> bool:
        try:
            return (folder / "logs" / "debug.log").stat().st_mtime >= self.started_at - 1.0
        except OSError:
            return True  # not written yet: decided by its writer

    def _follow(self, folder: Path) -> None:
        from wbg.wandb_import import RunDecoder

        self._followed[folder] = Followed(folder, RunDecoder(folder))

    # --- reading -----------------------------------------------------------------------
    def poll(self, final: bool = False) -> bool:
        """Look for new W&B runs and record what their logs gained; True if any grew."""
        self._look_at_tree()
        self._discover(final)
        grew = False
        readable = [f for f in self._followed.values() if f.broken is None]
        for followed in readable:
            try:
                grew |= self._read(followed)
            except (OSError, WbgError) as exc:
                followed.broken = str(exc)
                self.problems.append(f"{followed.folder}: {exc}")
        # W&B runs are given their wbg run in the order they started
        ready = [f for f in readable if f.decoder.seen_run]
        for followed in sorted(ready, key=lambda f: f.decoder.run.started_at or 0.0):
            if followed.target is None:
                followed.target = self._target_for(followed)
            self._store(followed)
        if not final:
            self._flush_soon()
        return grew

    def _read(self, followed: Followed) -> bool:
        if followed.tail is None:
            from wbg.wandb_log import RecordTail

            logs = sorted(followed.folder.glob("run-*.wandb"))
            if not logs:
                return False
            followed.tail = RecordTail(logs[0])
        tail, decoder = followed.tail, followed.decoder
        fed = False
        for payload in tail.read():
            fed = True
            if not decoder.feed(payload):
                followed.broken = "a record could not be decoded"
                break
        if tail.problem is not None:
            followed.broken = tail.problem
        return fed

    def _target_for(self, followed: Followed) -> Target:
        run = followed.decoder.run
        target = self._by_wandb_id.get(run.id)
        if target is None:
            if not self._folded:
                self._folded = True
                target = self.main
            else:
                target = Target(None, None, own=True)
                self._queue(functools.partial(self._create, target=target, followed=followed))
            self._by_wandb_id[run.id] = target
        return target

    def _create(self, conn: sqlite3.Connection, target: Target, followed: Followed) -> None:
        """Record a W&B run as a run of its own (in the writer's transaction)."""
        run = followed.decoder.run
        target.run_id, target.num = runs.create_run(
            conn,
            project=run.project,
            group=run.group,
            job_type=run.job_type,
            name=run.name,
            tags=run.tags,
            notes=run.notes,
            command=run.command,
            pid=writer_pid(followed.folder),
            owner_pid=os.getpid(),
            git_commit=run.git_commit,
            run_id=None if runs.run_exists(conn, run.id) else run.id,
        )
        if run.started_at is not None:
            runs.update_run(conn, target.run_id, started_at=run.started_at)

    def _store(self, followed: Followed) -> None:
        """Queue what the log gained since the last look."""
        target = followed.target
        assert target is not None
        run = followed.decoder.run
        points = followed.decoder.take_history()
        summary, _ = followed.decoder.summary()
        # the keys W&B recorded, in its history or only in its summary (HuggingFace puts
        # train_runtime there)
        new_keys = ({key for _, key, _, _ in points} | set(summary)) - target.keys
        if new_keys and not target.own:
            # Names W&B's keys stand for are not captured from now on, and what was
            # captured of them goes: the writer stores the captured points queued so far
            # first, then these operations, in one transaction.
            forget = sorted(shadowed_keys(new_keys) - self.shadowed)
            self.shadowed.update(forget)
            num = target.num
            assert num is not None  # the command's own run, made before W&B's
            self._queue(lambda conn: runs.forget_metrics(conn, num, forget))
        target.keys |= new_keys
        config = {
            key: value
            for key, value in _storable(run.config).items()
            if key not in target.config or target.config[key] != value
        }
        tags = [tag for tag in run.tags if tag not in target.tags]
        target.config.update(config)
        target.tags.update(tags)
        summary = _storable(summary)

        def write(conn: sqlite3.Connection) -> None:
            assert target.run_id is not None and target.num is not None
            num = target.num
            runs.write_history(conn, [(num, step, key, v, t) for step, key, v, t in points])
            runs.merge_summary(conn, num, summary)
            runs.set_config_keys(conn, target.run_id, config)
            if tags:
                runs.set_tags(conn, target.run_id, add=tags)

        self._queue(write)

    # --- writing -------------------------------------------------------------------------
    def _queue(self, operation: Callable[[sqlite3.Connection], Any]) -> None:
        with self._lock:
            self._operations.append(operation)

    def _flush_soon(self) -> None:
        """Have the run's writer thread carry out what is queued (``wbg run``'s loop never
        waits for the database)."""
        own = any(t.own for t in self._by_wandb_id.values())
        beat = own and time.monotonic() - self._beat_at >= runs.HEARTBEAT_INTERVAL_S / 2
        if self._operations or beat:
            # not batched: _write goes on past an operation the database refuses
            self.recorder.defer("wandb", self._write, batchable=False)

    def _write(self, conn: sqlite3.Connection) -> None:
        """Carry out the queued operations, in order, in the writer's transaction.

        Each is its own savepoint: one the database refuses is undone whole and left out,
        and the transaction goes on (PostgreSQL refuses every later statement of a
        transaction in which one failed, so without it the whole flush was lost)."""
        with self._lock:
            operations, self._operations = self._operations, []
        for operation in operations:
            conn.execute("SAVEPOINT wbg_wandb")
            try:
                operation(conn)
            except sqlite3.OperationalError:  # the transaction is retried: all of them
                with self._lock:
                    self._operations[:0] = operations
                raise
            except (WbgError, sqlite3.Error, ValueError, TypeError, OverflowError) as exc:
                # a value wbg refuses: that write is left out, never retried
                conn.execute("ROLLBACK TO SAVEPOINT wbg_wandb")
                message = exc.message if isinstance(exc, WbgError) else str(exc)
                self.problems.append(f"a W&B run's data was not stored: {message}")
            conn.execute("RELEASE SAVEPOINT wbg_wandb")
        self._beat_at = time.monotonic()
        for target in self._by_wandb_id.values():
            if target.own and target.num is not None and not target.ended:
                runs.heartbeat(conn, target.num)

    # --- the end -----------------------------------------------------------------------
    def close(self, state: str, exit_code: int | None) -> None:
        """Read every log to its end (the command has exited) and queue the end of the
        runs made for W&B runs: the state W&B recorded, else the command's outcome. The
        caller's ``recorder.close()`` writes it all."""
        deadline = time.monotonic() + SETTLE_S
        while True:
            grew = self.poll(final=True)
            waiting = [
                f for f in self._followed.values() if not f.decoder.exited and f.broken is None
            ]
            if not waiting or time.monotonic() > deadline:
                break
            # A log without its exit record: done once nothing of the tree is left and the
            # log has been still for a while (a W&B service outside the tree may write it).
            if not grew and self._tree_gone() and _still(waiting, SETTLE_QUIET_S):
                break
            time.sleep(SETTLE_STEP_S)
        for followed in self._followed.values():
            target = followed.target
            if target is None or not target.own or target.ended:
                continue
            target.ended = True
            decoder = followed.decoder
            reason = None
            if decoder.exited:
                from wbg.wandb_import import exit_state  # only once a W&B run was followed

                code = decoder.run.exit_code
                own_state = exit_state(code)
            elif state != "finished":
                own_state, code = state, exit_code
            else:
                own_state, code = "crashed", None
                reason = "the W&B run did not end (its log has no exit record)"
            self._queue(
                functools.partial(
                    self._end, target=target, state=own_state, code=code, reason=reason
                )
            )
        self._flush_soon()

    @staticmethod
    def _end(
        conn: sqlite3.Connection, target: Target, state: str, code: int | None, reason: str | None
    ) -> None:
        if target.run_id is not None:  # None: it could not be created
            runs.finish_run(conn, target.run_id, state=state, exit_code=code, reason=reason)

    def _tree_gone(self) -> bool:
        return all(not runs.pid_alive(pid) for pid in self._seen_pids)


def _still(followed: Iterable[Followed], seconds: float) -> bool:
    """True when none of these W&B run folders' logs changed in the last ``seconds``."""
    now = time.time()
    for item in followed:
        path = item.tail.path if item.tail is not None else item.folder
        try:
            if now - path.stat().st_mtime < seconds:
                return False
        except OSError:
            continue
    return True


def _storable(config: Mapping[str, Any]) -> dict[str, Any]:
    """Config or summary entries whose keys wbg accepts (others are left out)."""
    kept = {}
    for key, value in config.items():
        try:
            values.check_key(str(key))
        except WbgError:
            continue
        kept[key] = _storable(value) if isinstance(value, Mapping) else value
    return kept
