"""Benchmarking code and notebooks on kernels: :func:`run` and ``sidecar bench``.

:func:`run` says what is measured and how runs are scheduled.
"""

from __future__ import annotations

import logging
import math
import os
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from pathlib import Path
from typing import final

import anyio
import anyio.abc
import sniffio

from .._task_groups import open_task_group
from ..client._kernel import Kernel
from ..client._launch import launch
from ..kernel._kernelspec import get_kernelspec
from ..notebook._model import Notebook, NotebookError, read_notebook
from ..notebook._run import run_notebook
from ._probes import KernelTimes, client_max_rss, cpu_seconds, max_rss, notebook_kernel_seconds
from ._results import (
    BenchResult,
    BenchSample,
    BenchStats,
    BenchVariant,
    BenchVariantResult,
    VariantLike,
)

__all__ = ["run"]

log = logging.getLogger("sidecar.bench")


@final
class _KernelSlot:
    """A kernel launched by a background task and kept until :meth:`close`."""

    def __init__(self) -> None:
        self.kernel: Kernel | None = None
        self.launch_seconds = 0.0
        self.error: Exception | None = None
        self._ready = anyio.Event()
        self._release = anyio.Event()
        self._closed = anyio.Event()

    async def hold(self, kernel_name: str, cwd: str | None) -> None:
        started = time.perf_counter()
        try:
            async with launch(kernel_name, cwd=cwd) as kernel:
                self.launch_seconds = time.perf_counter() - started
                self.kernel = kernel
                self._ready.set()
                await self._release.wait()
        except Exception as e:
            # Raised where the kernel is awaited, so that kernels failing alike
            # make one exception, not a group of them.
            if self.kernel is not None:
                log.warning("kernel %s: %s while shutting down", self.pid, e)
            self.error = e
        finally:
            self._ready.set()
            self._closed.set()

    async def wait(self) -> Kernel:
        await self._ready.wait()
        if self.error is not None:
            raise self.error
        assert self.kernel is not None
        return self.kernel

    @property
    def pid(self) -> int:
        assert self.kernel is not None
        assert self.kernel.process is not None
        return self.kernel.process.pid

    async def close(self) -> None:
        """Shut the kernel down (once it is up) and wait until it is gone."""
        self._release.set()
        await self._closed.wait()


@final
class _Lane:
    """One kernel slot of a variant: its runs go one after another."""

    def __init__(self, plan: _Plan, index: int, runs: list[int]) -> None:
        self.plan = plan
        self.index = index
        self.runs = runs
        self.current: _KernelSlot | None = None
        self.ahead: _KernelSlot | None = None
        """With ``fresh``: the kernel launching for the lane's next run."""
        self.cpu_start: float | None = None

    @property
    def slot(self) -> _KernelSlot:
        assert self.current is not None
        return self.current


