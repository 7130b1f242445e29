"""``wbg run``: start a command as a recorded run and supervise it (docs/design.md, "Recording").

The run is created (``running``) before the child starts. The child sees
``WANDB_RUN_GROUP``, ``WANDB_JOB_TYPE``, ``WANDB_PROJECT``, ``WBG_RUN_ID``, ``WBG_RUN_PID``
and ``WBG_DB``. Its output is passed through unchanged and live: on a pseudo-terminal
when our stdout is a terminal (so colours and progress bars behave as without wbg), on
pipes otherwise. The last ``TAIL_BYTES`` of output are kept with the run and scalar
metrics in it are captured as history. SIGINT, SIGTERM and SIGHUP sent to wbg are
forwarded to the child, which is waited for; a Ctrl-C typed at the terminal already
reaches the child (same process group), so it is not sent a second time.

``Supervisor.run()`` does all of that for one run. Its steps are public so that
``wbg.batch`` can drive many children in one selector loop: ``create()`` records the run,
``start()`` spawns the child (installing no signal handler), ``register()``/``read()``
pump its output, ``tick()`` is the periodic check, ``finish()`` records the outcome; an
``OutputSink`` (``LinePrefixer``) can take the output instead of our descriptors.
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
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from wbg import runs
from wbg.capture import ScalarCapture
from wbg.errors import WbgError
from wbg.gitinfo import GitProbe
from wbg.writer import Recorder

if TYPE_CHECKING:
    from wbg.wandb_follow import WandbFollower

TAIL_BYTES = runs.OUTPUT_TAIL_BYTES
OUTPUT_SAVE_INTERVAL_S = 5.0
READ_SIZE = 65536
MAX_PREFIXED_LINE = 64 * 1024
FORWARDED_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
WANDB_POLL_S = 1.0  # how often the W&B runs of the child are looked for and read
TREE_WATCH_S = 0.2  # how often its process tree is noted (W&B runs are taken from it)


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
    lost: int | None = None  # points not stored when the end could not be recorded
    # W&B runs the command wrote that could not be read (README: the real wandb)
    problems: list[str] = field(default_factory=list)


class OutputTail:
    """The last ``limit`` bytes of a stream, kept without copying on every write."""

    def __init__(self, limit: int = TAIL_BYTES) -> None:
        self.limit = limit
        self.buffer = bytearray()
        self.truncated = False
        self.changed = False
        self.total = 0  # bytes seen; the buffer holds the last of them
        self.saved = 0  # offset up to which pages have been queued for writing

    def add(self, data: bytes) -> None:
        self.buffer += data
        self.changed = True
        self.total += len(data)
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

    def unsaved(self) -> tuple[int, bytes]:
        """The bytes since the last page (at most ``limit``) and where they start."""
        start = max(self.saved, self.total - min(len(self.buffer), self.limit))
        data = bytes(self.buffer[len(self.buffer) - (self.total - start) :])
        self.saved = self.total
        self.changed = False
        return start, data


class OutputSink:
    """Where a child's output goes instead of straight to our descriptors."""

    def write(self, data: bytes, target_fd: int) -> None:
        raise NotImplementedError

    def close(self, target_fd: int) -> None:
        """The child's stream to ``target_fd`` has ended."""


