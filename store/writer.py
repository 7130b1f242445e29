"""Buffered, batched writes of one run's history and summary (docs/design.md, "Recording").

Producers (``Run.log`` in the Python API, scalar capture in ``wbg run``) append to an
in-memory buffer. The producer itself writes the buffer, in one short transaction, when
``BATCH_POINTS`` points are waiting or when the oldest one is ``FLUSH_INTERVAL_S`` old; a
background thread writes it when the producer has gone quiet. So at most about a second
of data is at risk, and memory is bounded by the batch, not by the length of the run.

Why the producer writes and not a thread: Python's sqlite3 releases the GIL around each
row it steps, and a writer thread competing with a busy training loop for the GIL gets
one row per switch interval (5 ms). Writing a batch in the producer costs the same CPU and
none of that convoy; the background thread only handles the few points of a quiet period.
(``wbg run`` is the exception: its producer is the loop that passes the child's output
through, which must never wait for the database, so there the thread does every write.)

A failed write never reaches the producer (README "When writing fails"):

- a batch SQLite refuses for what it holds is stored without the points it cannot take
  (an integer beyond 64 bits becomes a float, see ``runs.write_history``); it is never
  retried and never holds up the points after it;
- a write that fails for a while (a full disk, the write lock held by another process
  past the busy timeout, an I/O error) keeps the buffer and the background thread retries
  it every ``RETRY_INTERVAL_S``; the producer stops trying, so it never waits on it. The
  buffer is bounded: beyond ``MAX_PENDING_POINTS`` the oldest unwritten points are dropped
  and counted in ``dropped``. ``on_problem`` is called once, with the first error.

Timers use the monotonic clock: a wall clock stepped back neither stalls nor hurries a
flush. Every flush, and every ``HEARTBEAT_INTERVAL_S`` without one, writes the run's
heartbeat (``runs.heartbeat``), which readers use to tell a live run from a crashed one.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import sys
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

from wbg import runs, values
from wbg.db import transaction
from wbg.engine import batched

FLUSH_INTERVAL_S = 1.0
BATCH_POINTS = 50_000
MAX_PENDING_POINTS = 4 * BATCH_POINTS
RETRY_INTERVAL_S = 1.0
HEARTBEAT_INTERVAL_S = runs.HEARTBEAT_INTERVAL_S

T = TypeVar("T")

# The name of the deferred write that records a run's end (``Recorder.defer``).
FINAL = "finish"


class Recorder:
    """Writes one run's points and summary values in batches."""

    def __init__(
        self,
        conn: sqlite3.Connection,
        num: int,
        *,
        background_only: bool = False,
        on_problem: Callable[[str], None] | None = None,
        enabled: bool = True,
    ) -> None:
        self.enabled = enabled  # False: a run that could not be created; nothing is kept
        self.conn = conn
        self.num = num
        self.background_only = background_only  # the producer never writes (wbg run)
        self.on_problem = on_problem
        self._lock = threading.Lock()  # guards the buffers
        self._write_lock = threading.Lock()  # one user of the connection at a time
        self._points: list[runs.Point] = []
        self._summary: dict[str, Any] = {}  # explicit values, over the last logged ones
        self._deferred: dict[str, Callable[[sqlite3.Connection], Any]] = {}
        self._unbatchable: set[str] = set()  # names of deferred writes never batched
        self._oldest: float | None = None  # monotonic time of the oldest unwritten item
        self._beat_at = time.monotonic()  # creating the run wrote the first heartbeat
        self._tried_at = 0.0  # monotonic time of the last failed write
        self.last_values: dict[str, Any] = {}  # every summary value written so far
        self.keys_hint: set[str] | None = None  # set by a producer that knows its keys
        # Keys whose summary is not their last value (define_metric): the producer sets it.
        self.summary_skip: set[str] = set()
        self.dropped = 0  # points that could not be stored (refused, or buffer overflow)
        self.failing: BaseException | None = None  # the write problem in progress, if any
        self._warned = False
        self._pid = os.getpid()
        self._warned_strings: set[str] = set()  # keys logged as strings, reported
        self._closed = False
        self._tick_lock = threading.RLock()  # held while the ticker looks after this run
        if enabled:
            _ticker.add(self)

    @property
    def pending(self) -> int:
        """Points queued and not yet written."""
        return len(self._points)

    def add(
        self,
        points: list[runs.Point],
        summary: Mapping[str, Any] | None = None,
        now: float | None = None,
    ) -> None:
        """Queue history points and explicit summary values (the last value of a key wins).

        The summary also takes the last value of each logged key, worked out per batch.
        ``now`` is accepted for callers that pass the points' time; the flush timer runs on
        the monotonic clock.
        """
        if not self.enabled:
            return
        tick = time.monotonic()
        with self._lock:
            self._points += points
            if summary:
                self._summary.update(summary)
            if self._oldest is None:
                self._oldest = tick
            excess = len(self._points) - MAX_PENDING_POINTS
            if excess > 0:  # only while writes fail: the oldest unwritten go first
                del self._points[:excess]
                self.dropped += excess
            due = len(self._points) >= BATCH_POINTS or tick - self._oldest >= FLUSH_INTERVAL_S
        if not due:
            return
        if self.background_only or self.failing is not None:
            _ticker.wake.set()
        else:
            self._write(blocking=False)

    def defer(
        self,
        name: str,
        write: Callable[[sqlite3.Connection], Any],
        wake: bool = True,
        batchable: bool = True,
    ) -> None:
        """Queue ``write(conn)`` for the next flush's transaction (a later one of the same
        ``name`` replaces it): a write the producer must not wait for. ``wake=False`` when
        the caller flushes next itself (a run's final state goes with its last points).
        ``batchable=False``: the flush that carries it is not sent as one batch (a write
        that catches an error of one of its statements and goes on: in a batch the error
        comes only when the batch is sent)."""
        if not self.enabled:
            return
        with self._lock:
            self._deferred[name] = write
            if not batchable:
                self._unbatchable.add(name)
            if self._oldest is None:
                self._oldest = time.monotonic()
        if wake:
            _ticker.wake.set()

    def warn_not_numbers(self, logged: Mapping[str, Any]) -> None:
        """Say once per key, on stderr, that a metric logged as a string is no number: a
        string that reads as a number, or one for a key logged as a number before (a
        string such as ``"train"`` for ``phase`` is a string on purpose and passes quietly).

        ``run.log({"acc": "0.6"})`` is kept in the summary only where the key holds no
        number yet (``runs.merge_summary``) and is never a history point; a user who meant
        a number learns it at once rather than from a plot that finds nothing.
        """
        for key, value in logged.items():
            if not isinstance(value, str) or key in self._warned_strings:
                continue
            numeric_key = key in (self.keys_hint or ()) or values.is_number(
                self.last_values.get(key)
            )
            if numeric_key or _looks_numeric(value):
                self._warned_strings.add(key)
                with contextlib.suppress(Exception):  # never raise into the training loop
                    sys.stderr.write(
                        f"wbg: {key!r} was logged as a string ({value[:20]!r}), not a number: "
                        "it is no history point and never replaces a numeric summary value; "
                        "log float(value) to chart it\n"
                    )

    def execute(self, write: Callable[[sqlite3.Connection], T]) -> T:
        """Run ``write(conn)`` in a transaction, serialised with the batch writes."""
        with self._write_lock, transaction(self.conn):
            return write(self.conn)

    def flush(self) -> bool:
        """Write everything queued so far; False when that failed (it stays queued)."""
        return self._write(blocking=True)

    def _write(self, blocking: bool) -> bool:
        if not self._write_lock.acquire(blocking=blocking):
            return False  # the background thread is writing: it takes these too
        try:
            with self._lock:
                points, self._points = self._points, []
                summary, self._summary = self._summary, {}
                deferred, self._deferred = self._deferred, {}
                self._oldest = None
            update = self._last_values(points)
            for key, value in summary.items():
                # as in runs.merge_summary: a number logged in this batch stays
                if not isinstance(value, str) or not values.is_number(update.get(key)):
                    update[key] = value

            def store(conn: sqlite3.Connection) -> tuple[int, list[str]]:
                with transaction(conn):
                    refused = runs.write_history(conn, points)
                    kept = runs.merge_summary(conn, self.num, update)
                    for write in deferred.values():
                        write(conn)
                    if FINAL not in deferred:  # an ended run needs no sign of life
                        runs.heartbeat(conn, self.num, self._pid)
                return refused, kept

            try:
                if not self._unbatchable.intersection(deferred):
                    refused, kept = batched(self.conn, store, len(points))
                else:
                    refused, kept = store(self.conn)
            except sqlite3.OperationalError as exc:  # full, locked, I/O: try again later
                with self._lock:
                    self._points[:0] = points
                    self._summary = {**summary, **self._summary}
                    self._deferred = {**deferred, **self._deferred}
                    self._oldest = self._oldest or time.monotonic()
                self._problem(exc)
                return False
            except (sqlite3.Error, ValueError, TypeError, OverflowError) as exc:
                # What the batch holds is refused: it is dropped, never retried.
                self.dropped += len(points)
                self._problem(exc)
                self.failing = None
                return False
            except BaseException:  # KeyboardInterrupt in the producer: keep them
                with self._lock:
                    self._points[:0] = points
                    self._summary = {**summary, **self._summary}
                    self._deferred = {**deferred, **self._deferred}
                    self._oldest = self._oldest or time.monotonic()
                raise
            self.dropped += refused
            for key in kept:
                update.pop(key, None)  # a string that did not replace a number
            self.failing = None
            self._beat_at = time.monotonic()
            self.last_values.update(update)
            return True
        finally:
            self._write_lock.release()

    def _problem(self, exc: BaseException) -> None:
        self.failing = exc
        if not self._warned:
            self._warned = True
            if self.on_problem is not None:
                self.on_problem(str(exc))

    def summary_now(self) -> dict[str, Any]:
        """The summary as it will be once the buffer is written (read without writing)."""
        with self._lock:
            pending = self._last_values(self._points)
            explicit = dict(self._summary)
        current = {**self.last_values, **pending}
        for key, value in explicit.items():  # the rule of the flush: a string never
            if not isinstance(value, str) or not values.is_number(current.get(key)):
                current[key] = value  # replaces a number
        return current

    def _last_values(self, points: list[runs.Point]) -> dict[str, Any]:
        """The last value of each key in ``points`` (they are in logging order).

        With ``keys_hint`` (every key the producer has logged, a superset of the batch's),
        the walk back from the end stops as soon as each of those keys has been found.
        """
        wanted = len(self.keys_hint) if self.keys_hint is not None else -1
        last: dict[str, Any] = {}
        for point in reversed(points):
            key = point[2]
            if key not in last:
                last[key] = point[3]
                if len(last) == wanted:
                    break
        for key in self.summary_skip:
            last.pop(key, None)
        return last

    def close(self) -> bool:
        """Stop the background thread and write what is left (one more attempt).

        False when something could not be written; ``pending`` then says how many points
        (they are counted in ``dropped`` too).
        """
        self._closed = True
        _ticker.remove(self)
        with self._tick_lock:  # a look the ticker already started at this run has ended
            pass
        if not self.enabled:
            return True
        written = self.flush()
        if not written:
            self.dropped += len(self._points)
        return written

    def _tick(self) -> None:
        """What the ticker does for this run every half second: write what a quiet
        producer left, retry a failed write, keep the heartbeat fresh."""
        with self._tick_lock:
            if self._closed or self._pid != os.getpid():
                return
            now = time.monotonic()
            oldest = self._oldest
            if self.failing is not None:
                due = now - self._tried_at >= RETRY_INTERVAL_S
            else:
                due = (
                    (oldest is not None and now - oldest >= FLUSH_INTERVAL_S)
                    or (self.background_only and (len(self._points) >= BATCH_POINTS))
                    or bool(self._deferred)
                    or now - self._beat_at >= HEARTBEAT_INTERVAL_S
                )
            if due and not self._write(blocking=True):
                self._tried_at = time.monotonic()  # the next retry is a second away