@final
class _Plan:
    """A variant as it runs: its lanes, and what it measured so far."""

    def __init__(self, variant: BenchVariant, source: bytes | None, lanes: int, n: int) -> None:
        self.variant = variant
        self.source = source
        notebook = variant.notebook
        self.cwd = None if notebook is None else str(Path(notebook).resolve().parent)
        self.lanes = [_Lane(self, i, list(range(i, n, lanes))) for i in range(lanes)]
        self.samples: list[BenchSample] = []
        self.pids: list[int] = []
        self.elapsed = 0.0
        self.client_cpu = 0.0
        self.kernel_cpu: float | None = 0.0
        self.kernel_max_rss: int | None = None

    def job(self) -> Notebook | None:
        """What one run needs: a fresh copy of the notebook (None for code).

        Timings saved in the file are dropped, so that only the cells run
        now are counted (a ``skip-execution`` cell keeps what it had).
        """
        if self.source is None:
            return None
        notebook = read_notebook(self.source)
        for cell in notebook.code_cells():
            cell.metadata.pop("execution", None)
        return notebook

    def account(self, pid: int, cpu_start: float | None) -> None:
        """Add what the kernel ``pid`` spent since ``cpu_start``, and its peak RSS."""
        cpu_end = cpu_seconds(pid)
        if self.kernel_cpu is None or cpu_start is None or cpu_end is None:
            self.kernel_cpu = None
        else:
            self.kernel_cpu += cpu_end - cpu_start
        rss = max_rss(pid)
        if rss is not None:
            self.kernel_max_rss = max(self.kernel_max_rss or 0, rss)

    def result(self) -> BenchVariantResult:
        samples = sorted(self.samples, key=lambda s: s.index)
        kernel = [s.kernel for s in samples if s.kernel is not None]
        overhead = [s.overhead for s in samples if s.overhead is not None]
        launches = [s.launch for s in samples if s.launch is not None]
        return BenchVariantResult(
            name=self.variant.name,
            code=self.variant.code,
            notebook=self.variant.notebook,
            runs=len(samples),
            pids=self.pids,
            wall=BenchStats.of([s.wall for s in samples]),
            kernel=BenchStats.of(kernel) if len(kernel) == len(samples) else None,
            overhead=BenchStats.of(overhead) if len(overhead) == len(samples) else None,
            launch=BenchStats.of(launches) if launches else None,
            elapsed=self.elapsed,
            throughput=len(samples) / self.elapsed if self.elapsed > 0 else math.inf,
            client_cpu=self.client_cpu,
            kernel_cpu=self.kernel_cpu,
            kernel_max_rss=self.kernel_max_rss,
            samples=samples,
        )


