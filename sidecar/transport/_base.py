"""The transport seam: what moves messages, and what it tells the layer above.

Below the seam, a transport moves :class:`~sidecar.wire.Message` objects on
the kernel's channels: today ZeroMQ (:mod:`._zmq`); a websocket to a Jupyter
Server fits the same shape.  Above it, everything is transport-agnostic:
routing by parent, the lifecycle, requests, handlers, comms, documents.

A transport calls its :class:`Receiver` from its receive loops: synchronously,
with every message it verified, and with what it noticed (a frame that failed
verification, a message too large to take, a heartbeat answered or missed).
A receiver's methods must not raise: nothing a peer sends may escape a
receive loop.
"""

from __future__ import annotations

from typing import Literal, Protocol

import msgspec

from ..wire import Message, Session

__all__ = ["CHANNELS", "Channel", "Receiver", "Transport", "TransportStatistics"]

Channel = Literal["shell", "control", "stdin", "iopub"]
"""The channels that carry messages (the heartbeat carries none)."""

CHANNELS: tuple[Channel, ...] = ("shell", "control", "stdin", "iopub")


class TransportStatistics(msgspec.Struct, frozen=True, kw_only=True):
    """What a transport counted."""

    received: int
    """Messages received on every channel, valid or not."""
    received_bytes: int = 0
    """Bytes of those messages, as they came off the wire (every frame; for a
    websocket, each message's length: characters of a text message).  0 from a
    transport that does not count them."""
    dropped_invalid: int
    """Dropped before anyone saw them: bad signature, replayed, not a Jupyter message."""
    dropped_oversized: int
    """Dropped because a frame was larger than the largest message allowed."""


class Receiver(Protocol):
    """What a transport tells the layer above.  No method may raise."""

    def on_message(self, channel: Channel, message: Message) -> None:
        """A verified message arrived."""

    def on_invalid(self, channel: Channel, error: Exception) -> None:
        """A message was dropped as invalid (``error`` is a WireError)."""

    def on_oversized(self, channel: Channel, limit: int) -> None:
        """A message with a frame over ``limit`` bytes was dropped, unread (its parent
        is unknown)."""

    def on_heartbeat(self, answered: bool, waited: float) -> None:
        """A heartbeat was answered, or went unanswered for ``waited`` seconds."""

    def on_gone(self, reason: str) -> None:
        """The kernel can never be reached again through this transport (its
        server deleted it, or refuses us now); ``reason`` says so in words."""


class Transport(Protocol):
    """Moves messages between us and a kernel."""

    @property
    def session(self) -> Session:
        """The session our messages are built, signed and verified with."""

    async def send(self, channel: Channel, message: Message) -> None:
        """Send ``message``; wait while the channel cannot take more.

        Raises:
            anyio.ClosedResourceError: the transport is closed.
        """

    def send_nowait(self, channel: Channel, message: Message) -> None:
        """Send ``message`` now, for cleanup paths that cannot wait.

        Raises:
            anyio.WouldBlock: the channel cannot take more now.
            anyio.ClosedResourceError: the transport is closed.
        """

    async def wait_connected(self) -> None:
        """Wait until the channels the kernel sends on unasked (stdin, control)
        are connected, so that nothing the kernel sends there is lost."""

    def expect_new_kernel(self) -> None:
        """A new kernel process is about to take over: :meth:`wait_connected`
        waits for it again."""

    def statistics(self) -> TransportStatistics:
        """What the transport counted so far."""

    def describe(self, channel: Channel) -> str:
        """Where ``channel`` goes, for error messages (an endpoint URL)."""
