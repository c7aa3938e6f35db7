"""A results file + the run's inputs -> the rows that did not end `created`, as the user wrote them.

The error file has every column of the inputs, in their names and order (the ones the tool
ignores too), then `status`, `error_code`, `error_message`: fix it in a spreadsheet and feed
it straight back to `si-ingest run` (the loader reads only the API columns; a CSV it wrote
has its formula neutralisation undone, see `safe_csv`). Rows the ledger settled are not sent
again, so only the fixed rows leave.

Streaming, whatever the size: the non-created rows of the results are filtered lazily into
one Parquet file per input (results are in input order), then each input is read in blocks
by the loader and joined on its row number with a cursor over that file; the joined rows
are staged as Parquet parts and streamed into the error file (`results.sink`). The results
join on each input's name (`source`); the paths come from `--inputs`, else the run document
`<results>.run.json` (`{"inputs": [...], "results": ...}`), else the results' `source_path`.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import polars as pl

from . import loader, results
from .config import DEFAULT_CHUNK_ROWS
from .errors import InputError, reason_of
from .ledger import LedgerPaths
from .ledger.store import same_file
from .models import Status
from .report import run_document_path
from .safe_csv import ERROR_COLUMNS, restore_name
from .workfile import write_work_file

_HINT = "name the run's inputs with --inputs PATH..."
_ERROR_SCHEMA = {"source_row": pl.Int64, **dict.fromkeys(ERROR_COLUMNS, pl.String)}


def run_inputs(results_path: Path, recorded: Sequence[Path] = ()) -> list[Path]:
    """The run's input paths: as the run document names them (relative ones from its `cwd`,
    else from here), else the `source_path`s the results recorded."""
    try:
        return _from_document(results_path)
    except InputError as exc:
        if not recorded:
            raise
        unusable = exc
    for path in recorded:
        if not path.exists():
            raise InputError(
                f"input {path} of the run that wrote {results_path} no longer exists; {_HINT}"
            ) from unusable
    return list(recorded)


def _from_document(results_path: Path) -> list[Path]:
    doc = run_document_path(results_path)
    if not doc.exists():
        raise InputError(f"{doc} is missing, so the inputs of {results_path} are unknown; {_HINT}")
    try:
        data = json.loads(doc.read_text(encoding="utf-8"))
        inputs = data["inputs"]
        base = Path(data.get("cwd") or ".")
        if not isinstance(inputs, list) or not all(isinstance(i, str) for i in inputs):
            raise TypeError("inputs is not a list of paths")
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        raise InputError(f"{doc} cannot be read ({exc}); {_HINT}") from exc
    paths = [base / name for name in inputs]
    for path in paths:
        if not path.exists():
            raise InputError(f"input {path} of the run that wrote {results_path} no longer exists; {_HINT}")
    return paths


@dataclass(frozen=True, slots=True)
class _Target:
    """The error file's columns: the inputs' (union, in order of appearance) then ERROR_COLUMNS."""

    schema: pl.Schema

    @classmethod
    def of(cls, files: Sequence[loader.InputFile], parquet: bool) -> _Target:
        dtypes: dict[str, pl.DataType] = {}
        for file in files:
            stored = pl.scan_parquet(file.path).collect_schema() if file.is_parquet else None
            for name in file.header:
                if name in ERROR_COLUMNS:  # an error file fed back: its old verdict makes way for the new one
                    continue
                dtype = stored[name] if stored is not None and parquet else pl.String()
                dtypes[name] = dtype if dtypes.get(name, dtype) == dtype else pl.String()
        return cls(pl.Schema({**dtypes, **dict.fromkeys(ERROR_COLUMNS, pl.String())}))

    def shape(self, joined: pl.DataFrame) -> pl.DataFrame:
        exprs = []
        for name, dtype in self.schema.items():
            if name not in joined.columns:
                exprs.append(pl.lit(None, dtype=dtype).alias(name))
            elif dtype == pl.String and joined.schema[name] != pl.String:
                exprs.append(_as_text(name, joined.schema[name]).alias(name))
            else:
                exprs.append(pl.col(name))
        return joined.select(exprs)


def _as_text(name: str, dtype: pl.DataType) -> pl.Expr:
    """A Parquet column in a CSV error file: as `run` reads it (`loader.as_text`), and a column
    `run` ignores that has no plain text (a list, struct or array as JSON, binary as hex, a
    duration in ISO 8601): it had stopped the whole error file with polars' "cannot cast List
    type" and no column named (found by a review, h7b)."""
    if dtype.is_nested():
        wrapped = pl.struct(pl.col(name).alias("v")).struct.json_encode()  # {"v":...}
        return pl.when(pl.col(name).is_null()).then(None).otherwise(wrapped.str.slice(5).str.strip_suffix("}"))
    if dtype == pl.Binary:
        return pl.col(name).bin.encode("hex")
    if dtype == pl.Duration:
        return pl.col(name).dt.to_string("iso")
    return loader.as_text(name, dtype)  # what `run` would read


