"""Kernels on a real Jupyter Server, through its REST API and websocket (no mocks).

The action tests that matter run again here, unchanged, against a remote
kernel (the ``kernel`` fixture of this module is one); then what only a
remote kernel has: the token, attaching, interrupt and restart through REST,
a kernel killed under the server, a dropped websocket, the legacy framing,
and a notebook run whose outputs equal a local run's.
"""

from __future__ import annotations

import os
import signal
from collections.abc import AsyncIterator
from functools import partial
from pathlib import Path
from typing import Any

import anyio
import pytest
from jupyter_servers import RunningServer
from test_actions import (
    run,
    test_comm_data_that_is_not_an_object,
    test_comm_opened_by_the_kernel_reaches_a_registered_target,
    test_comm_round_trip_with_a_target_in_the_kernel,
    test_error_is_a_value_or_raises_when_asked,
    test_execute_result_display_and_count,
    test_hundred_concurrent_executes_get_exactly_their_own_outputs,
    test_input_answered_by_a_callback,
    test_input_without_a_callback_is_a_clear_error,
    test_requests_after_an_error_are_aborted_not_hung,
    test_stream_merging_with_carriage_return_and_backspace,
    test_timeout_interrupts_and_leaves_the_kernel_usable,
    test_update_display_reaches_every_output_showing_it,
)

import sidecar
import sidecar.wire
from sidecar.kernel._remote import KernelServer
from sidecar.transport import WebsocketTransport
from sidecar.wire import ErrorReply, ExecuteReply

pytestmark = [pytest.mark.anyio, pytest.mark.kernel]

ROOT = Path(__file__).resolve().parent.parent

__all__ = [  # the action tests, run here against a remote kernel
    "test_comm_data_that_is_not_an_object",
    "test_comm_opened_by_the_kernel_reaches_a_registered_target",
    "test_comm_round_trip_with_a_target_in_the_kernel",
    "test_error_is_a_value_or_raises_when_asked",
    "test_execute_result_display_and_count",
    "test_hundred_concurrent_executes_get_exactly_their_own_outputs",
    "test_input_answered_by_a_callback",
    "test_input_without_a_callback_is_a_clear_error",
    "test_requests_after_an_error_are_aborted_not_hung",
    "test_stream_merging_with_carriage_return_and_backspace",
    "test_timeout_interrupts_and_leaves_the_kernel_usable",
    "test_update_display_reaches_every_output_showing_it",
]


@pytest.fixture(scope="module")
async def kernel(
    anyio_backend: str, jupyter_server: RunningServer
) -> AsyncIterator[sidecar.Kernel]:
    """One kernel on the server, shared by the tests of this module, per backend."""
    async with sidecar.connect_server(jupyter_server.url, token=jupyter_server.token) as k:
        yield k


def _transport(kernel: sidecar.Kernel) -> WebsocketTransport:
    transport = kernel._channels.transport
    assert isinstance(transport, WebsocketTransport)
    return transport


async def _kernels_on(server: RunningServer) -> set[str]:
    async with KernelServer(server.url, token=server.token) as api:
        return {k["id"] for k in await api.request("GET", "api/kernels")}


async def test_a_kernel_we_start_is_shut_down_on_exit(jupyter_server: RunningServer) -> None:
    async with sidecar.connect_server(jupyter_server.url, token=jupyter_server.token) as kernel:
        assert kernel.kernel_id in await _kernels_on(jupyter_server)
        assert kernel.process is None
        assert kernel.info is not None
        assert _transport(kernel).framing == "v1"
    assert kernel.kernel_id not in await _kernels_on(jupyter_server)


