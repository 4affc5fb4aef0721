"""Benchmarking code and notebooks on kernels: :func:`run` and ``sidecar bench``.

:func:`run` says what is measured and how runs are scheduled.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import AsyncExitStack, asynccontextmanager
from functools import partial
from pathlib import Path
from typing import final

import anyio
import anyio.abc
import sniffio

from .._task_groups import open_task_group
from ..client._kernel import Kernel
from ..client._launch import launch
from ..client._pool import KernelPool, launch_pool
from ..kernel._channels import ChannelStatistics
from ..kernel._kernelspec import get_kernelspec
from ..notebook._model import Notebook, read_notebook
from ..notebook._run import CellProgress, run_notebook
from ..wire import Message
from ._open_loop import dispatch
from ._probes import (
    OUTPUTS,
    KernelTimes,
    client_max_rss,
    cpu_seconds,
    max_rss,
    notebook_kernel_seconds,
)
from ._results import (
    BenchResult,
    BenchSample,
    BenchStats,
    BenchVariant,
    BenchVariantResult,
    VariantLike,
)
from ._sampler import Kernels, can_sample, sample
from ._variants import check_rate, name_variants, read_source

__all__ = ["run"]

log = logging.getLogger("sidecar.bench")


@final
class _KernelSlot:
    """A kernel launched by a background task and kept until :meth:`close`."""

    def __init__(self, kernels: Kernels, variant: str) -> None:
        self._kernels = kernels
        self._variant = variant
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
                with self._kernels.running(_pid(kernel), self._variant):
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
        return _pid(self.kernel)

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
        self.n = n
        notebook = variant.notebook
        self.cwd = None if notebook is None else str(Path(notebook).resolve().parent)
        self.lanes = [_Lane(self, i, list(range(i, n, lanes))) for i in range(lanes)]
        self.pool: KernelPool | None = None
        self.samples: list[BenchSample] = []
        self.pids: list[int] = []
        self.elapsed = 0.0
        self.client_cpu = 0.0
        self.kernel_cpu: float | None = 0.0
        self.kernel_max_rss: int | None = None
        self.messages = 0
        self.bytes = 0
        self.achieved_rate: float | None = None
        self.max_late: float | None = None

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

    def ran_on(self, pid: int) -> None:
        if pid not in self.pids:  # a reused kernel runs many runs
            self.pids.append(pid)

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

    def count(self, before: ChannelStatistics, after: ChannelStatistics) -> None:
        """Add the messages and bytes a kernel sent between two readings."""
        self.messages += after.received - before.received
        self.bytes += after.received_bytes - before.received_bytes

    def result(self, kernels: Kernels) -> BenchVariantResult:
        samples = sorted(self.samples, key=lambda s: s.index)
        kernel = [s.kernel for s in samples if s.kernel is not None]
        overhead = [s.overhead for s in samples if s.overhead is not None]
        launches = [s.launch for s in samples if s.launch is not None]
        waits = [s.wait for s in samples if s.wait is not None]
        first = [s.first_output for s in samples if s.first_output is not None]
        mean_rss, peak_rss = kernels.rss_summary(self.variant.name)
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
            first_output=BenchStats.of(first) if len(first) == len(samples) else None,
            wait=BenchStats.of(waits) if waits else None,
            messages=self.messages,
            bytes=self.bytes,
            kernel_mean_rss=mean_rss,
            kernel_peak_rss=peak_rss,
            achieved_rate=self.achieved_rate,
            max_late=self.max_late,
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
        pool_size: int | None,
        reuse: bool,
        rate: float | None,
        interleave: bool,
        launch_ahead: bool,
        kernel_name: str,
        timeout: float | None,
        kernels: Kernels,
    ) -> None:
        self._tg = task_group
        self._plans = plans
        self._warmup = warmup
        self._fresh = fresh
        self._pool_size = pool_size
        self._reuse = reuse
        self._rate = rate
        self._interleave = interleave
        self._launch_ahead = launch_ahead
        self._kernel_name = kernel_name
        self._timeout = timeout
        self._kernels = kernels
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
        slot = _KernelSlot(self._kernels, plan.variant.name)
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
        elif self._pool_size is not None:
            await self._run_pooled()
        else:
            await self._run_reused()

    def _order(self) -> list[tuple[int, _Plan]]:
        """The turns: (round, variant), round-robin when interleaving."""
        rounds = {id(plan): len(plan.lanes[0].runs) for plan in self._plans}
        if self._interleave:
            most = max(rounds.values())
            return [(r, p) for r in range(most) for p in self._plans if r < rounds[id(p)]]
        return [(r, p) for p in self._plans for r in range(rounds[id(p)])]

    async def _turns(self) -> None:
        """Every run of every variant, closed loop: in turns, or variant by variant."""
        if self._interleave:
            for r, plan in self._order():
                await self._turn(plan, r, r + 1)
        else:
            for plan in self._plans:
                await self._turn(plan, 0, None)

    async def _run_reused(self) -> None:
        lanes = [lane for plan in self._plans for lane in plan.lanes]
        for lane in lanes:
            lane.current = self._launch(lane.plan)
        for plan in self._plans:
            for lane in plan.lanes:
                await lane.slot.wait()
                plan.ran_on(lane.slot.pid)
            await self._each(plan.lanes, self._warm_up)
        for lane in lanes:
            lane.cpu_start = cpu_seconds(lane.slot.pid)
        if self._rate is not None:
            for plan in self._plans:
                await self._open_loop(plan, self._rate)
        else:
            await self._turns()
        for lane in lanes:
            lane.plan.account(lane.slot.pid, lane.cpu_start)
        await self._each(lanes, _close)

    async def _run_pooled(self) -> None:
        assert self._pool_size is not None
        # A pool per variant: with reuse, what one variant imported would
        # otherwise be there, already imported, for the next.
        async with AsyncExitStack() as stack:
            for plan in self._plans:
                plan.pool = await stack.enter_async_context(
                    launch_pool(
                        self._kernel_name,
                        size=self._pool_size,
                        reuse=self._reuse,
                        cwd=plan.cwd,
                        start=partial(self._pooled_kernel, plan),
                    )
                )
            await self._turns()

    @asynccontextmanager
    async def _pooled_kernel(self, plan: _Plan) -> AsyncIterator[Kernel]:
        """How a pool starts a kernel: as it would, and sampled while it is up."""
        async with launch(self._kernel_name, cwd=plan.cwd) as kernel:
            with self._kernels.running(_pid(kernel), plan.variant.name):
                yield kernel

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
                plan.ran_on(lane.slot.pid)
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
        await self._warm_up_on(lane.plan, kernel)

    async def _warm_up_on(self, plan: _Plan, kernel: Kernel) -> None:
        for _ in range(self._warmup):
            if self._failures:
                return
            await self._execute(plan, kernel, plan.job())

    async def _turn(self, plan: _Plan, start: int, stop: int | None) -> None:
        """Runs ``start:stop`` of every lane of ``plan``, the lanes at once; timed as a whole."""
        lanes = [lane for lane in plan.lanes if lane.runs[start:stop]]
        jobs = {lane.index: [plan.job() for _ in lane.runs[start:stop]] for lane in lanes}

        async def go(lane: _Lane) -> None:
            for index, job in zip(lane.runs[start:stop], jobs[lane.index], strict=True):
                if self._failures:
                    return
                plan.samples.append(await self._one(lane, index, job))

        cpu = time.process_time()
        started = time.perf_counter()
        await self._each(lanes, go)
        plan.elapsed += time.perf_counter() - started
        plan.client_cpu += time.process_time() - cpu

    async def _one(self, lane: _Lane, index: int, job: Notebook | None) -> BenchSample:
        """One closed-loop run, on the lane's kernel or on one from the variant's pool."""
        plan = lane.plan
        if plan.pool is None:
            slot = lane.slot
            assert slot.kernel is not None
            launched = slot.launch_seconds if self._fresh else None
            return await self._measure(lane, slot.kernel, index, job, launch=launched)
        asked = time.perf_counter()
        async with plan.pool.kernel(cwd=plan.cwd) as kernel:
            wait = time.perf_counter() - asked
            pid = _pid(kernel)
            plan.ran_on(pid)
            await self._warm_up_on(plan, kernel)
            cpu = cpu_seconds(pid)
            sample = await self._measure(lane, kernel, index, job, wait=wait)
            plan.account(pid, cpu)
        return sample

    async def _open_loop(self, plan: _Plan, rate: float) -> None:
        """All runs of ``plan`` sent at ``rate`` over its lanes' kernels, each in a task."""
        kernels = [lane.slot for lane in plan.lanes]
        before = [slot.kernel.statistics() for slot in kernels if slot.kernel is not None]

        async def one(index: int, due: float, late: float) -> None:
            lane = plan.lanes[index % len(plan.lanes)]
            assert lane.slot.kernel is not None
            try:
                sample = await self._measure(
                    lane, lane.slot.kernel, index, None, due=due, late=late
                )
            except Exception as e:
                self._failures.append(e)
            else:
                plan.samples.append(sample)

        cpu = time.process_time()
        started = time.perf_counter()
        schedule = await dispatch(plan.n, rate, one, stop=lambda: bool(self._failures))
        plan.elapsed += time.perf_counter() - started
        plan.client_cpu += time.process_time() - cpu
        for slot, first in zip(kernels, before, strict=True):
            assert slot.kernel is not None
            plan.count(first, slot.kernel.statistics())
        plan.achieved_rate, plan.max_late = schedule.achieved_rate, schedule.max_late
        if self._failures:
            raise self._failures[0]
        if schedule.max_late > 1 / rate:
            log.warning(
                "%s: the client fell behind its schedule (a run sent %.3f s late, the interval "
                "is %.3f s): the rate measured is the client's limit",
                plan.variant.name,
                schedule.max_late,
                1 / rate,
            )

    async def _measure(
        self,
        lane: _Lane,
        kernel: Kernel,
        index: int,
        job: Notebook | None,
        *,
        launch: float | None = None,
        wait: float | None = None,
        due: float | None = None,
        late: float | None = None,
    ) -> BenchSample:
        seq = self._seq
        self._seq += 1
        # Read around the run, but for the open loop, whose runs overlap on
        # a kernel: it reads around all of them.
        before = kernel.statistics() if due is None else None
        wall, kernel_seconds, first = await self._execute(lane.plan, kernel, job, due)
        if before is not None:
            lane.plan.count(before, kernel.statistics())
        return BenchSample(
            variant=lane.plan.variant.name,
            seq=seq,
            index=index,
            lane=lane.index,
            pid=_pid(kernel),
            wall=wall,
            kernel=kernel_seconds,
            overhead=None if kernel_seconds is None else wall - kernel_seconds,
            launch=launch,
            wait=wait,
            first_output=first,
            late=late,
        )

    async def _execute(
        self, plan: _Plan, kernel: Kernel, job: Notebook | None, due: float | None = None
    ) -> tuple[float, float | None, float | None]:
        """One run: its wall time, kernel time and time to first output.

        Times count from ``due`` if given (the open loop's schedule), else
        from just before the request.
        """
        if job is not None:
            outputs: list[float] = []

            def on_output(progress: CellProgress, message: Message) -> None:
                if not outputs and message.msg_type in OUTPUTS:
                    outputs.append(time.perf_counter())

            started = time.perf_counter()
            await run_notebook(job, kernel, timeout=self._timeout, on_output=on_output)
            wall = time.perf_counter() - started
            first = outputs[0] - started if outputs else None
            return wall, notebook_kernel_seconds(job), first
        code = plan.variant.code
        assert code is not None
        times = KernelTimes()
        started = time.perf_counter() if due is None else due
        await kernel.execute(code, handlers=[times], timeout=self._timeout, raise_on_error=True)
        wall = time.perf_counter() - started
        first = None if times.first_output is None else times.first_output - started
        return wall, times.seconds(), first