@final
class _Bench:
    def __init__(
        self,
        task_group: anyio.abc.TaskGroup,
        plans: list[_Plan],
        *,
        warmup: int,
        fresh: bool,
        interleave: bool,
        launch_ahead: bool,
        kernel_name: str,
        timeout: float | None,
    ) -> None:
        self._tg = task_group
        self._plans = plans
        self._warmup = warmup
        self._fresh = fresh
        self._interleave = interleave
        self._launch_ahead = launch_ahead
        self._kernel_name = kernel_name
        self._timeout = timeout
        self._seq = 0
        self._failures: list[Exception] = []
        self._launched: list[_KernelSlot] = []

    async def _each(self, lanes: Sequence[_Lane], fn: Callable[[_Lane], Awaitable[None]]) -> None:
        """``fn(lane)`` for every lane at once; the first failure is raised.

        The other lanes stop after the run they are on.  They are not
        cancelled: cancelling an execute interrupts its kernel, which is of no
        use when every kernel is shut down next, and a signal landing as the
        kernel finishes can cost the reply (and a grace period waiting for it).
        """
        if len(lanes) == 1:
            await fn(lanes[0])
            return

        async def one(lane: _Lane) -> None:
            try:
                await fn(lane)
            except Exception as e:
                self._failures.append(e)

        async with anyio.create_task_group() as tg:
            for lane in lanes:
                tg.start_soon(one, lane)
        if self._failures:
            raise self._failures[0]

    def _launch(self, plan: _Plan) -> _KernelSlot:
        slot = _KernelSlot()
        self._tg.start_soon(slot.hold, self._kernel_name, plan.cwd)
        self._launched.append(slot)
        return slot

    async def close_all(self) -> None:
        """Shut down every kernel still up, the ordinary way, all at once.

        After a failure: letting the task group cancel the kernels' holders
        would also stop their connections, so they could not hear the
        shutdown replies, and their shutdown would wait out its timeouts.
        """
        async with anyio.create_task_group() as tg:
            for slot in self._launched:
                tg.start_soon(slot.close)

    async def run(self) -> None:
        if self._fresh:
            await self._run_fresh()
        else:
            await self._run_reused()

    def _order(self) -> list[tuple[int, _Plan]]:
        """The turns: (round, variant), round-robin when interleaving."""
        rounds = {id(plan): len(plan.lanes[0].runs) for plan in self._plans}
        if self._interleave:
            most = max(rounds.values())
            return [(r, p) for r in range(most) for p in self._plans if r < rounds[id(p)]]
        return [(r, p) for p in self._plans for r in range(rounds[id(p)])]

    async def _run_reused(self) -> None:
        lanes = [lane for plan in self._plans for lane in plan.lanes]
        for lane in lanes:
            lane.current = self._launch(lane.plan)
        for plan in self._plans:
            for lane in plan.lanes:
                await lane.slot.wait()
                plan.pids.append(lane.slot.pid)
            await self._each(plan.lanes, self._warm_up)
        for lane in lanes:
            lane.cpu_start = cpu_seconds(lane.slot.pid)
        if self._interleave:
            for r, plan in self._order():
                await self._turn(plan, r, r + 1)
        else:
            for plan in self._plans:
                await self._turn(plan, 0, None)
        for lane in lanes:
            lane.plan.account(lane.slot.pid, lane.cpu_start)
        await self._each(lanes, _close)

    async def _run_fresh(self) -> None:
        if self._launch_ahead:
            for plan in self._plans:
                for lane in plan.lanes:
                    lane.ahead = self._launch(plan)
        for r, plan in self._order():
            lanes = [lane for lane in plan.lanes if r < len(lane.runs)]
            for lane in lanes:
                lane.current, lane.ahead = lane.ahead or self._launch(plan), None
            for lane in lanes:
                await lane.slot.wait()
                plan.pids.append(lane.slot.pid)
                if self._launch_ahead and r + 1 < len(lane.runs):
                    lane.ahead = self._launch(plan)
            await self._each(lanes, self._warm_up)
            for lane in lanes:
                lane.cpu_start = cpu_seconds(lane.slot.pid)
            await self._turn(plan, r, r + 1)
            for lane in lanes:
                plan.account(lane.slot.pid, lane.cpu_start)
            await self._each(lanes, _close)

    async def _warm_up(self, lane: _Lane) -> None:
        kernel = await lane.slot.wait()
        for _ in range(self._warmup):
            if self._failures:
                return
            await self._execute(lane.plan, kernel, lane.plan.job())

    async def _turn(self, plan: _Plan, start: int, stop: int | None) -> None:
        """Runs ``start:stop`` of every lane of ``plan``, the lanes at once; timed as a whole."""
        lanes = [lane for lane in plan.lanes if lane.runs[start:stop]]
        jobs = {lane.index: [plan.job() for _ in lane.runs[start:stop]] for lane in lanes}

        async def go(lane: _Lane) -> None:
            for index, job in zip(lane.runs[start:stop], jobs[lane.index], strict=True):
                if self._failures:
                    return
                plan.samples.append(await self._measure(lane, index, job))

        cpu = time.process_time()
        started = time.perf_counter()
        await self._each(lanes, go)
        plan.elapsed += time.perf_counter() - started
        plan.client_cpu += time.process_time() - cpu

    async def _measure(self, lane: _Lane, index: int, job: Notebook | None) -> BenchSample:
        slot = lane.slot
        assert slot.kernel is not None
        seq = self._seq
        self._seq += 1
        wall, kernel = await self._execute(lane.plan, slot.kernel, job)
        return BenchSample(
            variant=lane.plan.variant.name,
            seq=seq,
            index=index,
            lane=lane.index,
            pid=slot.pid,
            wall=wall,
            kernel=kernel,
            overhead=None if kernel is None else wall - kernel,
            launch=slot.launch_seconds if self._fresh else None,
        )

    async def _execute(
        self, plan: _Plan, kernel: Kernel, job: Notebook | None
    ) -> tuple[float, float | None]:
        """One run: its wall time and kernel time."""
        if job is not None:
            started = time.perf_counter()
            await run_notebook(job, kernel, timeout=self._timeout)
            return time.perf_counter() - started, notebook_kernel_seconds(job)
        code = plan.variant.code
        assert code is not None
        times = KernelTimes()
        started = time.perf_counter()
        await kernel.execute(code, handlers=[times], timeout=self._timeout, raise_on_error=True)
        return time.perf_counter() - started, times.seconds()