def _looks_numeric(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


class _Ticker:
    """One background thread per process looks after every open recorder.

    A thread per run cost more than the rest of a short run together (a sweep that starts
    thousands of runs in one process); one thread started once costs nothing per run.
    """

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.wake = threading.Event()
        self.recorders: set[Recorder] = set()
        self.pid: int | None = None

    def add(self, recorder: Recorder) -> None:
        with self.lock:
            if self.pid != os.getpid():  # first use, or a forked child: no thread here yet
                self.pid = os.getpid()
                self.recorders = set()
                self.wake = threading.Event()
                threading.Thread(target=self._loop, name="wbg-writer", daemon=True).start()
            self.recorders.add(recorder)

    def forked(self) -> None:
        # The child has no ticker thread, and a lock the parent's thread held at the fork
        # would stay held: start afresh at the child's first recorder.
        self.lock = threading.Lock()
        self.pid = None

    def remove(self, recorder: Recorder) -> None:
        with self.lock:
            self.recorders.discard(recorder)

    def _loop(self) -> None:
        pid = os.getpid()
        while self.pid == pid:
            self.wake.wait(FLUSH_INTERVAL_S / 2)
            self.wake.clear()
            with self.lock:
                recorders = list(self.recorders)
            for recorder in recorders:
                recorder._tick()


_ticker = _Ticker()
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_ticker.forked)
