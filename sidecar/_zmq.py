"""A pyzmq socket driven from anyio, the same on asyncio and trio.

This is the only module that imports ``zmq``'s socket machinery.

How readiness is detected, and why it is correct
------------------------------------------------
A ZeroMQ socket exposes one file descriptor, ``zmq.FD``, and it is
*edge-triggered*: it becomes readable when the socket's internal state may have
changed, not while a message is waiting.  The truth is in ``EVENTS``.  Every
call that processes the socket's command mailbox (``recv``, ``send`` and
``getsockopt(EVENTS)``) drains the fd, whether or not it consumed the news.

So a reader that sleeps in ``wait_readable(fd)`` while another task sends on
the same socket can sleep forever: the send drained the fd, the reply is
already queued inside libzmq, and no new edge will come (reproduced in the
design notes: 0 of 2 replies without the fix, on both backends).  Two rules
make it correct:

1. **Wait only right after ``Again``.**  The reader calls ``recv(NOBLOCK)``
   until it raises ``Again``; that call has just processed the mailbox, and
   nothing yields between it and ``wait_readable``, so no edge can slip by.
2. **Kick after every send.**  ``send`` (and anything else reading
   ``EVENTS``) may swallow the edge the reader waits for, so afterwards we read
   ``EVENTS`` and, if ``POLLIN`` is set, cancel the reader's wait so that it
   loops and receives.

Spurious wakeups are harmless (the reader just gets ``Again`` and waits again).
Exactly one task waits on the fd at a time: trio and anyio's asyncio backend
both refuse two waiters (``BusyResourceError``).

A received message is never lost to cancellation: ``recv_multipart(NOBLOCK)``
is synchronous, so a multipart message is either taken whole or not at all,
and the only cancellation point is the wait before it.  Sends are synchronous
too: libzmq takes a multipart message whole (the high-water mark counts
complete messages) or raises ``Again`` on the first frame.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any, Final, cast, final

import anyio
import anyio.lowlevel
import zmq

__all__ = ["AsyncSocket", "Context"]

log = logging.getLogger("sidecar.transport")

Context = zmq.Context
_NOBLOCK: Final = zmq.NOBLOCK
_POLLIN: Final = zmq.POLLIN
_POLLOUT: Final = zmq.POLLOUT
_EVENTS: Final = zmq.EVENTS
# Messages taken per wakeup before yielding to other tasks: enough to amortize
# the checkpoint under a flood, few enough that a flood cannot starve anyone.
_BATCH: Final = 64


@final
class AsyncSocket:
    """One zmq socket, used only from the event loop's thread.

    Either one task runs :meth:`pump` (the receive loop), or tasks call
    :meth:`recv_multipart` one at a time: never both, and never two receivers.
    Any task may send at any time.
    """

    __slots__ = ("_closed", "_fd", "_sock", "_wait_scope", "_writable")

    def __init__(self, sock: zmq.Socket[Any]) -> None:
        self._sock = sock
        self._fd: int = sock.FD
        self._wait_scope: anyio.CancelScope | None = None
        self._writable: anyio.Event | None = None
        self._closed = False

    @property
    def socket(self) -> zmq.Socket[Any]:
        return self._sock

    @property
    def closed(self) -> bool:
        return self._closed

    # -- sending -------------------------------------------------------------

    def send_nowait(self, frames: Sequence[bytes | memoryview]) -> None:
        """Queue a multipart message in libzmq, or raise ``anyio.WouldBlock``.

        Raises:
            anyio.WouldBlock: the high-water mark is reached.
            anyio.ClosedResourceError: the socket was closed.
        """
        if self._closed:
            raise anyio.ClosedResourceError
        try:
            self._sock.send_multipart(frames, _NOBLOCK, copy=False)
        except zmq.Again:
            raise anyio.WouldBlock from None
        self._kick()

    async def send(self, frames: Sequence[bytes | memoryview]) -> None:
        """Send a multipart message, waiting while the high-water mark is reached."""
        while True:
            try:
                self.send_nowait(frames)
            except anyio.WouldBlock:
                pass
            else:
                await anyio.lowlevel.checkpoint()
                return
            self._writable = writable = anyio.Event()
            self._kick(force=True)
            # The receiving task sets the event when it sees POLLOUT; the
            # timeout covers a socket that nobody is receiving on.
            with anyio.move_on_after(0.05):
                await writable.wait()

    def _kick(self, force: bool = False) -> None:
        scope = self._wait_scope
        if scope is not None and (force or cast(int, self._sock.getsockopt(_EVENTS)) & _POLLIN):
            scope.cancel()

    # -- receiving -------------------------------------------------------------

    async def _wait(self) -> None:
        """Wait for the fd; call only right after ``recv`` raised ``Again``."""
        writable = self._writable
        if writable is not None and cast(int, self._sock.getsockopt(_EVENTS)) & _POLLOUT:
            self._writable = None
            writable.set()
        with anyio.CancelScope() as scope:
            self._wait_scope = scope
            try:
                await anyio.wait_readable(self._fd)
            finally:
                self._wait_scope = None

    async def recv_multipart(self) -> list[bytes]:
        """Receive one multipart message.

        Raises:
            anyio.ClosedResourceError: the socket was closed.
        """
        sock = self._sock
        while True:
            if self._closed:
                raise anyio.ClosedResourceError
            try:
                frames: list[bytes] = sock.recv_multipart(_NOBLOCK)
            except zmq.Again:
                await self._wait()
            else:
                await anyio.lowlevel.cancel_shielded_checkpoint()
                return frames

    async def pump(self, on_message: Callable[[list[bytes]], object]) -> None:
        """Receive forever, handing every message to ``on_message``.

        ``on_message`` is synchronous and must not raise: it runs between the
        receive and the next wait, so a message taken off the socket is always
        delivered.  Returns when the socket is closed.
        """
        sock = self._sock
        recv = sock.recv_multipart
        try:
            while not self._closed:
                for _ in range(_BATCH):
                    try:
                        frames = recv(_NOBLOCK)
                    except zmq.Again:
                        await self._wait()
                        break
                    on_message(frames)
                else:
                    # A flood: yield without a cancel point, so nothing already
                    # received is dropped, and let other tasks run.
                    await anyio.lowlevel.cancel_shielded_checkpoint()
        except (anyio.ClosedResourceError, zmq.ZMQError):
            if not self._closed:
                raise

    # -- closing ---------------------------------------------------------------

    def close(self) -> None:
        """Close the socket now, dropping unsent messages; wakes a waiting receiver."""
        if self._closed:
            return
        self._closed = True
        anyio.notify_closing(self._fd)
        self._sock.close(linger=0)
