"""Pieces of following W&B runs under `wbg run`: a log read while it grows, the printed
names W&B's keys stand for, the process tree."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys

from helpers import no_database
from hypothesis import given, settings
from hypothesis import strategies as st
from test_wandb_log_format import _record, _sizes, write_log

from wbg.wandb_follow import process_tree, shadowed_keys
from wbg.wandb_io import BLOCK_LEN, RecordLog, RecordTail

# W&B's log files and the process table: no database is opened.
pytestmark = no_database


@settings(max_examples=60, deadline=None)
@given(
    st.lists(_sizes, max_size=6),
    st.lists(st.integers(0, 10**6), max_size=8),
)
def test_a_log_read_as_it_grows_gives_the_records_once_in_order(tmp_path_factory, sizes, cuts):
    records = [_record(size, seed) for seed, size in enumerate(sizes)]
    data = write_log(records)
    path = tmp_path_factory.mktemp("tail") / "run.wandb"
    tail = RecordTail(path)
    got: list[bytes] = []
    # the file grows by arbitrary pieces (a writer may stop anywhere, even inside the header)
    for cut in sorted({min(c, len(data)) for c in cuts} | {len(data)}):
        path.write_bytes(data[:cut])
        got += list(tail.read())
    assert got == records
    assert tail.problem is None and not tail.in_record
    whole = RecordLog(path)
    assert list(whole) == records and whole.complete


def test_a_damaged_chunk_in_the_block_being_written_is_read_again(tmp_path):
    good = write_log([b"a" * 10, b"b" * 10])
    torn = bytearray(good)
    torn[7 + 7 + 10 + 7] ^= 0xFF  # first data byte of the second record: not written yet?
    path = tmp_path / "run.wandb"
    path.write_bytes(bytes(torn))
    tail = RecordTail(path)
    assert list(tail.read()) == [b"a" * 10]
    assert tail.problem is None and tail.skipped_bytes == 0  # waits for the block
    whole = RecordLog(path)  # read as a finished log, it is damage at the end
    assert list(whole) == [b"a" * 10] and whole.problem == "damaged chunk at byte 24"
    path.write_bytes(good)  # the writer got there
    assert list(tail.read()) == [b"b" * 10]


def test_a_damaged_chunk_in_a_whole_block_costs_that_block(tmp_path):
    records = [_record(BLOCK_LEN // 2, 1), _record(BLOCK_LEN // 2, 2), _record(100, 3)]
    data = bytearray(write_log(records))
    data[7 + 7 + 5] ^= 0xFF  # inside the first record, in the first block
    path = tmp_path / "run.wandb"
    path.write_bytes(bytes(data))
    tail = RecordTail(path)
    assert list(tail.read()) == records[2:]  # the second record began in the first block
    assert tail.problem is None and tail.first_damage == 7 and tail.skipped_bytes > 0


def test_printed_names_that_wandb_keys_stand_for():
    assert shadowed_keys(["train/loss", "eval/loss", "acc"]) == {
        "train/loss", "train_loss", "loss", "eval/loss", "eval_loss", "acc",
    }  # fmt: skip
    assert shadowed_keys(["a/b/c"]) == {"a/b/c", "a_b_c", "b/c", "c"}


def test_process_tree_holds_children_and_grandchildren():
    code = "import subprocess, sys, time; p = subprocess.Popen(['sleep', '30']); print(p.pid, flush=True); time.sleep(30)"
    child = subprocess.Popen(
        ["sh", "-c", f'{sys.executable} -c "{code}"; true'], stdout=subprocess.PIPE, text=True
    )
    try:
        sleeper = int(child.stdout.readline())
        tree = process_tree(child.pid)
        assert tree[0] == child.pid and sleeper in tree and len(tree) == 3
    finally:
        for pid in reversed(process_tree(child.pid)):  # the processes this test started
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        child.wait()
        child.stdout.close()
