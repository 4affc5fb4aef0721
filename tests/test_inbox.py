"""A request's inbox: nothing lost to cancellation, fair under a flood."""

from __future__ import annotations

import anyio
import anyio.lowlevel
import pytest

from sidecar.kernel._inbox import Inbox
from sidecar.wire import Session, Status

pytestmark = pytest.mark.anyio


async def test_a_cancelled_inbox_get_takes_nothing() -> None:
    """Cancellation is checked before a message is taken, so the request's
    cleanup still finds every message (losing the reply would make it wait)."""
    session = Session(key=b"k")
    inbox = Inbox("parent", "shell")
    inbox.put("shell", session.message("status", Status(execution_state="idle")))
    with anyio.CancelScope() as scope:
        scope.cancel()
        await inbox.get()
    assert scope.cancelled_caught
    assert not inbox.empty()
    channel, message = await inbox.get()
    assert (channel, message.msg_type) == ("shell", "status")


async def test_an_inbox_flood_yields_to_other_tasks() -> None:
    """Queued messages are handed out in batches (not one scheduler pass per
    message), but a long queue still lets other tasks run between batches."""
    session = Session(key=b"k")
    inbox = Inbox("parent", "shell")
    for _ in range(1000):
        inbox.put("iopub", session.message("status", Status(execution_state="busy")))
    ticks = 0
    taken = 0

    async def other() -> None:
        nonlocal ticks
        while taken < 1000:
            ticks += 1
            await anyio.lowlevel.checkpoint()

    async with anyio.create_task_group() as tg:
        tg.start_soon(other)
        while taken < 1000:
            await inbox.get()
            taken += 1
    # One tick per batch of 64, give or take the first and the last.
    assert 1000 // 64 - 1 <= ticks <= 1000 // 64 + 2
