"""A journal file -> its lines, a bounded block of bytes at a time, numbered by position.

`pl.scan_csv` held 450-610 MB reading a 2M-line journal ahead of a slower decode (the end of a
1M-row run peaked at 654 MB, a 5M-row run at 1019 MB), and the decode itself takes about 1 KB
per line: so the file is read LINE_BLOCK_BYTES at a time, each block cut after its last newline,
and handed on as whole lines with the position of the first. `reader.py` decodes the blocks
vectorised; `check.py` falls back to its per-line check for a block with damage.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import polars as pl

LINE_BLOCK_BYTES = 1 << 20  # journal bytes decoded at once (about 10k records)
MAX_LINE_BYTES = 64 << 20  # no record is this long: past it, a stretch without a newline is damage
_NEWLINE = ord("\n")


def read_lines(path: str | Path, lines: int, block_bytes: int | None = None) -> Iterator[pl.DataFrame]:
    """The first `lines` lines of a journal, as batches of (`pos`: 0-based Int64, `line`: null
    when blank), one block (`line_blocks`) at a time."""
    for first, block in line_blocks(path, lines, block_bytes):
        yield parse_lines(first, block)


def line_blocks(path: str | Path, lines: int, block_bytes: int | None = None) -> Iterator[tuple[int, bytes]]:
    """(position of its first line, bytes) of blocks of whole lines, about `block_bytes` each, up
    to the first `lines` lines: memory is a block and its decoding, whatever the journal's size
    (`pl.scan_csv` held 450-610 MB reading 2M lines ahead of a slower decode; the decode itself
    takes about 1 KB per line, hence blocks of LINE_BLOCK_BYTES). A line longer than a block is
    read whole, up to MAX_LINE_BYTES; past that (damage: no record is that long) its first
    MAX_LINE_BYTES are that line's block and the rest of it, up to its newline, is skipped.
    """
    block_bytes = block_bytes or LINE_BLOCK_BYTES
    pos = 0
    carry = b""
    skipping = False  # inside an overlong line already given as one block
    with open(path, "rb") as fh:
        while pos < lines:
            chunk = fh.read(block_bytes)
            data, carry = carry + chunk, b""
            if skipping:
                end = data.find(b"\n")
                if end < 0:
                    if not chunk:
                        return
                    continue
                data, skipping = data[end + 1 :], False
            cut = data.rfind(b"\n") + 1
            if cut == 0:
                if chunk and len(data) <= MAX_LINE_BYTES:
                    carry = data
                    continue
                if not data:
                    return
                cut, skipping = len(data), bool(chunk)  # a damaged stretch longer than any record
            block, carry = data[:cut], data[cut:]
            count = block.count(b"\n") + (not block.endswith(b"\n"))
            if pos + count > lines:  # lines written after the count was taken are not read
                count = lines - pos
                block = block[: int(np.flatnonzero(np.frombuffer(block, dtype=np.uint8) == _NEWLINE)[count - 1]) + 1]
            yield pos, block
            pos += count
            if not chunk:
                return


def parse_lines(first: int, block: bytes) -> pl.DataFrame:
    """A block of lines as (`pos`, `line`): a one-column CSV whose separator (NUL) and quote never
    occur in a valid record, with invalid UTF-8 replaced: any such byte then fails the checksum.
    A NUL makes the reader raise (the caller then finds the line with the per-line check). polars
    drops a carriage return before a newline; `check_line` does the same."""
    frame = pl.read_csv(
        block,
        has_header=False,
        separator="\x00",
        quote_char=None,
        schema={"line": pl.String},
        encoding="utf8-lossy",
        truncate_ragged_lines=False,  # a NUL in a line is an error here, never a silent cut
        raise_if_empty=False,
    )
    return frame.select(pl.int_range(first, first + frame.height, dtype=pl.Int64).alias("pos"), "line")
