"""``wbg run``: start a command as a recorded run and supervise it (SPEC §4).

The run is created (``running``) before the child starts. The child sees
``WANDB_RUN_GROUP``, ``WANDB_JOB_TYPE``, ``WANDB_PROJECT``, ``WBG_RUN_ID``, ``WBG_RUN_PID``
and ``WBG_DB``. Its output is passed through unchanged and live: on a pseudo-terminal
when our stdout is a terminal (so colours and progress bars behave as without wbg), on
pipes otherwise. The last ``TAIL_BYTES`` of output are kept with the run and scalar
metrics in it are captured as history. SIGINT, SIGTERM and SIGHUP sent to wbg are
forwarded to the child, which is waited for; a Ctrl-C typed at the terminal already
reaches the child (same process group), so it is not sent a second time.
"""

from __future__ import annotations

import contextlib
import errno
import os
import selectors
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from wbg import runs
from wbg.capture import ScalarCapture
from wbg.gitinfo import GitProbe
from wbg.writer import Recorder

TAIL_BYTES = 1024 * 1024
OUTPUT_SAVE_INTERVAL_S = 5.0
READ_SIZE = 65536
FORWARDED_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


@dataclass
class RunSpec:
    """What to record about the run, already validated and resolved."""

    project: str
    group: str | None = None
    job_type: str | None = None
    name: str | None = None
    tags: Sequence[str] = ()
    notes: str | None = None
    config: Mapping[str, Any] | None = None


@dataclass
class LaunchResult:
    run_id: str
    exit_code: int
    state: str
    error: str | None = None  # why the command could not start


class OutputTail:
    """The last ``limit`` bytes of a stream, kept without copying on every write."""

    def __init__(self, limit: int = TAIL_BYTES) -> None:
        self.limit = limit
        self.buffer = bytearray()
        self.truncated = False
        self.changed = False

    def add(self, data: bytes) -> None:
        self.buffer += data
        self.changed = True
        if len(self.buffer) > 2 * self.limit:
            del self.buffer[: len(self.buffer) - self.limit]
            self.truncated = True

    def value(self) -> bytes:
        if len(self.buffer) > self.limit:
            return bytes(self.buffer[-self.limit :])
        return bytes(self.buffer)

    @property
    def is_truncated(self) -> bool:
        return self.truncated or len(self.buffer) > self.limit


def child_env(run_id: str, spec: RunSpec, db_path: Path) -> dict[str, str]:
    env = dict(os.environ)
    for name, value in (
        ("WANDB_RUN_GROUP", spec.group),
        ("WANDB_JOB_TYPE", spec.job_type),
        ("WANDB_PROJECT", spec.project),
    ):
        if value:
            env[name] = value
        else:
            env.pop(name, None)
    env["WBG_RUN_ID"] = run_id
    env["WBG_RUN_PID"] = str(os.getpid())
    env["WBG_DB"] = str(db_path.resolve())
    return env


def _write_all(fd: int, data: bytes) -> bool:
    """Write everything; False once the reader has gone (EPIPE): output is then dropped."""
    view = memoryview(data)
    while view:
        try:
            written = os.write(fd, view)
        except InterruptedError:
            continue
        except BlockingIOError:
            time.sleep(0.001)
            continue
        except OSError as exc:
            if exc.errno in (errno.EPIPE, errno.EBADF):
                return False
            raise
        view = view[written:]
    return True


def _isatty(fd: int) -> bool:
    try:
        return os.isatty(fd)
    except OSError:
        return False


