"""Batches: a grid of values times repeats, launched as runs of one group (``wbg run --grid``).

A plan is made (and checked) before anything starts: ``--grid KEY=V1,V2`` (or ``KEY=A..B``,
an inclusive integer range) axes are crossed in the order given, the last axis varying
fastest, and each combination is repeated ``repeat`` times. Every trial is one run:

- its config is the base config with the combination's values (typed like ``-c`` values;
  a grid value wins over the same key from ``-c`` or a config file), plus ``repeat`` when
  there is more than one repeat;
- ``{KEY}`` and ``{repeat}`` in the command's arguments (and in ``--name``) are replaced by
  the value as typed (a quoted string loses its quotes); ``{{`` and ``}}`` are literal
  braces; a ``{name}`` that is no grid key is an error, but braces around anything that
  is not a name (JSON, Python dicts) are left alone;
- the child's environment has ``WBG_PARAM_<KEY>`` (upper case, other characters than
  letters and digits as ``_``) for each grid key and ``WBG_PARAM_REPEAT``.

The runner starts up to ``parallel`` children at a time and pumps all their output in one
selector loop. A stop (Ctrl-C, SIGTERM, SIGHUP) stops launching; running children get the
signal (Ctrl-C typed at the terminal already reached them), then SIGTERM after
``STOP_GRACE_S`` and SIGKILL after as long again; a repeated Ctrl-C escalates at once.
"""

from __future__ import annotations

import contextlib
import copy
import itertools
import os
import re
import selectors
import signal
import subprocess
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from wbg import values
from wbg.capture import ScalarCapture
from wbg.errors import InvalidInput
from wbg.launch import (
    FORWARDED_SIGNALS,
    LaunchResult,
    LinePrefixer,
    RunSpec,
    Supervisor,
    terminal_sent_it,
)

STOP_GRACE_S = 5.0
REPEAT_KEY = "repeat"
PLACEHOLDER = re.compile(r"\{\{|\}\}|\{([A-Za-z_][\w.\-]*)\}")
INT_RANGE = re.compile(r"^([-+]?\d+)\.\.([-+]?\d+)$")
NUMBER_RANGE = re.compile(r"^[-+]?[\d.]+(?:[eE][-+]?\d+)?\.\.[-+]?[\d.]+(?:[eE][-+]?\d+)?$")
# ``0-4``: a range typed with a dash, as in shells and slurm arrays; wbg's is ``0..4``.
DASH_RANGE = re.compile(r"^([-+]?\d+)-(\d+)$")
GRID_HINT = "write --grid KEY=V1,V2,... or --grid KEY=A..B (integers, A <= B)"


@dataclass(frozen=True)
class GridValue:
    """One value of a grid axis: typed for the config, as text for arguments and env."""

    value: Any
    text: str


@dataclass(frozen=True)
class Axis:
    key: str
    values: tuple[GridValue, ...]


@dataclass
class Trial:
    """One planned run of a batch."""

    index: int
    label: str  # "lr=0.1,seed=1#0": the combination and the repeat
    params: dict[str, GridValue]
    repeat: int
    command: list[str]
    spec: RunSpec
    env: dict[str, str] = field(default_factory=dict)


def split_values(text: str) -> list[str]:
    """Split a value list at the commas outside brackets and quotes: ``1,[2,3],"a,b"``."""
    items: list[str] = []
    depth = 0
    quote: str | None = None
    current: list[str] = []
    for char in text:
        if quote:
            if char == quote:
                quote = None
        elif char in "\"'":
            quote = char
        elif char in "[{(":
            depth += 1
        elif char in "]})":
            depth = max(depth - 1, 0)
        elif char == "," and depth == 0:
            items.append("".join(current))
            current = []
            continue
        current.append(char)
    items.append("".join(current))
    return items


def _grid_value(raw: str) -> GridValue:
    text = raw.strip()
    value = values.parse_value(text)
    return GridValue(value, value if isinstance(value, str) else text)


