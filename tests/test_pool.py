"""The kernel pool against real ipykernels: hand-out, refill, reuse, death, cancellation."""

from __future__ import annotations

import json
import os
import signal
import sys
from pathlib import Path

import anyio
import pytest
from conftest import kernel_processes_of

import sidecar
from sidecar.wire import ExecuteReply

pytestmark = [pytest.mark.anyio, pytest.mark.kernel]

# Kernels of these tests keep their history in memory, as sidecar run starts them.
ARGS = ["--HistoryManager.hist_file=:memory:"]


async def _value(kernel: sidecar.Kernel, expression: str) -> str:
    reply = await kernel.execute("", user_expressions={"v": expression})
    assert isinstance(reply, ExecuteReply)
    result = reply.user_expressions["v"]
    assert result["status"] == "ok", result
    return str(result["data"]["text/plain"])


async def _wait_for(condition: object, seconds: float = 30) -> None:
    with anyio.fail_after(seconds):
        while not condition():  # type: ignore[operator]
            await anyio.sleep(0.05)


def _ours() -> list[int]:
    return kernel_processes_of(os.getpid())


async def test_hands_out_each_kernel_once_and_refills() -> None:
    pids: list[int] = []
    async with sidecar.launch_pool("python3", size=2, extra_arguments=ARGS) as pool:
        await _wait_for(lambda: pool.statistics().ready == 2)
        for _ in range(4):
            async with pool.kernel() as kernel:
                assert kernel.process is not None
                pids.append(kernel.process.pid)
                await kernel.execute("x = 1", raise_on_error=True)
                # While this one is in use, its replacement is already starting.
                stats = pool.statistics()
                assert stats.ready + stats.starting == 2
        stats = pool.statistics()
        assert stats.handed_out == 4
        assert stats.started == 6
    assert len(set(pids)) == 4
    assert _ours() == []


async def test_concurrent_hand_outs_get_distinct_kernels() -> None:
    pids: list[int] = []
    async with sidecar.launch_pool("python3", size=3, extra_arguments=ARGS) as pool:

        async def use() -> None:
            async with pool.kernel() as kernel:
                assert kernel.process is not None
                pids.append(kernel.process.pid)
                await kernel.execute("import time; time.sleep(0.2)", raise_on_error=True)

        async with anyio.create_task_group() as tg:
            for _ in range(5):
                tg.start_soon(use)
    assert len(pids) == 5
    assert len(set(pids)) == 5
    assert _ours() == []


async def test_cwd_at_hand_out(tmp_path: Path) -> None:
    (tmp_path / "helper_mod_for_pool.py").write_text("WHERE = 'beside the notebook'\n")
    async with (
        sidecar.launch_pool("python3", size=1, extra_arguments=ARGS) as pool,
        pool.kernel(cwd=tmp_path) as kernel,
    ):
        assert await _value(kernel, "__import__('os').getcwd()") == repr(str(tmp_path))
        reply = await kernel.execute(
            "import helper_mod_for_pool; print(helper_mod_for_pool.WHERE)", raise_on_error=True
        )
        assert isinstance(reply, ExecuteReply)
        # The change of directory was silent: the user's first cell is still 1.
        assert reply.execution_count == 1


