"""Running notebooks: sidecar against nbclient (and papermill where installed).

Two workloads, each including kernel start-up and shutdown, as a user of each
tool pays them:

- one notebook of 200 small code cells (prints, displays, expressions);
- 16 small notebooks (10 cells each), four at a time (``-j 4``): nbclient has
  no such option, so four ``NotebookClient`` runs go concurrently on one
  asyncio loop, which is how one would do it by hand.

Every implementation runs ``--repeat`` times, interleaved round-robin, and the
median wall time is reported with the ratio to sidecar's (>1 means sidecar is
faster).  sidecar runs through its library entry point (``run_files``, what
``sidecar run`` calls), on trio and on asyncio.  nbclient and papermill start
their kernels the way they do by default (TCP on loopback), sidecar over IPC,
its default.  Kernels' stderr goes to /dev/null for all of them.

Both workloads are bound by the kernel, not the client: ipykernel takes about
5 ms per small cell and ~0.3 s of CPU to start, and a profile of sidecar's
200-cell run shows the client idle in epoll for 70% of the time.
"""

from __future__ import annotations

import asyncio
import statistics
import tempfile
import time
from collections.abc import Callable
from importlib.util import find_spec
from pathlib import Path
from typing import Any

import anyio
import nbformat
from nbclient import NotebookClient

from benchmarks._harness import Table, emit, environment, fmt_ratio, parse_args
from benchmarks._workloads import kernels_quiet, write_notebook
from sidecar.notebook._files import run_files

CELLS_BIG = 200
NOTEBOOKS = 16
CELLS_SMALL = 10
JOBS = 4


def _sidecar(paths: list[Path], out: Path, jobs: int, backend: str) -> Callable[[], None]:
    def run() -> None:
        results = anyio.run(lambda: run_files(paths, output=out, jobs=jobs), backend=backend)
        bad = [r for r in results if r.status != "ok"]
        assert not bad, bad

    return run


def _nbclient(paths: list[Path], jobs: int) -> Callable[[], None]:
    async def one(path: Path, limit: asyncio.Semaphore) -> None:
        async with limit:
            nb = nbformat.read(path, as_version=4)
            await NotebookClient(nb, kernel_name="python3", timeout=60).async_execute()

    async def all_of_them() -> None:
        limit = asyncio.Semaphore(jobs)
        await asyncio.gather(*(one(p, limit) for p in paths))

    def run() -> None:
        loop = asyncio.new_event_loop()
        try:
            loop.run_until_complete(all_of_them())
        finally:
            loop.close()

    return run


def _papermill(paths: list[Path], out: Path, jobs: int) -> Callable[[], None]:
    import papermill  # type: ignore[import-not-found,unused-ignore]

    def one(path: Path) -> None:
        papermill.execute_notebook(
            str(path), str(out / f"pm-{path.name}"), kernel_name="python3", progress_bar=False
        )

    def run() -> None:
        if jobs == 1:
            for path in paths:
                one(path)
            return
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(jobs) as pool:
            list(pool.map(one, paths))

    return run


def _time(runs: dict[str, Callable[[], None]], repeat: int) -> dict[str, list[float]]:
    times: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(repeat):
        for name, run in runs.items():
            started = time.perf_counter()
            with kernels_quiet():
                run()
            times[name].append(time.perf_counter() - started)
    return times


def main() -> None:
    args = parse_args(__doc__, default_repeat=3)
    tables = []
    data: dict[str, Any] = {"environment": environment("nbclient", "papermill", "ipykernel")}
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        out = root / "out"
        out.mkdir()
        big = [write_notebook(root / "big.ipynb", CELLS_BIG)]
        small = [write_notebook(root / f"small{i}.ipynb", CELLS_SMALL) for i in range(NOTEBOOKS)]
        workloads = {
            f"1 notebook x {CELLS_BIG} cells": (big, 1),
            f"{NOTEBOOKS} notebooks x {CELLS_SMALL} cells, -j {JOBS}": (small, JOBS),
        }
        for title, (paths, jobs) in workloads.items():
            runs = {
                "sidecar (trio)": _sidecar(paths, out, jobs, "trio"),
                "sidecar (asyncio)": _sidecar(paths, out, jobs, "asyncio"),
                "nbclient": _nbclient(paths, jobs),
            }
            if find_spec("papermill") is not None:
                runs["papermill"] = _papermill(paths, out, jobs)
            times = _time(runs, args.repeat)
            medians = {name: statistics.median(t) for name, t in times.items()}
            ours = medians["sidecar (trio)"]
            rows = [
                [name, f"{seconds:.2f}", fmt_ratio(seconds / ours)]
                for name, seconds in medians.items()
            ]
            notes = [
                f"target: nbclient / sidecar >= 2x: "
                f"{medians['nbclient'] / ours:.2f}x "
                f"{'PASS' if medians['nbclient'] / ours >= 2 else 'MISS'}"
            ]
            if "papermill" not in runs:
                notes.append("papermill is not installed: not measured")
            tables.append(
                Table(
                    f"Notebooks: {title} (median of {args.repeat}, kernel start-up included; "
                    "ratio = time / sidecar (trio), >1 means sidecar is faster)",
                    ["implementation", "seconds", "vs sidecar"],
                    "<>>",
                    rows,
                    notes,
                )
            )
            data[title] = {
                name: {"median_s": medians[name], "runs_s": t} for name, t in times.items()
            }
    emit("bench_notebooks", tables, data, as_json=args.json)


if __name__ == "__main__":
    main()
