"""What a kernel sends never kills the client, and only the right reply completes a request.

Against a rogue kernel (see ``rogue_kernel``): malformed comms, malformed
outputs, replies of the wrong type, malformed replies; each on its own and in
the middle of a request, on both backends.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import anyio
import msgspec
import pytest
from rogue_kernel import RogueKernel, rogue_kernel

import sidecar
from sidecar.wire import CommMsg, CommOpen, ExecuteReply, KernelInfoReply, Message, Stream

pytestmark = pytest.mark.anyio


async def _wait_for(predicate: Any, what: str) -> None:
    with anyio.fail_after(5):
        while not predicate():
            await anyio.sleep(0.01)


def _comm_msg(
    rogue: RogueKernel, content: dict[str, Any], parent: Message | None = None
) -> Message:
    return rogue.session.message("comm_msg", content, parent=parent)


async def test_unsolicited_malformed_comms_are_dropped_and_the_client_lives(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    async with rogue_kernel(tmp_path) as rogue, sidecar.connect(rogue.info) as kernel:
        got: list[Any] = []
        kernel.comms.register_target("t", lambda comm, message: comm.on_msg(got.append))
        opened = CommOpen(comm_id="c1", target_name="t", data="hello")
        with caplog.at_level(logging.WARNING, logger="sidecar"):
            await rogue.publish(rogue.session.message("comm_open", opened))
            # Any JSON value is valid comm data.
            await rogue.publish(_comm_msg(rogue, {"comm_id": "c1", "data": "connected"}))
            # No comm_id: malformed.
            await rogue.publish(_comm_msg(rogue, {"data": {"x": 1}}))
            # buffer_paths that are not lists of keys: malformed widget state.
            bad_paths = {"comm_id": "c1", "data": {"state": {"a": 1}, "buffer_paths": [5]}}
            await rogue.publish(_comm_msg(rogue, bad_paths))
            # Content that is not JSON at all.
            frames = rogue.session.serialize(_comm_msg(rogue, {"comm_id": "c1"}))
            frames[-1] = b"{not json"
            frames[1] = rogue.session.signer.sign(frames[2:6])
            await rogue.publish_frames(frames)
            await rogue.publish(_comm_msg(rogue, {"comm_id": "c1", "data": ["last", 2]}))
            await _wait_for(lambda: len(got) == 2, "the valid comm messages")
        assert [m.content.data for m in got] == ["connected", ["last", 2]]
        assert kernel.statistics().dropped_malformed == 3
        assert sum("malformed" in r.getMessage() for r in caplog.records) == 3
        # The client is still usable.
        reply_task_result: list[Any] = []

        async def ask() -> None:
            reply_task_result.append(await kernel.kernel_info())

        with anyio.fail_after(5):
            await ask()
        assert isinstance(reply_task_result[0], KernelInfoReply)


async def _answer_execute(rogue: RogueKernel, *middle: Message | list[bytes]) -> Message:
    """Busy, then ``middle`` (each a message or frames: iopub; a shell message:
    shell), then the execute_reply and idle."""
    identity, request = await rogue.next_request()
    await rogue.status("busy", request)
    for item in middle:
        if isinstance(item, list):
            await rogue.publish_frames(item)
        elif item.msg_type.endswith("_reply"):
            fixed = Message(item.header, item.content, parent_header=request.header)
            await rogue.reply(identity, fixed)
        else:
            fixed = Message(item.header, item.content, parent_header=request.header)
            await rogue.publish(fixed)
    reply = rogue.session.message("execute_reply", ExecuteReply(execution_count=1), parent=request)
    await rogue.reply(identity, reply)
    await rogue.status("idle", request)
    return request


async def test_malformed_messages_inside_a_request_are_dropped_and_it_completes(
    tmp_path: Path,
) -> None:
    async with rogue_kernel(tmp_path) as rogue, sidecar.connect(rogue.info) as kernel:
        s = rogue.session
        outputs = sidecar.Outputs()
        seen: list[str] = []
        async with anyio.create_task_group() as tg:
            tg.start_soon(
                _answer_execute,
                rogue,
                s.message("stream", Stream(name="stdout", text="one ")),
                s.message("comm_msg", {"data": "no comm id"}),
                s.message("stream", {"name": 5, "text": "bad"}),
                s.message("comm_msg", {"comm_id": "x", "data": "a string"}),
                s.message("status", {"execution_state": 7}),
                s.message("stream", Stream(name="stdout", text="two")),
            )
            with anyio.fail_after(5):
                reply = await kernel.execute(
                    "x", handlers=[outputs, lambda m: seen.append(m.msg_type)]
                )
        assert isinstance(reply, ExecuteReply)
        assert outputs.text() == "one two"
        # The malformed stream went to the handlers and was dropped there; the
        # malformed status never reached them.
        assert seen.count("status") == 2
        stats = kernel.statistics()
        assert stats.dropped_malformed == 3


async def test_a_reply_of_another_type_does_not_complete_the_request(tmp_path: Path) -> None:
    async with rogue_kernel(tmp_path) as rogue, sidecar.connect(rogue.info) as kernel:
        bogus = rogue.session.message("bogus_reply", {"status": "ok", "x": 1})
        other = rogue.session.message("kernel_info_reply", KernelInfoReply())
        seen: list[Message] = []
        async with anyio.create_task_group() as tg:
            tg.start_soon(_answer_execute, rogue, bogus, other)
            with anyio.fail_after(5):
                reply = await kernel.execute("x", handlers=[seen.append])
        assert isinstance(reply, ExecuteReply)
        assert reply.execution_count == 1
        # Shell and iopub are two sockets: only the order within each is fixed.
        on_shell = [m.msg_type for m in seen if m.msg_type != "status"]
        assert on_shell == ["bogus_reply", "kernel_info_reply", "execute_reply"]
        assert [m.msg_type for m in seen].count("status") == 2


async def test_a_malformed_reply_is_a_named_error_and_the_client_goes_on(tmp_path: Path) -> None:
    async with rogue_kernel(tmp_path) as rogue, sidecar.connect(rogue.info) as kernel:

        async def answer_badly() -> None:
            identity, request = await rogue.next_request()
            await rogue.status("busy", request)
            bad = rogue.session.message(
                "execute_reply", {"status": "ok", "execution_count": "one"}, parent=request
            )
            await rogue.reply(identity, bad)
            await rogue.status("idle", request)

        async with anyio.create_task_group() as tg:
            tg.start_soon(answer_badly)
            with (
                anyio.fail_after(5),
                pytest.raises(sidecar.MalformedMessage, match="execute_reply"),
            ):
                await kernel.execute("x")
        async with anyio.create_task_group() as tg:
            tg.start_soon(_answer_execute, rogue)
            with anyio.fail_after(5):
                assert isinstance(await kernel.execute("y"), ExecuteReply)


async def test_comm_msg_data_of_any_json_type_reaches_the_comm(tmp_path: Path) -> None:
    async with rogue_kernel(tmp_path) as rogue, sidecar.connect(rogue.info) as kernel:
        got: list[Any] = []

        async def open_and_answer() -> None:
            _identity, request = await rogue.next_request()
            assert request.msg_type == "comm_open"
            comm_id = request.content.comm_id
            await rogue.status("busy", request)
            for data in ("text", 3, None, [1, {"a": 2}]):
                message = rogue.session.message(
                    "comm_msg", CommMsg(comm_id=comm_id, data=data), parent=request
                )
                await rogue.publish(message)
            await rogue.status("idle", request)

        async with anyio.create_task_group() as tg:
            tg.start_soon(open_and_answer)
            with anyio.fail_after(5):
                comm = await kernel.comms.open(
                    "t", "opening text", on_msg=lambda m: got.append(m.content.data)
                )
        assert got == ["text", 3, None, [1, {"a": 2}]]
        assert not comm.closed


async def _wait_state(kernel: sidecar.Kernel, state: str) -> None:
    with anyio.fail_after(10):
        while kernel.state != state:
            await anyio.sleep(0.02)


@pytest.mark.parametrize(
    ("status", "error"), [("restarting", sidecar.KernelRestarted), ("dead", sidecar.KernelDied)]
)
async def test_a_managers_restarting_or_dead_status_fails_waiting_requests_then_recovers(
    tmp_path: Path, status: str, error: type[Exception]
) -> None:
    """Enterprise Gateway publishes these for a kernel it restarts (OOM):
    the waiting execute fails at once instead of hanging, new requests fail
    until the new kernel speaks, then it is served."""
    async with rogue_kernel(tmp_path) as rogue, sidecar.connect(rogue.info) as kernel:
        failures: list[BaseException] = []

        async def waiting() -> None:
            try:
                await kernel.execute("long")
            except (sidecar.KernelDied, sidecar.KernelRestarted) as e:
                failures.append(e)

        async with anyio.create_task_group() as tg:
            tg.start_soon(waiting)
            _identity, request = await rogue.next_request()
            await rogue.status("busy", request)
            await rogue.status(status)
        assert len(failures) == 1
        assert isinstance(failures[0], error)
        assert kernel.state == "lost"
        with anyio.fail_after(1), pytest.raises(error):
            await kernel.execute("now")
        # The new kernel process speaks: channels are proven again, then served.
        rogue.new_session()
        await rogue.status("starting")
        await _wait_state(kernel, "ready")
        async with anyio.create_task_group() as tg:
            tg.start_soon(_answer_execute, rogue)
            with anyio.fail_after(5):
                assert isinstance(await kernel.execute("again"), ExecuteReply)


async def test_a_heartbeat_lost_and_back_is_lost_then_served(tmp_path: Path) -> None:
    """A kernel we do not own that stops answering (paused, rebinding) is lost,
    not dead: requests fail fast while it is, and it is served once it answers."""
    async with (
        rogue_kernel(tmp_path) as rogue,
        sidecar.connect(rogue.info, heartbeat_interval=0.2) as kernel,
    ):
        rogue.heartbeat_paused = True
        await _wait_state(kernel, "lost")
        with anyio.fail_after(1), pytest.raises(sidecar.KernelDied, match="no heartbeat"):
            await kernel.execute("while lost")
        rogue.heartbeat_paused = False
        await _wait_state(kernel, "ready")
        async with anyio.create_task_group() as tg:
            tg.start_soon(_answer_execute, rogue)
            with anyio.fail_after(5):
                assert isinstance(await kernel.execute("back"), ExecuteReply)


async def test_a_kernel_that_never_signs_with_our_key_is_an_authentication_error(
    tmp_path: Path,
) -> None:
    async with rogue_kernel(tmp_path, key="the-kernels-key") as rogue:
        wrong = msgspec.structs.replace(rogue.info, key="our-key")
        with anyio.fail_after(5), pytest.raises(sidecar.AuthenticationError, match="key"):
            async with sidecar.connect(wrong):
                pass
