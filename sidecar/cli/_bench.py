"""``sidecar bench``: time code or notebooks on kernels (see :mod:`sidecar.bench`)."""

from __future__ import annotations

import argparse
import math
import sys
from collections.abc import Awaitable, Callable
from functools import partial
from pathlib import Path
from typing import Any

from .._exceptions import ExecutionError
from ..notebook._model import NotebookError
from ._options import FAILED, OK, TIMED_OUT, USAGE, UsageError, check_readable, count, seconds
from ._terminal import strip_ansi

__all__ = ["add_bench", "prepare_bench"]


def add_bench(commands: Any) -> None:
    timing = commands.add_parser(
        "bench",
        help="time code or notebooks on kernels",
        description="Run each CODE (and each --notebook) N times on kernels of its own and "
        "print statistics of the client's and the kernel's time per run. "
        "Exit status: 0 done, 1 the code raised or a kernel failed, 2 bad usage, "
        "3 a run timed out, 130 interrupted, 143 terminated.",
    )
    timing.add_argument("code", nargs="*", help="code to time; - reads it from stdin")
    timing.add_argument(
        "--notebook",
        action="append",
        default=[],
        type=Path,
        metavar="PATH",
        help="time a run of this notebook's code cells (repeatable)",
    )
    timing.add_argument("-n", type=count(1), default=100, help="runs of each (100)")
    timing.add_argument(
        "-k", "--kernels", type=count(1), default=1, help="kernels for each, running at once (1)"
    )
    timing.add_argument(
        "--warmup",
        type=count(0),
        help="untimed runs on each kernel first (1; 0 with --fresh or a pool)",
    )
    timing.add_argument("--fresh", action="store_true", help="a new kernel for every run")
    timing.add_argument(
        "--pool-size",
        type=count(1),
        metavar="N",
        help="take each run's kernel from a pool of N started ahead, per variant",
    )
    timing.add_argument(
        "--reuse",
        action="store_true",
        help="take kernels from a pool (of --pool-size, default -k) that resets and reuses them",
    )
    timing.add_argument(
        "--rate",
        type=_rate,
        metavar="R",
        help="open loop: send each variant's runs at R per second, whatever earlier runs "
        "are doing (code only; the variants then run one after another)",
    )
    timing.add_argument(
        "--no-interleave",
        dest="interleave",
        action="store_false",
        help="time one variant after another instead of in turns",
    )
    timing.add_argument(
        "--name",
        action="append",
        default=[],
        help="names for the variants, in order: codes, then notebooks (repeatable)",
    )
    timing.add_argument("--kernel", default="python3", help="kernelspec name (python3)")
    timing.add_argument(
        "--timeout",
        type=seconds,
        metavar="SECONDS",
        help="seconds a run (a notebook's cell) may take",
    )
    timing.add_argument(
        "--sample-interval",
        type=partial(seconds, zero=True),
        default=0.1,
        metavar="SECONDS",
        help="sample the CPU and RSS of the client and kernels this often (0.1; 0: never)",
    )
    timing.add_argument(
        "--json", action="store_true", help="print JSON, every run and sample included"
    )
    timing.add_argument(
        "--save",
        type=Path,
        metavar="FILE",
        help="also write the result as JSON to FILE (its directory made if need be)",
    )
    timing.add_argument(
        "--compare",
        type=Path,
        metavar="FILE",
        help="compare each variant's median with a result saved before (--save); "
        "exit 1 if one is slower by more than --threshold",
    )
    timing.add_argument(
        "--threshold",
        type=partial(seconds, zero=True),
        default=0.10,
        metavar="RATIO",
        help="the slowdown --compare tolerates (0.10: 10%%)",
    )


async def _bench(args: argparse.Namespace) -> int:
    # Loaded here: the harness (statistics, tables, probes) is for this
    # command alone, not for every start of the command line.
    from ..bench import BenchVariant, VariantLike, run

    items: list[str | Path] = [*args.code, *args.notebook]
    variants: list[VariantLike] = list(items)
    for i, name in enumerate(args.name):
        item = items[i]
        code, notebook = (item, None) if isinstance(item, str) else (None, str(item))
        variants[i] = BenchVariant(name, code=code, notebook=notebook)
    try:
        result = await run(
            *variants,
            n=args.n,
            kernels=args.kernels,
            warmup=args.warmup,
            fresh=args.fresh,
            pool_size=args.pool_size,
            reuse=args.reuse,
            rate=args.rate,
            interleave=args.interleave,
            kernel_name=args.kernel,
            timeout=args.timeout,
            sample_interval=args.sample_interval or None,
        )
    except TimeoutError:
        # Before OSError and ValueError: TimeoutError is an OSError.
        print(f"sidecar: a run took longer than --timeout {args.timeout:g} s", file=sys.stderr)
        return TIMED_OUT
    except ExecutionError as e:
        print(strip_ansi("\n".join(e.traceback)), file=sys.stderr)
        print(f"sidecar: {e}", file=sys.stderr)
        return FAILED
    except NotebookError as e:
        print(f"sidecar: {e}", file=sys.stderr)
        return FAILED
    except ValueError as e:
        print(f"sidecar: {e}", file=sys.stderr)
        return USAGE
    print(result.to_json().decode() if args.json else result.render())
    if args.save is not None:
        try:
            args.save.parent.mkdir(parents=True, exist_ok=True)
            args.save.write_bytes(result.to_json())
        except OSError as e:
            print(f"sidecar: cannot write --save {args.save}: {e.strerror or e}", file=sys.stderr)
            return FAILED
    if args.compare is not None:
        table, slower = result.compare(args.previous, threshold=args.threshold)
        print(table, file=sys.stderr if args.json else sys.stdout)
        if slower:
            names = ", ".join(repr(name) for name in slower)
            print(
                f"sidecar: slower than {args.compare} by more than {args.threshold:.0%}: {names}",
                file=sys.stderr,
            )
            return FAILED
    return OK


def _rate(text: str) -> float:
    """Runs per second: a number > 0."""
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"expected runs per second > 0, got {text!r}")
    return value


def prepare_bench(args: argparse.Namespace) -> Callable[[], Awaitable[int]]:
    if not args.code and not args.notebook:
        raise UsageError("bench needs code or --notebook")
    if len(args.name) > len(args.code) + len(args.notebook):
        raise UsageError("more --name than things to time")
    if args.fresh and (args.pool_size is not None or args.reuse):
        given = "--pool-size" if args.pool_size is not None else "--reuse"
        raise UsageError(f"--fresh launches a kernel per run, from no pool: not with {given}")
    if args.rate is not None:
        if args.notebook:
            raise UsageError("--rate sends code, not notebooks: not with --notebook")
        if args.fresh or args.pool_size is not None or args.reuse:
            raise UsageError(
                "--rate runs on kernels of its own: not with --fresh, --pool-size or --reuse"
            )
    check_readable(args.notebook)
    args.previous = None
    if args.compare is not None:
        import msgspec

        from ..bench import BenchResult

        try:
            args.previous = msgspec.json.decode(args.compare.read_bytes(), type=BenchResult)
        except OSError as e:
            raise UsageError(f"--compare {args.compare}: {e.strerror or e}") from None
        except msgspec.DecodeError as e:
            raise UsageError(
                f"--compare {args.compare}: not a result saved by --save: {e}"
            ) from None
    args.code = [sys.stdin.read() if code == "-" else code for code in args.code]
    return partial(_bench, args)
