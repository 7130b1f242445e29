"""W&B's record log, read without the ``wandb`` package: the framing of
``run-<id>.wandb`` files, and finding them.

This reads ``run-<id>.wandb``, the record log every W&B run (offline or online) writes
in its run directory. The container is LevelDB's log format with W&B's own header and
checksum, decoded here (the ``wandb`` package no longer ships a reader for it):

- a 7-byte file header: ``:W&B``, magic 0xBEE1 (little-endian u16), version 0;
- then 32 KiB blocks, counted from the start of the file (the first block is 7 bytes
  shorter); a block holds chunks, each with a 7-byte header: CRC-32 (u32 LE), length
  (u16 LE), type (1 FULL, 2 FIRST, 3 MIDDLE, 4 LAST); fewer than 7 bytes left in a block
  are zero padding;
- the checksum is plain CRC-32 (zlib's, not LevelDB's masked CRC-32C) of the type byte
  followed by the data;
- a record is one FULL chunk or FIRST, MIDDLE..., LAST; its bytes are a protobuf
  ``Record`` of ``wandb.proto.wandb_internal_pb2`` (run, config, history, summary, exit...).

A run killed mid-way leaves a log cut inside a block (or a record whose LAST chunk never
came): what is complete is imported and the run is marked ``crashed``. So is a log that
ends without an exit record.

``RecordTail`` reads a log while W&B still writes it (``wbg.wandb_follow``).
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Iterable, Iterator
from pathlib import Path

from wbg.errors import InvalidInput

FILE_HEADER = b":W&B" + struct.pack("<HB", 0xBEE1, 0)
HEADER_LEN = 7
BLOCK_LEN = 32 * 1024
FULL, FIRST, MIDDLE, LAST = 1, 2, 3, 4
# The CRC of a chunk starts from the CRC of its type byte.
_CRC_SEED = {kind: zlib.crc32(bytes([kind])) for kind in (FULL, FIRST, MIDDLE, LAST)}
_CHUNK = struct.Struct("<IHB")


# --- the record log ----------------------------------------------------------------------


class RecordTail:
    """The records of a ``.wandb`` file read as it grows: each ``read()`` yields the
    complete records written since the previous one.

    W&B writes its log a block (32 KiB) at a time while the run goes on and the rest when
    it ends, so a chunk that is not all there yet (or fails its checksum while its block is
    still being written) is simply read again next time. A damaged chunk in a whole block
    costs the rest of that block (the records in it are skipped, as LevelDB's log reader
    does) and reading goes on with the next block: ``skipped_bytes`` counts what was lost.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self.offset = 0  # where the next chunk starts; 0: the file header is not read yet
        self.problem: str | None = None  # why reading stopped for good
        self.skipped_bytes = 0
        self.first_damage: int | None = None
        self.last_damage: int | None = None
        self.read_since_damage = False
        self._pending: list[bytes] = []  # the chunks of a record not yet complete

    @property
    def in_record(self) -> bool:
        """True when the last chunk read began a record whose end has not come yet."""
        return bool(self._pending)

    def _stop(self, problem: str) -> None:
        self.problem = problem
        self._pending = []

    def damaged(self, at: int, skipped: int) -> None:
        """A chunk at byte ``at`` failed its checksum; ``skipped`` bytes are lost."""
        if self.first_damage is None:
            self.first_damage = at
        self.last_damage = at
        self.read_since_damage = False
        self.skipped_bytes += skipped
        self._pending = []  # a record begun before the damage is lost too

    def read(self) -> Iterator[bytes]:
        if self.problem is not None:
            return
        with self.path.open("rb") as handle:
            if self.offset == 0:
                header = handle.read(HEADER_LEN)
                if len(header) < HEADER_LEN:
                    return
                if header != FILE_HEADER:
                    raise InvalidInput(f"{self.path} is not a W&B run log (bad file header)")
                self.offset = HEADER_LEN
            handle.seek(self.offset)
            while True:
                block_start = self.offset - self.offset % BLOCK_LEN
                wanted = block_start + BLOCK_LEN - self.offset
                block = handle.read(wanted)
                whole = len(block) == wanted  # the block is written to its end
                pos = 0
                while len(block) - pos >= HEADER_LEN:
                    crc, length, kind = _CHUNK.unpack_from(block, pos)
                    if kind == 0 and length == 0:
                        if not whole:  # zeros at the end of what is written: nothing more yet
                            self.offset += pos
                            return
                        pos = len(block)  # zeros: the rest of this block is padding
                        break
                    end = pos + HEADER_LEN + length
                    at = self.offset + pos
                    if end > len(block):
                        if whole:  # a chunk never crosses a block's end
                            self._stop(f"cut off inside a chunk at byte {at}")
                        self.offset += pos  # else: the rest of the chunk comes later
                        return
                    data = block[pos + HEADER_LEN : end]
                    seed = _CRC_SEED.get(kind)
                    if seed is None or zlib.crc32(data, seed) != crc:
                        if not whole:  # perhaps not all written yet: look again later
                            self.offset += pos
                            return
                        self.damaged(at, len(block) - pos)
                        pos = len(block)  # resume with the next block
                        break
                    pos = end
                    record: bytes | None = None
                    if kind == FULL:
                        self._pending = []
                        record = data
                    elif kind == FIRST:
                        self._pending = [data]
                    elif not self._pending and self.skipped_bytes:
                        self.skipped_bytes += len(data) + HEADER_LEN  # its start was lost
                    elif not self._pending:
                        self._stop(f"chunk without its start at byte {self.offset + pos}")
                        return
                    elif kind == MIDDLE:
                        self._pending.append(data)
                    else:
                        record = b"".join([*self._pending, data])
                        self._pending = []
                    if record is not None:
                        self.read_since_damage = True
                        yield record
                if not whole:
                    self.offset += pos
                    return
                self.offset = block_start + BLOCK_LEN  # past the block, padding included

    def unread_tail(self) -> bytes:
        """The bytes after the last chunk read (what a cut-off or damaged write left)."""
        with self.path.open("rb") as handle:
            handle.seek(self.offset)
            return handle.read(BLOCK_LEN)


