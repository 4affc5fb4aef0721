"""The ZeroMQ transport against a *misbehaving* peer: bad frames, oversized messages.

A real ipykernel never sends garbage, bad signatures or gigabyte frames on
cue, so these tests put a rogue kernel (see ``rogue_kernel``) where a kernel
would be and send exactly the bytes under test.
"""

from __future__ import annotations

import logging
from pathlib import Path

import anyio
import pytest
from rogue_kernel import RogueKernel, rogue_kernel

import sidecar
from sidecar.wire import ExecuteReply, Message, Status, Stream

pytestmark = pytest.mark.anyio


async def test_bad_frames_and_signatures_are_dropped_and_the_loop_goes_on(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    async with rogue_kernel(tmp_path) as rogue, sidecar.connect(rogue.info) as kernel:
        before = kernel.statistics()
        with kernel.observe() as observed:
            good = rogue.session.message("stream", Stream(name="stdout", text="ok"))
            forged = rogue.session.serialize(
                rogue.session.message("stream", Stream(name="stdout", text="forged"))
            )
            forged[1] = b"0" * 64  # a wrong signature
            unsigned = [*forged]
            unsigned[1] = b""
            with caplog.at_level(logging.WARNING, logger="sidecar.transport"):
                await rogue.publish_frames([b"junk"])
                await rogue.publish_frames(forged)
                await rogue.publish_frames(unsigned)
                frames = rogue.session.serialize(good)
                await rogue.publish_frames(frames)
                await rogue.publish_frames(frames)  # a replay
                # One socket delivers in order: once this one is seen, every
                # frame above has been dealt with (counting "received" would
                # race the readiness probe's late status messages).
                end = rogue.session.message("stream", Stream(name="stdout", text="end"))
                await rogue.publish_frames(rogue.session.serialize(end))
                seen: list[tuple[str, Stream]] = []
                with anyio.fail_after(5):
                    while not seen or seen[-1][1].text != "end":
                        channel, message = await observed.receive()
                        if message.msg_type != "status":  # the readiness probe's, late
                            seen.append((channel, message.content))
        assert seen == [
            ("iopub", Stream(name="stdout", text="ok")),
            ("iopub", Stream(name="stdout", text="end")),
        ]
        stats = kernel.statistics()
        assert stats.dropped_invalid - before.dropped_invalid == 4
        dropped = [r.getMessage() for r in caplog.records]
        assert any("delimiter" in text for text in dropped)
        assert any("signature does not match" in text for text in dropped)
        assert any("unsigned" in text for text in dropped)
        assert any("seen before" in text for text in dropped)


async def test_unsolicited_messages_reach_observers(tmp_path: Path) -> None:
    async with rogue_kernel(tmp_path) as rogue, sidecar.connect(rogue.info) as kernel:
        with kernel.observe() as observed:
            await rogue.status("starting")
            with anyio.fail_after(5):
                channel, message = await observed.receive()
                while message.content != Status(execution_state="starting"):
                    channel, message = await observed.receive()
        assert channel == "iopub"
        assert message.msg_type == "status"


LIMIT = 64 * 1024


async def _execute_with(rogue: RogueKernel, *outputs: Message, big_reply: bool = False) -> None:
    identity, request = await rogue.next_request()
    await rogue.status("busy", request)
    for output in outputs:
        await rogue.publish(Message(output.header, output.content, parent_header=request.header))
    content = ExecuteReply(execution_count=1, payload=[{"x": "y" * LIMIT}] if big_reply else [])
    await rogue.reply(identity, rogue.session.message("execute_reply", content, parent=request))
    await rogue.status("idle", request)


async def test_an_oversized_output_is_a_placeholder_and_iopub_keeps_working(
    tmp_path: Path,
) -> None:
    """A frame over max_message_size is never taken into memory (libzmq drops
    the connection for it); the socket is rebuilt, the request gets a
    placeholder output in its place, and every later output arrives."""
    async with (
        rogue_kernel(tmp_path) as rogue,
        sidecar.connect(rogue.info, max_message_size=LIMIT) as kernel,
    ):
        s = rogue.session
        outputs = sidecar.Outputs()
        async with anyio.create_task_group() as tg:
            tg.start_soon(
                _execute_with,
                rogue,
                s.message("stream", Stream(name="stdout", text="before\n")),
                s.message("stream", Stream(name="stdout", text="x" * (4 * LIMIT))),
            )
            with anyio.fail_after(10):
                reply = await kernel.execute("big", handlers=[outputs])
        assert isinstance(reply, ExecuteReply)
        assert outputs.text("stdout") == "before\n"
        assert "max_message_size=65536" in outputs.text("stderr")
        assert kernel.statistics().dropped_oversized == 1
        # iopub works again (after resubscribing): the next execute is whole.
        after = sidecar.Outputs()
        async with anyio.create_task_group() as tg:
            tg.start_soon(
                _execute_with, rogue, s.message("stream", Stream(name="stdout", text="ok"))
            )
            with anyio.fail_after(10):
                await kernel.execute("after", handlers=[after])
        assert after.text() == "ok"


async def test_an_oversized_reply_fails_its_request_and_shell_keeps_working(
    tmp_path: Path,
) -> None:
    async with (
        rogue_kernel(tmp_path) as rogue,
        sidecar.connect(rogue.info, max_message_size=LIMIT) as kernel,
    ):
        async with anyio.create_task_group() as tg:
            tg.start_soon(lambda: _execute_with(rogue, big_reply=True))
            with anyio.fail_after(10), pytest.raises(sidecar.MessageTooLarge) as too_large:
                await kernel.execute("big reply")
        assert too_large.value.channel == "shell"
        assert too_large.value.limit == LIMIT
        async with anyio.create_task_group() as tg:
            tg.start_soon(_execute_with, rogue)
            with anyio.fail_after(10):
                assert isinstance(await kernel.execute("after"), ExecuteReply)


async def test_a_limit_below_the_kernel_info_reply_is_a_named_error(tmp_path: Path) -> None:
    """With 1 KiB, connect() used to never become ready."""
    async with rogue_kernel(tmp_path, kernel_info_padding=4096) as rogue:
        with anyio.fail_after(10), pytest.raises(sidecar.MessageTooLarge, match="1024 bytes"):
            async with sidecar.connect(rogue.info, max_message_size=1024):
                pass


@pytest.mark.kernel
async def test_a_kernel_printing_more_than_we_take(anyio_backend: str) -> None:
    """ipykernel prints 8 MB at once; we take 1 MB: a placeholder, and the
    next request is whole."""
    async with sidecar.launch("python3", max_message_size=1_000_000) as kernel:
        out = sidecar.Outputs()
        with anyio.fail_after(30):
            reply = await kernel.execute("print('x' * 8_000_000)", handlers=[out])
        assert isinstance(reply, ExecuteReply)
        assert "max_message_size=1000000" in out.text("stderr")
        assert kernel.statistics().dropped_oversized == 1
        after = sidecar.Outputs()
        with anyio.fail_after(30):
            await kernel.execute("print('after')", handlers=[after])
        assert after.text() == "after\n"
