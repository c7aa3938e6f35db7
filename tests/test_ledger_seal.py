"""The results file against its ledger (ledger/seal.py): rows it shows sent must not be sendable."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipeline.errors import LedgerDamaged
from pipeline.ledger import Ledger, LedgerPaths, seal
from pipeline.ledger.records import header, outcome
from pipeline.models import Outcome, Status

from .test_ledger_check import created, write_results


def _open(tmp_path: Path, *records: bytes) -> Ledger:
    paths = LedgerPaths(tmp_path / "r.csv")
    paths.journal.write_bytes(header(0, "L", None) + b"".join(records))
    work = tmp_path / "work"
    work.mkdir(exist_ok=True)
    return Ledger.open(paths.results, work, writable=False)


def test_created_rows_must_stay_created_or_unknown_and_unknown_ones_known(tmp_path: Path):
    pending = Outcome("k2", Status.PENDING, attempts=0)
    ledger = _open(tmp_path, outcome(1, created("k1", 1)), outcome(2, pending), outcome(3, created("k3", 3)))
    paths = ledger.paths
    write_results(paths.results, {"k1": "created", "k3": "unknown", "k4": "pending", "k5": "invalid"})
    seal.cross_check(paths, ledger.view, tmp_path / "work")  # k3 unknown there, created here: fine
    write_results(paths.results, {"k1": "created", "k2": "created"})
    with pytest.raises(LedgerDamaged, match=r"1 row\(s\) .* sendable in it \(row_key 'k2' first\)"):
        seal.cross_check(paths, ledger.view, tmp_path / "work")
    write_results(paths.results, {"k1": "created", "k9": "unknown"})
    with pytest.raises(LedgerDamaged, match="row_key 'k9'"):
        seal.cross_check(paths, ledger.view, tmp_path / "work")
    assert list((tmp_path / "work").glob("sealcheck-*")) == []  # its runs are removed either way


def test_a_seal_holds_only_for_the_files_as_they_were(tmp_path: Path):
    ledger = _open(tmp_path, outcome(1, created("k1", 1)))
    paths = ledger.paths
    write_results(paths.results, {"k1": "created"})
    line = seal.seal_line(paths)
    assert seal.holds(f"pid 1 on host\n{line}\n", paths)
    assert not seal.holds("pid 1 on host", paths) and not seal.holds("seal {not json", paths)
    paths.journal.write_bytes(paths.journal.read_bytes() + outcome(2, created("k2", 2)))
    assert not seal.holds(line, paths)
