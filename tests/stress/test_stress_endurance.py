"""Long runs against real ipykernels: a soak, the Output widget race, connect and launch cycles.

What holds: over a long session the client's memory stays flat and the
replay guard stays within its window; an Output widget never loses an
output; opening and closing connections and kernels leaks no file
descriptor and leaves no kernel process behind.
"""

from __future__ import annotations

import contextlib
import gc
import os
from typing import Any

import anyio
import pytest
from stress_support import (
    no_new_kernels_left,
    open_fds,
    our_kernels,
    record,
    rss_kib,
    scale,
    summary,
)

import sidecar
from sidecar.wire import ExecuteReply, KernelInfoReply, Session

pytestmark = [
    pytest.mark.anyio,
    pytest.mark.kernel,
    pytest.mark.stress,
    pytest.mark.timeout(scale(60, 2400)),
]

EXECUTES = scale(160, 100_000)
WINDOW = scale(64, None)
"""The replay window of the soak's session: the short run shrinks it so that
it fills early in the run, as the default (65,536 signatures, about 16,000
executes) does in the full run."""
RSS_SAMPLES = 20
RSS_GROWTH_KIB = 2048
"""How far the RSS may rise from a quarter of the soak to its end.

By then the replay window is full, so nothing the client keeps should grow:
a leak of even 100 bytes per execute would add 7 MiB over the last 75,000 of
the full run.  2 MiB is room for the allocator keeping a few more arenas."""
WIDGET_RUNS = scale(20, 500)
CONNECTS = scale(20, 200)
LAUNCHES = scale(1, 50)


