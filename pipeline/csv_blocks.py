"""A CSV file -> its header and record-aligned blocks of bytes, every record's field count checked.

Why not `pl.scan_csv().collect_batches()`: its read-ahead holds 220-370 MB and grows with the
file when the consumer is slower than the reader (FIELD-NOTES). Here the file is read in
BLOCK_BYTES pieces (gzip streams too), each cut after its last record end and parsed by
`pl.read_csv` (multi-threaded) only when the pipeline asks: memory is a couple of blocks,
flat whatever the file's size.

Record ends and field counts are found vectorised (numpy over the block's bytes): a newline
or separator counts only outside quotes, i.e. where the number of `"` before it is even
(RFC 4180, where a quote inside a quoted field is doubled). Every record must have as many
fields as the header: a short row is not padded into something sendable and a long row is
not cut; either stops the run before any request, naming the file and the data row.
Blank lines are skipped and not counted, as polars does.
"""

from __future__ import annotations

import gzip
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
import polars as pl

from . import safe_csv
from .errors import InputError, reason_of

BLOCK_BYTES = 8 << 20
MAX_RECORD_BYTES = 64 << 20  # a "record" longer than this is an unbalanced quote, not data
_QUOTE, _NEWLINE, _CR = ord('"'), ord("\n"), ord("\r")
_BOM = b"\xef\xbb\xbf"
# polars decompresses bytes handed to read_csv that start like a gzip, zlib or zstd stream, and
# drops a leading byte order mark: text can start so too (a cell `x^2 promo` is zlib's 78 5E), so
# such data gets a record in front (`parse`)
_SNIFFED = (_BOM, b"\x1f\x8b", b"\x78\x01", b"\x78\x5e", b"\x78\x9c", b"\x78\xda", b"\x28\xb5\x2f\xfd")
# what a file that is not CSV text starts with, and what to do about it (no text starts so)
_NOT_TEXT = (
    (b"\x1f\x8b", "gzip-compressed", "name it .csv.gz, or decompress it"),
    (b"\x28\xb5\x2f\xfd", "zstd-compressed", "decompress it first"),
    (b"PK\x03\x04", "a zip archive (an .xlsx workbook?)", "export the sheet as CSV"),
    (b"PAR1", "a Parquet file", "name it .parquet"),
    (b"\xff\xfe", "UTF-16 text", "save it as UTF-8"),
    (b"\xfe\xff", "UTF-16 text", "save it as UTF-8"),
    (b"\x00\x05\x16\x07", "macOS file metadata (an AppleDouble `._` file copied from a Mac)", "delete it"),
)


SAVE_AS_UTF8 = (
    'save the file as UTF-8 (a spreadsheet\'s "CSV UTF-8"), or convert it, e.g. iconv -f cp1252 -t utf-8'
    " (no row of it was sent)"
)


@dataclass(frozen=True, slots=True)
class Block:
    data: bytes  # whole records, each ending in a newline
    first_row: int  # 1-based data row number of its first record
    rows: int  # records in it (blank lines excluded)


def open_binary(path: Path) -> BinaryIO:
    if path.name.endswith(".gz"):
        return gzip.open(path, "rb")  # type: ignore[return-value]  # GzipFile is a binary stream
    return open(path, "rb")


def header(path: Path, separator: str = ",") -> list[str]:
    """The column names of a CSV file (its first record); duplicates or an empty file raise."""
    with open_binary(path) as fh:
        first = _first_record(fh, path)
    if not first.strip():
        raise InputError(f"{path}: the file is empty (no header line)")
    for magic, what, advice in _NOT_TEXT:
        if first.startswith(magic):  # polars would read a gzip stream's header and no row after it
            raise InputError(f"{path}: its content is {what}, not CSV text; {advice} (no row of it was sent)")
    stray = _scan(first if first.endswith(b"\n") else first + b"\n", ord(separator))[4]
    if stray is not None:  # a quote opened in a name had taken data rows into the header
        raise InputError(
            f"{path}: the header line has a quote inside a name (`{_around(first, stray)}`); put the whole"
            " name in quotes and double the quotes in it, or remove them (no row of it was sent)"
        )
    try:
        names = parse(first, None, separator, infer_schema=False).row(0)
    except pl.exceptions.PolarsError as exc:
        advice = f"; {SAVE_AS_UTF8}" if "utf-8" in str(exc) else ""
        raise InputError(f"{path}: cannot read its header line: {reason_of(exc)}{advice}") from exc
    columns = [str(n) if n is not None else "" for n in names]
    # a quote opened in the header and closed at the end of a data line: that row had vanished
    # into the last name. A name may hold a line break and a comma (a spreadsheet cell "Planned
    # <Alt+Enter>(date, local)"), but not a line break and then a whole record's separators (an
    # error file the tool wrote keeps whatever names its input had, so it is read as it is)
    after = (c.replace("\r", "\n").partition("\n")[2] for c in columns)
    broken = [c for c, tail in zip(columns, after, strict=True) if tail.count(separator) >= max(len(columns) - 1, 1)]
    if broken and not safe_csv.written_by_tool(columns):
        shown = broken[0].replace("\r", " ").replace("\n", " ")
        raise InputError(
            f"{path}: the header line's name '{shown[:40]}{'...' if len(shown) > 40 else ''}' holds a line break"
            " and a data row after it (a quote in it opens and only closes on a later line); fix the header"
            " (no row of it was sent)"
        )
    repeated = sorted({c for c in columns if columns.count(c) > 1})
    if repeated:
        shown = ", ".join(f"'{c}'" for c in repeated)
        raise InputError(f"{path}: the header names a column more than once ({shown}); rename or remove the copies")
    return columns


