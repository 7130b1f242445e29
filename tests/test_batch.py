"""``wbg run --grid/--repeat/--parallel``: plans, real children, signals, exit status."""

from __future__ import annotations

import itertools
import os
import re
import signal
import subprocess
import threading
from pathlib import Path

import pytest
from helpers import PY, no_database, output_of, raw_query, records, run_wbg, wbg_executable
from hypothesis import given
from hypothesis import strategies as st

from wbg import batch, values
from wbg.errors import InvalidInput
from wbg.launch import LinePrefixer, RunSpec


def spans(db_path: Path, group: str) -> list[tuple[float, float]]:
    query = 'SELECT started_at, ended_at FROM runs WHERE "group" = ? ORDER BY num'
    return raw_query(db_path, query, (group,))


# --- the plan --------------------------------------------------------------------------


@no_database
def test_axis_values_are_typed_like_config_values() -> None:
    axis = batch.parse_axis('x=1, 0.5,true,adam,"a,b",[1,2],1e-3')
    assert axis.key == "x"
    assert [v.value for v in axis.values] == [1, 0.5, True, "adam", "a,b", [1, 2], 0.001]
    # arguments get the value as typed; a quoted string loses its quotes
    assert [v.text for v in axis.values] == ["1", "0.5", "true", "adam", "a,b", "[1,2]", "1e-3"]


@no_database
def test_ranges_are_inclusive_and_mix_with_values() -> None:
    assert [v.value for v in batch.parse_axis("fold=0..4").values] == [0, 1, 2, 3, 4]
    assert [v.value for v in batch.parse_axis("n=-1..1,10").values] == [-1, 0, 1, 10]
    assert [v.value for v in batch.parse_axis("n=3..3").values] == [3]
    # not a range: a path that starts with ..
    assert [v.value for v in batch.parse_axis("data=../a,../b").values] == ["../a", "../b"]


@no_database
@given(st.lists(st.integers(-(10**6), 10**6), min_size=1, max_size=20, unique=True))
def test_integer_lists_round_trip(numbers: list[int]) -> None:
    axis = batch.parse_axis("k=" + ",".join(map(str, numbers)))
    assert [v.value for v in axis.values] == numbers
    assert [v.text for v in axis.values] == [str(n) for n in numbers]


@no_database
@given(st.integers(-1000, 1000), st.integers(0, 50))
def test_ranges_match_python_range(low: int, size: int) -> None:
    axis = batch.parse_axis(f"k={low}..{low + size}")
    assert [v.value for v in axis.values] == list(range(low, low + size + 1))


@no_database
@given(st.text(alphabet=st.characters(blacklist_characters="{}"), max_size=30))
def test_text_without_braces_is_left_alone(text: str) -> None:
    assert batch.placeholders(text) == []
    assert batch.substitute(text, {}) == text


@no_database
def test_substitute_placeholders_and_literal_braces() -> None:
    texts = {"lr": "0.1", "opt.name": "adam", "repeat": "2"}
    assert batch.substitute("--lr={lr}/{opt.name}#{repeat}", texts) == "--lr=0.1/adam#2"
    assert batch.substitute("{{lr}} {{{lr}}}", texts) == "{lr} {0.1}"
    # braces around something that is not a name are not placeholders
    assert batch.placeholders('{"a": 1} {0} {} f"{x:>3}"') == []


@no_database
def test_param_env_names() -> None:
    assert batch.param_env_name("lr") == "WBG_PARAM_LR"
    assert batch.param_env_name("optimizer.lr") == "WBG_PARAM_OPTIMIZER_LR"
    assert batch.param_env_name("n-layers") == "WBG_PARAM_N_LAYERS"


