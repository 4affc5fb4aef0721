"""Run every ``benchmarks/bench_*.py``, each in its own subprocess.

A fresh interpreter per module keeps one benchmark's imports, caches and
garbage from skewing the next.  Usage::

    python -m benchmarks                 # every table, on stdout
    python -m benchmarks --json > r.json # one JSON document; tables on stderr
    python -m benchmarks wire            # only modules whose name contains "wire"
    python -m benchmarks --save r.json --chart docs/images/benchmarks.png

Other options (``--repeat``, ``--quick``) are passed on to each module.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def main() -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks", description=__doc__.split("\n")[0]
    )
    parser.add_argument("only", nargs="*", help="run only modules whose name contains one of these")
    parser.add_argument("--json", action="store_true", help="print one JSON document on stdout")
    parser.add_argument("--save", type=Path, help="also write that JSON document to this file")
    parser.add_argument(
        "--chart", type=Path, help="draw the ratios into this PNG (needs matplotlib)"
    )
    parser.add_argument("--repeat", type=int, help="timed reps per case (passed on)")
    parser.add_argument(
        "--quick", action="store_true", help="smoke run: fewer reps, smaller workloads (passed on)"
    )
    args = parser.parse_args()

    modules = sorted(p.stem for p in HERE.glob("bench_*.py"))
    if args.only:
        modules = [m for m in modules if any(word in m for word in args.only)]
    if not modules:
        parser.error("no benchmark module matches")
    passed_on = [] if args.repeat is None else ["--repeat", str(args.repeat)]
    if args.quick:
        passed_on.append("--quick")
    tables_to = sys.stderr if args.json else sys.stdout

    results: dict[str, object] = {}
    failed: list[str] = []
    for module in modules:
        start = time.perf_counter()
        proc = subprocess.run(
            [sys.executable, "-m", f"{HERE.name}.{module}", "--json", *passed_on],
            cwd=HERE.parent,
            capture_output=True,
            text=True,
            check=False,
        )
        took = time.perf_counter() - start
        print(f"## {module} ({took:.1f} s)\n", file=tables_to)
        print(proc.stderr.rstrip() + "\n", file=tables_to, flush=True)
        if proc.returncode != 0:
            failed.append(module)
            print(f"{module} exited with status {proc.returncode}\n", file=sys.stderr)
            continue
        try:
            results[module] = json.loads(proc.stdout)
        except json.JSONDecodeError as e:
            failed.append(module)
            print(f"{module} printed invalid JSON: {e}\n", file=sys.stderr)

    document = {"results": results, "failed": failed}
    if args.json:
        json.dump(document, sys.stdout, indent=2)
        print()
    if args.save:
        args.save.parent.mkdir(parents=True, exist_ok=True)
        args.save.write_text(json.dumps(document, indent=2) + "\n")
    if args.chart and results:
        from benchmarks import chart

        found = chart.bars(results)
        chart.draw(found, args.chart, chart.DEFAULT_TITLE)
        print(f"wrote {args.chart} ({len(found)} ratios)", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