async def _close(lane: _Lane) -> None:
    await lane.slot.close()


def _variants(given: Sequence[VariantLike]) -> list[BenchVariant]:
    """Every variant named: given names must be unique; made-up ones are made so."""
    items: list[tuple[str | None, str | os.PathLike[str] | BenchVariant]] = []
    for item in given:
        if isinstance(item, Mapping):
            items.extend(item.items())
        else:
            items.append((None, item))
    named = [name if not isinstance(item, BenchVariant) else item.name for name, item in items]
    taken = [name for name in named if name is not None]
    duplicates = sorted({name for name in taken if taken.count(name) > 1})
    if duplicates:
        raise ValueError(f"variant names must differ: {', '.join(map(repr, duplicates))}")
    used = set(taken)
    variants = []
    for name, item in items:
        if isinstance(item, BenchVariant):
            variants.append(item)
            continue
        if name is None:
            name = _unique(_made_up_name(item), used)
            used.add(name)
        if isinstance(item, str):
            variants.append(BenchVariant(name, code=item))
        else:
            variants.append(BenchVariant(name, notebook=os.fspath(item)))
    return variants


def _made_up_name(item: str | os.PathLike[str]) -> str:
    if not isinstance(item, str):
        return Path(item).name
    lines = item.strip().splitlines()
    if not lines:
        return "(empty)"
    return lines[0] + (" ..." if len(lines) > 1 else "")


def _unique(name: str, used: set[str]) -> str:
    candidate, k = name, 1
    while candidate in used:
        k += 1
        candidate = f"{name} #{k}"
    return candidate


async def _read_notebook(path: str) -> bytes:
    """The file's bytes, checked to be a notebook."""
    source = await anyio.Path(path).read_bytes()
    try:
        read_notebook(source)
    except NotebookError as e:
        raise NotebookError(e.reason, where=e.where, filename=path) from e.__cause__
    return source


