"""`si-ingest demo`: the built-in sandbox on a free loopback port, sample_data/ ingested end to end."""

from __future__ import annotations

import shutil
from pathlib import Path

import structlog

from . import report
from .config import ApiConfig, Config, Credentials, InputConfig, RunConfig, Secret
from .errors import ConfigError
from .ledger import LedgerPaths
from .runner import run
from .sandbox import DEFAULT_API_KEY, DEFAULT_DEVELOPER_SECRET, DEFAULT_ORG_ID, Sandbox, SandboxConfig
from .sandbox.samples import CSV_NAME, PARQUET_NAME, demo_contacts, generate

log = structlog.get_logger("si_ingest.demo")


def find_samples(output: Path) -> list[Path]:
    """sample_data/ in the current folder or beside the package; else generate a copy in `output`."""
    for folder in (Path.cwd() / "sample_data", Path(__file__).resolve().parent.parent / "sample_data"):
        files = [folder / CSV_NAME, folder / PARQUET_NAME]
        if all(f.is_file() for f in files):
            return files
    return generate(output / "sample_data")


MARKER = ".si-ingest-demo"  # in a folder the demo made: it may start that folder over


async def demo(output: Path) -> int:
    output.mkdir(parents=True, exist_ok=True)  # noqa: ASYNC240 - setup before the loop runs any other task
    results = output / "si-results.csv"
    ledger = LedgerPaths(results)
    owned = [p for p in (results, ledger.journal, ledger.snapshot, ledger.lock) if p.exists()]
    if owned and not (output / MARKER).exists():  # a real job's ledger: deleting it had resent every row
        raise ConfigError(
            f"{output} holds {owned[0].name}, which the demo did not make (a real job's ledger?); the demo starts"
            " its folder over each time: pass another --output"
        )
    (output / MARKER).write_text("made by `si-ingest demo`, which starts this folder over each time\n")
    # a demo starts over: its lock file too, whose key count (ledger/seal.py) would find the
    # new ledger short of the last demo's keys (a second `make demo` had exited 2, "damaged")
    for stale in (results, ledger.journal, ledger.snapshot, ledger.lock, *ledger.saved_records()):
        stale.unlink(missing_ok=True)
    shutil.rmtree(results.with_name(results.name + ".work"), ignore_errors=True)
    files = find_samples(output)
    sandbox = Sandbox(
        SandboxConfig(
            contacts=demo_contacts(files),
            latency_ms=(2.0, 25.0),
            error_rate=0.03,
            error_statuses=(503,),
            retry_after=0,
            seed=7,
        )
    )
    url = await sandbox.start("127.0.0.1", 0)
    print(f"sandbox: {url}")
    config = Config(
        api=ApiConfig(base_url=url),
        run=RunConfig(results=results, rate=100.0, concurrency=16, backoff_base=0.05),
        input=InputConfig(),
        default_org_id=DEFAULT_ORG_ID,
    )
    credentials = Credentials(Secret(DEFAULT_API_KEY), Secret(DEFAULT_DEVELOPER_SECRET))
    try:
        result = await run(files, config, credentials)
    finally:
        stats = sandbox.stats()
        await sandbox.stop()
    print(report.render_text(result.summary))
    if result.stats:
        print(
            f"requests: {result.stats.requests} ({result.stats.retries} retries) in {result.stats.seconds:.1f}s, "
            f"{result.stats.per_second:.0f}/s; sandbox created {stats['created']} SI requests"
        )
    print(f"inputs: {', '.join(str(f) for f in files)}")
    print(f"results: {results.resolve()}  (si-ingest report {results})")
    print(f"a real run would exit {result.exit_code} (1: some rows invalid, duplicate or rejected, as planted)")
    return 0 if result.exit_code in (0, 1) else result.exit_code
