"""An in-memory transport, and the kernel's end of it, for tests of the layers above.

Not a test module: imported as ``memory_transport``.  It proves the transport
seam (routing, lifecycle, requests, handlers run on it with no socket and no
kernel), the way httpcore's mock backend does.  The test plays the kernel:
it reads what the client sent from :attr:`MemoryKernel.requests` and answers
with :meth:`MemoryKernel.send`.  ``kernel_info_request`` is answered by
itself, so a :class:`sidecar.Kernel` can be made ready over it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio
import anyio.lowlevel

from sidecar._task_groups import open_task_group
from sidecar.client._kernel import Kernel
from sidecar.kernel._channels import open_channels
from sidecar.transport import Channel, Receiver, TransportStatistics
from sidecar.wire import KernelInfoReply, LanguageInfo, Message, Session, Status


class MemoryKernel:
    """The kernel's end: what the client sent, and a way to answer."""

    def __init__(self) -> None:
        self.session = Session()
        self.receiver: Receiver | None = None
        send, receive = anyio.create_memory_object_stream[tuple[Channel, Message]](10_000)
        self._requests_in = send
        self.requests = receive
        """Everything the client sent but kernel_info requests: (channel, message)."""
        self.received = 0

    def send(self, channel: Channel, message: Message) -> None:
        """Deliver ``message`` to the client as if it came on ``channel``."""
        assert self.receiver is not None
        self.received += 1
        self.receiver.on_message(channel, message)

    def reply(
        self, channel: Channel, request: Message, msg_type: str, content: Any = None
    ) -> Message:
        """Answer ``request`` (which came on ``channel``) with a message of ``msg_type``."""
        message = self.session.message(msg_type, content, parent=request)
        self.send(channel, message)
        return message

    def status(self, state: str, parent: Message | None = None) -> None:
        status = self.session.message("status", Status(execution_state=state), parent=parent)
        self.send("iopub", status)

    def output(self, msg_type: str, content: Any, parent: Message) -> None:
        self.send("iopub", self.session.message(msg_type, content, parent=parent))

    async def next_request(self) -> tuple[Channel, Message]:
        with anyio.fail_after(5):
            return await self.requests.receive()

    def _take(self, channel: Channel, message: Message) -> None:
        if message.msg_type == "kernel_info_request":
            self.status("busy", message)
            info = KernelInfoReply(language_info=LanguageInfo(name="python"))
            self.reply(channel, message, "kernel_info_reply", info)
            self.status("idle", message)
            return
        self._requests_in.send_nowait((channel, message))


class MemoryTransport:
    """The client's end: implements :class:`sidecar.transport.Transport`."""

    def __init__(self, kernel: MemoryKernel, receiver: Receiver, session: Session) -> None:
        self._kernel = kernel
        self._session = session
        kernel.receiver = receiver
        self.closed = False

    @property
    def session(self) -> Session:
        return self._session

    async def send(self, channel: Channel, message: Message) -> None:
        await anyio.lowlevel.checkpoint()
        self.send_nowait(channel, message)

    def send_nowait(self, channel: Channel, message: Message) -> None:
        if self.closed:
            raise anyio.ClosedResourceError
        self._kernel._take(channel, message)

    async def wait_connected(self) -> None:
        await anyio.lowlevel.checkpoint()

    def expect_new_kernel(self) -> None:
        pass

    def statistics(self) -> TransportStatistics:
        return TransportStatistics(
            received=self._kernel.received, dropped_invalid=0, dropped_oversized=0
        )

    def describe(self, channel: Channel) -> str:
        return f"memory://{channel}"


@asynccontextmanager
async def memory_kernel(*, owned: bool = False) -> AsyncIterator[tuple[Kernel, MemoryKernel]]:
    """A ready :class:`sidecar.Kernel` over a memory transport, and the kernel's end."""
    far = MemoryKernel()
    transports: list[MemoryTransport] = []

    @asynccontextmanager
    async def opener(receiver: Receiver, session: Session) -> AsyncIterator[MemoryTransport]:
        transport = MemoryTransport(far, receiver, session)
        transports.append(transport)
        try:
            yield transport
        finally:
            transport.closed = True

    async with (
        open_channels(opener, Session(), owned=owned) as channels,
        open_task_group() as tg,
    ):
        kernel = Kernel(channels, tg, interrupt_mode="message")
        kernel._start_background()
        with anyio.fail_after(5):
            await kernel._wait_ready(5)
        try:
            yield kernel, far
        finally:
            tg.cancel_scope.cancel()
            far._requests_in.close()
            far.requests.close()


__all__ = ["MemoryKernel", "MemoryTransport", "memory_kernel"]
