"""The ZeroMQ transport's other role: bound where a kernel's sockets would be, for frontends.

:func:`open_zmq_server` binds what a kernel binds for the connection file it
is given: shell, control and stdin as ROUTER sockets (every message carries
the frontend's ZeroMQ identity, and a reply goes back by it), iopub as XPUB
(a broadcast to every subscriber; a new subscription is reported, so a
``iopub_welcome`` can greet it), and a heartbeat that echoes.  Frontends
sign with the connection file's key, so one session verifies what they send
and signs what they get.

Like :mod:`._zmq`, this module may import zmq; nothing above the transport
does.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any, Final, Protocol, final

import anyio
import anyio.abc
import msgspec
import zmq

from .._exceptions import WireError
from .._task_groups import open_task_group
from ..wire import ConnectionInfo, Message, Session
from ._base import CHANNELS, Channel, TransportStatistics
from ._socket import AsyncSocket
from ._zmq import ZmqContext

__all__ = ["FrontendReceiver", "ZmqServer", "open_zmq_server"]

log = logging.getLogger("sidecar.transport")

_SUBSCRIBE: Final = 1
_LINGER_MS: Final = 200


class FrontendReceiver(Protocol):
    """What the server side tells the layer above.  No method may raise."""

    def on_message(self, channel: Channel, message: Message) -> None:
        """A verified message from a frontend; ``message.identities`` says which."""

    def on_invalid(self, channel: Channel, error: Exception) -> None:
        """A frontend's message was dropped as invalid (``error`` is a WireError)."""

    def on_subscribed(self, topic: bytes) -> None:
        """A frontend subscribed to iopub, to ``topic`` (``b""``: everything)."""


@final
class ZmqServer:
    """Sockets bound for frontends.  Made by :func:`open_zmq_server`."""

    def __init__(
        self,
        info: ConnectionInfo,
        session: Session,
        receiver: FrontendReceiver,
        context: ZmqContext,
    ) -> None:
        self.info = info
        """The connection info frontends use: ports given as 0 are the ones bound."""
        self.session: Final = session
        self._receiver = receiver
        self._context = context
        self._received = 0
        self._dropped_invalid = 0
        self._sockets: dict[Channel | str, AsyncSocket] = {}
        try:
            for channel in CHANNELS:
                kind = zmq.XPUB if channel == "iopub" else zmq.ROUTER
                self._sockets[channel] = self._bind(kind, channel)
            self._sockets["hb"] = self._bind(zmq.ROUTER, "hb")
        except BaseException:
            self._close()  # or the context's term() waits for them forever
            raise

    def _bind(self, kind: int, channel: str) -> AsyncSocket:
        sock: zmq.Socket[Any] = self._context.socket(kind)
        sock.linger = 0
        if kind == zmq.XPUB:
            # Every subscription, not only the first of a topic: each new
            # frontend is greeted.
            sock.setsockopt(zmq.XPUB_VERBOSE, 1)
        info = self.info
        field = f"{channel}_port"
        if info.transport == "tcp" and getattr(info, field) == 0:
            # Port 0: ZeroMQ picks a free one as it binds, so no other
            # process can take it between choosing and binding.
            sock.bind(f"tcp://{info.ip}:*")
            port = int(sock.getsockopt_string(zmq.LAST_ENDPOINT).rsplit(":", 1)[1])
            self.info = msgspec.structs.replace(info, **{field: port})
        else:
            sock.bind(info.endpoint(channel))
        return AsyncSocket(sock)

    def _start(self, task_group: anyio.abc.TaskGroup) -> None:
        for channel in CHANNELS:
            task_group.start_soon(self._pump, channel, name=f"sidecar serve {channel}")
        task_group.start_soon(self._echo_heartbeats, name="sidecar serve heartbeat")

    async def _pump(self, channel: Channel) -> None:
        def on_frames(frames: list[bytes]) -> None:
            self._on_frames(channel, frames)

        await self._sockets[channel].pump(on_frames)

    def _on_frames(self, channel: Channel, frames: list[bytes]) -> None:
        if channel == "iopub":
            # What an XPUB receives are (un)subscriptions, not messages.
            if len(frames) == 1 and frames[0][:1] == bytes([_SUBSCRIBE]):
                self._receiver.on_subscribed(frames[0][1:])
            return
        self._received += 1
        try:
            message = self.session.deserialize(frames)
        except WireError as e:
            self._dropped_invalid += 1
            log.warning("dropped an invalid message from a frontend on %s: %s", channel, e)
            self._receiver.on_invalid(channel, e)
            return
        self._receiver.on_message(channel, message)

    async def _echo_heartbeats(self) -> None:
        heartbeat = self._sockets["hb"]
        while True:
            heartbeat.send_nowait(await heartbeat.recv_multipart())

    def send_nowait(
        self, channel: Channel, message: Message, identities: Sequence[bytes] = ()
    ) -> None:
        """Send ``message`` to the frontend ``identities`` name (iopub: to every one).

        Never waits: a frontend that does not read is dropped from, not waited
        for, and one that is gone is skipped.

        Raises:
            anyio.WouldBlock: the socket cannot take more now.
        """
        self._sockets[channel].send_nowait(self.session.serialize(message, identities))

    def statistics(self) -> TransportStatistics:
        return TransportStatistics(
            received=self._received, dropped_invalid=self._dropped_invalid, dropped_oversized=0
        )

    def _close(self) -> None:
        # A last reply (the shutdown_reply that ends the serving) still goes:
        # the context's term() waits this long for it.
        for sock in self._sockets.values():
            sock.close(linger=_LINGER_MS)


@asynccontextmanager
async def open_zmq_server(
    info: ConnectionInfo,
    receiver: FrontendReceiver,
    *,
    session: Session | None = None,
    context: ZmqContext | None = None,
) -> AsyncIterator[ZmqServer]:
    """Bind the sockets ``info`` describes and serve frontends while the block runs.

    A TCP port given as 0 is picked by ZeroMQ as it binds; the server's
    :attr:`~ZmqServer.info` has the ports bound.

    Raises:
        zmq.ZMQError: an address is in use (the caller picks other ports).
    """
    session = session or Session.from_connection_info(info)
    own_context = context is None
    ctx: ZmqContext = zmq.Context(io_threads=1) if context is None else context
    try:
        server = ZmqServer(info, session, receiver, ctx)
        try:
            async with open_task_group() as tg:
                server._start(tg)
                try:
                    yield server
                finally:
                    tg.cancel_scope.cancel()
        finally:
            server._close()
    finally:
        if own_context:
            ctx.term()