@no_database
def test_plan_crosses_axes_last_fastest_then_repeats() -> None:
    axes = batch.parse_grid(["lr=0.1,0.01", "seed=0..2"])
    spec = RunSpec(project="p", group="g", config={"lr": 1.0, "model": {"depth": 2}})
    trials = batch.plan(["train", "--lr", "{lr}", "--seed={seed}", "r{repeat}"], axes, 2, spec)
    assert len(trials) == 12
    assert [t.label for t in trials[:4]] == [
        "lr=0.1,seed=0#0",
        "lr=0.1,seed=0#1",
        "lr=0.1,seed=1#0",
        "lr=0.1,seed=1#1",
    ]
    last = trials[-1]
    assert last.spec.name == "lr=0.01,seed=2#1"
    assert last.spec.group == "g"
    assert last.spec.config == {"lr": 0.01, "model": {"depth": 2}, "seed": 2, "repeat": 1}
    assert last.command == ["train", "--lr", "0.01", "--seed=2", "r1"]
    assert last.env == {"WBG_PARAM_LR": "0.01", "WBG_PARAM_SEED": "2", "WBG_PARAM_REPEAT": "1"}
    assert spec.config == {"lr": 1.0, "model": {"depth": 2}}  # the base is not changed


@no_database
def test_plan_without_repeat_has_no_repeat_in_config() -> None:
    trials = batch.plan(["x"], batch.parse_grid(["a.b=1,2"]), 1, RunSpec(project="p"))
    assert [t.spec.config for t in trials] == [{"a": {"b": 1}}, {"a": {"b": 2}}]
    assert [t.spec.name for t in trials] == ["a.b=1", "a.b=2"]
    assert trials[0].env == {"WBG_PARAM_A_B": "1", "WBG_PARAM_REPEAT": "0"}


@no_database
def test_plan_repeat_only_and_name_templates() -> None:
    trials = batch.plan(["x"], [], 3, RunSpec(project="p"))
    assert [t.spec.name for t in trials] == ["repeat=0", "repeat=1", "repeat=2"]
    named = batch.plan(["x"], batch.parse_grid(["fold=0..1"]), 1, RunSpec("p", name="f{fold}"))
    assert [t.spec.name for t in named] == ["f0", "f1"]
    # a fixed name for several runs gets the combination appended
    fixed = batch.plan(["x"], batch.parse_grid(["fold=0..1"]), 1, RunSpec("p", name="cv"))
    assert [t.spec.name for t in fixed] == ["cv[fold=0]", "cv[fold=1]"]


@no_database
@pytest.mark.parametrize(
    ("items", "command", "message"),
    [
        (["lr="], ["x"], "--grid lr= lists no values"),
        (["lr=0.1,"], ["x"], "--grid 'lr=0.1,' has an empty value"),
        (["lr"], ["x"], "malformed --grid 'lr': expected KEY=V1,V2,..."),
        (["lr=1", "lr=2"], ["x"], "--grid lr is given twice"),
        (["n=5..1"], ["x"], "--grid n=5..1: the range is empty (5 > 1)"),
        (["n=0.1..0.5"], ["x"], "--grid n=0.1..0.5: a range A..B is of integers"),
        (["n=1,2,1"], ["x"], "--grid n lists 1 twice"),
        (["repeat=1,2"], ["x"], "--grid repeat=... is reserved"),
        (
            ["lr=1"],
            ["x", "--seed={seed}"],
            "argument '--seed={seed}' uses {seed}, which is no grid key",
        ),
    ],
)
def test_plan_errors(items: list[str], command: list[str], message: str) -> None:
    with pytest.raises(InvalidInput) as error:
        batch.plan(command, batch.parse_grid(items), 1, RunSpec(project="p"))
    assert error.value.message == message


@no_database
def test_a_long_argument_is_shown_around_the_unknown_placeholder() -> None:
    with pytest.raises(InvalidInput) as error:
        batch.plan([PY, "-c", PIECES], [], 1, RunSpec(project="p"))
    assert error.value.message == (
        'argument \'...\\n    for part in (f"{name}:{i}:first-", "secon...\' uses {name}, '
        "which is no grid key"
    )


