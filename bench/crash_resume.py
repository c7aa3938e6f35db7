"""Kill -9 the CLI at seeded moments while it sends, then finish; count from the sandbox's record.

    python bench/crash_resume.py [--rows 3000] [--kills 5] [--seed 2026]
Prints duplicates (must be 0), unknown and created counts, and the ratio of requests the
sandbox received to rows (1.0 would mean no request was lost to a kill or repeated).
"""

from __future__ import annotations

import argparse
import random
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._harness import SandboxProc, cli, write_rows
from pipeline import results


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=3000)
    parser.add_argument("--kills", type=int, default=5)
    parser.add_argument("--seed", type=int, default=2026)
    args = parser.parse_args()
    rng = random.Random(args.seed)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        rows = write_rows(folder / "in.csv", args.rows, seed=args.seed)
        out = folder / "r.csv"
        box = SandboxProc("--latency", "5-40", "--seed", str(args.seed))
        run = ["run", str(rows), "--base-url", box.url, "--results", str(out), "--rate", "400", "--concurrency", "16"]
        try:
            for k in range(args.kills):
                proc = cli(*run)
                time.sleep(rng.uniform(1.0, 2.5))
                proc.kill()
                proc.wait()
                print(f"kill {k + 1}: server has {box.get('/_sandbox/stats')['created']} SI requests")
            final = cli(*run)
            final.wait()
            created = box.get("/_sandbox/requests")
            stats = box.get("/_sandbox/stats")
        finally:
            box.close()
        frame = results.read(out)
        per_row = Counter(r["sir_context"] for r in created)
        statuses = Counter(frame["status"])
        print(f"rows {args.rows}, kills {args.kills}, seed {args.seed}, final exit {final.returncode}")
        twice = sum(1 for c in per_row.values() if c > 1)
        print(f"server: {len(created)} SI requests, {twice} rows created twice (duplicates)")
        print(f"results: {dict(statuses)}")
        print(f"requests received / rows: {stats['requests'] / args.rows:.3f}")


if __name__ == "__main__":
    main()
