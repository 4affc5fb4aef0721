"""Requests, routing and the lifecycle over the in-memory transport: no socket, no kernel.

The test plays the kernel (see ``memory_transport``), so every ordering a real
kernel may produce, and some it should not, is scripted exactly.
"""

from __future__ import annotations

import logging
from typing import Any

import anyio
import pytest
from memory_transport import MemoryKernel, memory_kernel

import sidecar
from sidecar.kernel._lifecycle import Event
from sidecar.wire import ErrorReply, ExecuteReply, Message, Stream

pytestmark = pytest.mark.anyio


async def _answer(
    far: MemoryKernel,
    *,
    reply: bool = True,
    idle: bool = True,
    before: tuple[tuple[str, Any], ...] = (),
    idle_first: bool = False,
) -> Message:
    channel, request = await far.next_request()
    far.status("busy", request)
    for msg_type, content in before:
        far.output(msg_type, content, request)
    if idle and idle_first:
        far.status("idle", request)
    if reply:
        far.reply(channel, request, "execute_reply", ExecuteReply(execution_count=1))
    if idle and not idle_first:
        far.status("idle", request)
    return request


@pytest.mark.parametrize("idle_first", [False, True])
async def test_done_on_reply_and_idle_in_either_order(idle_first: bool) -> None:
    async with memory_kernel() as (kernel, far), anyio.create_task_group() as tg:
        tg.start_soon(lambda: _answer(far, idle_first=idle_first))
        seen: list[str] = []
        with anyio.fail_after(5):
            reply = await kernel.execute("x", handlers=[lambda m: seen.append(m.msg_type)])
        assert isinstance(reply, ExecuteReply)
        assert sorted(seen) == ["execute_reply", "status", "status"]