def test_plan_errors_exit_2_and_write_nothing(cli, db_path: Path) -> None:
    result = cli("run", "--grid", "n=3..1", "--", "true")
    assert result.exit_code == 2
    assert result.stderr == (
        "Error: --grid n=3..1: the range is empty (3 > 1)\n"
        "write the smaller end first: --grid n=1..3\n"
    )
    result = cli("run", "-g", "g", "--grid", "lr=1", "--", "echo", "{lr}", "{seed}")
    assert result.exit_code == 2
    assert result.stderr == (
        "Error: argument '{seed}' uses {seed}, which is no grid key\n"
        "known: {lr}, {repeat}; write {{ and }} for literal braces\n"
    )
    result = cli("run", "--repeat", "0", "--", "true")
    assert result.exit_code == 2
    assert not db_path.exists()


def test_dry_run_prints_the_plan_and_writes_nothing(cli, db_path: Path) -> None:
    result = cli(
        "run", "-g", "cv", "-c", "model=mlp", "--grid", "fold=0..2", "--dry-run", "--",
        "python", "train.py", "--fold", "{fold}", "--name", "fold {fold}",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert result.stdout == (
        "name    fold  command\n"
        "------  ----  ----------------------------------------\n"
        "fold=0  0     python train.py --fold 0 --name 'fold 0'\n"
        "fold=1  1     python train.py --fold 1 --name 'fold 1'\n"
        "fold=2  2     python train.py --fold 2 --name 'fold 2'\n"
    )
    assert result.stderr == (
        'wbg: config common to all runs: {"model":"mlp"}\n'
        "wbg: dry run: 3 runs planned in group cv; nothing recorded\n"
    )
    assert not db_path.exists()


# --- real children ---------------------------------------------------------------------

REPORT = 'echo "args=$1,$2,$3 env=$WBG_PARAM_LR,$WBG_PARAM_SEED,$WBG_PARAM_REPEAT"'


def test_grid_times_repeat_records_every_run(db_path: Path) -> None:
    done = run_wbg(
        "run", "-g", "sweep", "-j", "train", "-c", "model=mlp",
        "--grid", "lr=0.1,0.01", "--grid", "seed=0..2", "--repeat", "2",
        "--", "sh", "-c", REPORT, "sh", "{lr}", "{seed}", "{repeat}",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    found = records(db_path)
    assert len(found) == 12
    assert {r["group"] for r in found} == {"sweep"}
    assert {r["job_type"] for r in found} == {"train"}
    assert {r["state"] for r in found} == {"finished"}
    expected = [
        {"model": "mlp", "lr": lr, "seed": seed, "repeat": rep}
        for lr in (0.1, 0.01)
        for seed in (0, 1, 2)
        for rep in (0, 1)
    ]
    assert [r["config"] for r in found] == expected
    for record, config in zip(found, expected, strict=True):
        lr, seed, rep = config["lr"], config["seed"], config["repeat"]
        assert record["name"] == f"lr={lr},seed={seed}#{rep}"
        assert record["command"] == ["sh", "-c", REPORT, "sh", str(lr), str(seed), str(rep)]
        line = f"args={lr},{seed},{rep} env={lr},{seed},{rep}\n"
        assert output_of(db_path, record["id"]) == line
    # without --parallel the output is passed through unchanged, run after run
    assert done.stdout.startswith("args=0.1,0,0 env=0.1,0,0\nargs=0.1,0,1 env=0.1,0,1\n")
    # then the batch's runs: id, grid keys (the default names say no more), state and
    # exit code, in plan order
    table = done.stdout.splitlines()[12:]
    assert re.split(r"\s+", table[0]) == ["id", "lr", "seed", "repeat", "state", "exit"]
    assert len(table) == 2 + 12
    assert [re.split(r"\s+", row) for row in table[2:4]] == [
        [found[0]["id"], "0.1", "0", "0", "finished", "0"],
        [found[1]["id"], "0.1", "0", "1", "finished", "0"],
    ]
    assert done.stderr.endswith(
        "wbg: 12 runs in group sweep, all finished; see `wbg runs list --group sweep`\n"
    )


def test_sequential_output_is_unchanged(db_path: Path) -> None:
    command = ["run", "--grid", "x=1,2", "--", "sh", "-c", 'printf "a{x}\\r\\nb"; echo e >&2']
    done = subprocess.run([*wbg_executable(), *command], capture_output=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(b"a1\r\nba2\r\nb")
    assert done.stderr.startswith(b"wbg: new group experiment-")
    assert done.stderr.count(b"\ne\n") == 1  # both "e" lines, on stderr
    group = done.stderr.split()[3].decode()
    assert {r["group"] for r in records(db_path)} == {group}


def test_group_from_environment(db_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WANDB_RUN_GROUP", "from-env")
    done = run_wbg("run", "--repeat", "2", "--", "sh", "-c", "echo $WANDB_RUN_GROUP {repeat}")
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("from-env 0\nfrom-env 1\n")
    assert "new group" not in done.stderr
    assert [(r["group"], r["config"]) for r in records(db_path)] == [
        ("from-env", {"repeat": 0}),
        ("from-env", {"repeat": 1}),
    ]


def test_parallel_runs_overlap_and_respect_the_limit(db_path: Path) -> None:
    script = "import time; time.sleep(0.6)"
    done = run_wbg("run", "-g", "p", "--grid", "x=1..3", "--parallel", "3", "--", PY, "-c", script)
    assert done.returncode == 0, done.stderr
    found = spans(db_path, "p")
    assert max(start for start, _ in found) < min(end for _, end in found)

    done = run_wbg("run", "-g", "q", "--grid", "x=1..4", "--parallel", "2", "--", PY, "-c", script)
    assert done.returncode == 0, done.stderr
    found = spans(db_path, "q")
    assert len(found) == 4
    for start, _ in found:  # when a run starts, at most 2 runs (itself included) are alive
        assert sum(s <= start < e for s, e in found) <= 2
    assert sum(s <= found[1][0] < e for s, e in found) == 2  # and the limit is used


PIECES = r"""
import sys, time
name = sys.argv[1]
for i in range(3):
    for part in (f"{name}:{i}:first-", "second-", "third"):
        sys.stdout.write(part)
        sys.stdout.flush()
        time.sleep(0.01)
    sys.stdout.write("\n")
    sys.stderr.write(f"{name}:err{i}\n")
print("loss:", 0.5 if name == "a" else 0.25)
sys.stdout.write(f"{name}:no newline")
"""


def test_parallel_output_lines_are_prefixed_and_whole(db_path: Path, tmp_path: Path) -> None:
    script = tmp_path / "pieces.py"
    script.write_text(PIECES)
    done = run_wbg(
        "run", "-g", "lines", "--grid", "w=a,b,c", "--parallel", "3", "--", PY, str(script), "{w}"
    )
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    table_at = next(i for i, line in enumerate(lines) if line.startswith("id "))
    child_lines = lines[:table_at]
    assert len(child_lines) == 15
    for line in child_lines:
        match = re.fullmatch(r"\[w=(\w)\] (.*)", line)
        assert match, line
        name, text = match.groups()
        assert re.fullmatch(rf"{name}:\d:first-second-third|loss: 0\.\d+|{name}:no newline", text)
    for name in "abc":
        own = [line for line in child_lines if line.startswith(f"[w={name}] ")]
        assert own[-1] == f"[w={name}] {name}:no newline"
        errors = [line for line in done.stderr.splitlines() if line.startswith(f"[w={name}] ")]
        assert errors == [f"[w={name}] {name}:err{i}" for i in range(3)]
    # each run keeps its own, unprefixed tail and its own captured scalars
    found = {r["name"]: r for r in records(db_path)}
    assert output_of(db_path, found["w=a"]["id"]).startswith("a:0:first-second-third\n")
    assert "[w=" not in output_of(db_path, found["w=b"]["id"])
    assert [found[f"w={n}"]["summary"] for n in "abc"] == [
        {"loss": 0.5},
        {"loss": 0.25},
        {"loss": 0.25},
    ]


@no_database
def test_line_prefixer_completes_lines_and_keeps_the_last_redraw(tmp_path: Path) -> None:
    path = tmp_path / "out"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT)
    try:
        sink = LinePrefixer("[r] ")
        sink.write(b"10%\r50%", fd)
        sink.write(b"\r100%\r\nnext", fd)
        sink.write(b" line\nlast", fd)
        sink.close(fd)
    finally:
        os.close(fd)
    assert path.read_bytes() == b"[r] 100%\n[r] next line\n[r] last\n"


def test_exit_status_is_the_first_failure_in_plan_order(db_path: Path) -> None:
    script = (
        "import sys, time; x = int(sys.argv[1]); "
        "time.sleep(0.4 if x == 1 else 0); sys.exit(x + 2 if x < 3 else 0)"
    )
    done = run_wbg(
        "run", "-g", "codes", "--grid", "x=1..3", "--parallel", "3", "--", PY, "-c", script, "{x}"
    )
    # x=2 fails first in time (exit 4), x=1 is first in the plan (exit 3)
    assert done.returncode == 3, done.stderr
    states = [(r["name"], r["state"], r["exit_code"]) for r in records(db_path)]
    assert sorted(states) == [("x=1", "failed", 3), ("x=2", "failed", 4), ("x=3", "finished", 0)]


def test_all_runs_are_launched_without_fail_fast(db_path: Path) -> None:
    done = run_wbg("run", "-g", "all", "--grid", "x=1..4", "--", "sh", "-c", "exit $(( {x} % 2 ))")
    assert done.returncode == 1
    assert [r["exit_code"] for r in records(db_path)] == [1, 0, 1, 0]


def test_fail_fast_stops_launching(db_path: Path) -> None:
    done = run_wbg(
        "run",
        "-g",
        "ff",
        "--grid",
        "x=1..4",
        "--fail-fast",
        "--",
        "sh",
        "-c",
        "exit $(( {x} == 2 ? 5 : 0 ))",
    )
    assert done.returncode == 5
    assert [(r["name"], r["state"]) for r in records(db_path)] == [
        ("x=1", "finished"),
        ("x=2", "failed"),
    ]
    assert "wbg: --fail-fast: 2 runs of 4 not started\n" in done.stderr


def test_fail_fast_in_parallel_lets_running_runs_end(db_path: Path) -> None:
    script = (
        "import sys, time; x = int(sys.argv[1]); "
        "time.sleep(0.5 if x == 2 else 0); sys.exit(7 if x == 1 else 0)"
    )
    done = run_wbg(
        "run",
        "-g",
        "ff2",
        "--grid",
        "x=1..5",
        "--parallel",
        "2",
        "--fail-fast",
        "--",
        PY,
        "-c",
        script,
        "{x}",
    )
    assert done.returncode == 7
    assert sorted((r["name"], r["state"]) for r in records(db_path)) == [
        ("x=1", "failed"),
        ("x=2", "finished"),
    ]


def test_command_that_cannot_start(db_path: Path) -> None:
    done = run_wbg("run", "-g", "nf", "--grid", "x=1,2", "--", "no-such-command-wbg", "{x}")
    assert done.returncode == 127
    assert done.stderr.count("Error: [x=1]: command not found: no-such-command-wbg\n") == 1
    assert [r["state"] for r in records(db_path)] == ["failed", "failed"]


def test_plain_run_does_not_substitute(db_path: Path) -> None:
    done = run_wbg("run", "--", "echo", "{x}", "{repeat}")
    assert done.returncode == 0
    assert done.stdout == "{x} {repeat}\n"


# --- stopping --------------------------------------------------------------------------

SLEEPER = "import os, sys, time; print('pid', os.getpid(), flush=True); time.sleep(30)"


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with open(f"/proc/{pid}/stat") as stat:  # a zombie is not running
        return stat.read().split(")")[-1].split()[0] != "Z"


def test_ctrl_c_stops_a_parallel_batch(db_path: Path) -> None:
    proc = subprocess.Popen(
        [*wbg_executable(), "run", "-g", "stop", "--grid", "x=1..5", "--parallel", "2",
         "--", PY, "-c", SLEEPER],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        start_new_session=True,  # no terminal: the signal reaches wbg only
    )  # fmt: skip
    assert proc.stdout is not None
    pids = [int(proc.stdout.readline().split()[-1]) for _ in range(2)]
    proc.send_signal(signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=30)
    assert proc.returncode == 130, stderr
    assert not [pid for pid in pids if alive(pid)]
    found = records(db_path)
    assert [(r["state"], r["exit_code"]) for r in found] == [("killed", 130), ("killed", 130)]
    assert {r["pid"] for r in found} == set(pids)
    assert (
        "wbg: stopping: waiting for 2 runs to end (SIGTERM in 5 s; signal again to hurry)\n"
        in stderr
    )
    assert "wbg: stopped: 3 runs of 5 not started\n" in stderr
    # the table covers the two runs that started, killed, and the last line counts them
    assert re.split(r"\s+", stdout.splitlines()[0]) == ["id", "x", "state", "exit"]
    assert [re.split(r"\s+", row)[1:] for row in stdout.splitlines()[2:]] == [
        ["1", "killed", "130"],
        ["2", "killed", "130"],
    ]
    assert stderr.splitlines()[-1].startswith("wbg: 2 runs in group stop, 2 failed: x=1 (exit 130)")


def test_stop_escalates_to_sigterm_then_sigkill(db_path: Path) -> None:
    stubborn = (
        "import os, signal, sys, time\n"
        "signal.signal(signal.SIGINT, signal.SIG_IGN)\n"
        "if sys.argv[1] == 'deaf': signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
        "print('ready', flush=True)\n"
        "time.sleep(30)\n"
    )
    trials = batch.plan(
        [PY, "-c", stubborn, "{kind}"],
        batch.parse_grid(["kind=plain,deaf"]),
        1,
        RunSpec(project="p", group="stubborn"),
    )
    read_fd, write_fd = os.pipe()
    handler = signal.getsignal(signal.SIGINT)

    def interrupt() -> None:  # once both children ignore SIGINT, as Ctrl-C would
        with os.fdopen(read_fd, "rb") as output:
            lines = [output.readline() for _ in range(2)]
            assert sorted(lines) == [b"[kind=deaf] ready\n", b"[kind=plain] ready\n"]
            os.kill(os.getpid(), signal.SIGINT)
            output.read()

    runner = batch.BatchRunner(
        db_path, trials, parallel=2, prefix_output=True, stdout_fd=write_fd, stderr_fd=write_fd,
        grace_s=0.3,
    )  # fmt: skip
    reader = threading.Thread(target=interrupt)
    reader.start()
    try:
        outcome = runner.run()
    finally:
        os.close(write_fd)
        reader.join()
    assert outcome.stop_signal == signal.SIGINT
    assert [(r.state, r.exit_code) for r in outcome.results] == [("killed", 143), ("killed", 137)]
    assert outcome.exit_code == 143
    assert signal.getsignal(signal.SIGINT) is handler


def test_ctrl_c_stops_a_sequential_batch(db_path: Path) -> None:
    proc = subprocess.Popen(
        [*wbg_executable(), "run", "-g", "seq", "--repeat", "3", "--", PY, "-c", SLEEPER],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
    )  # fmt: skip
    assert proc.stdout is not None
    pid = int(proc.stdout.readline().split()[-1])
    proc.send_signal(signal.SIGINT)
    _, stderr = proc.communicate(timeout=30)
    assert proc.returncode == 130, stderr
    assert not alive(pid)
    assert [(r["name"], r["state"]) for r in records(db_path)] == [("repeat=0", "killed")]
    assert "wbg: stopped: 2 runs of 3 not started\n" in stderr


@no_database
@given(
    st.lists(st.binary(max_size=30).map(lambda b: b.replace(b"\n", b"").replace(b"\r", b""))),
    st.lists(st.integers(1, 40), min_size=1),
)
def test_prefixed_lines_do_not_depend_on_how_the_output_is_cut(
    lines: list[bytes], cuts: list[int]
) -> None:
    stream = b"".join(line + b"\n" for line in lines)
    read, write = os.pipe()
    try:
        sink = LinePrefixer("[p] ")
        at = 0
        for size in itertools.cycle(cuts):
            if at >= len(stream):
                break
            sink.write(stream[at : at + size], write)
            at += size
        sink.close(write)
        os.close(write)
        with os.fdopen(read, "rb") as pipe:
            read = -1
            assert pipe.read() == b"".join(b"[p] " + line + b"\n" for line in lines)
    finally:
        if read != -1:
            os.close(read)


def test_python_children_log_into_their_own_runs(db_path: Path) -> None:
    script = (
        "import sys, wbg\n"
        "run = wbg.init()\n"
        "run.log({'acc': float(sys.argv[1])})\n"
        "run.summary['seen'] = run.config['lr']\n"
        "run.finish()\n"
    )
    done = run_wbg(
        "run",
        "-g",
        "api",
        "--grid",
        "lr=0.5,0.25",
        "--parallel",
        "2",
        "--",
        PY,
        "-c",
        script,
        "{lr}",
    )
    assert done.returncode == 0, done.stderr
    found = records(db_path)
    assert [(r["config"], r["summary"]) for r in found] == [
        ({"lr": 0.5}, {"acc": 0.5, "seen": 0.5}),
        ({"lr": 0.25}, {"acc": 0.25, "seen": 0.25}),
    ]


def test_an_unexpected_error_leaves_no_child_running(db_path: Path) -> None:
    script = (
        "import sys, time; print('pid', flush=True); time.sleep(30 if sys.argv[1] == '2' else 0)"
    )
    trials = batch.plan(
        [PY, "-c", script, "{x}"], batch.parse_grid(["x=1,2"]), 1, RunSpec(project="p")
    )
    devnull = os.open(os.devnull, os.O_WRONLY)

    def on_end(trial: batch.Trial, result: object) -> None:
        raise RuntimeError("boom")

    runner = batch.BatchRunner(
        db_path, trials, parallel=2, prefix_output=True, stdout_fd=devnull, stderr_fd=devnull,
        on_end=on_end,
    )  # fmt: skip
    try:
        with pytest.raises(RuntimeError, match="boom"):
            runner.run()
    finally:
        os.close(devnull)
    found = records(db_path)
    assert [(r["name"], r["state"]) for r in found] == [("x=1", "finished"), ("x=2", "killed")]
    assert not alive(found[1]["pid"])


VALUE_TEXTS = st.one_of(
    st.integers(-(10**9), 10**9).map(str),
    st.floats(allow_nan=False, allow_infinity=False).map(repr),
    st.sampled_from(["true", "false"]),
    st.text(alphabet="abcdefghxyz_-./", min_size=1, max_size=8).filter(
        lambda t: not t.startswith(".") and ".." not in t
    ),
    st.text(alphabet="abc ,;:[]{}", max_size=8).map(lambda t: f'"{t}"'),
    st.lists(st.integers(0, 9), max_size=3).map(lambda xs: "[" + ",".join(map(str, xs)) + "]"),
)


@no_database
@given(st.lists(VALUE_TEXTS, min_size=1, max_size=6))
def test_each_grid_value_is_typed_like_a_config_value(texts: list[str]) -> None:
    expected = [values.parse_value(text) for text in texts]
    identities = [values.dumps([type(v).__name__, v]) for v in expected]
    if len(set(identities)) < len(identities):
        with pytest.raises(InvalidInput, match="twice"):
            batch.parse_axis("k=" + ",".join(texts))
        return
    axis = batch.parse_axis("k=" + ",".join(texts))
    assert [v.value for v in axis.values] == expected


def test_parallel_children_read_no_input(db_path: Path) -> None:
    read = ["sh", "-c", 'read line; echo "got[$line]"']
    command = [*wbg_executable(), "run", "--repeat", "2"]
    sequential = subprocess.run(
        [*command, "--", *read], input="hello\nworld\n", capture_output=True, text=True, timeout=60
    )
    assert sequential.stdout.startswith("got[hello]\ngot[world]\n")
    parallel = subprocess.run(
        [*command, "--parallel", "2", "--", *read],
        input="hello\n",
        capture_output=True,
        text=True,
        timeout=60,
    )
    lines = parallel.stdout.splitlines()
    assert sorted(lines[:2]) == ["[repeat=0] got[]", "[repeat=1] got[]"]