class RecordLog:
    """The records of one ``.wandb`` file, in order.

    Iterating yields each complete record's bytes. Afterwards ``complete`` tells whether
    the file ended cleanly (no record cut off); ``problem`` says why not. A damaged chunk
    in the middle costs the rest of its 32 KiB block (the records in it are skipped, as
    LevelDB's log reader does) and reading goes on with the next block; ``damage`` then
    says how many bytes were skipped.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self.complete = True
        self.problem: str | None = None
        self.skipped_bytes = 0
        self.first_damage: int | None = None

    @property
    def damage(self) -> str | None:
        if not self.skipped_bytes:
            return None
        return (
            f"damaged: {self.skipped_bytes} bytes skipped (from byte {self.first_damage}), "
            "the records in them lost"
        )

    def __iter__(self) -> Iterator[bytes]:
        tail = RecordTail(self.path)
        yield from tail.read()
        if tail.offset == 0:
            raise InvalidInput(f"{self.path} is not a W&B run log (bad file header)")
        self.problem = tail.problem or _end_problem(tail)
        self.complete = self.problem is None
        self.skipped_bytes, self.first_damage = tail.skipped_bytes, tail.first_damage


def _end_problem(tail: RecordTail) -> str | None:
    """Why a log read to its end is incomplete (None when it ended cleanly)."""
    rest = tail.unread_tail()
    if len(rest) >= HEADER_LEN:
        _crc, length, kind = _CHUNK.unpack_from(rest)
        if not (kind == 0 and length == 0):
            if HEADER_LEN + length > len(rest):
                return f"cut off inside a chunk at byte {tail.offset}"
            # a whole chunk left unread in the last block: its checksum failed
            tail.damaged(tail.offset, len(rest))
    if tail.skipped_bytes and not tail.read_since_damage:
        # nothing readable after the damage: the log ends there (a run killed mid-write),
        # as a cut-off log does
        tail.skipped_bytes, tail.first_damage = 0, None
        return f"damaged chunk at byte {tail.last_damage}"
    if any(rest):
        return f"cut off inside a chunk header at byte {tail.offset}"
    if tail.in_record:
        return "the last record was cut off"
    return None


# --- finding run logs --------------------------------------------------------------------


def find_run_logs(paths: Iterable[Path]) -> list[Path]:
    """The ``.wandb`` files that ``paths`` name: files, run folders, ``wandb/`` folders.

    A folder is searched for ``run-*.wandb`` files at any depth (so a project folder that
    holds ``wandb/`` works too). Order: by path, which for W&B's ``run-<date>_<time>-<id>``
    folders is the order the runs started.
    """
    found: dict[Path, Path] = {}  # real path -> path as found (wandb/latest-run links)
    for path in paths:
        if path.is_file():
            found.setdefault(path.resolve(), path)
        elif path.is_dir():
            for log in sorted(path.rglob("run-*.wandb")):
                # wandb/latest-run links to the newest run folder: found once, by its name
                if log.is_file() and "latest-run" not in log.relative_to(path).parts:
                    found.setdefault(log.resolve(), log)
        else:
            raise InvalidInput(f"no such file or directory: {path}")
    return list(found.values())