class LinePrefixer(OutputSink):
    """Writes a child's output line by line, each line starting with ``prefix``.

    Used when several children run at once: every line is written whole, in one write, so
    lines of different children never mix. A carriage return inside a line (a progress
    bar redrawing itself) keeps only what a terminal would finally show; a partial last
    line is completed with a newline when the stream ends.
    """

    def __init__(self, prefix: str | bytes) -> None:
        self.prefix = prefix.encode() if isinstance(prefix, str) else prefix
        self._partial: dict[int, bytes] = {}
        self._open: dict[int, bool] = {}

    def write(self, data: bytes, target_fd: int) -> None:
        buffer = self._partial.get(target_fd, b"") + data
        lines = buffer.split(b"\n")
        rest = lines.pop()
        if len(rest) > MAX_PREFIXED_LINE:  # an endless line: show it in pieces
            lines.append(rest)
            rest = b""
        self._partial[target_fd] = rest
        if lines:
            self._emit(lines, target_fd)

    def close(self, target_fd: int) -> None:
        rest = self._partial.pop(target_fd, b"")
        if rest:
            self._emit([rest], target_fd)

    def _emit(self, lines: list[bytes], target_fd: int) -> None:
        if not self._open.get(target_fd, True):
            return
        text = b"".join(self.prefix + _last_redraw(line) + b"\n" for line in lines)
        self._open[target_fd] = _write_all(target_fd, text)


