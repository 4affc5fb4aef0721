"""A rogue kernel: raw ZeroMQ sockets bound where a kernel's would be.

Not a test module: imported as ``rogue_kernel``.  A real ipykernel never sends
garbage, bad signatures, replies of the wrong type or malformed comms, so the
tests of what the client does with such messages bind raw sockets and send
exactly the bytes under test, signed with the wire layer.  The rogue answers
heartbeats and ``kernel_info_request`` by itself (so ``sidecar.connect`` works
against it) and hands every other request to the test, which scripts the
answer.  Everything a real kernel does is tested against real kernels.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import zmq

from sidecar import WireError
from sidecar.transport._socket import AsyncSocket
from sidecar.wire import (
    ConnectionInfo,
    IopubWelcome,
    KernelInfoReply,
    LanguageInfo,
    Message,
    Session,
    Status,
)

KEY = "a-test-key"


class RogueKernel:
    """The sockets of a kernel, driven by the test."""

    def __init__(
        self,
        tmp_path: Path,
        *,
        key: str = KEY,
        welcome: bool = True,
        kernel_info_padding: int = 0,
    ) -> None:
        self.info = ConnectionInfo(
            transport="ipc",
            ip=str(tmp_path / "rogue"),
            shell_port=1,
            iopub_port=2,
            stdin_port=3,
            control_port=4,
            hb_port=5,
            key=key,
        )
        self.session = Session(key)
        self.welcome = welcome
        self.kernel_info_padding = kernel_info_padding
        self.context: zmq.Context[Any] = zmq.Context()
        self.shell = self._bind(zmq.ROUTER, "shell")
        self.iopub = self._bind(zmq.XPUB, "iopub")
        self.control = self._bind(zmq.ROUTER, "control")
        self.stdin = self._bind(zmq.ROUTER, "stdin")
        self.hb = self._bind(zmq.ROUTER, "hb")
        self.heartbeat_paused = False
        """While set, pings go unanswered (a paused or rebinding kernel)."""
        send, receive = anyio.create_memory_object_stream[tuple[bytes, Message]](1000)
        self._requests_in = send
        self.requests = receive
        """Every shell request but kernel_info: (the client's identity, the request)."""
        self.subscribed = anyio.Event()

    def _bind(self, kind: int, channel: str) -> AsyncSocket:
        sock = self.context.socket(kind)
        sock.linger = 0
        sock.bind(self.info.endpoint(channel))
        return AsyncSocket(sock)

    # -- scripting ---------------------------------------------------------------

    async def publish(self, message: Message) -> None:
        await self.iopub.send(self.session.serialize(message))

    async def publish_frames(self, frames: Sequence[bytes]) -> None:
        await self.iopub.send(list(frames))

    async def status(self, state: str, parent: Message | None = None) -> None:
        await self.publish(
            self.session.message("status", Status(execution_state=state), parent=parent)
        )

    async def reply(self, identity: bytes, message: Message) -> None:
        await self.shell.send(self.session.serialize(message, [identity]))

    async def next_request(self) -> tuple[bytes, Message]:
        with anyio.fail_after(10):
            return await self.requests.receive()

    # -- what it does by itself ----------------------------------------------------

    async def _serve_shell(self) -> None:
        while True:
            frames = await self.shell.recv_multipart()
            identity = frames[0]
            try:
                request = self.session.deserialize(frames)
            except WireError:
                continue  # as a kernel does: drop it, say nothing

            if request.msg_type != "kernel_info_request":
                self._requests_in.send_nowait((identity, request))
                continue
            await self.status("busy", request)
            info = KernelInfoReply(
                protocol_version="5.4",
                implementation="rogue",
                language_info=LanguageInfo(name="python"),
                banner="x" * self.kernel_info_padding,
            )
            await self.reply(
                identity, self.session.message("kernel_info_reply", info, parent=request)
            )
            await self.status("idle", request)

    async def _serve_heartbeat(self) -> None:
        # A ROUTER echoing what comes in (as ipykernel's heartbeat does) can
        # leave a ping unanswered, which a REP socket cannot.
        while True:
            ping = await self.hb.recv_multipart()
            if not self.heartbeat_paused:
                await self.hb.send(ping)

    def new_session(self) -> None:
        """Sign as a new kernel process would: a new session id, same key."""
        self.session = Session(self.session.signer.key)

    async def _serve_subscriptions(self) -> None:
        while True:
            frames = await self.iopub.recv_multipart()
            if frames[0][:1] == b"\x01":
                self.subscribed.set()
                if self.welcome:
                    await self.publish(self.session.message("iopub_welcome", IopubWelcome()))

    def close(self) -> None:
        self._requests_in.close()
        self.requests.close()
        for sock in (self.shell, self.iopub, self.control, self.stdin, self.hb):
            sock.close()
        self.context.term()


@asynccontextmanager
async def rogue_kernel(tmp_path: Path, **options: Any) -> AsyncIterator[RogueKernel]:
    """A rogue kernel serving heartbeats and kernel_info while the block runs."""
    rogue = RogueKernel(tmp_path, **options)
    try:
        async with anyio.create_task_group() as tg:
            tg.start_soon(rogue._serve_shell)
            tg.start_soon(rogue._serve_heartbeat)
            tg.start_soon(rogue._serve_subscriptions)
            try:
                yield rogue
            finally:
                tg.cancel_scope.cancel()
    finally:
        rogue.close()
