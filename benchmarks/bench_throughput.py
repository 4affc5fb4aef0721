"""Batch throughput: many short notebooks, where kernel starts cost more than the cells.

The workload is 64 notebooks of 10 small cells each, four at a time
(``-j 4``), kernel start-up and shutdown included, as a CI job of a notebook
repository or a grading run pays them.  Variants:

- ``sidecar run -j 4`` as it runs by default: kernels from a pool kept four
  ahead (:func:`sidecar.launch_pool`), each notebook on a fresh kernel;
- the same without the pool (``--pool-size 0``): a kernel launched per
  notebook, one ahead of the running ones;
- the same with ``--reuse``: four kernels, reset (``%reset -f``) between
  notebooks;
- papermill and nbclient (``jupyter execute``) as one runs them from a shell
  loop: a process per notebook, four at a time (``xargs -P 4``);
- papermill with ``--engine sidecar``, the same way;
- and, for what a process per notebook costs, papermill and nbclient in one
  process: four papermill calls at a time in threads, four nbclient runs at a
  time on one asyncio loop (as ``bench_notebooks`` runs them).

A second table runs one notebook of 200 small cells with papermill's default
engine and with ``--engine sidecar`` (one process each), and with ``sidecar
run``.

Run ``python -m benchmarks.bench_throughput`` (``--json``, ``--repeat``,
``--quick``: 8 notebooks and 20 cells).  Every variant runs ``--repeat``
times (default 1: a full round takes minutes), interleaved round-robin, and
the median wall time is reported.
CPU is split into this process's (the client, for the in-process sidecar
runs) and its children's (kernels; for the process-per-notebook variants
also the papermill or nbclient processes), from ``getrusage``, so the table
says where the time goes.  Kernels' stderr goes to /dev/null for all.
"""

from __future__ import annotations

import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from importlib.util import find_spec
from pathlib import Path
from typing import Any

import anyio
import nbformat

from benchmarks._harness import Table, emit, environment, fmt_ratio, parse_args
from benchmarks._workloads import kernels_quiet, write_notebook
from sidecar.notebook._files import run_files

NOTEBOOKS = 64
CELLS = 10
CELLS_BIG = 200
JOBS = 4
QUICK_NOTEBOOKS = 8
QUICK_CELLS_BIG = 20


# -- the variants ----------------------------------------------------------------------


def _sidecar(paths: list[Path], out: Path, backend: str, **options: Any) -> Callable[[], None]:
    jobs = JOBS if len(paths) > 1 else 1

    def run() -> None:
        results = anyio.run(
            lambda: run_files(paths, output=out, jobs=jobs, **options), backend=backend
        )
        bad = [(r.path, r.status, r.error) for r in results if r.status != "ok"]
        assert not bad, bad

    return run


def _processes(paths: list[Path], command: Callable[[Path], list[str]]) -> Callable[[], None]:
    """A process per notebook, JOBS at a time, as ``xargs -P`` runs them."""

    def one(path: Path) -> None:
        subprocess.run(command(path), check=True, stdout=subprocess.DEVNULL)

    def run() -> None:
        with ThreadPoolExecutor(JOBS if len(paths) > 1 else 1) as pool:
            list(pool.map(one, paths))

    return run


def _papermill(out: Path, *engine: str) -> Callable[[Path], list[str]]:
    def command(path: Path) -> list[str]:
        target = out / f"pm{'-' + engine[-1] if engine else ''}-{path.name}"
        return [
            sys.executable,
            "-m",
            "papermill",
            str(path),
            str(target),
            "-k",
            "python3",
            "--no-progress-bar",
            *engine,
        ]

    return command


def _nbclient(out: Path) -> Callable[[Path], list[str]]:
    executable = Path(sys.executable).with_name("jupyter-execute")

    def command(path: Path) -> list[str]:
        # jupyter execute writes beside the input: a copy of it is run.
        copy = out / "nbclient" / path.name
        copy.parent.mkdir(parents=True, exist_ok=True)
        copy.write_bytes(path.read_bytes())
        return [str(executable), str(copy), "--output={notebook_name}.out", "--timeout=60"]

    return command