class _Cursor:
    """One input's error rows in row order, read a slice at a time."""

    def __init__(self, path: Path, source: str, step: int) -> None:
        self._scan = pl.scan_parquet(path)
        self._total: int = self._scan.select(pl.len()).collect().item()
        self._source = source
        self._step = step
        self._read = 0
        self._held = pl.DataFrame(schema=_ERROR_SCHEMA)

    def upto(self, row: int) -> pl.DataFrame:
        """The error rows numbered up to `row` not yet taken."""
        while self._read < self._total and (self._held.is_empty() or self._held["source_row"][-1] <= row):
            more = self._scan.slice(self._read, self._step).collect()
            self._read += more.height
            joined = pl.concat([self._held, more])
            if not (joined["source_row"].diff().drop_nulls() > 0).all():
                raise InputError(f"the results rows of {self._source} are not in input order; rerun `si-ingest run`")
            self._held = joined
        taken = self._held.filter(pl.col("source_row") <= row)
        self._held = self._held.slice(taken.height).rechunk()  # not a view holding every batch read
        return taken

    @property
    def left(self) -> int:
        return self._total - self._read + self._held.height


def write(
    results_path: Path, dest: Path, inputs: Sequence[Path] | None = None, chunk_rows: int = DEFAULT_CHUNK_ROWS
) -> int:
    """Write the error file of `results_path` to `dest` (.parquet, else CSV); returns its rows."""
    _check_dest(results_path, dest)
    if not results_path.exists():
        raise InputError(f"results file {results_path} does not exist")
    work = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", suffix=".work", dir=dest.parent))
    try:
        counts, held, staged = _read_results(results_path, work)
        for source, paths_of in held.items():
            if len(paths_of) > 1:  # their rows had been read as one file's: "not in input order"
                first, second = sorted(paths_of)[:2]
                raise InputError(
                    f"the run's inputs {first} and {second} are both named {source}; the results cannot tell"
                    " their rows apart for an error file: give the inputs different names and run again"
                )
        recorded = [Path(next(iter(held[source]))) for source in counts if held.get(source)]  # in run order
        paths = list(inputs) if inputs else run_inputs(results_path, recorded)
        for path in paths:
            if not path.exists():
                raise InputError(f"input {path} does not exist")
        files = _files(paths, counts)
        target = _Target.of(files, parquet=dest.name.endswith(".parquet"))
        rows = _ErrorRows(files, counts, staged, work, target, chunk_rows)
        try:
            parts = rows.stage()
            results.sink_parts(parts, dest, target.schema)
        except (OSError, pl.exceptions.PolarsError) as exc:
            raise InputError(f"cannot write error file {dest}: {reason_of(exc)}") from exc
        return rows.written
    finally:
        shutil.rmtree(work, ignore_errors=True)


_READ = ("source", *_ERROR_SCHEMA)  # status among them


def _read_results(results_path: Path, work: Path) -> tuple[dict[str, tuple[int, int]], dict[str, set[str]], list[Path]]:
    """One pass over the results file, batch by batch: (rows, rows not created) per source in
    run order, the input paths each source was recorded with, and the rows not created staged
    as Parquet parts in `work`. `loader.written_batches`, never `pl.scan_csv`: the streaming
    read and a per-source `unique` of the paths had held every row (report --errors of 1M
    results rows 492 MB, 5M 1,016 MB; found by a review, h11b)."""
    counts: dict[str, tuple[int, int]] = {}
    held: dict[str, set[str]] = {}
    staged: list[Path] = []
    try:
        names = loader.written_header(results_path)
        results.require_columns(results_path, names)
        columns = [*_READ, *(["source_path"] if "source_path" in names else [])]
        for batch in loader.written_batches(results_path, columns, loader.WRITTEN_ROWS):
            batch = batch.with_columns(pl.col("source_row").cast(pl.Int64))
            not_created = pl.col("status") != Status.CREATED.value
            for source, rows, errors in (
                batch.group_by("source", maintain_order=True).agg(pl.len(), not_created.sum()).iter_rows()
            ):
                before = counts.get(source, (0, 0))
                counts[source] = (before[0] + rows, before[1] + errors)
            if "source_path" in columns:
                pairs = batch.select("source", "source_path").drop_nulls().unique(maintain_order=True)
                for source, path in pairs.iter_rows():
                    held.setdefault(source, set()).add(path)
            errors_of = batch.filter(not_created).select("source", *_ERROR_SCHEMA).cast(_ERROR_SCHEMA)  # type: ignore[arg-type]
            if errors_of.height:
                part = work / f"errors-{len(staged):06d}.parquet"
                write_work_file(part, errors_of.write_parquet, part)
                staged.append(part)
    except (OSError, pl.exceptions.PolarsError) as exc:
        raise InputError(f"results file {results_path} cannot be read: {str(exc).splitlines()[0]}") from exc
    if not staged:  # no row to fix: one empty part, so the parts are never no file at all
        part = work / "errors-000000.parquet"
        pl.DataFrame(schema={"source": pl.String, **_ERROR_SCHEMA}).write_parquet(part)
        staged.append(part)
    return counts, held, staged