async def test_a_kernel_we_attach_to_is_left_running(
    jupyter_server: RunningServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("JUPYTER_TOKEN", jupyter_server.token)  # the token from the environment
    async with KernelServer(jupyter_server.url, token=jupyter_server.token) as api:
        kernel_id = await api.start_kernel("python3")
        try:
            async with sidecar.connect_server(jupyter_server.url, kernel_id=kernel_id) as kernel:
                await kernel.execute("left_here = 42")
            assert kernel_id in await _kernels_on(jupyter_server)
            async with sidecar.connect_server(jupyter_server.url, kernel_id=kernel_id) as kernel:
                out = await run(kernel, "print(left_here)")
            assert out.text() == "42\n"
        finally:
            await api.kernel(kernel_id).shutdown()


async def test_a_wrong_token_is_refused_at_once(jupyter_server: RunningServer) -> None:
    started = anyio.current_time()
    with pytest.raises(sidecar.TokenRejected, match="refused our token") as caught:
        async with sidecar.connect_server(jupyter_server.url, token="wrong"):
            pass
    assert anyio.current_time() - started < 2
    assert caught.value.status == 403
    assert isinstance(caught.value, sidecar.AuthenticationError)


async def test_what_the_server_does_not_have(jupyter_server: RunningServer) -> None:
    url, token = jupyter_server.url, jupyter_server.token
    with pytest.raises(sidecar.NoSuchKernel, match="no-such-kernel"):
        async with sidecar.connect_server(url, token=token, kernel_name="no-such-kernel"):
            pass
    with pytest.raises(sidecar.JupyterServerError) as caught:
        async with sidecar.connect_server(url, token=token, kernel_id="no-such-id"):
            pass
    assert caught.value.status == 404
    with pytest.raises(sidecar.JupyterServerError, match="no answer"):
        async with sidecar.connect_server("http://127.0.0.1:9", token=token):
            pass


async def test_interrupt_goes_through_the_server(kernel: sidecar.Kernel) -> None:
    replies: list[Any] = []

    async def sleep() -> None:
        replies.append(await kernel.execute("import time; time.sleep(30)"))

    with anyio.fail_after(10):
        async with anyio.create_task_group() as tg:
            tg.start_soon(sleep)
            while kernel.execution_state != "busy":
                await anyio.sleep(0.02)
            # A SIGINT between busy and the code itself is taken by the
            # kernel's own machinery, not by time.sleep.
            await anyio.sleep(0.3)
            await kernel.interrupt()
    (reply,) = replies
    assert isinstance(reply, ErrorReply)
    assert reply.ename == "KeyboardInterrupt"


async def test_restart_goes_through_the_server(kernel: sidecar.Kernel) -> None:
    await kernel.execute("before_restart = 1")
    session = kernel.kernel_session
    failed: list[BaseException] = []

    async def waiting() -> None:
        try:
            await kernel.execute("import time; time.sleep(30)")
        except sidecar.KernelRestarted as e:
            failed.append(e)

    with anyio.fail_after(30):
        async with anyio.create_task_group() as tg:
            tg.start_soon(waiting)
            await anyio.sleep(0.3)
            await kernel.restart()
    assert len(failed) == 1
    assert kernel.state == "ready"
    assert kernel.kernel_session != session
    reply = await kernel.execute("before_restart")
    assert isinstance(reply, ErrorReply)
    assert reply.ename == "NameError"


async def test_a_kernel_killed_under_the_server_fails_requests_then_comes_back(
    jupyter_server: RunningServer,
) -> None:
    async with sidecar.connect_server(jupyter_server.url, token=jupyter_server.token) as kernel:
        pid = int((await run(kernel, "import os; print(os.getpid())")).text())
        failures: list[BaseException] = []

        async def wait(i: int) -> None:
            try:
                await kernel.execute(f"import time; time.sleep(60)  # {i}")
            except sidecar.KernelError as e:
                failures.append(e)

        with anyio.fail_after(20):
            async with anyio.create_task_group() as tg:
                for i in range(5):
                    tg.start_soon(wait, i)
                await anyio.sleep(0.3)
                os.kill(pid, signal.SIGKILL)
        # The server restarts it and says so (status: restarting): not a hang.
        assert len(failures) == 5
        assert all(isinstance(e, sidecar.KernelRestarted | sidecar.KernelDied) for e in failures)
        with anyio.fail_after(30):
            while True:
                try:
                    out = await run(kernel, "print('back')")
                    break
                except sidecar.KernelError:
                    await anyio.sleep(0.2)
        assert out.text() == "back\n"
        assert kernel.state == "ready"


async def test_a_kernel_deleted_on_the_server_is_dead_not_lost_for_ever(
    jupyter_server: RunningServer,
) -> None:
    """As when another client deletes it, or a gateway culls it: jupyter_server
    keeps our websocket open and answering pings, so only the presence check
    (GET api/kernels/{id}, 404) can tell.  The waiting request and new ones fail
    with KernelDied naming it, instead of waiting for ever."""
    async with sidecar.connect_server(jupyter_server.url, token=jupyter_server.token) as kernel:
        failures: list[BaseException] = []

        async def wait() -> None:
            try:
                await kernel.execute("import time; time.sleep(60)")
            except sidecar.KernelError as e:
                failures.append(e)

        with anyio.fail_after(20):
            async with anyio.create_task_group() as tg:
                tg.start_soon(wait)
                await anyio.sleep(0.3)
                async with KernelServer(jupyter_server.url, token=jupyter_server.token) as api:
                    assert kernel.kernel_id is not None
                    await api.kernel(kernel.kernel_id).shutdown()
            while kernel.state != "dead":
                await anyio.sleep(0.05)
        assert len(failures) == 1
        with pytest.raises(sidecar.KernelDied, match="404"):
            await kernel.execute("1")


async def test_a_reconnect_answered_404_is_final(jupyter_server: RunningServer) -> None:
    """Without the presence check (no heartbeat interval), the reconnect after a
    drop finds the kernel gone: it stops there, and the kernel is dead."""
    url, token = jupyter_server.url, jupyter_server.token
    async with sidecar.connect_server(url, token=token, heartbeat_interval=None) as kernel:
        async with KernelServer(url, token=token) as api:
            assert kernel.kernel_id is not None
            await api.kernel(kernel.kernel_id).shutdown()
        transport = _transport(kernel)
        transport.drop_connection()
        with anyio.fail_after(10):
            while kernel.state != "dead":
                await anyio.sleep(0.05)
        with pytest.raises(
            sidecar.KernelDied, match=r"\(HTTP 404\); the kernel is gone, not reconnecting"
        ):
            await kernel.execute("1")
        assert transport.reconnects == 0


async def test_a_dropped_websocket_reconnects_and_loses_no_output(kernel: sidecar.Kernel) -> None:
    transport = _transport(kernel)
    before = transport.reconnects
    outputs = sidecar.Outputs()
    code = "import time\nfor i in range(40):\n    print(i, flush=True)\n    time.sleep(0.025)"
    with anyio.fail_after(20):
        async with anyio.create_task_group() as tg:
            tg.start_soon(lambda: kernel.execute(code, handlers=[outputs]))
            while "5\n" not in outputs.text():
                await anyio.sleep(0.01)
            transport.drop_connection()
    assert transport.reconnects == before + 1
    assert outputs.text() == "".join(f"{i}\n" for i in range(40))
    assert (await run(kernel, "print('after')")).text() == "after\n"


async def test_a_healthy_websocket_is_never_reported_missing_a_ping(
    jupyter_server: RunningServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every pong answered is reported answered (on trio the wait for the next
    ping once ended with the timeout around it, and every pong was a miss)."""
    from sidecar.kernel._channels import Channels

    reports: list[bool] = []
    real = Channels.on_heartbeat

    def spy(self: Channels, answered: bool, waited: float) -> None:
        reports.append(answered)
        real(self, answered, waited)

    async with sidecar.connect_server(
        jupyter_server.url, token=jupyter_server.token, heartbeat_interval=0.2
    ) as kernel:
        monkeypatch.setattr(Channels, "on_heartbeat", spy)
        await anyio.sleep(1.5)
        monkeypatch.undo()
        assert kernel.state == "ready"
    assert reports.count(True) >= 4, reports
    # One miss is room for a pong truly late on a loaded machine.
    assert reports.count(False) <= 1, reports


async def test_large_messages_are_not_taken_for_a_dead_websocket(
    jupyter_server: RunningServer,
) -> None:
    """A message that takes longer to move than two pings is progress, not
    silence: the websocket is not dropped (which would start it all over)."""
    async with sidecar.connect_server(
        jupyter_server.url, token=jupyter_server.token, heartbeat_interval=0.005
    ) as kernel:
        # Large both ways on shell (iopub is rate-limited by the server):
        # the request's code, and the reply's user expression.
        text = "a" * 3_000_000
        reply = await kernel.execute(f"s = {text!r}", user_expressions={"s": "s"})
        assert reply.status == "ok"
        assert len(reply.user_expressions["s"]["data"]["text/plain"]) == 3_000_002
        assert _transport(kernel).reconnects == 0
        assert kernel.state == "ready"


async def test_the_legacy_json_framing(jupyter_server: RunningServer) -> None:
    async with sidecar.connect_server(
        jupyter_server.url, token=jupyter_server.token, framing="json"
    ) as kernel:
        assert _transport(kernel).framing == "json"
        out = await run(kernel, "from IPython.display import display\ndisplay('shown')\nprint('x')")
        assert [o["output_type"] for o in out.outputs] == ["display_data", "stream"]
        reply = await kernel.execute("print(input('? '))", stdin=_answer)
        assert isinstance(reply, ExecuteReply)
        await _buffers_both_ways(kernel)


async def test_buffers_both_ways_on_v1(kernel: sidecar.Kernel) -> None:
    await _buffers_both_ways(kernel)


async def _buffers_both_ways(kernel: sidecar.Kernel) -> None:
    """A comm echoes binary buffers back, reversed."""
    await kernel.execute(
        "def _buffers_target(comm, open_msg):\n"
        "    @comm.on_msg\n"
        "    def _(msg):\n"
        "        comm.send({'n': len(msg['buffers'])},\n"
        "                  buffers=[bytes(b)[::-1] for b in msg['buffers']])\n"
        "get_ipython().kernel.comm_manager.register_target('buffers', _buffers_target)"
    )
    got: list[sidecar.wire.Message] = []
    echoed = anyio.Event()

    def on_msg(message: sidecar.wire.Message) -> None:
        got.append(message)
        echoed.set()

    comm = await kernel.comms.open("buffers", {}, on_msg=on_msg)
    await comm.send({}, buffers=[b"abc", b"\x00\x01\xff", b""])
    with anyio.fail_after(10):
        await echoed.wait()
    assert got[0].content.data == {"n": 3}
    assert [bytes(b) for b in got[0].buffers] == [b"cba", b"\xff\x01\x00", b""]
    await comm.close()


async def _answer(prompt: str, password: bool) -> str:
    return "typed"


async def test_a_notebook_run_equals_a_local_run(jupyter_server: RunningServer) -> None:
    local = sidecar.read_notebook(ROOT / "examples" / "tour.ipynb")
    remote = sidecar.read_notebook(ROOT / "examples" / "tour.ipynb")
    async with sidecar.connect_server(jupyter_server.url, token=jupyter_server.token) as kernel:
        await sidecar.run_notebook(remote, kernel, record_timing=False)
    async with sidecar.launch("python3") as local_kernel:
        await sidecar.run_notebook(local, local_kernel, record_timing=False)
    assert sidecar.write_notebook(remote) == sidecar.write_notebook(local)


async def test_a_pool_of_kernels_on_the_server(jupyter_server: RunningServer) -> None:
    url, token = jupyter_server.url, jupyter_server.token
    start = partial(sidecar.connect_server, url, token=token, kernel_name="python3")
    ids: list[str | None] = []
    before = await _kernels_on(jupyter_server)
    async with sidecar.launch_pool(size=2, start=start) as pool:
        for _ in range(3):
            async with pool.kernel() as kernel:
                ids.append(kernel.kernel_id)
                assert kernel.process is None
                assert (await run(kernel, "print(6 * 7)")).text() == "42\n"
        assert pool.statistics().handed_out == 3
    assert len(set(ids)) == 3
    # Each kernel the pool started is deleted from the server, the last
    # two (ready, never handed out) included.
    assert await _kernels_on(jupyter_server) == before


async def test_a_reused_kernel_on_the_server_is_reset(
    jupyter_server: RunningServer, tmp_path: Path
) -> None:
    url, token = jupyter_server.url, jupyter_server.token
    start = partial(sidecar.connect_server, url, token=token, kernel_name="python3")
    before = await _kernels_on(jupyter_server)
    async with sidecar.launch_pool(size=1, reuse=True, start=start) as pool:
        async with pool.kernel(cwd=tmp_path) as kernel:
            first = kernel.kernel_id
            await kernel.execute("left_over = 1", raise_on_error=True)
            assert (await run(kernel, "import os; print(os.getcwd())")).text() == f"{tmp_path}\n"
        async with pool.kernel() as kernel:
            assert kernel.kernel_id == first
            out = await run(kernel, "print('left_over' in globals())")
            assert out.text() == "False\n"
            assert pool.statistics().reset == 1
    assert await _kernels_on(jupyter_server) == before


@pytest.mark.parametrize("delay", [0.0, 0.05, 0.3])
async def test_cancelled_while_starting_leaves_no_kernel_on_the_server(
    jupyter_server: RunningServer, delay: float
) -> None:
    before = await _kernels_on(jupyter_server)
    with anyio.move_on_after(delay):
        async with sidecar.connect_server(jupyter_server.url, token=jupyter_server.token):
            await anyio.sleep_forever()
    assert await _kernels_on(jupyter_server) == before