def _papermill_threads(paths: list[Path], out: Path) -> Callable[[], None]:
    import papermill  # type: ignore[import-not-found,unused-ignore]

    def one(path: Path) -> None:
        papermill.execute_notebook(
            str(path), str(out / f"pmt-{path.name}"), kernel_name="python3", progress_bar=False
        )

    def run() -> None:
        with ThreadPoolExecutor(JOBS) as pool:
            list(pool.map(one, paths))

    return run


def _nbclient_loop(paths: list[Path]) -> Callable[[], None]:
    import asyncio

    from nbclient import NotebookClient

    async def one(path: Path, limit: asyncio.Semaphore) -> None:
        async with limit:
            nb = nbformat.read(path, as_version=4)
            client = NotebookClient(
                nb, kernel_name="python3", timeout=60, resources={"metadata": {"path": path.parent}}
            )
            await client.async_execute()

    async def all_of_them() -> None:
        limit = asyncio.Semaphore(JOBS)
        await asyncio.gather(*(one(p, limit) for p in paths))

    def run() -> None:
        asyncio.run(all_of_them())

    return run


# -- timing ------------------------------------------------------------------------------


@dataclass
class Measured:
    count: int
    """Notebooks per run."""
    error: str = ""
    wall: list[float] = field(default_factory=list)
    client_cpu: list[float] = field(default_factory=list)
    children_cpu: list[float] = field(default_factory=list)

    def median(self, which: str) -> float:
        return statistics.median(getattr(self, which))


def _cpu(who: int) -> float:
    usage = resource.getrusage(who)
    return usage.ru_utime + usage.ru_stime


def _time(runs: dict[str, tuple[int, Callable[[], None]]], repeat: int) -> dict[str, Measured]:
    measured = {name: Measured(count) for name, (count, _) in runs.items()}
    for _ in range(repeat):
        for name, (_, run) in runs.items():
            m = measured[name]
            if m.error:
                continue
            print(f"  {name} ...", file=sys.stderr, flush=True)
            self0, children0 = _cpu(resource.RUSAGE_SELF), _cpu(resource.RUSAGE_CHILDREN)
            started = time.perf_counter()
            try:
                with kernels_quiet():
                    run()
            except Exception as e:  # a peer failing is a result too
                m.error = f"{type(e).__name__}: {e}".splitlines()[0][:100]
                continue
            m.wall.append(time.perf_counter() - started)
            m.client_cpu.append(_cpu(resource.RUSAGE_SELF) - self0)
            m.children_cpu.append(_cpu(resource.RUSAGE_CHILDREN) - children0)
    return measured


def _rate(m: Measured) -> float:
    return m.count / m.median("wall") if m.wall else float("nan")


def _table(title: str, measured: dict[str, Measured], baseline: str, notes: list[str]) -> Table:
    base = _rate(measured[baseline])
    rows = []
    for name, m in measured.items():
        if not m.wall:
            rows.append([name, str(m.count), "-", "-", "-", "-", "-", f"failed: {m.error}"])
            continue
        rows.append(
            [
                name,
                str(m.count),
                f"{m.median('wall'):.1f}",
                f"{_rate(m):.2f}",
                fmt_ratio(_rate(m) / base),
                f"{m.median('client_cpu'):.1f}",
                f"{m.median('children_cpu'):.1f}",
                "",
            ]
        )
    return Table(
        title,
        [
            "variant",
            "notebooks",
            "wall s",
            "notebooks/s",
            f"vs {baseline}",
            "client CPU s",
            "children CPU s",
            "",
        ],
        "<>>>>>><",
        rows,
        notes,
    )