class Supervisor:
    """Runs one child, pumps its output, forwards signals, records the outcome."""

    def __init__(
        self,
        conn: sqlite3.Connection,
        db_path: Path,
        command: Sequence[str],
        spec: RunSpec,
        *,
        capture: ScalarCapture | None,
        use_pty: bool | None = None,
        stdout_fd: int = 1,
        stderr_fd: int = 2,
        announce: Callable[[str], None] | None = None,
    ) -> None:
        self.conn = conn
        self.db_path = db_path
        self.command = list(command)
        self.spec = spec
        self.capture = capture
        self.stdout_fd = stdout_fd
        self.stderr_fd = stderr_fd
        self.use_pty = _isatty(stdout_fd) if use_pty is None else use_pty
        self.announce = announce
        self.tail = OutputTail()
        self.signalled: int | None = None
        self.proc: subprocess.Popen[bytes] | None = None
        self._out_open = {stdout_fd: True, stderr_fd: True}

    # --- start -----------------------------------------------------------------------
    def run(self) -> LaunchResult:
        git = GitProbe()
        run_id, num = runs.create_run(
            self.conn,
            project=self.spec.project,
            group=self.spec.group,
            job_type=self.spec.job_type,
            name=self.spec.name,
            tags=self.spec.tags,
            notes=self.spec.notes,
            config=self.spec.config,
            command=self.command,
        )
        self.recorder = Recorder(self.conn, num)
        if self.announce:
            self.announce(run_id)
        previous = {sig: signal.signal(sig, self._on_signal) for sig in FORWARDED_SIGNALS}
        try:
            try:
                streams = self._spawn(child_env(run_id, self.spec, self.db_path))
            except OSError as exc:
                return self._not_started(run_id, exc, git)
            self._record_start(run_id, git)
            self._pump(streams)
            returncode = self.proc.wait() if self.proc else 1
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
        return self._finish(run_id, num, returncode)

    def _spawn(self, env: dict[str, str]) -> dict[int, int]:
        """Start the child; return {our read fd: the fd its bytes go to}."""
        slave = None
        streams: dict[int, int] = {}
        stdout: int = subprocess.PIPE
        stderr: int = subprocess.PIPE
        if self.use_pty:
            import pty

            master, slave = pty.openpty()
            _copy_winsize(self.stdout_fd, slave)
            _raw_output(slave)
            stdout = slave
            streams[master] = self.stdout_fd
            if _isatty(self.stderr_fd):
                stderr = slave
        try:
            self.proc = subprocess.Popen(
                self.command, env=env, stdout=stdout, stderr=stderr, close_fds=True
            )
        except OSError:
            if slave is not None:
                os.close(slave)
                for fd in streams:
                    os.close(fd)
            raise
        if slave is not None:
            os.close(slave)
            if self.use_pty and _isatty(self.stdout_fd):
                signal.signal(signal.SIGWINCH, lambda *_: _copy_winsize(self.stdout_fd, master))
        if self.proc.stdout is not None:
            streams[self.proc.stdout.fileno()] = self.stdout_fd
        if self.proc.stderr is not None:
            streams[self.proc.stderr.fileno()] = self.stderr_fd
        return streams

    def _record_start(self, run_id: str, git: GitProbe) -> None:
        commit, dirty = git.result()
        assert self.proc is not None
        self.recorder.execute(
            lambda conn: runs.update_run(
                conn, run_id, pid=self.proc.pid, git_commit=commit, git_dirty=dirty
            )
        )

    def _not_started(self, run_id: str, exc: OSError, git: GitProbe) -> LaunchResult:
        program = self.command[0]
        if isinstance(exc, FileNotFoundError):
            code, reason = 127, f"command not found: {program}"
        elif isinstance(exc, PermissionError) or exc.errno in (errno.EACCES, errno.ENOEXEC):
            code, reason = 126, f"command not executable: {program} ({exc.strerror})"
        else:
            code, reason = 126, f"cannot start {program}: {exc.strerror or exc}"
        commit, dirty = git.result()
        self.recorder.execute(
            lambda conn: (
                runs.update_run(conn, run_id, pid=None, git_commit=commit, git_dirty=dirty),
                runs.finish_run(conn, run_id, state="failed", exit_code=code, reason=reason),
            )
        )
        return LaunchResult(run_id, code, "failed", reason)

    # --- while running ---------------------------------------------------------------
    def _on_signal(self, signum: int, _frame: Any) -> None:
        self.signalled = signum
        proc = self.proc
        if proc is None or proc.returncode is not None:
            return
        if signum == signal.SIGINT and _terminal_sent_it():
            return  # the terminal sent Ctrl-C to our whole process group, child included
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(signum)

    def _pump(self, streams: dict[int, int]) -> None:
        selector = selectors.DefaultSelector()
        for fd in streams:
            os.set_blocking(fd, False)
            selector.register(fd, selectors.EVENT_READ)
        open_fds = set(streams)
        saved_at = time.monotonic()
        exited_at: float | None = None
        while open_fds:
            for key, _ in selector.select(timeout=0.2):
                fd = key.fd
                try:
                    data = os.read(fd, READ_SIZE)
                except BlockingIOError:
                    continue
                except OSError as exc:  # EIO: the pty's other side is closed
                    if exc.errno != errno.EIO:
                        raise
                    data = b""
                if not data:
                    selector.unregister(fd)
                    open_fds.discard(fd)
                    os.close(fd)
                    continue
                self._output(data, streams[fd])
            now = time.monotonic()
            if self.tail.changed and now - saved_at >= OUTPUT_SAVE_INTERVAL_S:
                self._save_output()
                saved_at = now
            if self.proc is not None and self.proc.poll() is not None:
                # A grandchild may hold the output open: drain briefly, then stop.
                exited_at = exited_at or now
                if now - exited_at > 0.5:
                    break
        for fd in open_fds:
            selector.unregister(fd)
            os.close(fd)
        selector.close()

    def _output(self, data: bytes, target_fd: int) -> None:
        if self._out_open[target_fd]:
            self._out_open[target_fd] = _write_all(target_fd, data)
        self.tail.add(data)
        if self.capture is not None:
            self._captured(self.capture.feed(data))

    def _captured(self, points: list[tuple[int, str, float]]) -> None:
        if points:
            now = time.time()
            num = self.recorder.num
            self.recorder.add([(num, step, key, value, now) for step, key, value in points])

    def _save_output(self) -> None:
        tail, truncated = self.tail.value(), self.tail.is_truncated
        self.tail.changed = False
        self.recorder.execute(
            lambda conn: runs.set_output(conn, self.recorder.num, tail, truncated)
        )

    # --- end -------------------------------------------------------------------------
    def _finish(self, run_id: str, num: int, returncode: int) -> LaunchResult:
        if self.capture is not None:
            self._captured(self.capture.close())
        if returncode < 0:
            exit_code, state = 128 - returncode, "killed"
        elif returncode == 0:
            exit_code, state = 0, "finished"
        else:
            exit_code = returncode
            state = "killed" if self.signalled is not None else "failed"
        self.recorder.close()
        tail, truncated = self.tail.value(), self.tail.is_truncated
        self.recorder.execute(
            lambda conn: (
                runs.set_output(conn, num, tail, truncated),
                runs.finish_run(conn, run_id, state=state, exit_code=exit_code),
            )
        )
        return LaunchResult(run_id, exit_code, state)