def parse_axis(item: str) -> Axis:
    """``"lr=0.1,0.01"`` or ``"fold=0..4"`` -> an axis with typed values."""
    key, sep, raw = item.partition("=")
    key = key.strip()
    if not sep:
        raise InvalidInput(f"malformed --grid {item!r}: expected KEY=V1,V2,...", hint=GRID_HINT)
    values.check_key(key, "grid key")
    if key == REPEAT_KEY:
        raise InvalidInput(
            f"--grid {REPEAT_KEY}=... is reserved", hint="use --repeat N; {repeat} is the index"
        )
    if not raw.strip():
        raise InvalidInput(f"--grid {key}= lists no values", hint=GRID_HINT)
    found: list[GridValue] = []
    for part in split_values(raw):
        text = part.strip()
        if not text:
            raise InvalidInput(f"--grid {item!r} has an empty value", hint=GRID_HINT)
        match = INT_RANGE.match(text)
        if match:
            low, high = int(match[1]), int(match[2])
            if low > high:
                raise InvalidInput(
                    f"--grid {key}={text}: the range is empty ({low} > {high})",
                    hint=f"write the smaller end first: --grid {key}={high}..{low}",
                )
            found += [GridValue(n, str(n)) for n in range(low, high + 1)]
        elif dash := DASH_RANGE.match(text):
            raise InvalidInput(
                f"--grid {key}={text}: a range is written with two dots",
                hint=f"--grid {key}={dash[1]}..{dash[2]} (or quote the text: "
                f"--grid '{key}=\"{text}\"')",
            )
        elif NUMBER_RANGE.match(text):
            raise InvalidInput(
                f"--grid {key}={text}: a range A..B is of integers",
                hint=f"list the values instead: --grid {key}=V1,V2,...",
            )
        else:
            found.append(_grid_value(text))
    seen: set[str] = set()
    for grid_value in found:
        identity = values.dumps([type(grid_value.value).__name__, grid_value.value])
        if identity in seen:
            raise InvalidInput(f"--grid {key} lists {grid_value.text} twice", hint=GRID_HINT)
        seen.add(identity)
    return Axis(key, tuple(found))


def parse_grid(items: Sequence[str]) -> list[Axis]:
    """Parse every ``--grid`` option; a key may be given only once."""
    axes: list[Axis] = []
    for item in items:
        axis = parse_axis(item)
        if any(known.key == axis.key for known in axes):
            raise InvalidInput(
                f"--grid {axis.key} is given twice",
                hint=f"list all its values in one option: --grid {axis.key}=V1,V2,...",
            )
        axes.append(axis)
    return axes


def param_env_name(key: str) -> str:
    """``optimizer.lr`` -> ``WBG_PARAM_OPTIMIZER_LR``."""
    return "WBG_PARAM_" + re.sub(r"[^A-Za-z0-9]", "_", key).upper()


def placeholders(text: str) -> list[str]:
    """The ``{name}`` placeholders in ``text`` (``{{``/``}}`` are literal braces)."""
    return [match[1] for match in PLACEHOLDER.finditer(text) if match[1]]


def substitute(text: str, replacements: Mapping[str, str]) -> str:
    def replace_one(match: re.Match[str]) -> str:
        if match[0] == "{{":
            return "{"
        if match[0] == "}}":
            return "}"
        return replacements[match[1]]

    return PLACEHOLDER.sub(replace_one, text)


def _check_placeholders(texts: Sequence[str], known: Sequence[str], where: str) -> None:
    for text in texts:
        for match in PLACEHOLDER.finditer(text):
            name = match[1]
            if name and name not in known:
                shown = text
                if len(text) > 60:  # a script given with -c: show where the name is
                    start, end = max(match.start() - 20, 0), min(match.end() + 20, len(text))
                    shown = ("..." if start else "") + text[start:end] + "..."
                listed = ", ".join("{" + key + "}" for key in known)
                raise InvalidInput(
                    f"{where} {shown!r} uses {{{name}}}, which is no grid key",
                    hint=f"known: {listed}; write {{{{ and }}}} for literal braces",
                )


_SCRIPT_BYTES = 1 << 20  # files larger than this are not read for grid keys


def unread_keys(command: Sequence[str], axes: Sequence[Axis]) -> list[tuple[str, list[str]]]:
    """Grid keys that nothing visibly reads: no ``{KEY}`` in the command, and neither the
    key's name nor ``WBG_PARAM_<KEY>`` in the command or in a file it names (the script,
    up to 1 MiB). Such a key changes only the config, so its runs may well be the same;
    returns (key, the files looked at)."""
    used = {name for arg in command for name in placeholders(arg)}
    files = [arg for arg in command if _small_file(arg)]
    texts = list(command)
    for path in files:
        with contextlib.suppress(OSError):
            texts.append(Path(path).read_text(encoding="utf-8", errors="replace"))
    text = "\n".join(texts)
    found = []
    for axis in axes:
        if axis.key in used:
            continue
        name = re.escape(axis.key.rsplit(".", 1)[-1])
        if re.search(rf"\b{name}\b", text) or param_env_name(axis.key) in text:
            continue
        found.append((axis.key, files))
    return found


