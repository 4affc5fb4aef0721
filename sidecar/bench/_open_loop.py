"""The open loop: runs sent at a fixed rate, whatever earlier runs are doing.

A closed loop (a run starts when the one before it on its kernel is done)
can never ask more of a kernel than it serves, so it never shows queueing.
An open loop sends run ``i`` at ``t0 + i / rate``: when the rate passes what
the kernels can serve, runs wait in the kernels' queues, and their latency,
counted from the time they were due, grows with each run.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Coroutine
from typing import Any, final

import anyio
import msgspec

__all__ = ["Schedule", "dispatch"]


@final
class Schedule(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    """How well the dispatcher kept to its rate."""

    sent: int
    """Runs sent (fewer than asked when one failed)."""
    achieved_rate: float | None
    """Runs per second from the first send to the last (None for one run)."""
    max_late: float
    """Seconds: how late a run was sent after it was due, at worst."""


async def dispatch(
    n: int,
    rate: float,
    run: Callable[[int, float, float], Coroutine[Any, Any, None]],
    *,
    stop: Callable[[], bool],
) -> Schedule:
    """Call ``run(i, due, late)`` in a task of its own for ``i`` in ``range(n)``,
    run ``i`` when ``t0 + i / rate`` comes (``due``, on :func:`time.perf_counter`),
    and wait for all of them.

    ``run`` must not raise: it records its failure, and ``stop()`` then says
    to send no more (the runs already sent finish: cancelling one would
    interrupt its kernel, of no use when the kernels are shut down next).
    """
    sent: list[float] = []
    late = 0.0
    async with anyio.create_task_group() as tg:
        t0 = time.perf_counter()
        for i in range(n):
            if stop():
                break
            due = t0 + i / rate
            delay = due - time.perf_counter()
            if delay > 0:
                await anyio.sleep(delay)
            now = time.perf_counter()
            sent.append(now)
            late = max(late, now - due)
            tg.start_soon(run, i, due, now - due)
    achieved = None
    if len(sent) > 1:
        span = sent[-1] - sent[0]
        achieved = (len(sent) - 1) / span if span > 0 else math.inf
    return Schedule(sent=len(sent), achieved_rate=achieved, max_late=late)
