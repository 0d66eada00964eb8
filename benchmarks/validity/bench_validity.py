"""Every rate the README and docs state, measured: stated, measured (with its interval), holds.

Each part (a module beside this one) measures one area and returns rows
(:mod:`_rows`); this script runs them all and prints one markdown table.

    .venv/bin/python benchmarks/validity/bench_validity.py           # the full run
    .venv/bin/python benchmarks/validity/bench_validity.py --quick   # fewer trials, a smoke test
    .venv/bin/python benchmarks/validity/bench_validity.py --only fleet

Exit status 1 when any row does not hold.
"""

from __future__ import annotations

import argparse
import importlib
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _rows import Row

#: The parts, in the order the table lists them.  A part that is not there yet is skipped
#: with a note, so the script runs while the areas land one by one.
PARTS = ("two_sample", "online_gates", "fleet", "detectors", "worker_drift", "estimate")


def table(rows: list[Row]) -> str:
    lines = [
        "| area | promise | stated | measured (95 % interval) | holds | how |",
        "|---|---|---|---|---|---|",
    ]
    for r in rows:
        verdict = "holds" if r.holds else "**does not hold**"
        lines.append(f"| {r.area} | {r.claim} | {r.stated} | {r.measured} | {verdict} | {r.how} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="fewer trials: a smoke test")
    ap.add_argument("--only", choices=PARTS, action="append", help="run only this part")
    args = ap.parse_args(argv)
    rows: list[Row] = []
    for name in args.only or PARTS:
        try:
            part = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name != name:
                raise
            print(f"(part {name} is not there)", file=sys.stderr)
            continue
        started = time.perf_counter()
        got = part.rows(args.quick)
        print(f"{name}: {len(got)} rows in {time.perf_counter() - started:.0f} s", file=sys.stderr)
        rows.extend(got)
    print(table(rows))
    bad = [r for r in rows if not r.holds]
    print(f"\n{len(rows) - len(bad)} of {len(rows)} rows hold.")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
