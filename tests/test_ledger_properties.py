"""Properties of the journal reader under damage: fail closed or read the same state, never another."""

from __future__ import annotations

import itertools
from pathlib import Path

import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pipeline.errors import LedgerDamaged
from pipeline.ledger import Ledger, LedgerPaths
from pipeline.ledger import lines as lines_mod
from pipeline.ledger import records as rec
from pipeline.ledger.lines import read_lines
from pipeline.ledger.reader import iter_lines
from pipeline.models import ErrorCode, Outcome, Status

KEYS = st.sampled_from(["a", "b", "c", "crm-7", "ünï", 'q"t\\'])
OUTCOMES = st.builds(
    Outcome,
    row_key=KEYS,
    status=st.sampled_from(list(Status)),
    sir_id=st.none() | st.integers(0, 2**40),
    error_code=st.none() | st.sampled_from(["HTTP_503", "NOT_FOUND"]),
    error_message=st.none() | st.text(max_size=12),
    attempts=st.integers(0, 9),
    http_status=st.none() | st.sampled_from([200, 429, 503]),
    updated_at=st.just("2026-11-27T00:00:00.000000Z"),
)
RECORDS = st.lists(st.tuples(KEYS, st.integers(1, 9)) | OUTCOMES, min_size=2, max_size=12)
# where to flip (-1: the line's newline, whose loss joins two lines) and to what: any byte, and
# often one that means something to a line reader or to JSON (NUL included).
OFFSETS = st.just(-1) | st.integers(0, 10_000)
VALUES = st.sampled_from(b'\n\r\t"\\{}:,0aZ\x00') | st.integers(0, 255)
PROPERTY = settings(
    max_examples=60, deadline=None, database=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
_counter = itertools.count()


def journal_lines(entries: list[tuple[str, int] | Outcome]) -> list[bytes]:
    lines = [rec.header(0, "L", None)]
    for seq, entry in enumerate(entries, start=1):
        lines.append(rec.outcome(seq, entry) if isinstance(entry, Outcome) else rec.intent(seq, *entry))
    return lines


def read_state(folder: Path, data: bytes) -> pl.DataFrame:
    """Open the ledger as a run does and read every partition; the state sorted by row_key."""
    folder.mkdir()
    LedgerPaths(folder / "r.csv").journal.write_bytes(data)
    ledger = Ledger.open(folder / "r.csv", folder / "work", writable=False)
    parts = list(ledger.view.partitions())
    state = pl.concat(parts) if parts else pl.DataFrame(schema={**rec.STATE_SCHEMA, "legacy": pl.Boolean()})
    # a key left in flight is stamped with the time it was read: compare everything else
    unanswered = pl.col("error_code") == ErrorCode.NO_ANSWER_RECORDED.value
    return state.with_columns(updated_at=pl.when(unanswered).then(None).otherwise("updated_at")).sort("row_key")


def flipped(lines: list[bytes], line: int, offset: int, value: int) -> bytes | None:
    """The journal with one byte of `lines[line]` set to `value` (offset -1: its newline); None if unchanged."""
    data = bytearray(b"".join(lines))
    start = sum(len(x) for x in lines[:line])
    at = start + (len(lines[line]) - 1 if offset < 0 else offset % len(lines[line]))
    if data[at] == value:
        return None
    data[at] = value
    return bytes(data)


def fresh(tmp_path: Path) -> Path:
    return tmp_path / f"case{next(_counter)}"


@PROPERTY
@given(entries=RECORDS, line=st.integers(0, 100), offset=OFFSETS, value=VALUES)
def test_a_flipped_byte_before_the_last_line_is_damage_or_changes_nothing(tmp_path, entries, line, offset, value):
    lines = journal_lines(entries)
    line %= len(lines) - 1  # any line but the last, the header included
    data = flipped(lines, line, offset, value)
    if data is None:
        return
    original = read_state(fresh(tmp_path), b"".join(lines))
    try:
        damaged = read_state(fresh(tmp_path), data)
    except LedgerDamaged as exc:
        assert exc.path.name == "r.csv.journal"
        return
    assert damaged.equals(original)


def sound_per_line(path: Path) -> list[bool]:
    lines = path.read_bytes().count(b"\n")
    return [rec.check_line(raw, pos).record is not None for pos, raw in iter_lines(path, lines)]


def sound_vectorised(path: Path) -> list[bool]:
    lines = path.read_bytes().count(b"\n")
    try:
        batch = pl.concat(list(read_lines(path, lines, block_bytes=97)))  # blocks cut mid-record
    except pl.exceptions.PolarsError:  # a NUL: the reader refuses the file; the run then names the line
        return [rec.check_line(raw, pos).record is not None for pos, raw in iter_lines(path, lines)]
    try:
        return rec.decode_lines(batch)["ok"].to_list()
    except pl.exceptions.PolarsError:  # JSON polars cannot decode: then line by line
        verdicts = []
        for i in range(batch.height):
            try:
                verdicts.append(bool(rec.decode_lines(batch.slice(i, 1))["ok"][0]))
            except pl.exceptions.PolarsError:
                verdicts.append(False)
        return verdicts


@PROPERTY
@given(entries=RECORDS, line=st.integers(0, 100), offset=OFFSETS, value=VALUES)
def test_both_checks_agree_on_which_lines_are_sound_after_a_flip(tmp_path, entries, line, offset, value):
    lines = journal_lines(entries)
    line %= len(lines) - 1
    data = flipped(lines, line, offset, value)
    if data is None:
        return
    path = fresh(tmp_path)
    path.write_bytes(data)
    per_line = sound_per_line(path)
    assert sound_vectorised(path) == per_line
    assert not all(per_line)  # a single flipped byte is always caught


def newline_to_nul(lines: list[bytes], line: int) -> bytes:
    data = flipped(lines, line, -1, 0)
    assert data is not None
    return data


def test_a_newline_turned_into_nul_loses_no_outcome(tmp_path):
    """The last record, an outcome, disappears: a row created reads as in flight (`unknown`)."""
    entries: list[tuple[str, int] | Outcome] = [("b", 1), Outcome("b", Status.CREATED, sir_id=5, attempts=1)]
    lines = journal_lines(entries)
    original = read_state(fresh(tmp_path), b"".join(lines))
    try:
        damaged = read_state(fresh(tmp_path), newline_to_nul(lines, 1))
    except LedgerDamaged:
        return
    assert damaged.equals(original)


def test_a_newline_turned_into_nul_loses_no_intent(tmp_path):
    """The last record, an intent (the run was killed with the request in flight), disappears: the
    row reads as never attempted (`pending`), so the next run sends it again."""
    entries: list[tuple[str, int] | Outcome] = [Outcome("a", Status.CREATED, sir_id=1, attempts=1), ("b", 1)]
    lines = journal_lines(entries)
    original = read_state(fresh(tmp_path), b"".join(lines))
    assert "b" in original["row_key"].to_list()
    try:
        damaged = read_state(fresh(tmp_path), newline_to_nul(lines, 1))
    except LedgerDamaged:
        return
    assert damaged.equals(original)


@pytest.mark.parametrize(
    "suffix",
    [
        pytest.param(b"\x00anything", id="after-nul"),
        pytest.param(b"\r", id="crlf"),
    ],
)
def test_the_reader_and_ledger_check_agree_on_bytes_after_the_checksum(tmp_path, suffix):
    good = rec.outcome(1, Outcome("a", Status.CREATED, sir_id=1, attempts=1)).rstrip(b"\n")
    path = fresh(tmp_path)
    path.write_bytes(rec.header(0, "L", None) + good + suffix + b"\n")
    if suffix == b"\r":  # a line end converted to CRLF: the record is intact, both readers take it
        assert sound_per_line(path) == [True, True]
        assert read_state(tmp_path / "crlf", path.read_bytes())["row_key"].to_list() == ["a"]
        return
    assert sound_per_line(path) == [True, False]  # the line is not what was written
    with pytest.raises(LedgerDamaged) as info:  # the run's reader: polars refuses the line, the per-line check names it
        read_state(tmp_path / "nul", path.read_bytes())
    assert info.value.position == 1


def check_and_repair(folder: Path, data: bytes) -> tuple[list[tuple[int | None, str, str | None]], dict]:
    from pipeline.ledger.check import check
    from pipeline.ledger.repair import repair

    folder.mkdir()
    (folder / "work").mkdir()
    paths = LedgerPaths(folder / "r.csv")
    paths.journal.write_bytes(data)
    found = [(f.position, f.problem, f.row_key) for f in check(paths.results, folder / "work").findings]
    repair(paths.results, folder / "work")
    state = read_state(folder / "after", paths.journal.read_bytes()) if paths.journal.exists() else None
    return found, {} if state is None else {r["row_key"]: r for r in state.drop("updated_at").iter_rows(named=True)}


@settings(PROPERTY, max_examples=30)  # a whole `ledger check` per example: 0.25 s each
@given(
    entries=RECORDS,
    edits=st.lists(st.tuples(st.integers(0, 100), OFFSETS, VALUES), max_size=3),
    cut=st.lists(st.integers(0, 100), max_size=2),
    block=st.integers(1, 400),
)
def test_ledger_check_reads_sound_blocks_at_once_with_the_same_findings_as_line_by_line(
    tmp_path, monkeypatch, entries, edits, cut, block
):
    """`ledger check` decodes a block of sound, numbered-on lines vectorised and reads any other
    block line by line: the findings and the repaired ledger are those of reading every line
    alone, whatever the damage (flipped bytes, lost lines) and wherever the blocks fall."""
    from pipeline.ledger import check as check_mod

    lines = journal_lines(entries)
    for at in cut:
        if len(lines) > 2:
            del lines[1 + at % (len(lines) - 1)]
    data = b"".join(lines)
    for line, offset, value in edits:
        data = flipped(data.splitlines(keepends=True), line % max(1, data.count(b"\n") - 1), offset, value) or data
    with monkeypatch.context() as patch:
        patch.setattr(lines_mod, "LINE_BLOCK_BYTES", block)
        blockwise = check_and_repair(fresh(tmp_path), data)
    with monkeypatch.context() as patch:
        patch.setattr(check_mod.Scan, "_sound_block", staticmethod(lambda *a: None))
        linewise = check_and_repair(fresh(tmp_path), data)
    assert blockwise == linewise
