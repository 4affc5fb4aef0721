"""Where the messages caused by one request are delivered: its inbox."""

from __future__ import annotations

from collections import deque
from typing import Final, final

import anyio
import anyio.lowlevel

from ..transport import Channel
from ..wire import Message

__all__ = ["Inbox"]

# Messages an Inbox hands out back to back before it yields to other tasks:
# yielding per message cost a scheduler pass per message under a flood (a
# third of the client's CPU), and a batch as small as the pumps' still keeps
# every other task running.
_YIELD_EVERY: Final = 64


@final
class Inbox:
    """Where the messages caused by one request are delivered, in arrival order.

    The pumps put messages in without ever blocking; the request's task takes
    them out.  Failing it makes the taker raise once the queue is drained.
    """

    __slots__ = (
        "_error",
        "_items",
        "_ready",
        "_streak",
        "answered",
        "channel",
        "iopub_lost",
        "msg_id",
    )

    def __init__(self, msg_id: str, channel: Channel) -> None:
        self.msg_id = msg_id
        self.channel = channel
        """The channel the request went on, where its reply comes."""
        self.answered = False
        """Something came back on :attr:`channel` (the reply, as a rule)."""
        self.iopub_lost = False
        """Iopub messages of the request were lost (an oversized output)."""
        self._items: deque[tuple[Channel, Message]] = deque()
        self._ready = anyio.Event()
        self._streak = 0
        self._error: BaseException | None = None

    def put(self, channel: Channel, message: Message) -> None:
        if channel is self.channel:
            self.answered = True
        items = self._items
        items.append((channel, message))
        if len(items) == 1:
            # Queued messages mean it is set already (see get_nowait): one
            # set per batch, not one per message of a flood.
            self._ready.set()

    def fail(self, error: BaseException) -> None:
        if self._error is None:
            self._error = error
        self._ready.set()

    def empty(self) -> bool:
        return not self._items

    def get_nowait(self) -> tuple[Channel, Message] | None:
        """The next message, or None if none has arrived (raises if failed)."""
        items = self._items
        if items:
            item = items.popleft()
            if not items and self._error is None:
                # Drained: the next get must wait for the next put.
                self._ready = anyio.Event()
            return item
        if self._error is not None:
            raise self._error
        return None

    async def get(self) -> tuple[Channel, Message]:
        """The next message, waiting for it.

        Every await comes before a message is taken, never after it, so a
        cancelled taker loses nothing, whoever cancels (anyio's shields cannot
        hold off asyncio's own ``Task.cancel``).  While messages are queued it
        yields to other tasks only every ``_YIELD_EVERY`` messages.

        Raises:
            KernelDied, KernelRestarted: the inbox was failed and is empty.
        """
        self._streak += 1
        if self._streak >= _YIELD_EVERY:
            self._streak = 0
            await anyio.lowlevel.checkpoint()
        else:
            await anyio.lowlevel.checkpoint_if_cancelled()
        item = self.get_nowait()
        if item is not None:
            return item
        self._streak = 0
        while True:
            await self._ready.wait()
            item = self.get_nowait()
            if item is not None:
                return item
            self._ready = anyio.Event()  # set with nothing queued: never spin
