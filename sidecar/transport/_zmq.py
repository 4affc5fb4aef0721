"""The ZeroMQ transport: a kernel's channels as its connection file describes them.

:func:`open_zmq_transport` opens shell, control and stdin (DEALER sockets
sharing the session id as their ZeroMQ identity, which is what lets the
kernel's stdin ROUTER reach us), iopub (SUB, everything) and the heartbeat
(REQ).  One receive loop per socket runs in a task group owned by the
``async with`` block, so none outlives it.  Every frame set is verified and
decoded once, here; what fails verification is counted, logged and dropped.

Socket monitors tell two things nothing else does:

- when stdin and control have finished their handshake with the kernel (an
  ``input_request`` sent before that is dropped by the kernel's ROUTER);
- with ``max_message_size``, that libzmq dropped a connection because a frame
  was over the limit (``ZMQ_MAXMSGSIZE``: libzmq refuses to allocate it, so a
  client with less memory than the kernel survives a kernel that prints
  gigabytes).  libzmq repairs a connection that broke by itself, but not one it
  dropped for that: the socket is rebuilt (same identity) and the receiver
  told, so the channel keeps working.

Together with :mod:`._socket`, this is the only place that imports zmq.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress
from functools import partial
from typing import Any, Final, final

import anyio
import anyio.abc
import zmq
from zmq.utils.monitor import parse_monitor_message

from .._exceptions import WireError
from .._task_groups import open_task_group
from ..wire import ConnectionInfo, Message, Session
from ._base import CHANNELS, Channel, Receiver, TransportStatistics
from ._socket import AsyncSocket

__all__ = ["ZmqContext", "ZmqTransport", "curve_keypair", "open_zmq_transport"]

log = logging.getLogger("sidecar.transport")

# How long a DEALER waits before retrying a connect.  ZeroMQ's 100 ms default
# is what makes stdin and control join late when we connect before the kernel
# has bound; an input_request sent in that window is dropped by the kernel's
# ROUTER.  Backing off to 100 ms keeps a dead endpoint cheap, and a restarted
# kernel is still found within a tenth of a second of binding.
_RECONNECT_IVL_MS: Final = 10
_RECONNECT_IVL_MAX_MS: Final = 100
# After a disconnect, libzmq retries within the reconnect interval; silence
# this long means it will not (it dropped the peer for an oversized frame).
_REPAIR_WAIT: Final = 0.25
_HANDSHAKEN: Final[tuple[Channel, ...]] = ("control", "stdin")
_REPAIR_EVENTS: Final = (
    zmq.EVENT_DISCONNECTED
    | zmq.EVENT_CONNECTED
    | zmq.EVENT_CONNECT_DELAYED
    | zmq.EVENT_CONNECT_RETRIED
)


ZmqContext = zmq.Context[Any]
"""A pyzmq context, for callers that share one among kernels."""


def curve_keypair() -> tuple[str, str]:
    """A fresh CurveZMQ keypair (public, secret), Z85 text."""
    public, secret = zmq.curve_keypair()
    return public.decode(), secret.decode()


@final
class _Watch:
    """The monitor of one channel socket."""

    def __init__(self, sock: zmq.Socket[Any], events: int) -> None:
        self._sock = sock
        self.monitor = AsyncSocket(sock.get_monitor_socket(events))
        self.handshake = anyio.Event()

    def close(self) -> None:
        with suppress(zmq.ZMQError):
            self._sock.disable_monitor()
        self.monitor.close()


@final
class ZmqTransport:
    """The channels of one kernel over ZeroMQ.  Made by :func:`open_zmq_transport`."""

    def __init__(
        self,
        info: ConnectionInfo,
        session: Session,
        receiver: Receiver,
        context: zmq.Context[Any],
        *,
        max_message_size: int | None,
    ) -> None:
        self.info: Final = info
        self._session = session
        self._receiver = receiver
        self._context = context
        self._max_message_size = max_message_size
        self._task_group: anyio.abc.TaskGroup | None = None
        self._closed = False
        self._received = 0
        self._received_bytes = 0
        self._dropped_invalid = 0
        self._dropped_oversized = 0
        self._watches: dict[Channel, _Watch] = {}
        self._sockets: dict[Channel, AsyncSocket] = {}
        try:
            for channel in CHANNELS:
                self._sockets[channel] = self._connect(channel)
        except BaseException:
            self._close()  # or the context's term() waits for them forever
            raise

    @property
    def session(self) -> Session:
        return self._session

    @property
    def _guards_size(self) -> bool:
        return self._max_message_size is not None

    def _connect(self, channel: Channel) -> AsyncSocket:
        """A new socket for ``channel``, watched from before it connects."""
        kind = zmq.SUB if channel == "iopub" else zmq.DEALER
        sock = _socket(self._context, kind, self.info)
        if kind == zmq.SUB:
            sock.setsockopt(zmq.SUBSCRIBE, b"")
            # A topic of our own as well: a 5.5 kernel welcomes each new
            # subscription, and b"" is not new when another client is
            # subscribed.  The welcome proves iopub live and, signed with a
            # key we do not have, names a wrong key at once.
            sock.setsockopt(zmq.SUBSCRIBE, self._session.session_id.encode())
        else:
            sock.identity = self._session.session_id.encode()
        if self._max_message_size is not None:
            sock.setsockopt(zmq.MAXMSGSIZE, self._max_message_size)
        events = zmq.EVENT_HANDSHAKE_SUCCEEDED if channel in _HANDSHAKEN else 0
        if self._guards_size:
            events |= _REPAIR_EVENTS
        if events:
            self._watch(channel, _Watch(sock, events))
        sock.connect(self.info.endpoint(channel))
        return AsyncSocket(sock)

    def _watch(self, channel: Channel, watch: _Watch) -> None:
        old = self._watches.pop(channel, None)
        if old is not None:
            old.close()
        self._watches[channel] = watch
        if self._task_group is not None:
            self._task_group.start_soon(self._follow, channel, watch)

    # -- the loops ----------------------------------------------------------------

    def _start(self, task_group: anyio.abc.TaskGroup, heartbeat_interval: float | None) -> None:
        self._task_group = task_group
        for channel, watch in self._watches.items():
            task_group.start_soon(self._follow, channel, watch)
        for channel in CHANNELS:
            task_group.start_soon(self._pump, channel, name=f"sidecar {channel}")
        if heartbeat_interval is not None:
            task_group.start_soon(self._heartbeat, heartbeat_interval, name="sidecar heartbeat")

    async def _pump(self, channel: Channel) -> None:
        # Shielded: when a scope around the whole block is cancelled, cleanup
        # (interrupting a cancelled execute, a polite shutdown_request) still
        # needs replies to arrive.  The loops stop when the block is left.
        # A partial, not a closure: it is called for every message, and a
        # partial adds no Python frame.
        on_message = partial(self._on_frames, channel)
        with anyio.CancelScope(shield=True):
            while not self._closed:
                sock = self._sockets[channel]
                await sock.pump(on_message)
                if sock is self._sockets[channel]:
                    return  # closed for good, not replaced

    def _on_frames(self, channel: Channel, frames: list[bytes]) -> None:
        self._received += 1
        self._received_bytes += sum(map(len, frames))
        try:
            message = self._session.deserialize(frames)
        except WireError as e:
            self._dropped_invalid += 1
            log.warning("dropped an invalid message on %s: %s", channel, e)
            self._receiver.on_invalid(channel, e)
            return
        self._receiver.on_message(channel, message)

    async def _follow(self, channel: Channel, watch: _Watch) -> None:
        """Read one socket's monitor until the socket is closed or replaced."""
        with anyio.CancelScope(shield=True):
            try:
                while not self._closed:
                    kind = await _next_event(watch.monitor)
                    if kind == zmq.EVENT_HANDSHAKE_SUCCEEDED:
                        watch.handshake.set()
                    elif kind == zmq.EVENT_DISCONNECTED and self._guards_size:
                        with anyio.move_on_after(_REPAIR_WAIT) as silence:
                            await _next_event(watch.monitor)
                        if silence.cancelled_caught and not self._closed:
                            self._replace(channel)
                            return
            except anyio.ClosedResourceError:
                return

    def _replace(self, channel: Channel) -> None:
        """libzmq dropped the kernel for a frame over the limit: a new socket."""
        self._dropped_oversized += 1
        log.warning(
            "dropped a message over max_message_size (%d bytes) on %s",
            self._max_message_size,
            channel,
        )
        old = self._sockets[channel]
        self._sockets[channel] = self._connect(channel)
        old.close()  # its pump moves on to the new socket
        assert self._max_message_size is not None
        self._receiver.on_oversized(channel, self._max_message_size)

    async def _heartbeat(self, interval: float) -> None:
        """Ping every ``interval`` s and tell the receiver each answer and each miss.

        A REQ socket that missed a reply is stuck in the wrong state, so each
        miss gets a fresh socket.  What misses mean is the receiver's to say.
        """
        receiver = self._receiver
        while True:
            sock = AsyncSocket(_socket(self._context, zmq.REQ, self.info))
            sock.socket.connect(self.info.endpoint("hb"))
            try:
                while True:
                    started = anyio.current_time()
                    await sock.send([b"ping"])
                    answered = False
                    with anyio.move_on_after(interval):
                        await sock.recv_multipart()
                        answered = True
                    if not answered:
                        receiver.on_heartbeat(False, interval)
                        break
                    receiver.on_heartbeat(True, anyio.current_time() - started)
                    # Outside the scope above: a sleep that ends when the scope
                    # does would let the scope's deadline win (trio checks it
                    # first) and report an answered ping as missed.
                    await anyio.sleep(max(0.0, interval - (anyio.current_time() - started)))
            finally:
                sock.close()

    # -- the Transport protocol ----------------------------------------------------------

    async def send(self, channel: Channel, message: Message) -> None:
        await self._sockets[channel].send(self._session.serialize(message))

    def send_nowait(self, channel: Channel, message: Message) -> None:
        self._sockets[channel].send_nowait(self._session.serialize(message))

    async def wait_connected(self) -> None:
        for channel in _HANDSHAKEN:
            watch = self._watches.get(channel)
            if watch is not None:
                await watch.handshake.wait()
        if not self._guards_size:
            # Only needed for the handshake: a monitor costs a socket and a task.
            for channel in _HANDSHAKEN:
                watch = self._watches.pop(channel, None)
                if watch is not None:
                    watch.close()

    def expect_new_kernel(self) -> None:
        for channel in _HANDSHAKEN:
            watch = self._watches.get(channel)
            if watch is not None:
                watch.handshake = anyio.Event()
            else:
                sock = self._sockets[channel].socket
                self._watch(channel, _Watch(sock, zmq.EVENT_HANDSHAKE_SUCCEEDED))

    def statistics(self) -> TransportStatistics:
        return TransportStatistics(
            received=self._received,
            received_bytes=self._received_bytes,
            dropped_invalid=self._dropped_invalid,
            dropped_oversized=self._dropped_oversized,
        )

    def describe(self, channel: Channel) -> str:
        return self.info.endpoint(channel)

    def _close(self) -> None:
        self._closed = True
        for watch in self._watches.values():
            watch.close()
        self._watches.clear()
        for sock in self._sockets.values():
            sock.close()


