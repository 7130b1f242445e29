"""The W&B record-log container (LevelDB log format, W&B header and CRC), read by
wbg.wandb_io.RecordLog. Files here are made by a small writer that follows the format's
description; test_interop.py reads files that the `wandb` package itself wrote."""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import pytest
from helpers import no_database
from hypothesis import given, settings
from hypothesis import strategies as st

from wbg.errors import InvalidInput
from wbg.wandb_io import BLOCK_LEN, FILE_HEADER, RecordLog

# W&B's log format: no database is opened.
pytestmark = no_database

HEADER_LEN = 7


def write_log(records: list[bytes]) -> bytes:
    """A LevelDB-format log with W&B's header: what wandb's writer produces."""
    out = bytearray(FILE_HEADER)
    for record in records:
        data = record
        first = True
        while True:
            left = BLOCK_LEN - len(out) % BLOCK_LEN
            if left < HEADER_LEN:
                out += b"\x00" * left
                left = BLOCK_LEN
            room = left - HEADER_LEN
            chunk, data = data[:room], data[room:]
            last = not data
            kind = (1 if last else 2) if first else (4 if last else 3)
            crc = zlib.crc32(chunk, zlib.crc32(bytes([kind])))
            out += struct.pack("<IHB", crc, len(chunk), kind) + chunk
            first = False
            if last:
                break
    return bytes(out)


def read(path: Path) -> tuple[list[bytes], RecordLog]:
    log = RecordLog(path)
    return list(log), log


def _record(size: int, seed: int) -> bytes:
    pattern = bytes((seed + i) % 256 for i in range(256))
    return (pattern * (size // 256 + 1))[:size]


# Sizes around a block's length make records end near block edges, where padding and
# FIRST/MIDDLE/LAST chunks happen.
_sizes = st.one_of(
    st.integers(0, 300),
    st.integers(BLOCK_LEN - 60, BLOCK_LEN + 60),
    st.integers(0, 3 * BLOCK_LEN),
)
records_strategy = st.lists(
    st.builds(_record, _sizes, st.integers(0, 255)),
    max_size=8,
)


@settings(max_examples=60, deadline=None)
@given(records=records_strategy)
def test_every_record_written_reads_back(tmp_path_factory, records):
    path = tmp_path_factory.mktemp("log") / "run-x.wandb"
    path.write_bytes(write_log(records))
    got, log = read(path)
    assert got == records
    assert log.complete and log.problem is None


@settings(max_examples=60, deadline=None)
@given(records=records_strategy.filter(bool), data=st.data())
def test_a_cut_file_gives_the_complete_records_before_the_cut(tmp_path_factory, records, data):
    whole = write_log(records)
    cut = data.draw(st.integers(HEADER_LEN, len(whole) - 1), label="cut")
    path = tmp_path_factory.mktemp("log") / "run-x.wandb"
    path.write_bytes(whole[:cut])
    got, log = read(path)
    assert got == records[: len(got)]
    # Everything before the cut that was whole is there; the cut one is not.
    ends = [len(write_log(records[: i + 1])) for i in range(len(records))]
    assert len(got) == sum(1 for end in ends if end <= cut)
    # A cut where a record ends (or in the block padding after it) leaves a clean log.
    boundaries = [HEADER_LEN, *ends]
    complete_cut = any(cut >= end and not any(whole[end:cut]) for end in boundaries)
    assert log.complete == complete_cut


def test_records_spanning_blocks_are_reassembled(tmp_path):
    records = [b"a" * 10, b"b" * (2 * BLOCK_LEN + 100), b"c" * 5]
    path = tmp_path / "run-x.wandb"
    path.write_bytes(write_log(records))
    got, log = read(path)
    assert got == records and log.complete


def test_a_damaged_chunk_ends_the_log_there(tmp_path):
    whole = bytearray(write_log([b"one", b"two", b"three"]))
    second = HEADER_LEN + HEADER_LEN + 3  # the second chunk's header
    whole[second + HEADER_LEN] ^= 0xFF  # flip a data byte of "two"
    path = tmp_path / "run-x.wandb"
    path.write_bytes(bytes(whole))
    got, log = read(path)
    assert got == [b"one"]
    assert not log.complete
    assert log.problem == f"damaged chunk at byte {second}"


def test_leveldb_masked_crc32c_is_not_accepted(tmp_path):
    # W&B's variant is plain CRC-32 over type byte + data; a file with another checksum
    # is damaged, not silently read.
    data = b"payload"
    bad = FILE_HEADER + struct.pack("<IHB", zlib.crc32(data), len(data), 1) + data
    path = tmp_path / "run-x.wandb"
    path.write_bytes(bad)
    got, log = read(path)
    assert got == [] and log.problem == "damaged chunk at byte 7"


def test_a_file_that_is_not_a_wandb_log_is_refused(tmp_path):
    path = tmp_path / "run-x.wandb"
    path.write_bytes(b"SQLite format 3\x00")
    with pytest.raises(InvalidInput, match="is not a W&B run log"):
        read(path)
