"""CPU and RSS of the client and of every live kernel, sampled while a benchmark runs."""

from __future__ import annotations

import os
import statistics
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import final

import anyio

from ._probes import cpu_seconds, rss
from ._results import ResourceSample

__all__ = ["Kernels", "can_sample", "sample"]

_Raw = tuple[float, int, float, int, bool]
"""A sample before it is known whose it is: (t, pid, cpu, rss, up), ``up``
if the process was a kernel up then (not still starting) or the client."""


def can_sample() -> bool:
    """Whether this system has the ``/proc`` the sampler reads (Linux)."""
    return Path(f"/proc/{os.getpid()}/statm").exists()


@final
class Kernels:
    """The kernels of a benchmark, by process id, as the sampler knows them."""

    def __init__(self) -> None:
        self.up: dict[int, str] = {}
        """Kernels up now, and the variant each runs."""
        self.names: dict[int, str] = {}
        """Every kernel that was up, and its variant."""
        self.raw: list[_Raw] = []

    @contextmanager
    def running(self, pid: int, variant: str) -> Iterator[None]:
        """The kernel ``pid`` is up, as ``variant``'s, in the block."""
        self.up[pid] = self.names[pid] = variant
        try:
            yield
        finally:
            self.up.pop(pid, None)

    def timeline(self) -> list[ResourceSample]:
        """The samples of the client and of the benchmark's kernels, named.

        A kernel is named once it is up, but sampled from its start on (as a
        child of this process), so its start shows; children that never
        became a benchmark's kernel are left out.
        """
        me = os.getpid()
        return [
            ResourceSample(t, self.names.get(pid), pid, cpu, resident)
            for t, pid, cpu, resident, _ in self.raw
            if pid == me or pid in self.names
        ]

    def rss_summary(self, variant: str | None) -> tuple[int | None, int | None]:
        """The mean and the peak RSS sampled for ``variant``'s kernels while they
        were up (not while starting: a kernel's start would pull its mean
        down), or for the client (``variant`` None)."""
        me = os.getpid()
        if variant is None:
            values = [raw[3] for raw in self.raw if raw[1] == me]
        else:
            values = [raw[3] for raw in self.raw if raw[4] and self.names.get(raw[1]) == variant]
        if not values:
            return None, None
        return round(statistics.fmean(values)), max(values)


async def sample(every: float, kernels: Kernels, started: float) -> None:
    """Sample this process, its children and the kernels up, every ``every``
    seconds, until cancelled.

    Each sample reads two small ``/proc`` files per process: microseconds, so
    it is done on the event loop, not in a thread (a thread would cost more
    than the reads, and compete with the client for the GIL all the same).
    """
    me = os.getpid()
    while True:
        t = time.perf_counter() - started
        up = kernels.up
        for pid in (me, *(_children(me) | up.keys())):
            cpu, resident = cpu_seconds(pid), rss(pid)
            # None: it just ended; no memory: it ended, not yet reaped (a zombie).
            if cpu is not None and resident:
                kernels.raw.append((t, pid, cpu, resident, pid in up))
        await anyio.sleep(every)


def _children(pid: int) -> set[int]:
    """The child processes of ``pid`` (empty where the kernel does not list them)."""
    found: set[int] = set()
    with suppress(OSError):
        for task in os.listdir(f"/proc/{pid}/task"):
            with suppress(OSError), open(f"/proc/{pid}/task/{task}/children", "rb") as file:
                found.update(int(child) for child in file.read().split())
    return found