def _small_file(arg: str) -> bool:
    try:
        path = Path(arg)
        return path.is_file() and path.stat().st_size <= _SCRIPT_BYTES
    except (OSError, ValueError):
        return False


def plan(
    command: Sequence[str],
    axes: Sequence[Axis],
    repeat: int,
    spec: RunSpec,
) -> list[Trial]:
    """Every combination of the axes times ``repeat``: the runs of the batch, in order.

    ``spec`` is the base run (group, job_type, tags, config...); its ``name``, when given,
    may use placeholders too. Raises ``InvalidInput`` before anything is started.
    """
    if repeat < 1:
        raise InvalidInput(f"--repeat must be at least 1, not {repeat}")
    known = [axis.key for axis in axes] + [REPEAT_KEY]
    _check_placeholders(command, known, "argument")
    if spec.name:
        _check_placeholders([spec.name], known, "--name")
    trials: list[Trial] = []
    combinations = itertools.product(*(axis.values for axis in axes))
    for combination in combinations:
        params = {axis.key: value for axis, value in zip(axes, combination, strict=True)}
        for index in range(repeat):
            trials.append(_trial(len(trials), command, params, index, repeat, spec))
    names = [trial.spec.name for trial in trials]
    if spec.name and len(set(names)) < len(names):
        for trial in trials:  # the same name for several runs: tell them apart
            trial.spec.name = f"{trial.spec.name}[{trial.label}]"
    return trials


def _trial(
    index: int,
    command: Sequence[str],
    params: dict[str, GridValue],
    repeat_index: int,
    repeat: int,
    spec: RunSpec,
) -> Trial:
    texts = {key: value.text for key, value in params.items()}
    texts[REPEAT_KEY] = str(repeat_index)
    label = ",".join(f"{key}={value.text}" for key, value in params.items())
    if repeat > 1:
        label = f"{label}#{repeat_index}" if label else f"{REPEAT_KEY}={repeat_index}"
    config = copy.deepcopy(dict(spec.config or {}))
    for key, value in params.items():
        values.set_dotted(config, key, copy.deepcopy(value.value))
    if repeat > 1:
        config[REPEAT_KEY] = repeat_index
    if spec.name:
        name: str | None = substitute(spec.name, texts)
    else:
        name = label or None
    env = {param_env_name(key): text for key, text in texts.items()}
    return Trial(
        index=index,
        label=label,
        params=params,
        repeat=repeat_index,
        command=[substitute(arg, texts) for arg in command],
        spec=replace(spec, name=name, config=config),
        env=env,
    )


# --- running a batch -----------------------------------------------------------------


@dataclass
class BatchResult:
    """What happened to each trial: a ``LaunchResult``, or None when it never started."""

    trials: list[Trial]
    results: list[LaunchResult | None]
    stop_signal: int | None = None

    @property
    def not_started(self) -> int:
        return sum(result is None for result in self.results)

    @property
    def exit_code(self) -> int:
        """0 only when every run finished with 0; else the first non-zero code (plan order).

        Trials skipped because of a stop signal and no failing run: 128 + the signal.
        """
        for result in self.results:
            if result is not None and result.exit_code != 0:
                return result.exit_code
        if self.not_started:
            return 128 + self.stop_signal if self.stop_signal else 1
        return 0