def main() -> None:
    args = parse_args(
        __doc__,
        default_repeat=1,
        add_arguments=lambda parser: parser.add_argument(
            "--process-notebooks",
            type=int,
            metavar="N",
            help="notebooks for the process-per-notebook variants (default: all of them); "
            "throughput is compared as notebooks/s",
        ),
    )
    if find_spec("papermill") is None:
        raise SystemExit("bench_throughput needs papermill (pip install -e '.[bench]')")
    data: dict[str, Any] = {
        "environment": environment("nbclient", "papermill", "ipykernel"),
        "cpus": os.cpu_count(),
    }
    tables = []
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        out = root / "out"
        out.mkdir()
        notebooks = QUICK_NOTEBOOKS if args.quick else NOTEBOOKS
        cells_big = QUICK_CELLS_BIG if args.quick else CELLS_BIG
        # Each notebook in a directory of its own, as in a repository.
        small = [
            write_notebook(root / f"nb{i:02d}" / f"small{i:02d}.ipynb", CELLS)
            for i in range(notebooks)
        ]
        big = [write_notebook(root / "big" / "big.ipynb", cells_big)]
        few = small[: args.process_notebooks or notebooks]

        n, k = len(small), len(few)
        batch = {
            "papermill (4 processes)": (k, _processes(few, _papermill(out))),
            "nbclient (jupyter execute, 4 processes)": (k, _processes(few, _nbclient(out))),
            "papermill --engine sidecar (4 processes)": (
                k,
                _processes(few, _papermill(out, "--engine", "sidecar")),
            ),
            "papermill (4 threads, one process)": (n, _papermill_threads(small, out)),
            "nbclient (4 at once, one process)": (n, _nbclient_loop(small)),
            "sidecar run -j 4, no pool": (n, _sidecar(small, out, "trio", pool_size=0)),
            "sidecar run -j 4 (pool; trio)": (n, _sidecar(small, out, "trio")),
            "sidecar run -j 4 (pool; asyncio)": (n, _sidecar(small, out, "asyncio")),
            "sidecar run -j 4 --reuse": (n, _sidecar(small, out, "trio", reuse=True)),
        }
        measured = _time(batch, args.repeat)
        # Compared as time per notebook, since the counts may differ.
        wall = {name: 1 / _rate(m) for name, m in measured.items()}
        kids = {name: m.median("children_cpu") if m.wall else 0.0 for name, m in measured.items()}
        pool = wall["sidecar run -j 4 (pool; trio)"]
        reuse = wall["sidecar run -j 4 --reuse"]
        papermill = wall["papermill (4 processes)"]
        nbclient = wall["nbclient (jupyter execute, 4 processes)"]
        # The pool starts about NOTEBOOKS + JOBS kernels, --reuse JOBS: the
        # difference in the kernels' CPU is what the extra starts cost.
        start_cpu = (
            kids["sidecar run -j 4 (pool; trio)"] - kids["sidecar run -j 4 --reuse"]
        ) / notebooks
        cells_cpu = kids["sidecar run -j 4 --reuse"]
        cpus = os.cpu_count() or 1
        notes = [
            f"target >= 2x with fresh kernels: pool vs papermill {papermill / pool:.2f}x, "
            f"vs nbclient {nbclient / pool:.2f}x "
            f"{'PASS' if min(papermill, nbclient) / pool >= 2 else 'MISS'}",
            f"target >= 5x with --reuse: vs papermill {papermill / reuse:.2f}x, "
            f"vs nbclient {nbclient / reuse:.2f}x "
            f"{'PASS' if min(papermill, nbclient) / reuse >= 5 else 'MISS'}",
            f"where the time goes: a kernel start + shutdown costs about {start_cpu:.2f} s "
            f"of CPU (pool minus --reuse, per notebook); {notebooks} of them are "
            f"{start_cpu * notebooks:.0f} CPU-s, at least {start_cpu * notebooks / cpus:.1f} s "
            f"of wall on {cpus} CPUs, against {cells_cpu:.1f} CPU-s for all the cells "
            "(--reuse: 4 kernels' CPU, the cells and the resets)",
        ]
        tables.append(
            _table(
                f"Throughput: notebooks of {CELLS} small cells, 4 at a time "
                f"(median of {args.repeat}; vs papermill = the variant's notebooks/s / "
                "papermill's, >1 means faster)",
                measured,
                "papermill (4 processes)",
                notes,
            )
        )
        data["batch"] = {name: vars(m) for name, m in measured.items()}
        data["kernel_start_cpu_s"] = start_cpu

        single = {
            "papermill": (1, _processes(big, _papermill(out))),
            "papermill --engine sidecar": (
                1,
                _processes(big, _papermill(out, "--engine", "sidecar")),
            ),
            "sidecar run": (1, _sidecar(big, out, "trio")),
        }
        measured = _time(single, args.repeat)
        tables.append(
            _table(
                f"One notebook of {cells_big} small cells, one process "
                f"(median of {args.repeat}; process start, kernel start-up included)",
                measured,
                "papermill",
                [],
            )
        )
        data["big"] = {name: vars(m) for name, m in measured.items()}
    emit("bench_throughput", tables, data, as_json=args.json)


if __name__ == "__main__":
    main()
