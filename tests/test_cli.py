"""The CLI's edge, in process: flag validators, exit codes and messages of the `ledger` command."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from pipeline import cli
from pipeline.ledger import LedgerPaths, replay
from pipeline.ledger.records import header, outcome
from pipeline.models import Outcome, Status
from pipeline.sandbox import args as sandbox_args


def exit_code(argv: list[str]) -> int:
    with pytest.raises(SystemExit) as info:
        cli.main(argv)
    return int(info.value.code)


def test_rate_is_a_number_or_auto():
    assert cli._rate("auto") == "auto"
    assert cli._rate("12.5") == 12.5
    with pytest.raises(argparse.ArgumentTypeError, match="requests per second or 'auto', not 'fast'"):
        cli._rate("fast")


@pytest.mark.parametrize(("text", "value"), [("0", 0.0), ("1", 1.0), ("0.25", 0.25)])
def test_probability_accepts_zero_to_one(text: str, value: float):
    assert sandbox_args._probability(text) == value


@pytest.mark.parametrize("text", ["-0.1", "1.01", "half", "nan", ""])
def test_probability_refuses_anything_else(text: str):
    with pytest.raises(argparse.ArgumentTypeError, match=f"between 0 and 1, not {text!r}"):
        sandbox_args._probability(text)


@pytest.mark.parametrize(("text", "pair"), [("5-50", (5.0, 50.0)), ("7", (7.0, 7.0)), ("0-0", (0.0, 0.0))])
def test_range_ms_reads_min_max(text: str, pair: tuple[float, float]):
    assert sandbox_args._range_ms(text) == pair


@pytest.mark.parametrize(
    ("text", "message"),
    [("a-b", "like 5-50"), ("-5", "like 5-50"), ("5-x", "like 5-50"), ("50-5", "0 <= MIN <= MAX")],
)
def test_range_ms_refuses_what_is_not_a_range(text: str, message: str):
    with pytest.raises(argparse.ArgumentTypeError, match=message):
        sandbox_args._range_ms(text)


def test_bad_flag_values_are_usage_errors(capsys):
    assert exit_code(["sandbox", "--error-rate", "2"]) == 2
    assert "--error-rate: must be a probability between 0 and 1, not '2'" in capsys.readouterr().err
    assert exit_code(["sandbox", "--latency", "9-1"]) == 2
    assert "MIN <= MAX" in capsys.readouterr().err


def test_ledger_command_on_a_missing_folder_exits_2_with_one_line(tmp_path: Path, capsys):
    results = tmp_path / "nowhere" / "r.csv"
    assert exit_code(["ledger", "check", str(results)]) == 2
    err = capsys.readouterr().err
    assert err.strip() == f"si-ingest: error: the folder of the results file {results} does not exist"
    assert not (tmp_path / "nowhere").exists()


def test_ledger_check_and_repair_in_process(tmp_path: Path, capsys):
    paths = LedgerPaths(tmp_path / "r.csv")
    good = outcome(2, Outcome("b", Status.CREATED, sir_id=2, attempts=1))
    paths.journal.write_bytes(header(0, "L", None) + b"damaged\n" + good)
    assert exit_code(["ledger", "check", str(paths.results)]) == 1
    assert "r.csv.journal record 2: checksum mismatch" in capsys.readouterr().out
    assert exit_code(["ledger", "repair", str(paths.results)]) == 0
    # only the files it rewrote are named (a snapshot that does not exist had been: review h9b)
    assert "repaired: r.csv.journal rewritten from the sound records; 0 rows are now `unknown`" in (
        capsys.readouterr().out
    )
    assert exit_code(["ledger", "check", str(paths.results)]) == 0
    assert "no damage found" in capsys.readouterr().out
    assert not paths.workdir.exists()  # the work folder is removed either way
    assert replay(paths.journal)[0]["row_key"].to_list() == ["b"]


def test_ctrl_c_outside_a_run_exits_130(monkeypatch, capsys):
    def interrupted(args: argparse.Namespace) -> int:
        raise KeyboardInterrupt

    monkeypatch.setattr(cli, "_dispatch", interrupted)
    assert exit_code(["report", "x.csv"]) == 130
    assert capsys.readouterr().err.strip() == "si-ingest: interrupted by SIGINT"


def test_a_signal_that_polars_wrapped_is_an_interrupt_not_a_crash(monkeypatch, capsys, tmp_path):
    """The planner's handler raises Interrupted; raised inside a polars callback (an IO source)
    it comes back as a ComputeError, which had been reported as an internal error (exit 4)."""
    import polars as pl

    from pipeline.errors import Interrupted

    def wrapped(args: argparse.Namespace) -> int:
        try:
            raise Interrupted("interrupted by SIGINT before any request was sent")
        except Interrupted as exc:
            raise pl.exceptions.ComputeError("caught Python exception in an IO source") from exc

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(cli, "_dispatch", wrapped)
    assert exit_code(["report", "x.csv"]) == 130
    assert capsys.readouterr().err.strip() == "si-ingest: interrupted by SIGINT before any request was sent"
    assert not list(tmp_path.glob("si-ingest-crash-*"))


def test_a_signal_raised_inside_a_work_file_write_is_an_interrupt(tmp_path):
    import polars as pl

    from pipeline.errors import Interrupted
    from pipeline.workfile import write_work_file

    def write() -> None:
        try:
            raise Interrupted("interrupted by SIGTERM before any request was sent")
        except Interrupted as exc:
            raise pl.exceptions.ComputeError("caught Python exception in an IO source") from exc

    with pytest.raises(Interrupted):
        write_work_file(tmp_path / "x.parquet", write)


def test_a_flag_undoes_a_config_boolean_for_one_run(tmp_path):
    """`resend_unknown = true`, `dry_run = true` or `fsync = false` in a config could not be undone
    by a flag ("a flag beats the config file"): there was no --no-resend-unknown, --no-dry-run or --fsync."""
    from pipeline.config import load_config

    config_file = tmp_path / "c.toml"
    config_file.write_text("[run]\nresend_unknown = true\ndry_run = true\nfsync = false\n")
    args = cli.build_parser().parse_args(["run", "a.csv", "--no-resend-unknown", "--no-dry-run", "--fsync"])
    overrides = {"run.resend_unknown": args.resend_unknown, "run.dry_run": args.dry_run, "run.fsync": args.fsync}
    run = load_config(config_file, overrides, env={}).run
    assert (run.resend_unknown, run.dry_run, run.fsync) == (False, False, True)
    args = cli.build_parser().parse_args(["run", "a.csv", "--no-fsync"])
    assert args.fsync is False and args.resend_unknown is None and args.dry_run is None


def test_report_on_a_folder_is_one_line(tmp_path, capsys):
    assert exit_code(["report", str(tmp_path)]) == 2
    assert (
        capsys.readouterr().err.strip()
        == f"si-ingest: error: {tmp_path} is a folder; name the results file (.csv or .parquet) in it"
    )