async def test_soak_keeps_memory_flat_and_the_replay_window_bounded(
    monkeypatch: pytest.MonkeyPatch, anyio_backend: str
) -> None:
    """Sequential ``pass`` executes on one kernel; RSS (VmRSS) is sampled
    along the way and must be flat once the replay window is full.

    The kernel is the soak's alone: another client of it in this process
    would take every execute's iopub messages too, and fill its own window."""
    if WINDOW is not None:
        shrunk = WINDOW

        def with_window(cls: type[Session], info: Any, **kwargs: Any) -> Session:
            return cls(info.key, info.signature_scheme, replay_window=shrunk, **kwargs)

        monkeypatch.setattr(Session, "from_connection_info", classmethod(with_window))
    samples: list[dict[str, int]] = []
    every = EXECUTES // RSS_SAMPLES
    started = anyio.current_time()
    # No history database: the kernel's disk writes are not what is measured.
    history = "--HistoryManager.hist_file=:memory:"
    async with sidecar.launch("python3", extra_arguments=[history]) as client:
        guard = client.session.replay_guard
        assert guard is not None
        for done in range(1, EXECUTES + 1):
            reply = await client.execute("pass")
            assert isinstance(reply, ExecuteReply)
            if done % every == 0:
                samples.append({"executes": done, "rss_kib": rss_kib(), "window": len(guard)})
        took = anyio.current_time() - started
        stats = client.statistics()
        maxlen = guard.maxlen
    # Four signed messages per execute (busy, execute_input, reply, idle):
    # the window is full long before the end, and no fuller than its bound.
    assert max(s["window"] for s in samples) == maxlen
    assert samples[-1]["window"] == maxlen
    full_at = next(s["executes"] for s in samples if s["window"] == maxlen)
    reference = next(s for s in samples if s["executes"] >= max(full_at, EXECUTES // 4))
    growth = samples[-1]["rss_kib"] - reference["rss_kib"]
    assert growth <= RSS_GROWTH_KIB, f"RSS grew {growth} KiB after the window filled: {samples}"
    assert stats.dropped_invalid == stats.dropped_malformed == stats.dropped_unobserved == 0
    record(
        "soak",
        anyio_backend,
        executes=EXECUTES,
        seconds=round(took, 1),
        executes_per_s=round(EXECUTES / took),
        replay_window=maxlen,
        window_full_after_executes=full_at,
        rss_reference_at=reference["executes"],
        rss_growth_kib=growth,
        rss_growth_bound_kib=RSS_GROWTH_KIB,
        rss_kib=[s["rss_kib"] for s in samples],
        sampled_at=[s["executes"] for s in samples],
        window=[s["window"] for s in samples],
        received=stats.received,
    )


NESTED = """
import ipywidgets
output_outer = ipywidgets.Output()
output_inner = ipywidgets.Output()
with output_inner:
    print('in inner')
    with output_outer:
        print('in outer')
    print('also in inner')
"""
"""nbclient's nested Output widgets case (its Output.ipynb), which lost
'also in inner' to stale echo_updates in most runs."""


async def test_output_widgets_never_lose_a_captured_output(
    kernel: sidecar.Kernel, anyio_backend: str
) -> None:
    pytest.importorskip("ipywidgets")
    losses: list[list[str]] = []
    took: list[float] = []
    for _ in range(WIDGET_RUNS):
        kernel.widgets.state.clear()
        cell = sidecar.Outputs()
        started = anyio.current_time()
        with anyio.fail_after(30):
            await kernel.execute(NESTED, handlers=[cell])
        took.append(anyio.current_time() - started)
        texts = sorted(
            "".join(o.get("text", "") for o in state["outputs"])
            for state in kernel.widgets.state.values()
            if state.get("_model_name") == "OutputModel"
        )
        if texts != ["in inner\nalso in inner\n", "in outer\n"] or cell.outputs:
            losses.append(texts)
    record(
        "output_widget_race",
        anyio_backend,
        runs=WIDGET_RUNS,
        losses=len(losses),
        run_s=summary(took),
    )
    assert not losses, f"{len(losses)} of {WIDGET_RUNS} runs lost outputs: {losses[:3]}"


async def test_connect_close_cycles_leak_no_file_descriptor(
    kernel: sidecar.Kernel, anyio_backend: str
) -> None:
    info = kernel.connection_info

    async def once() -> None:
        async with sidecar.connect(info) as other:
            assert isinstance(await other.kernel_info(), KernelInfoReply)

    # Lazily made resources (a backend's thread pool, its wakeup sockets)
    # exist from the first connection on; growth is counted after it.
    await once()
    before = peak = open_fds()
    started = anyio.current_time()
    with anyio.fail_after(scale(30, 300)):
        for _ in range(CONNECTS):
            await once()
            peak = max(peak, open_fds())
    took = anyio.current_time() - started
    after = open_fds()
    record(
        "connect_close_cycles",
        anyio_backend,
        cycles=CONNECTS,
        fds_before=before,
        fds_after=after,
        fds_peak_between=peak,
        cycle_s=round(took / CONNECTS, 4),
    )
    assert after <= before, f"{after - before} file descriptors leaked over {CONNECTS} cycles"


async def test_launch_exit_cycles_leak_nothing_and_leave_no_kernel(anyio_backend: str) -> None:
    started_with = our_kernels()
    pids: list[int] = []

    async def once() -> None:
        async with sidecar.launch("python3") as kernel:
            assert kernel.process is not None
            assert kernel._files is not None
            pids.append(kernel.process.pid)
            connection_file = kernel._files.connection_file
            assert isinstance(await kernel.execute("pass"), ExecuteReply)
        assert not connection_file.exists()
        left = our_kernels() - started_with
        assert not left, f"kernel processes left after exit: {sorted(left)}"

    with no_new_kernels_left():
        await once()  # as above: what the first launch makes lazily stays
        before = peak = open_fds()
        started = anyio.current_time()
        with anyio.fail_after(scale(45, 900)):
            for _ in range(LAUNCHES):
                await once()
                peak = max(peak, open_fds())
        took = anyio.current_time() - started
        after = open_fds()
        # On trio the kernels' pipes are closed only by the garbage collector
        # (see the test below): what is open once it ran is what really leaked.
        gc.collect()
        after_gc = open_fds()
    assert len(set(pids)) == len(pids)
    record(
        "launch_exit_cycles",
        anyio_backend,
        cycles=LAUNCHES,
        fds_before=before,
        fds_after=after,
        fds_after_gc=after_gc,
        fds_peak_between=peak,
        cycle_s=round(took / LAUNCHES, 3),
        kernels_left=len(our_kernels() - started_with),
    )
    assert after_gc <= before, f"{after_gc - before} fds leaked over {LAUNCHES} launches"


def _pipes() -> dict[int, str]:
    found = {}
    for name in os.listdir("/proc/self/fd"):
        with contextlib.suppress(OSError):
            target = os.readlink(f"/proc/self/fd/{name}")
            if target.startswith("pipe:"):
                found[int(name)] = target
    return found


async def test_leaving_launch_closes_the_kernels_pipes() -> None:
    """The kernel's stdout and stderr pipes are closed when ``launch()`` is left,
    not whenever the garbage collector gets to them."""
    before = _pipes()
    async with sidecar.launch("python3") as kernel:
        during = _pipes()
        assert isinstance(await kernel.execute("pass"), ExecuteReply)
    opened = {fd: target for fd, target in during.items() if before.get(fd) != target}
    assert len(opened) >= 2, "the kernel's stdout and stderr pipes were not found"
    still_open = {fd for fd, target in _pipes().items() if opened.get(fd) == target}
    assert not still_open, f"{len(still_open)} of the kernel's pipes are still open"