async def test_reply_without_idle_completes_after_the_grace_period(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async with memory_kernel() as (kernel, far), anyio.create_task_group() as tg:
        kernel.grace = 0.2
        tg.start_soon(lambda: _answer(far, idle=False))
        started = anyio.current_time()
        with caplog.at_level(logging.WARNING, logger="sidecar"), anyio.fail_after(5):
            reply = await kernel.execute("x")
        assert isinstance(reply, ExecuteReply)
        assert 0.2 <= anyio.current_time() - started < 2
        assert any("no idle" in r.getMessage() for r in caplog.records)


async def test_idle_without_reply_fails_after_the_grace_period() -> None:
    async with memory_kernel() as (kernel, far), anyio.create_task_group() as tg:
        kernel.grace = 0.2
        tg.start_soon(lambda: _answer(far, reply=False))
        with anyio.fail_after(5), pytest.raises(sidecar.NoReply):
            await kernel.execute("x")


async def test_a_hundred_concurrent_requests_each_get_their_own() -> None:
    async with memory_kernel() as (kernel, far):
        results: dict[int, str] = {}

        async def one(i: int) -> None:
            out = sidecar.Outputs()
            await kernel.execute(f"print({i})", handlers=[out])
            results[i] = out.text()

        async def kernel_side() -> None:
            pending = [await far.next_request() for _ in range(100)]
            for channel, request in reversed(pending):  # answered out of order
                far.status("busy", request)
                text = request.content.code.removeprefix("print(").removesuffix(")")
                far.output("stream", Stream(name="stdout", text=text), request)
                far.reply(channel, request, "execute_reply", ExecuteReply(execution_count=1))
                far.status("idle", request)

        with anyio.fail_after(10):
            async with anyio.create_task_group() as tg:
                for i in range(100):
                    tg.start_soon(one, i)
                tg.start_soon(kernel_side)
        assert results == {i: str(i) for i in range(100)}
        assert kernel.statistics().waiting == 0


async def test_unsolicited_messages_reach_observers_and_late_output_its_handlers() -> None:
    async with memory_kernel() as (kernel, far):
        out = sidecar.Outputs()
        async with anyio.create_task_group() as tg:
            tg.start_soon(_answer, far)
            request_seen: list[Message] = []
            await kernel.execute("x", handlers=[out, request_seen.append])
        request = next(m for m in request_seen if m.msg_type == "execute_reply").parent_header
        assert request is not None
        with kernel.observe() as observed:
            far.send(
                "iopub",
                far.session.message("stream", Stream(name="stdout", text="late"), parent=request),
            )
            far.status("busy")
            with anyio.fail_after(5):
                channels = [await observed.receive(), await observed.receive()]
            # Late output still reaches the finished request's collector.
            while out.text() != "late":
                await anyio.sleep(0.01)
        assert [m.msg_type for _, m in channels] == ["stream", "status"]


async def test_cancelling_an_execute_interrupts_and_waits_for_it() -> None:
    async with memory_kernel() as (kernel, far):

        async def kernel_side() -> None:
            channel, request = await far.next_request()
            far.status("busy", request)
            control, interrupt = await far.next_request()
            assert (control, interrupt.msg_type) == ("control", "interrupt_request")
            far.reply("control", interrupt, "interrupt_reply", {"status": "ok"})
            error = ErrorReply(ename="KeyboardInterrupt", evalue="", traceback=[])
            far.reply(channel, request, "execute_reply", error)
            far.status("idle", request)

        done: list[Message | None] = []

        class Hook:
            def __call__(self, message: Message) -> None:
                pass

            def on_request_done(self, request: Message, reply: Message | None) -> None:
                done.append(reply)

        async with anyio.create_task_group() as tg:
            tg.start_soon(kernel_side)
            with anyio.move_on_after(0.2) as scope:
                await kernel.execute("sleep", handlers=[Hook()])
        assert scope.cancelled_caught
        assert len(done) == 1
        assert done[0] is not None
        assert done[0].content.ename == "KeyboardInterrupt"
        assert kernel.statistics().waiting == 0


@pytest.mark.parametrize(
    ("event", "error"),
    [(Event.PROCESS_EXITED, sidecar.KernelDied), (Event.NEW_SESSION, sidecar.KernelRestarted)],
)
async def test_lifecycle_events_fail_waiting_requests(event: Event, error: type) -> None:
    async with memory_kernel(owned=True) as (kernel, far):
        failures: list[BaseException] = []

        async def waiting() -> None:
            try:
                await kernel.execute("x")
            except sidecar.KernelError as e:
                failures.append(e)

        async with anyio.create_task_group() as tg:
            tg.start_soon(waiting)
            await far.next_request()
            kernel._channels.handle(event, "said so")
        assert len(failures) == 1
        assert isinstance(failures[0], error)


async def test_requests_made_while_restarting_wait_for_the_restart() -> None:
    async with memory_kernel(owned=True) as (kernel, _far):
        channels = kernel._channels
        channels.handle(Event.RESTART_BEGUN, "restarting")
        assert kernel.state == "restarting"
        got: list[Any] = []

        async def request() -> None:
            got.append(await kernel.kernel_info())

        async with anyio.create_task_group() as tg:
            tg.start_soon(request)
            await anyio.sleep(0.1)
            assert not got  # still waiting
            channels.handle(Event.READY)
        assert got
        assert kernel.state == "ready"


async def test_a_slow_comm_target_does_not_hold_up_late_output() -> None:
    async with memory_kernel() as (kernel, far):
        release = anyio.Event()

        async def slow_target(comm: sidecar.Comm, message: Message) -> None:
            await release.wait()

        kernel.comms.register_target("slow", slow_target)
        out = sidecar.Outputs()
        requests: list[Message] = []

        async def answer() -> None:
            requests.append(await _answer(far))

        async with anyio.create_task_group() as tg:
            tg.start_soon(answer)
            await kernel.execute("x", handlers=[out])
        opened = far.session.message(
            "comm_open", {"comm_id": "c", "target_name": "slow", "data": {}}
        )
        far.send("iopub", opened)  # the target now holds up the comm task
        far.output("stream", Stream(name="stdout", text="late"), requests[0])
        with anyio.fail_after(2):
            while out.text() != "late":
                await anyio.sleep(0.01)
        release.set()