async def test_reuse_resets_the_kernel(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    async with sidecar.launch_pool(
        "python3", size=1, reuse=True, cwd=home, extra_arguments=ARGS
    ) as pool:
        async with pool.kernel(cwd=tmp_path) as kernel:
            first = kernel.process
            await kernel.execute("x = 42; import json", raise_on_error=True)
            await kernel.execute("x", raise_on_error=True)
            kernel.handlers.append(lambda message: None)
        async with pool.kernel() as kernel:
            assert kernel.process is first
            assert kernel.handlers == []
            assert await _value(kernel, "'x' in globals()") == "False"
            # The documented limit: modules stay imported.
            assert await _value(kernel, "'json' in __import__('sys').modules") == "True"
            assert await _value(kernel, "__import__('os').getcwd()") == repr(str(home))
            reply = await kernel.execute("y = 1", raise_on_error=True)
            assert isinstance(reply, ExecuteReply)
            assert reply.execution_count == 1
        # The reset happens in the background, after the block.
        await _wait_for(lambda: pool.statistics().reset == 2)
        stats = pool.statistics()
        assert (stats.started, stats.handed_out, stats.ready) == (1, 2, 1)
    assert _ours() == []


async def test_the_reset_compiles_without_a_warning(tmp_path: Path) -> None:
    """The reset is code run in the kernel: a warning it raises at compile time
    would be output nobody asked for, or, where warnings are errors, a failed
    reset and a kernel replaced at every return."""
    env = {**os.environ, "PYTHONWARNINGS": "error::SyntaxWarning"}
    async with sidecar.launch_pool(
        "python3", size=1, reuse=True, cwd=tmp_path, env=env, extra_arguments=ARGS
    ) as pool:
        for _ in range(2):
            async with pool.kernel() as kernel:
                await kernel.execute("x = 1", raise_on_error=True)
        await _wait_for(lambda: pool.statistics().reset == 2)
        stats = pool.statistics()
        assert (stats.started, stats.replaced) == (1, 0)
    assert _ours() == []


async def test_ready_kernel_that_dies_is_replaced() -> None:
    async with sidecar.launch_pool("python3", size=1, extra_arguments=ARGS) as pool:
        await _wait_for(lambda: pool.statistics().ready == 1)
        (slot,) = pool._slots
        assert slot.kernel.process is not None
        dead = slot.kernel.process.pid
        os.kill(dead, signal.SIGKILL)
        await _wait_for(lambda: pool.statistics().replaced == 1)
        async with pool.kernel() as kernel:
            assert kernel.process is not None
            assert kernel.process.pid != dead
            await kernel.execute("1", raise_on_error=True)
    assert _ours() == []


async def test_reused_kernel_that_died_in_use_is_replaced() -> None:
    async with sidecar.launch_pool("python3", size=1, reuse=True, extra_arguments=ARGS) as pool:
        async with pool.kernel() as kernel:
            assert kernel.process is not None
            dead = kernel.process.pid
            with pytest.raises(sidecar.KernelDied):
                await kernel.execute("import os; os._exit(1)")
        async with pool.kernel() as kernel:
            assert kernel.process is not None
            assert kernel.process.pid != dead
            await kernel.execute("1", raise_on_error=True)
        assert pool.statistics().replaced == 1
    assert _ours() == []


async def test_start_failure_goes_to_the_taker(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    spec_dir = tmp_path / "kernels" / "broken"
    spec_dir.mkdir(parents=True)
    code = "import sys; sys.stderr.write('cannot start\\n'); sys.exit(3)"
    argv = [sys.executable, "-c", code, "{connection_file}"]
    (spec_dir / "kernel.json").write_text(json.dumps({"argv": argv, "display_name": "broken"}))
    monkeypatch.setenv("JUPYTER_PATH", str(tmp_path))
    async with sidecar.launch_pool("broken", size=2) as pool:
        for _ in range(2):
            with anyio.fail_after(20), pytest.raises(sidecar.KernelStartError, match="cannot"):
                async with pool.kernel():
                    pass
        await anyio.sleep(0.2)
        # No retry loop: a failed slot starts again only once its error was taken.
        assert pool.statistics().started <= 4
    assert _ours() == []


async def test_unknown_kernelspec_fails_at_once() -> None:
    with pytest.raises(sidecar.NoSuchKernel):
        async with sidecar.launch_pool("no-such-kernel-anywhere"):
            pass


@pytest.mark.parametrize("delay", [0.0, 0.3, 1.5])
async def test_cancelled_anywhere_leaves_no_process(delay: float) -> None:
    with anyio.move_on_after(delay + 0.2):
        async with sidecar.launch_pool("python3", size=2, extra_arguments=ARGS) as pool:
            await anyio.sleep(delay)
            async with pool.kernel() as kernel:
                await kernel.execute("import time; time.sleep(30)")
    assert _ours() == []


async def test_closed_pool_refuses() -> None:
    async with sidecar.launch_pool("python3", size=1, extra_arguments=ARGS) as pool:
        pass
    with pytest.raises(anyio.ClosedResourceError):
        async with pool.kernel():
            pass
    assert _ours() == []
