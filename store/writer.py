"""Buffered, batched writes of one run's history and summary (SPEC §4).

Producers (``Run.log`` in the Python API, scalar capture in ``wbg run``) append to an
in-memory buffer. The producer itself writes the buffer, in one short transaction, when
``BATCH_POINTS`` points are waiting or when the oldest one is ``FLUSH_INTERVAL_S`` old; a
background thread writes it when the producer has gone quiet. So at most about a second
of data is at risk, and memory is bounded by the batch, not by the length of the run.

Why the producer writes and not a thread: Python's sqlite3 releases the GIL around each
row it steps, and a writer thread competing with a busy training loop for the GIL gets
one row per switch interval (5 ms). Writing a batch in the producer costs the same CPU and
none of that convoy; the background thread only handles the few points of a quiet period.
"""

from __future__ import annotations

import contextlib
import sqlite3
import sys
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

from wbg import runs, values

FLUSH_INTERVAL_S = 1.0
BATCH_POINTS = 50_000

T = TypeVar("T")


class Recorder:
    """Writes one run's points and summary values in batches."""

    def __init__(self, conn: sqlite3.Connection, num: int) -> None:
        self.conn = conn
        self.num = num
        self._lock = threading.Lock()  # guards the buffers
        self._write_lock = threading.Lock()  # one user of the connection at a time
        self._points: list[runs.Point] = []
        self._summary: dict[str, Any] = {}  # explicit values, over the last logged ones
        self._oldest: float | None = None  # time.time() of the oldest unwritten item
        self.last_values: dict[str, Any] = {}  # every summary value written so far
        self.keys_hint: set[str] | None = None  # set by a producer that knows its keys
        self._warned: set[str] = set()  # keys logged as strings, already reported
        self._wake = threading.Event()
        self._closed = False
        self._error: BaseException | None = None
        self._thread: threading.Thread | None = None

    def add(
        self,
        points: list[runs.Point],
        summary: Mapping[str, Any] | None = None,
        now: float | None = None,
    ) -> None:
        """Queue history points and explicit summary values (the last value of a key wins).

        The summary also takes the last value of each logged key, worked out per batch.
        """
        if now is None:
            now = time.time()
        with self._lock:
            self._points += points
            if summary:
                self._summary.update(summary)
            if self._oldest is None:
                self._oldest = now
            due = len(self._points) >= BATCH_POINTS or now - self._oldest >= FLUSH_INTERVAL_S
        if due:
            self.flush()
        elif self._thread is None:
            self._start()

    def warn_not_numbers(self, logged: Mapping[str, Any]) -> None:
        """Say once per key, on stderr, that a metric logged as a string is no number: a
        string that reads as a number, or one for a key logged as a number before (a
        string such as ``"train"`` for ``phase`` is a string on purpose and passes quietly).

        ``run.log({"acc": "0.6"})`` is kept in the summary only where the key holds no
        number yet (``runs.merge_summary``) and is never a history point; a user who meant
        a number learns it at once rather than from a plot that finds nothing.
        """
        for key, value in logged.items():
            if not isinstance(value, str) or key in self._warned:
                continue
            numeric_key = key in (self.keys_hint or ()) or values.is_number(
                self.last_values.get(key)
            )
            if numeric_key or _looks_numeric(value):
                self._warned.add(key)
                with contextlib.suppress(Exception):  # never raise into the training loop
                    sys.stderr.write(
                        f"wbg: {key!r} was logged as a string ({value[:20]!r}), not a number: "
                        "it is no history point and never replaces a numeric summary value; "
                        "log float(value) to chart it\n"
                    )

    def execute(self, write: Callable[[sqlite3.Connection], T]) -> T:
        """Run ``write(conn)`` in a transaction, serialised with the batch writes."""
        with self._write_lock, runs.transaction(self.conn):
            return write(self.conn)

    def flush(self) -> None:
        """Write everything queued so far; re-raise a failure of the background writer."""
        with self._write_lock:
            with self._lock:
                points, self._points = self._points, []
                summary, self._summary = self._summary, {}
                self._oldest = None
            if points or summary:
                update = self._last_values(points)
                for key, value in summary.items():
                    # as in runs.merge_summary: a number logged in this batch stays
                    if values.is_number(value) or not values.is_number(update.get(key)):
                        update[key] = value
                try:
                    with runs.transaction(self.conn):
                        runs.write_history(self.conn, points)
                        for key in runs.merge_summary(self.conn, self.num, update):
                            del update[key]
                except BaseException:
                    with self._lock:  # keep them for a later attempt
                        self._points[:0] = points
                        self._summary = {**summary, **self._summary}
                        self._oldest = self._oldest or time.time()
                    raise
                self.last_values.update(update)
        if self._error is not None:
            error, self._error = self._error, None
            raise error

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
        return last

    def close(self) -> None:
        """Stop the background thread and write what is left."""
        self._closed = True
        self._wake.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join()
        self.flush()

    def _start(self) -> None:
        with self._lock:
            if self._thread is None and not self._closed:
                self._thread = threading.Thread(target=self._loop, name="wbg-writer", daemon=True)
                self._thread.start()

    def _loop(self) -> None:
        while not self._closed:
            self._wake.wait(FLUSH_INTERVAL_S / 2)
            if self._closed:
                return
            oldest = self._oldest
            if oldest is not None and time.time() - oldest >= FLUSH_INTERVAL_S:
                try:
                    self.flush()
                except sqlite3.Error as exc:  # reported to the producer at its next flush
                    self._error = exc


def _looks_numeric(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True