def _last_redraw(line: bytes) -> bytes:
    if line.endswith(b"\r"):
        line = line[:-1]
    return line.rpartition(b"\r")[2]


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
    env["WBG_DB"] = os.fspath(db_path.resolve())  # a server URL with its password
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
        conn: sqlite3.Connection | None,
        db_path: Path,
        command: Sequence[str],
        spec: RunSpec,
        *,
        capture: ScalarCapture | None,
        use_pty: bool | None = None,
        stdout_fd: int = 1,
        stderr_fd: int = 2,
        announce: Callable[[str], None] | None = None,
        sink: OutputSink | None = None,
        extra_env: Mapping[str, str] | None = None,
        stdin: int | None = None,
        warn: Callable[[str], None] | None = None,
        follow_wandb: bool = True,
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
        self.sink = sink
        self.extra_env = dict(extra_env or {})
        self.stdin = stdin  # None: ours
        self.warn = warn  # told once when recording fails (the child runs on regardless)
        self.own_group = False  # the child leads a process group of its own
        self.unavailable: str | None = None  # why ``conn`` is None (then: run unrecorded)
        self._started = 0.0  # monotonic time of the run's creation
        self._skip_warned = False
        self.follow_wandb = follow_wandb
        self.wandb: WandbFollower | None = None
        self._wandb_polled = 0.0
        self._tree_watched = 0.0
        self._follower: WandbFollower | None = None  # kept when reading W&B runs stopped
        self.tail = OutputTail()
        self.signalled: int | None = None
        self.proc: subprocess.Popen[bytes] | None = None
        self.run_id: str | None = None
        self.result: LaunchResult | None = None
        self._out_open = {stdout_fd: True, stderr_fd: True}
        self._streams: dict[int, int] = {}
        self._selector: selectors.BaseSelector | None = None
        self._saved_at = 0.0
        self._exited_at: float | None = None
        self._git: GitProbe | None = None
        self._pipes: dict[int, Any] = {}
        self._previous_winch: Any = None

    # --- start -----------------------------------------------------------------------
    def run(self) -> LaunchResult:
        """Create the run, start the child, pump its output until it ends, record it.

        Signal handlers are ours for the duration (forwarded to the child).
        """
        self.create()
        previous = {sig: signal.signal(sig, self._on_signal) for sig in FORWARDED_SIGNALS}
        try:
            if not self.start():
                assert self.result is not None
                return self.result
            self._pump()
            returncode = self.proc.wait() if self.proc else 1
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
        return self.finish(returncode)

    def create(self) -> str:
        """Record the run (state ``running``) and announce it; return its id."""
        self._git = GitProbe()
        try:
            if self.conn is None:  # the database could not even be opened
                raise sqlite3.OperationalError(self.unavailable or "no database")
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
        except sqlite3.OperationalError as exc:
            # A full disk, or the write lock held elsewhere past the busy timeout: the job
            # runs anyway, unrecorded (a tracker must not be what stops it).
            if self.warn is None:
                raise
            from wbg.ids import generate_id

            run_id, num = generate_id(), 0
            self.warn(f"cannot record this run ({exc}); the command runs unrecorded")
            # a disabled recorder never touches its connection (there may be none)
            self.recorder = Recorder(self.conn, num, background_only=True, enabled=False)  # type: ignore[arg-type]
        else:
            # Every write happens in the recorder's thread: passing the child's output
            # through never waits for the database (a full disk, a lock held elsewhere).
            self.recorder = Recorder(
                self.conn, num, background_only=True, on_problem=self._recording_failed
            )
        self.run_id = run_id
        self._started = time.monotonic()
        if self.announce:
            self.announce(run_id)
        return run_id

    def start(self) -> bool:
        """Start the child of the created run; False (and ``self.result``) if it cannot start.

        Installs no signal handler: the caller decides who forwards signals.
        """
        assert self.run_id is not None and self._git is not None
        env = child_env(self.run_id, self.spec, self.db_path)
        env.update(self.extra_env)
        try:
            self._streams = self._spawn(env)
        except OSError as exc:
            self.result = self._not_started(self.run_id, exc, self._git)
            return False
        self._record_start(self.run_id, self._git)
        self._saved_at = time.monotonic()
        if self.follow_wandb:
            self._start_following(env)
        return True

    def _start_following(self, env: Mapping[str, str]) -> None:
        from wbg.wandb_follow import WandbFollower

        assert self.proc is not None and self.run_id is not None
        self.wandb = self._follower = WandbFollower(
            self.run_id, self.recorder.num, self.recorder, env, self.proc.pid, time.time()
        )
        self._wandb_polled = time.monotonic()

    def _poll_wandb(self, final: bool = False, state: str = "", exit_code: int = 0) -> None:
        """Read the child's W&B runs; a failure stops that (noted), never the supervision."""
        follower = self.wandb
        if follower is None:
            return
        try:
            if final:
                follower.close(state, exit_code)
            else:
                follower.poll()
        except WbgError as exc:  # the wandb package missing here (MissingExtra)...
            self.wandb = None
            hint = f" ({exc.hint})" if exc.hint else ""
            follower.problems.append(f"{exc.message}{hint}")
        except Exception as exc:  # a W&B log we cannot make sense of must not stop wbg run
            self.wandb = None
            follower.problems.append(f"reading the W&B runs stopped: {exc!r}")

    def _spawn(self, env: dict[str, str]) -> dict[int, int]:
        """Start the child; return {our read fd: the fd its bytes go to}."""
        slave = None
        streams: dict[int, int] = {}
        stdout: int = subprocess.PIPE
        stderr: int = subprocess.PIPE
        # Outside an interactive terminal (CI, a scheduler, nohup, a background job) the
        # child leads a process group of its own, and signals sent to wbg go to that
        # whole group: a `bash -c '...'` child's workers get them too. In the terminal's
        # foreground group it stays in ours, where Ctrl-C and Ctrl-Z reach it directly
        # and the shell's job control keeps working.
        self.own_group = not terminal_sent_it()
        group: dict[str, Any] = {}
        if self.own_group:
            if sys.version_info >= (3, 11):
                group["process_group"] = 0
            else:  # pragma: no cover - Python 3.10
                group["preexec_fn"] = os.setpgrp
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
                self.command,
                env=env,
                stdin=self.stdin,
                stdout=stdout,
                stderr=stderr,
                close_fds=True,
                **group,
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
                self._previous_winch = signal.signal(
                    signal.SIGWINCH, lambda *_: _copy_winsize(self.stdout_fd, master)
                )
        # The pipes are closed through their file objects, so that a Popen collected later
        # never closes a descriptor number that has been reused meanwhile.
        for pipe, target in (
            (self.proc.stdout, self.stdout_fd),
            (self.proc.stderr, self.stderr_fd),
        ):
            if pipe is not None:
                streams[pipe.fileno()] = target
                self._pipes[pipe.fileno()] = pipe
        return streams

    def _record_start(self, run_id: str, git: GitProbe) -> None:
        commit, dirty = git.result()
        assert self.proc is not None
        pid = self.proc.pid
        self.recorder.defer(
            "start",
            lambda conn: runs.update_run(conn, run_id, pid=pid, git_commit=commit, git_dirty=dirty),
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
        self.recorder.defer(
            "end",
            lambda conn: runs.record_not_started(conn, run_id, code, reason, commit, dirty),
        )
        self.recorder.close()
        return LaunchResult(run_id, code, "failed", reason)

    # --- while running ---------------------------------------------------------------
    def _on_signal(self, signum: int, _frame: Any) -> None:
        self.signalled = signum
        if signum == signal.SIGINT and not self.own_group and terminal_sent_it():
            return  # the terminal sent Ctrl-C to our whole process group, child included
        self.send(signum)

    def send(self, signum: int) -> None:
        """Signal the child: its whole process group when it has one of its own."""
        proc = self.proc
        if proc is None or proc.returncode is not None:
            return
        with contextlib.suppress(ProcessLookupError, PermissionError):
            if self.own_group:
                os.killpg(proc.pid, signum)
            else:
                proc.send_signal(signum)

    def _recording_failed(self, message: str) -> None:
        if self.warn is not None:
            self.warn(
                f"cannot record run {self.run_id} for now ({message}); the command runs on, "
                "its output still passes through, and wbg keeps trying"
            )

    def register(self, selector: selectors.BaseSelector) -> None:
        """Watch the child's output in ``selector`` (key data: this supervisor)."""
        self._selector = selector
        for fd in self._streams:
            os.set_blocking(fd, False)
            selector.register(fd, selectors.EVENT_READ, self)

    def read(self, fd: int) -> None:
        """Read what is ready on ``fd`` (one of ours) and pass it on."""
        try:
            data = os.read(fd, READ_SIZE)
        except BlockingIOError:
            return
        except OSError as exc:  # EIO: the pty's other side is closed
            if exc.errno != errno.EIO:
                raise
            data = b""
        if not data:
            self._close_stream(fd)
            return
        self._output(data, self._streams[fd])

    def _close_stream(self, fd: int) -> None:
        if self._selector is not None:
            self._selector.unregister(fd)
        pipe = self._pipes.pop(fd, None)
        if pipe is not None:
            pipe.close()
        else:
            os.close(fd)
        target = self._streams.pop(fd)
        if self.sink is not None and target not in self._streams.values():
            self.sink.close(target)

    def tick(self) -> bool:
        """Save the output tail now and then; True once the child's output is done.

        Done: every stream is closed, or the child has exited and a grandchild still holds
        the output open after a short drain (then it is closed here).
        """
        now = time.monotonic()
        if self.tail.changed and now - self._saved_at >= OUTPUT_SAVE_INTERVAL_S:
            self._save_output()
            self._saved_at = now
        if self.wandb is not None:
            if now - self._wandb_polled >= WANDB_POLL_S:
                self._poll_wandb()
                self._wandb_polled = self._tree_watched = time.monotonic()
            elif now - self._tree_watched >= TREE_WATCH_S:
                self.wandb.watch_tree()
                self._tree_watched = now
        if not self._streams:
            return True
        if self.proc is not None and self.proc.poll() is not None:
            self._exited_at = self._exited_at or now
            if now - self._exited_at > 0.5:
                self.close_output()
                return True
        return False

    def close_output(self) -> None:
        """Stop reading the child's output (what is unread is dropped)."""
        for fd in list(self._streams):
            self._close_stream(fd)

    def _pump(self) -> None:
        selector = selectors.DefaultSelector()
        self.register(selector)
        while True:
            for key, _ in selector.select(timeout=0.2):
                self.read(key.fd)
            if self.tick():
                break
        selector.close()

    def _output(self, data: bytes, target_fd: int) -> None:
        if self.sink is not None:
            self.sink.write(data, target_fd)
        elif self._out_open[target_fd]:
            self._out_open[target_fd] = _write_all(target_fd, data)
        self.tail.add(data)
        if self.capture is not None:
            self._captured(self.capture.feed(data, target_fd))

    def _captured(self, points: list[tuple[int, str, float]]) -> None:
        capture = self.capture
        if capture is not None and capture.skipped and not self._skip_warned:
            self._skip_warned = True
            if self.warn is not None:
                self.warn(f"output lines skipped as metrics: {capture.skip_reason}")
        if points and self.wandb is not None and self.wandb.shadowed:
            # W&B logged these numbers itself: its values are kept, not the printed ones
            points = [point for point in points if point[1] not in self.wandb.shadowed]
        if points:
            now = time.time()
            num = self.recorder.num
            self.recorder.add([(num, step, key, value, now) for step, key, value in points])

    def _save_output(self) -> None:
        # Only the new bytes are written (a page; the oldest pages go past 1 MiB), so the
        # kept output costs about its own volume, not a rewrite of 1 MiB every 5 s. While
        # writes fail, no pages queue up: the end writes the whole tail anyway.
        if self.recorder.failing is not None:
            return
        start, data = self.tail.unsaved()
        num = self.recorder.num
        self.recorder.defer(
            f"output-{start}", lambda conn: runs.append_output(conn, num, start, data)
        )

    # --- end -------------------------------------------------------------------------
    def finish(self, returncode: int) -> LaunchResult:
        """Record the outcome of the exited child (``returncode`` as from ``Popen``)."""
        assert self.run_id is not None
        if self._previous_winch is not None:
            signal.signal(signal.SIGWINCH, self._previous_winch)
            self._previous_winch = None
        self.result = self._finish(self.run_id, self.recorder.num, returncode)
        return self.result

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
        self._poll_wandb(final=True, state=state, exit_code=exit_code)
        tail, truncated = self.tail.value(), self.tail.is_truncated
        duration = time.monotonic() - self._started
        self.recorder.defer("output", lambda conn: runs.set_output(conn, num, tail, truncated))
        self.recorder.defer(
            "end",
            lambda conn: runs.finish_run(
                conn, run_id, state=state, exit_code=exit_code, duration=duration
            ),
        )
        lost = None
        if not self.recorder.enabled:
            pass  # unrecorded from the start: said so then
        elif not self.recorder.close():
            lost = self.recorder.dropped
            if self.warn is not None:
                self.warn(
                    f"run {run_id} could not be recorded completely "
                    f"({self.recorder.failing}): {lost} captured points and its end were "
                    "not stored"
                )
        elif self.recorder.dropped and self.warn is not None:
            self.warn(f"run {run_id}: {self.recorder.dropped} captured points were not stored")
        problems = list(self._follower.problems) if self._follower is not None else []
        return LaunchResult(run_id, exit_code, state, lost=lost, problems=problems)


def terminal_sent_it() -> bool:
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
    conn: sqlite3.Connection | None,
    db_path: Path,
    command: Sequence[str],
    spec: RunSpec,
    *,
    capture: ScalarCapture | None = None,
    use_pty: bool | None = None,
    announce: Callable[[str], None] | None = None,
    stdout_fd: int = 1,
    stderr_fd: int = 2,
    warn: Callable[[str], None] | None = None,
    unavailable: str | None = None,
) -> LaunchResult:
    """Run ``command`` as a recorded run; return its id, exit code and state.

    The child's output goes to ``stdout_fd``/``stderr_fd`` (default: ours). ``conn`` None
    (with the reason in ``unavailable``, and ``warn`` given): the database cannot be
    written for now, and the command runs unrecorded.
    """
    sys.stdout.flush()
    sys.stderr.flush()
    supervisor = Supervisor(
        conn,
        db_path,
        command,
        spec,
        capture=capture,
        use_pty=use_pty,
        announce=announce,
        stdout_fd=stdout_fd,
        stderr_fd=stderr_fd,
        warn=warn,
    )
    supervisor.unavailable = unavailable
    return supervisor.run()