def _check_dest(results_path: Path, dest: Path) -> None:
    if not dest.name.endswith((".csv", ".parquet")):
        raise InputError(f"error file {dest} must end in .csv or .parquet, so that `si-ingest run` can read it back")
    if not dest.parent.is_dir():
        raise InputError(f"the folder of the error file {dest} does not exist")
    own = (*LedgerPaths(results_path).owned, run_document_path(results_path))
    if dest.is_dir() or any(same_file(dest, p) for p in own):
        raise InputError(f"error file {dest} would replace the results file or its ledger; choose another path")
    if dest.exists() and not _an_error_file(dest):  # the one fed back may be replaced; an export may not
        raise InputError(
            f"error file {dest} exists and is not an error file si-ingest wrote (an export?): it would be"
            " overwritten; choose another path"
        )


def _an_error_file(path: Path) -> bool:
    """`path` is an error file this tool wrote: its last columns are the error columns."""
    try:
        if path.name.endswith(".parquet"):
            names = list(pl.read_parquet_schema(path))
        else:
            names = [restore_name(n) for n in pl.scan_csv(path, n_rows=0, infer_schema=False).collect_schema()]
    except (OSError, pl.exceptions.PolarsError):
        return False
    return tuple(names[-len(ERROR_COLUMNS) :]) == ERROR_COLUMNS


def _files(paths: Sequence[Path], counts: dict[str, tuple[int, int]]) -> list[loader.InputFile]:
    """The input files whose rows the results hold, in run order; every source with errors found."""
    files: dict[str, loader.InputFile] = {}
    for path in loader.discover(list(paths)):
        if path.name not in counts:
            continue  # not part of the run that wrote these results
        if path.name in files:
            raise InputError(
                f"two inputs are named {path.name} ({files[path.name].path} and {path}); the results cannot tell "
                f"their rows apart: {_HINT} (only one of them)"
            )
        files[path.name] = loader.describe(path)
    for source, (_, errors) in counts.items():
        if errors and source not in files:
            raise InputError(f"the results hold rows of {source}, but no input is named {source}; {_HINT}")
    return list(files.values())


@dataclass
class _ErrorRows:
    """The error file's rows, input by input in run order, block by block."""

    files: Sequence[loader.InputFile]
    counts: dict[str, tuple[int, int]]  # source -> (rows in the results, rows not created)
    staged: list[Path]
    work: Path
    target: _Target
    chunk_rows: int
    written: int = 0

    def stage(self) -> list[Path]:
        """Write the rows as Parquet parts in the work folder, in order; returns their paths."""
        parts: list[Path] = []
        for index, file in enumerate(self.files):
            expected, errors = self.counts[file.name]
            if not errors:
                continue
            for frame in self._file(file, expected, self.work / f"source-{index}.parquet"):
                part = self.work / f"part-{len(parts):06d}.parquet"
                write_work_file(part, frame.write_parquet, part)
                parts.append(part)
        return parts

    def _file(self, file: loader.InputFile, expected: int, own: Path) -> Iterator[pl.DataFrame]:
        pl.scan_parquet(self.staged).filter(pl.col("source") == file.name).drop("source").sink_parquet(own)
        cursor = _Cursor(own, file.name, self.chunk_rows)
        seen = 0
        for batch in loader.raw_batches(file, self.chunk_rows):
            seen += batch.height
            if batch.is_empty():
                continue
            wanted = cursor.upto(int(batch[loader.ROW_INDEX][-1]))
            if wanted.is_empty():
                continue
            original = batch.drop(ERROR_COLUMNS, strict=False)
            joined = original.join(wanted, left_on=loader.ROW_INDEX, right_on="source_row", maintain_order="left")
            self.written += joined.height
            yield self.target.shape(joined)
        if seen != expected or cursor.left:
            raise InputError(
                f"input {file.path} has {seen} data rows but the run read {expected} from it: it changed since "
                f"the run; {_HINT} (the files as they were)"
            )