class BatchRunner:
    """Runs the trials of a plan, up to ``parallel`` at once, each as a supervised run.

    With ``prefix_output`` each child's lines are shown whole, prefixed by ``[run name]``,
    children write to pipes and read from /dev/null; without it the output passes through
    unchanged (on a pseudo-terminal when ours is one), which suits one run at a time.
    """

    def __init__(
        self,
        db_path: Path,
        trials: Sequence[Trial],
        *,
        parallel: int = 1,
        fail_fast: bool = False,
        prefix_output: bool = False,
        capture: Callable[[], ScalarCapture] | None = None,
        use_pty: bool | None = None,
        stdout_fd: int = 1,
        stderr_fd: int = 2,
        on_start: Callable[[Trial, str], None] | None = None,
        on_end: Callable[[Trial, LaunchResult], None] | None = None,
        on_stop: Callable[[int, int], None] | None = None,
        grace_s: float = STOP_GRACE_S,
        warn: Callable[[str], None] | None = None,
    ) -> None:
        self.db_path = db_path
        self.trials = list(trials)
        self.parallel = max(1, parallel)
        self.fail_fast = fail_fast
        self.prefix_output = prefix_output
        self.capture = capture
        self.use_pty = False if prefix_output else use_pty
        self.stdout_fd = stdout_fd
        self.stderr_fd = stderr_fd
        self.on_start = on_start
        self.on_end = on_end
        self.on_stop = on_stop  # (signal received, number of runs still running)
        self.grace_s = grace_s
        # told when a run cannot be recorded (its command runs on): as for one `wbg run`
        self.warn = warn
        self.results: list[LaunchResult | None] = [None] * len(self.trials)
        self.running: dict[Supervisor, Trial] = {}
        self.failed = False
        self.stop_signal: int | None = None
        self._stop_level = 0  # 1: the first signal, 2: SIGTERM sent, 3: SIGKILL sent
        self._stop_at = 0.0

    def run(self) -> BatchResult:
        previous = {sig: signal.signal(sig, self._on_signal) for sig in FORWARDED_SIGNALS}
        selector = selectors.DefaultSelector()
        pending = deque(self.trials)
        try:
            while pending or self.running:
                while pending and len(self.running) < self.parallel and self._launching():
                    self._start(pending.popleft(), selector)
                if not self.running:
                    if not self._launching():
                        break
                    continue
                for key, _ in selector.select(timeout=0.1):
                    key.data.read(key.fd)
                for supervisor in list(self.running):
                    proc = supervisor.proc
                    if supervisor.tick() and proc is not None and proc.poll() is not None:
                        self._end(supervisor, proc.returncode)
                self._escalate()
        finally:
            self._abandon()
            selector.close()
            for sig, handler in previous.items():
                signal.signal(sig, handler)
        return BatchResult(self.trials, self.results, self.stop_signal)

    def _launching(self) -> bool:
        return self.stop_signal is None and not (self.fail_fast and self.failed)

    def _start(self, trial: Trial, selector: selectors.BaseSelector) -> None:
        from wbg.db import connect
        from wbg.errors import DatabaseUnavailable

        env = dict(trial.env)
        if self.prefix_output and "PYTHONUNBUFFERED" not in os.environ:
            env["PYTHONUNBUFFERED"] = "1"  # lines as they are printed, not at exit
        conn, unavailable = None, None
        try:
            conn = connect(self.db_path)
        except DatabaseUnavailable as exc:  # full disk, I/O error, lock: the trial runs
            if self.warn is None:
                raise
            unavailable = exc.message
        supervisor = Supervisor(
            conn,
            self.db_path,
            trial.command,
            trial.spec,
            capture=self.capture() if self.capture else None,
            use_pty=self.use_pty,
            stdout_fd=self.stdout_fd,
            stderr_fd=self.stderr_fd,
            extra_env=env,
            # children running side by side must not fight over our input (as GNU parallel)
            stdin=subprocess.DEVNULL if self.prefix_output else None,
            warn=self.warn,
        )
        supervisor.unavailable = unavailable
        run_id = supervisor.create()
        if self.prefix_output:
            supervisor.sink = LinePrefixer(f"[{trial.spec.name or run_id}] ")
        if self.on_start:
            self.on_start(trial, run_id)
        if not supervisor.start():
            assert supervisor.result is not None
            self._record(trial, supervisor, supervisor.result)
            return
        supervisor.register(selector)
        self.running[supervisor] = trial
        if self.stop_signal is not None:  # the stop came while this one was starting
            supervisor.signalled = self.stop_signal
            self._send(supervisor, signal.SIGINT)

    def _end(self, supervisor: Supervisor, returncode: int) -> None:
        trial = self.running.pop(supervisor)
        self._record(trial, supervisor, supervisor.finish(returncode))

    def _record(self, trial: Trial, supervisor: Supervisor, result: LaunchResult) -> None:
        if supervisor.conn is not None:
            supervisor.conn.close()
        self.results[trial.index] = result
        if result.exit_code != 0:
            self.failed = True
        if self.on_end:
            self.on_end(trial, result)

    # --- stopping --------------------------------------------------------------------
    def _on_signal(self, signum: int, _frame: Any) -> None:
        if self.stop_signal is None:
            self.stop_signal = signum
            self._stop_level = 2 if signum == signal.SIGTERM else 1
            self._stop_at = time.monotonic()
            terminal = signum == signal.SIGINT and terminal_sent_it()
            for supervisor in list(self.running):
                supervisor.signalled = signum
                # Ctrl-C at the terminal has reached the children in our group already
                if not (terminal and not supervisor.own_group):
                    self._send(supervisor, signum)
            if self.on_stop:
                self.on_stop(signum, len(self.running))
        else:  # asked again: do not wait for the grace period
            self._stop_at = 0.0
            self._escalate()

    def _escalate(self) -> None:
        if self.stop_signal is None or self._stop_level >= 3:
            return
        now = time.monotonic()
        if now - self._stop_at < self.grace_s:
            return
        self._stop_level += 1
        self._stop_at = now
        sig = signal.SIGTERM if self._stop_level == 2 else signal.SIGKILL
        for supervisor in list(self.running):
            self._send(supervisor, sig)

    @staticmethod
    def _send(supervisor: Supervisor, sig: int) -> None:
        supervisor.send(sig)

    def _abandon(self) -> None:
        """After an unexpected error: leave no child running, record them as killed."""
        for supervisor in list(self.running):
            proc = supervisor.proc
            assert proc is not None
            supervisor.signalled = supervisor.signalled or signal.SIGKILL
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()
            returncode = proc.wait()
            with contextlib.suppress(Exception):
                supervisor.close_output()
                self._end(supervisor, returncode)