async def run(
    *variants: VariantLike,
    n: int = 100,
    kernels: int = 1,
    warmup: int | None = None,
    fresh: bool = False,
    interleave: bool = True,
    launch_ahead: bool = True,
    kernel_name: str = "python3",
    timeout: float | None = None,
) -> BenchResult:
    """Run each variant ``n`` times on kernels of its own; what it took.

    A variant is code (a ``str``), a notebook (a path object: one run is all
    its code cells, as :func:`~sidecar.run_notebook` runs them), a
    :class:`BenchVariant`, or a mapping of names to code or paths.  Unnamed
    variants are named after their code's first line or the notebook's file
    name.

    What is measured, per *run* (one execute of a code variant, or one pass
    through a notebook variant's code cells):

    - **wall**: client time, from just before the ``execute_request`` is
      built and sent until the run is done (its ``execute_reply`` and its
      ``status: idle`` both in), on :func:`time.perf_counter`.  For a
      notebook, the whole :func:`~sidecar.run_notebook` call.
    - **kernel**: the kernel's own time, on the kernel's clock, from the
      reply's ``metadata.started`` (when the kernel began running the cell) to
      the date of the ``status: idle`` that ends the request (of the
      ``execute_reply`` if there is none).  It includes sending the reply and
      the kernel's post-execute hooks; for a notebook, it is the sum over the
      cells that ran.  Both ends are the kernel's timestamps, so clock offsets
      between client and kernel do not matter.
    - **overhead**: ``wall - kernel``: queueing, transport and the client's
      own work.

    Per variant, over all its runs: the client's CPU (:func:`time.process_time`,
    every thread of this process, libzmq's included) during the variant's
    turns; the kernels' CPU (``utime + stime`` from ``/proc``, Linux only, in
    clock ticks of usually 10 ms, so meaningful over many runs); the kernels'
    peak RSS (``VmHWM``, Linux only); runs per second over the variant's
    turns.  The client's own peak RSS is process-wide, so it is reported once.

    How runs are scheduled: each variant gets ``kernels`` kernels (lanes); its
    runs are dealt out round-robin over them, each lane running its share one
    after another and the lanes at once.  With ``interleave`` the variants
    take turns, one run on every lane of one variant, then the next variant,
    so background load lands on all of them alike; without it, each variant
    runs all its runs before the next starts.  Kernels are launched ahead (all
    before the first turn; with ``fresh``, a lane's next kernel while its
    current run goes on) and warm-up runs happen before a turn, so neither is
    inside a measurement; with ``fresh``, launch times are reported apart.

    Caveats: with reused kernels, a kernel's CPU is counted from before its
    first measured run to after its last, so with ``interleave`` it includes
    the kernel idling through other variants' turns.  With ``fresh`` and
    ``launch_ahead``, the first round's kernels launch all at once (their
    launch times are inflated) and a turn's client CPU includes launching the
    next kernels.  The p99 of fewer than 100 runs is close to the maximum.

    Args:
        n: measured runs per variant.
        kernels: kernels per variant, running concurrently; the runs are dealt
            out over them round-robin, each kernel running its share in turn.
        warmup: untimed runs on each kernel before its first measured one
            (default 1, or 0 with ``fresh``).
        fresh: a newly launched kernel for every run, shut down after it.
        interleave: the variants take turns, one run per kernel each; else
            each variant runs all of its runs before the next starts.
        launch_ahead: with ``fresh``, launch a lane's next kernel while its
            current run goes on (the launch then competes with the run for
            the machine); without, each kernel is launched just before its run.
            Either way launch time is reported apart, never in ``wall``.
        kernel_name: the kernelspec of every kernel.
        timeout: seconds a run (a notebook: each cell) may take.

    Every kernel launched is shut down before this returns or raises.  When
    a run fails, the other kernels finish the run they are on (they are not
    interrupted), and the first failure is raised.

    Raises:
        ValueError: no variants, equal names, or ``n``/``kernels``/``warmup`` out of range.
        ExecutionError: a run raised (:class:`~sidecar.CellError` for a
            notebook); a benchmark of failing code measures nothing.
        NoSuchKernel, KernelStartError, KernelDied: as :func:`~sidecar.launch`.
        NotebookError, OSError: a notebook could not be read.
        TimeoutError: a run took longer than ``timeout``.
    """
    if n < 1 or kernels < 1:
        raise ValueError("n and kernels must be at least 1")
    if warmup is None:
        warmup = 0 if fresh else 1
    if warmup < 0:
        raise ValueError("warmup must not be negative")
    chosen = _variants(variants)
    if not chosen:
        raise ValueError("nothing to measure: give at least one variant")
    get_kernelspec(kernel_name)  # NoSuchKernel now, not from every launch
    sources = [None if v.notebook is None else await _read_notebook(v.notebook) for v in chosen]
    lanes = min(kernels, n)
    plans = [_Plan(v, source, lanes, n) for v, source in zip(chosen, sources, strict=True)]
    started = time.perf_counter()
    async with open_task_group() as tg:
        runner = _Bench(
            tg,
            plans,
            warmup=warmup,
            fresh=fresh,
            interleave=interleave,
            launch_ahead=launch_ahead,
            kernel_name=kernel_name,
            timeout=timeout,
        )
        try:
            await runner.run()
        except BaseException:
            # Cancelled or failed: shut every kernel down the ordinary way
            # (shielded, or cancellation would cut the shutdowns short too).
            with anyio.CancelScope(shield=True):
                await runner.close_all()
            raise
    return BenchResult(
        variants=[plan.result() for plan in plans],
        n=n,
        kernels=lanes,
        warmup=warmup,
        fresh=fresh,
        interleave=interleave,
        kernel_name=kernel_name,
        backend=sniffio.current_async_library(),
        elapsed=time.perf_counter() - started,
        client_max_rss=client_max_rss(),
    )