def _pid(kernel: Kernel) -> int:
    assert kernel.process is not None, "a benchmark launches its kernels"
    return kernel.process.pid


async def _close(lane: _Lane) -> None:
    await lane.slot.close()


async def run(
    *variants: VariantLike,
    n: int = 100,
    kernels: int = 1,
    warmup: int | None = None,
    fresh: bool = False,
    pool_size: int | None = None,
    reuse: bool = False,
    rate: float | None = None,
    interleave: bool = True,
    launch_ahead: bool = True,
    kernel_name: str = "python3",
    timeout: float | None = None,
    sample_interval: float | None = 0.1,
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
      notebook, the whole :func:`~sidecar.run_notebook` call.  With ``rate``,
      from the time the run was due, so that queueing shows.
    - **first output**: from the same start to the first output message
      (``stream``, ``display_data``, ``execute_result``, ``error``) of the
      run, as the client got it; None for a run without output.
    - **kernel**: the kernel's own time, on the kernel's clock, from the
      reply's ``metadata.started`` (when the kernel began running the cell) to
      the date of the ``status: idle`` that ends the request (of the
      ``execute_reply`` if there is none).  It includes sending the reply and
      the kernel's post-execute hooks; for a notebook, it is the sum over the
      cells that ran.  Both ends are the kernel's timestamps, so clock offsets
      between client and kernel do not matter.
    - **overhead**: ``wall - kernel``: queueing, transport and the client's
      own work.
    - **launch** (``fresh``) and **wait** (a pool): how long the run's kernel
      took to launch, or to be handed out; never inside ``wall``.

    Per variant, over all its runs: the messages and bytes its kernels sent
    during its runs; the client's CPU (:func:`time.process_time`, every
    thread of this process, libzmq's included) during the variant's turns;
    the kernels' CPU (``utime + stime`` from ``/proc``, Linux only, in clock
    ticks of usually 10 ms, so meaningful over many runs); the kernels' peak
    RSS (``VmHWM``, Linux only); runs per second over the variant's turns.
    The client's own peak RSS is process-wide, so it is reported once.

    Every ``sample_interval`` seconds, a task reads the CPU and RSS of the
    client and of every kernel up (Linux; elsewhere nothing) into
    :attr:`BenchResult.timeline`; each variant gets the mean and peak sampled
    RSS of its kernels, the result the client's.

    How runs are scheduled (closed loop): each variant gets ``kernels``
    kernels (lanes); its runs are dealt out round-robin over them, each lane
    running its share one after another and the lanes at once.  With
    ``interleave`` the variants take turns, one run on every lane of one
    variant, then the next variant, so background load lands on all of them
    alike; without it, each variant runs all its runs before the next starts.
    Kernels are launched ahead (all before the first turn; with ``fresh``, a
    lane's next kernel while its current run goes on) and warm-up runs happen
    before a turn, so neither is inside a measurement.

    With ``pool_size`` or ``reuse``, each run takes a kernel from a pool of
    the variant's own (:func:`~sidecar.launch_pool`, ``size=pool_size`` or
    ``kernels``): the lanes ask for a kernel per run, the pool starts the
    next in the background, and with ``reuse`` a kernel comes back, reset,
    for a later run (imported modules persist: see
    :func:`~sidecar.launch_pool`).  Warm-up runs happen on each kernel handed
    out, before its run.

    With ``rate`` (open loop; code variants only, kernels reused), run ``i``
    of a variant is sent at ``t0 + i / rate``, whatever earlier runs are
    doing, on the variant's kernels round-robin, each run in a task of its
    own (a kernel queues the requests it gets while busy).  When the rate
    passes what the kernels serve, ``wall`` grows run after run.  The
    variants then run one after another (interleaving would change each
    one's rate); each reports the rate it was actually sent at, and how late
    the dispatcher was at worst: a run sent more than one interval late means
    the client itself could not keep up (:attr:`BenchResult.behind`).

    Caveats: with reused kernels, a kernel's CPU is counted from before its
    first measured run to after its last, so with ``interleave`` it includes
    the kernel idling through other variants' turns.  With ``fresh`` and
    ``launch_ahead``, the first round's kernels launch all at once (their
    launch times are inflated) and a turn's client CPU includes launching the
    next kernels; likewise a pool starts kernels during the runs.  The p99 of
    fewer than 100 runs is close to the maximum.

    Args:
        n: measured runs per variant.
        kernels: kernels per variant, running concurrently; the runs are dealt
            out over them round-robin, each kernel running its share in turn.
        warmup: untimed runs on each kernel before its first measured one
            (default 1, or 0 with ``fresh`` or a pool).
        fresh: a newly launched kernel for every run, shut down after it.
        pool_size: take each run's kernel from a pool of this many kernels
            per variant, started ahead (:func:`~sidecar.launch_pool`).
        reuse: take kernels from a pool (of ``pool_size``, default
            ``kernels``) that resets and hands them out again.
        rate: open loop: send each variant's runs at this many runs per
            second.
        interleave: the variants take turns, one run per kernel each; else
            each variant runs all of its runs before the next starts.
        launch_ahead: with ``fresh``, launch a lane's next kernel while its
            current run goes on (the launch then competes with the run for
            the machine); without, each kernel is launched just before its run.
            Either way launch time is reported apart, never in ``wall``.
        kernel_name: the kernelspec of every kernel.
        timeout: seconds a run (a notebook: each cell) may take.
        sample_interval: seconds between samples of CPU and RSS; None: none.

    Every kernel launched is shut down before this returns or raises.  When
    a run fails, the other kernels finish the run they are on (they are not
    interrupted), and the first failure is raised.

    Raises:
        ValueError: no variants, equal names, a number out of range, or
            options that do not go together (``fresh`` with a pool or a
            ``rate``; a ``rate`` with a pool or a notebook).
        ExecutionError: a run raised (:class:`~sidecar.CellError` for a
            notebook); a benchmark of failing code measures nothing.
        NoSuchKernel, KernelStartError, KernelDied: as :func:`~sidecar.launch`.
        NotebookError, OSError: a notebook could not be read.
        TimeoutError: a run took longer than ``timeout``.
    """
    if n < 1 or kernels < 1:
        raise ValueError("n and kernels must be at least 1")
    if pool_size is not None and pool_size < 1:
        raise ValueError("pool_size must be at least 1")
    pooled = pool_size is not None or reuse
    if fresh and pooled:
        raise ValueError("fresh kernels come from no pool: give fresh, or pool_size/reuse")
    if sample_interval is not None and not sample_interval > 0:
        raise ValueError("sample_interval must be more than 0 (None: no sampling)")
    if warmup is None:
        warmup = 0 if fresh or pooled else 1
    if warmup < 0:
        raise ValueError("warmup must not be negative")
    chosen = name_variants(variants)
    if not chosen:
        raise ValueError("nothing to measure: give at least one variant")
    if rate is not None:
        check_rate(rate, chosen, fresh=fresh, pooled=pooled)
        interleave = False
    get_kernelspec(kernel_name)  # NoSuchKernel now, not from every launch
    sources = [None if v.notebook is None else await read_source(v.notebook) for v in chosen]
    lanes = min(kernels, n)
    plans = [_Plan(v, source, lanes, n) for v, source in zip(chosen, sources, strict=True)]
    kernels_up = Kernels()
    started = time.perf_counter()
    async with open_task_group() as tg:
        sampling = anyio.CancelScope()
        if sample_interval is not None and can_sample():
            tg.start_soon(_sample_within, sampling, sample_interval, kernels_up, started)
        runner = _Bench(
            tg,
            plans,
            warmup=warmup,
            fresh=fresh,
            pool_size=(pool_size or lanes) if pooled else None,
            reuse=reuse,
            rate=rate,
            interleave=interleave,
            launch_ahead=launch_ahead,
            kernel_name=kernel_name,
            timeout=timeout,
            kernels=kernels_up,
        )
        try:
            await runner.run()
        except BaseException:
            # Cancelled or failed: shut every kernel down the ordinary way
            # (shielded, or cancellation would cut the shutdowns short too).
            with anyio.CancelScope(shield=True):
                await runner.close_all()
            raise
        finally:
            sampling.cancel()
    client_mean_rss, client_peak_rss = kernels_up.rss_summary(None)
    return BenchResult(
        variants=[plan.result(kernels_up) for plan in plans],
        n=n,
        kernels=lanes,
        warmup=warmup,
        fresh=fresh,
        interleave=interleave,
        kernel_name=kernel_name,
        backend=sniffio.current_async_library(),
        elapsed=time.perf_counter() - started,
        client_max_rss=client_max_rss(),
        pool_size=(pool_size or lanes) if pooled else None,
        reuse=reuse,
        rate=rate,
        sample_interval=sample_interval if can_sample() else None,
        client_mean_rss=client_mean_rss,
        client_peak_rss=client_peak_rss,
        timeline=kernels_up.timeline(),
    )


async def _sample_within(
    scope: anyio.CancelScope, every: float, kernels: Kernels, started: float
) -> None:
    """Sample until ``scope`` is cancelled: when the runs are over."""
    with scope:
        await sample(every, kernels, started)