# --- resuming a batch ----------------------------------------------------------------------


def unfinished(conn: Any, trials: Sequence[Trial], keys: Sequence[str]) -> list[Trial]:
    """The trials that have no ``finished`` run in their group yet (``--resume``), matched
    by the values of the grid ``keys`` (and ``repeat``) in the runs' config, renumbered."""
    from wbg import query, runs

    spec = trials[0].spec
    done = {
        _identity(record["config"], keys)
        for record in runs.list_runs(
            conn, query.Filters(project=spec.project, group=spec.group, state="finished")
        )
    }
    left = [trial for trial in trials if _identity(trial.spec.config or {}, keys) not in done]
    return [replace(trial, index=i) for i, trial in enumerate(left)]


def _identity(config: Mapping[str, Any], keys: Sequence[str]) -> str:
    return values.dumps([values.get_dotted(config, key) for key in keys])


# --- the table printed at the end of a batch ----------------------------------------------


def batch_rows(
    conn: Any, outcome: BatchResult, keys: Sequence[str]
) -> tuple[list[dict[str, Any]], list[str]]:
    """One row per run the batch started, in plan order: ``name``, ``id``, the grid ``keys``,
    ``state``, ``exit_code`` and each numeric summary value (``named``: whether the name
    says more than the grid values); and the metric names, the most telling first
    (``wbg.aggregate.rank_metrics``)."""
    from wbg import aggregate, runs

    rows: list[dict[str, Any]] = []
    ids: list[str] = []
    metrics: dict[str, None] = {}
    for trial, result in zip(outcome.trials, outcome.results, strict=True):
        if result is None:
            continue
        record = runs.get_run(conn, result.run_id)
        row: dict[str, Any] = {"name": record["name"] or "", "id": record["id"]}
        row["named"] = record["name"] != trial.label  # not just the grid values again
        for key in keys:
            row[key] = trial.params[key].value if key in trial.params else trial.repeat
        row["state"] = record["state"]
        row["exit_code"] = record["exit_code"]
        for name, value in record["summary"].items():
            if values.is_number(value):
                row[f"summary.{name}"] = value
                metrics[name] = None
        rows.append(row)
        ids.append(record["id"])
    where = f"runs.id IN ({', '.join('?' * len(ids))})" if ids else "0"
    return rows, aggregate.rank_metrics(conn, sorted(metrics), where, ids)


def failures(outcome: BatchResult) -> list[tuple[Trial, LaunchResult]]:
    """The runs that did not finish with exit code 0, in plan order."""
    return [
        (trial, result)
        for trial, result in zip(outcome.trials, outcome.results, strict=True)
        if result is not None and result.exit_code != 0
    ]