def _terminal_sent_it() -> bool:
    """True when we run in the terminal's foreground process group (Ctrl-C hit us all)."""
    try:
        with open("/dev/tty", "rb", buffering=0) as tty:
            return os.tcgetpgrp(tty.fileno()) == os.getpgrp()
    except OSError:
        return False


def _raw_output(fd: int) -> None:
    """Turn off the pty's newline translation so the child's bytes arrive as written."""
    try:
        import termios

        attrs = termios.tcgetattr(fd)
        attrs[1] &= ~termios.ONLCR
        termios.tcsetattr(fd, termios.TCSANOW, attrs)
    except (OSError, ImportError):
        pass


def _copy_winsize(source_fd: int, target_fd: int) -> None:
    try:
        import fcntl
        import termios

        size = fcntl.ioctl(source_fd, termios.TIOCGWINSZ, b"\0" * 8)
        fcntl.ioctl(target_fd, termios.TIOCSWINSZ, size)
    except (OSError, ImportError):
        pass


def launch(
    conn: sqlite3.Connection,
    db_path: Path,
    command: Sequence[str],
    spec: RunSpec,
    *,
    capture: ScalarCapture | None = None,
    use_pty: bool | None = None,
    announce: Callable[[str], None] | None = None,
    stdout_fd: int = 1,
    stderr_fd: int = 2,
) -> LaunchResult:
    """Run ``command`` as a recorded run; return its id, exit code and state.

    The child's output goes to ``stdout_fd``/``stderr_fd`` (default: ours).
    """
    sys.stdout.flush()
    sys.stderr.flush()
    return Supervisor(
        conn,
        db_path,
        command,
        spec,
        capture=capture,
        use_pty=use_pty,
        announce=announce,
        stdout_fd=stdout_fd,
        stderr_fd=stderr_fd,
    ).run()