def blocks(path: Path, columns: int, separator: str = ",") -> Iterator[Block]:
    """The data records after the header, in blocks; a record with the wrong field count raises."""
    sep = ord(separator)
    with open_binary(path) as fh:
        _first_record(fh, path)
        carry = b""
        row = 1
        while True:
            chunk = fh.read(BLOCK_BYTES)
            data = carry + chunk
            if not data:
                return
            if not chunk and not data.endswith(b"\n"):
                data += b"\n"  # the last record may lack its newline
            cut, starts, counts, blank, stray = _scan(data, sep)
            if stray is not None and stray < cut:
                at = int(np.searchsorted(starts, stray, side="right")) - 1
                raise InputError(
                    f"{path}: data row {row + int(np.count_nonzero(~blank[:at]))} has a quote inside a field"
                    f" (`{_around(data, stray)}`), which CSV readers split differently; put the whole field"
                    ' in quotes and double the quotes in it ("5"" x"), or remove them (no row of it was sent)'
                )
            if cut == 0:
                if not chunk:
                    raise InputError(f"{path}: data row {row} opens a quote that never closes")
                if len(data) > MAX_RECORD_BYTES:
                    if b'"' not in data:  # no quote to blame: one line longer than any record could be
                        raise InputError(
                            f"{path}: data row {row} runs over {MAX_RECORD_BYTES / 2**20:g} MiB without a line end;"
                            " is it a CSV export? (no row of it was sent)"
                        )
                    raise InputError(f"{path}: data row {row} opens a quote that never closes")
                carry = data
                continue
            records = counts[~blank]
            wrong = np.flatnonzero(records != columns)
            if wrong.size:
                at = int(wrong[0])
                raise InputError(
                    f"{path}: data row {row + at} has {int(records[at])} fields where the header has {columns}; "
                    "fix the file (no row of it was sent)"
                )
            body = data[:cut]
            if blank.any():
                body = _drop(body, starts, cut, blank)
            yield Block(body, row, int(records.size))
            row += int(records.size)
            carry = data[cut:]


def parse(data: bytes, fields: int | None, separator: str = ",", **options: Any) -> pl.DataFrame:
    """`pl.read_csv(data, has_header=False, **options)` of whole records of `fields` fields each
    (None: as many as the first record has), read as the text they are where they start as
    polars would take them otherwise (`_SNIFFED`): a leading U+FEFF is a cell's own text, and `x^`
    is not a zlib stream (a block starts wherever a record does; a results file read back
    starts with a row_key, which may be anything a request_key was)."""
    if not data.startswith(_SNIFFED):
        return pl.read_csv(data, has_header=False, separator=separator, **options)
    if fields is None:
        fields = int(_scan(data if data.endswith(b"\n") else data + b"\n", ord(separator))[2][0])
    blank = (separator * (fields - 1) + "\n").encode()  # a record of empty fields, dropped again
    return pl.read_csv(blank + data, has_header=False, separator=separator, **options).slice(1)


def not_utf8(block: Block, separator: str = ",") -> tuple[int, str] | None:
    """(the 1-based data row, a few characters around it) of the block's first byte that is not
    UTF-8, or None. Only asked after polars refused a block ("invalid utf-8 sequence", naming no
    row): a spreadsheet's "CSV" in a Windows code page (`café` as 63 61 66 E9) is the usual cause."""
    try:
        block.data.decode("utf-8")
    except UnicodeDecodeError as exc:
        _, starts, _, blank, _ = _scan(block.data, ord(separator))
        at = int(np.searchsorted(starts, exc.start, side="right")) - 1
        return block.first_row + int(np.count_nonzero(~blank[: max(at, 0)])), _around(block.data, exc.start)
    return None