async def _next_event(monitor: AsyncSocket) -> int:
    event: int = parse_monitor_message(await monitor.recv_multipart())["event"]
    return event


def _socket(context: zmq.Context[Any], kind: int, info: ConnectionInfo) -> zmq.Socket[Any]:
    sock: zmq.Socket[Any] = context.socket(kind)
    sock.linger = 0
    sock.setsockopt(zmq.RECONNECT_IVL, _RECONNECT_IVL_MS)
    sock.setsockopt(zmq.RECONNECT_IVL_MAX, _RECONNECT_IVL_MAX_MS)
    if info.curve_publickey and info.curve_secretkey:
        # The connection file carries the kernel's keypair: authenticate the
        # server by its public key and use the same pair for ourselves.
        sock.curve_secretkey = info.curve_secretkey.encode()
        sock.curve_publickey = info.curve_publickey.encode()
        sock.curve_serverkey = info.curve_publickey.encode()
    return sock


@asynccontextmanager
async def open_zmq_transport(
    info: ConnectionInfo,
    receiver: Receiver,
    *,
    session: Session | None = None,
    context: zmq.Context[Any] | None = None,
    heartbeat_interval: float | None = 2.0,
    max_message_size: int | None = None,
) -> AsyncIterator[ZmqTransport]:
    """Open the channels of the kernel described by ``info``, delivering to ``receiver``.

    Args:
        session: the wire session (one with ``info``'s key by default).
        context: a ZeroMQ context to use; by default one is created and
            terminated with the transport.
        heartbeat_interval: seconds between heartbeats; None for none.
        max_message_size: the largest frame, in bytes, taken from the
            kernel; a larger one is dropped unread (None: no limit).
    """
    session = session or Session.from_connection_info(info)
    own_context = context is None
    ctx: zmq.Context[Any] = zmq.Context(io_threads=1) if context is None else context
    try:
        transport = ZmqTransport(info, session, receiver, ctx, max_message_size=max_message_size)
        try:
            async with open_task_group() as tg:
                transport._start(tg, heartbeat_interval)
                try:
                    yield transport
                finally:
                    transport._close()
                    tg.cancel_scope.cancel()
        finally:
            transport._close()
    finally:
        if own_context:
            ctx.term()
