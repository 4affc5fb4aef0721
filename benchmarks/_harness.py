"""Timing, tables and the command line shared by the ``bench_*`` modules.

A case is timed as ``repeat`` reps (after one warm-up rep) of ``n`` operations
each, with the garbage collector off during a rep; the median rep divided by
``n`` is reported.  Each rep gets fresh state from a ``setup`` callable that is
not timed, so stateful code (a replay guard, a message counter) starts every
rep the same way.  Cases compared with each other are timed round-robin
(:func:`measure_many`), so background load lands on all of them alike.

Every module prints its tables on stdout, or with ``--json`` prints one JSON
document on stdout and the tables on stderr, so ``> results.json`` keeps both.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version
from typing import Any

__all__ = [
    "DEFAULT_REPEAT",
    "Table",
    "Timing",
    "emit",
    "environment",
    "fmt_rate",
    "fmt_ratio",
    "fmt_us",
    "measure",
    "measure_many",
    "noise_note",
    "parse_args",
]

DEFAULT_REPEAT = 7
NOISY_SPREAD = 0.10


@dataclass(frozen=True)
class Timing:
    """``repeat`` reps of ``n`` operations each, in seconds per rep."""

    n: int
    reps_s: tuple[float, ...]

    @property
    def us(self) -> float:
        """Median microseconds per operation."""
        return statistics.median(self.reps_s) / self.n * 1e6

    @property
    def per_s(self) -> float:
        """Operations per second at the median rep."""
        return 1e6 / self.us

    @property
    def spread(self) -> float:
        """Interquartile range of the reps / median rep: how noisy the reps were."""
        if len(self.reps_s) < 2:
            return 0.0
        q1, _, q3 = statistics.quantiles(self.reps_s, n=4)
        return (q3 - q1) / statistics.median(self.reps_s)

    def as_json(self) -> dict[str, Any]:
        return {
            "us_per_op": round(self.us, 4),
            "ops_per_s": round(self.per_s, 1),
            "n": self.n,
            "spread": round(self.spread, 3),
            "reps_us_per_op": [round(r / self.n * 1e6, 4) for r in self.reps_s],
        }


def measure(
    setup: Callable[[], Callable[[], object]],
    n: int,
    *,
    repeat: int = DEFAULT_REPEAT,
    warmup: int = 1,
) -> Timing:
    """Time ``setup()()``, which must perform ``n`` operations.

    ``setup`` runs untimed before every rep and returns the function to time.
    """
    return measure_many({"": setup}, n, repeat=repeat, warmup=warmup)[""]


def measure_many(
    setups: Mapping[str, Callable[[], Callable[[], object]]],
    n: int,
    *,
    repeat: int = DEFAULT_REPEAT,
    warmup: int = 1,
) -> dict[str, Timing]:
    """Time several cases of ``n`` operations each, interleaved rep by rep.

    Round-robin reps put every case under the same background load, so a noisy
    neighbour skews their ratios much less than timing them one after another.
    """
    reps: dict[str, list[float]] = {name: [] for name in setups}
    for i in range(warmup + repeat):
        for name, setup in setups.items():
            run = setup()
            gc.collect()
            was_enabled = gc.isenabled()
            gc.disable()
            try:
                start = time.perf_counter()
                run()
                elapsed = time.perf_counter() - start
            finally:
                if was_enabled:
                    gc.enable()
            if i >= warmup:
                reps[name].append(elapsed)
    return {name: Timing(n, tuple(r)) for name, r in reps.items()}


def noise_note(timings: Sequence[Timing]) -> list[str]:
    """A warning line if reps of some cases disagree too much to trust."""
    noisy = [t for t in timings if t.spread > NOISY_SPREAD]
    if not noisy:
        return []
    worst = max(t.spread for t in noisy)
    return [
        f"warning: in {len(noisy)} of {len(timings)} cases the middle reps are more than "
        f"{NOISY_SPREAD:.0%} apart (worst {worst:.0%}): the machine was busy; rerun when idle."
    ]


def fmt_us(us: float) -> str:
    return f"{us:.2f}" if us < 100 else f"{us:.1f}"


def fmt_rate(per_s: float) -> str:
    return f"{per_s:,.0f}"


def fmt_ratio(ratio: float) -> str:
    return f"{ratio:.2f}x"


@dataclass
class Table:
    """A titled text table; columns whose ``align`` is ``">"`` are right-aligned."""

    title: str
    columns: Sequence[str]
    align: str
    rows: Sequence[Sequence[str]]
    notes: Sequence[str] = ()

    def render(self) -> str:
        widths = [len(c) for c in self.columns]
        for row in self.rows:
            widths = [max(w, len(cell)) for w, cell in zip(widths, row, strict=True)]

        def line(cells: Sequence[str]) -> str:
            padded = (
                cell.rjust(w) if a == ">" else cell.ljust(w)
                for cell, w, a in zip(cells, widths, self.align, strict=True)
            )
            return "| " + " | ".join(padded) + " |"

        rule = "|" + "|".join(
            "-" * (w + 1) + ":" if a == ">" else "-" * (w + 2)
            for w, a in zip(widths, self.align, strict=True)
        )
        out = [self.title, "", line(self.columns), rule + "|"]
        out += [line(row) for row in self.rows]
        if self.notes:
            out.append("")
            out += list(self.notes)
        return "\n".join(out)


def _version_of(dist: str) -> str | None:
    try:
        return version(dist)
    except PackageNotFoundError:
        return None


def environment(*dists: str) -> dict[str, Any]:
    """What the numbers depend on: interpreter, machine, package versions."""
    return {
        "python": sys.version.split()[0],
        "implementation": platform.python_implementation(),
        "platform": platform.platform(),
        "machine": platform.machine(),
        "processor": platform.processor() or None,
        "cpu_count": os.cpu_count(),
        "packages": {d: _version_of(d) for d in dists},
    }


def parse_args(
    description: str,
    argv: Sequence[str] | None = None,
    *,
    default_repeat: int = DEFAULT_REPEAT,
    add_arguments: Callable[[argparse.ArgumentParser], object] | None = None,
) -> argparse.Namespace:
    """The common options (``--json``, ``--repeat``, ``--quick``), plus a module's own ones.

    ``add_arguments`` adds a module's options to the parser; ``default_repeat``
    suits a module whose reps are long (``--repeat`` still overrides it).
    """
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument(
        "--json",
        action="store_true",
        help="print results as JSON on stdout (the tables go to stderr)",
    )
    parser.add_argument(
        "--repeat",
        type=int,
        default=default_repeat,
        help=f"timed reps per case, median reported (default {default_repeat})",
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="a smoke run: at most 2 reps, and smaller workloads where a module has them",
    )
    if add_arguments is not None:
        add_arguments(parser)
    args = parser.parse_args(argv)
    if args.repeat < 1:
        parser.error("--repeat must be at least 1")
    if args.quick:
        args.repeat = min(args.repeat, 2)
    return args


def emit(name: str, tables: Sequence[Table], data: dict[str, Any], *, as_json: bool) -> None:
    """Print ``tables`` for people, and ``data`` as JSON if asked."""
    text = "\n\n".join(t.render() for t in tables)
    if as_json:
        print(text, file=sys.stderr)
        json.dump({"benchmark": name, **data}, sys.stdout, indent=2)
        print()
    else:
        print(text)