def _scan(data: bytes, sep: int) -> tuple[int, np.ndarray, np.ndarray, np.ndarray, int | None]:
    """(bytes up to the last record end, record starts, fields per record, which are blank, the
    position of the first stray quote or None).

    A newline or separator counts when an even number of quotes precedes it: positions of the
    three bytes are found once each, and parity comes from a search among the (few) quotes,
    so a block without quotes costs three byte comparisons.

    Parity reads every quote as one that opens or closes a quoted field. polars (like most
    readers) takes a quote as such only at a field's start, and a quote inside an unquoted field
    as text: `Sizes 5" x, 7" y` is two fields to it and one here. Where the two disagree the
    field count checked here is not the one polars parses (a review found a context cut at the
    comma and sent, exit 0, or the fields shifted into a wrong code). So a quote that opens
    anywhere but a field's start, or closes anywhere but before a separator, line end or its
    doubled twin, is `stray`, and the file stops there, naming the row (RFC 4180's rule).
    """
    raw = np.frombuffer(data, dtype=np.uint8)
    ends = np.flatnonzero(raw == _NEWLINE)
    separators = np.flatnonzero(raw == sep)
    quotes = np.flatnonzero(raw == _QUOTE)
    stray = None
    if quotes.size:
        ends = ends[np.searchsorted(quotes, ends) % 2 == 0]
        separators = separators[np.searchsorted(quotes, separators) % 2 == 0]
        stray = _stray_quote(raw, quotes, sep)
    if ends.size == 0:
        empty = np.empty(0, dtype=np.int64)
        return 0, empty, empty, np.empty(0, dtype=bool), stray
    upto = np.searchsorted(separators, ends)
    counts = np.diff(upto, prepend=0) + 1
    starts = np.concatenate(([0], ends[:-1] + 1))
    length = ends - starts
    blank = (length == 0) | ((length == 1) & (raw[np.maximum(ends - 1, 0)] == _CR))
    return int(ends[-1]) + 1, starts, counts, blank, stray


def _stray_quote(raw: np.ndarray, quotes: np.ndarray, sep: int) -> int | None:
    """The first quote that opens other than at a field's start (the data's start, after a
    separator or newline, or right after a closing quote: `""` inside a quoted field) or closes
    other than before a separator, CR, newline, a doubled quote or the data's end."""
    opening, closing = quotes[0::2], quotes[1::2]
    before = raw[np.maximum(opening - 1, 0)]
    bad_open = (opening > 0) & (before != sep) & (before != _NEWLINE) & (before != _QUOTE)
    after = raw[np.minimum(closing + 1, raw.size - 1)]
    at_end = closing + 1 >= raw.size
    bad_close = ~at_end & (after != sep) & (after != _NEWLINE) & (after != _CR) & (after != _QUOTE)
    found = [int(opening[bad_open][0])] if bad_open.any() else []
    found += [int(closing[bad_close][0])] if bad_close.any() else []
    return min(found) if found else None


def _around(data: bytes, at: int) -> str:
    """A few characters either side of `at`, on one line, for a message."""
    text = data[max(at - 12, 0) : at + 12].decode("utf-8", "replace")
    return text.replace("\r", " ").replace("\n", " ")


def _drop(body: bytes, starts: np.ndarray, cut: int, blank: np.ndarray) -> bytes:
    """`body` without its blank records (a blank line inside a quoted field is not one)."""
    bounds = np.append(starts, cut)
    keep = np.flatnonzero(~blank)
    view = memoryview(body)
    return b"".join(view[bounds[i] : bounds[i + 1]] for i in keep)


def _first_record(fh: BinaryIO, path: Path) -> bytes:
    """Read and return the header record (the file position is left after it)."""
    data = b""
    while True:
        line = fh.readline()
        if not data and line.startswith(_BOM):
            line = line[len(_BOM) :]
        data += line
        if not line or data.count(b'"') % 2 == 0:
            if b"\r" in data.rstrip(b"\r\n"):  # a CR inside the line, outside quotes or not
                bare = data.rstrip(b"\r\n").replace(b"\r\n", b"")
                if bare.count(b"\r") and data.count(b'"') == 0:
                    raise InputError(
                        f"{path}: its lines end in a bare CR (old Mac line ends), so it reads as one line;"
                        " save it with LF or CRLF line ends"
                    )
            return data
        if len(data) > MAX_RECORD_BYTES:
            raise InputError(f"{path}: the header opens a quote that never closes")
