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

A received message is never lost to cancellation: receiving is synchronous
(``NOBLOCK``, and libzmq hands out every frame of a message once the first is
readable), so a multipart message is taken whole or not at all, and the only
cancellation points come before it is taken.  Sends are synchronous
too: libzmq takes a multipart message whole (the high-water mark counts
complete messages) or raises ``Again`` on the first frame.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from typing import Any, Final, cast, final

import anyio
import anyio.lowlevel
import sniffio
import zmq
import zmq.backend

__all__ = ["AsyncSocket", "Context"]

log = logging.getLogger("sidecar.transport")

Context = zmq.Context
# Plain ints: arithmetic on pyzmq's enum flags costs more than the call it guards.
_NOBLOCK: Final = int(zmq.NOBLOCK)
_MORE: Final = int(zmq.SNDMORE) | _NOBLOCK
_POLLIN: Final = int(zmq.POLLIN)
_POLLOUT: Final = int(zmq.POLLOUT)
_EVENTS: Final = int(zmq.EVENTS)
# Only the Cython backend sets Frame.more on receive (see _recv_frames).
_FRAMES_KNOW_MORE: Final = zmq.backend.Frame.__module__.startswith("zmq.backend.cython")
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

    __slots__ = ("_closed", "_fd", "_reader", "_sock", "_wait_scope", "_writable")

    def __init__(self, sock: zmq.Socket[Any]) -> None:
        self._sock = sock
        self._fd: int = sock.FD
        self._wait_scope: anyio.CancelScope | None = None
        self._writable: anyio.Event | None = None
        self._reader: _LoopReader | None = None
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
        # Frame by frame with int flags: pyzmq's send_multipart ORs its enum
        # flags per frame and type-checks every frame, 8.4 us against 3.5 us
        # for a 6-frame message.  libzmq queues a multipart message whole or
        # refuses its first frame, so Again can only come before anything went.
        send = self._sock.send
        last = len(frames) - 1
        try:
            for i, frame in enumerate(frames):
                send(frame, _NOBLOCK if i == last else _MORE, copy=False)
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
        reader = self._reader
        if reader is not None:
            if reader.waiting and (force or cast(int, self._sock.getsockopt(_EVENTS)) & _POLLIN):
                reader.wake()
            return
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
        reader = self._reader
        if reader is not None:
            await reader.wait()
            return
        with anyio.CancelScope() as scope:
            self._wait_scope = scope
            try:
                await anyio.wait_readable(self._fd)
            finally:
                self._wait_scope = None

    def _recv_frames(self) -> list[bytes]:
        """One whole multipart message, or ``zmq.Again``.

        pyzmq's ``recv_multipart`` asks ``RCVMORE`` after every frame through
        ``getsockopt``, which looks the option up in an enum each time; with
        pyzmq's Cython backend a frame received without copying carries
        ``more`` itself: 4.3 us instead of 7.6 us for a 7-frame message.
        libzmq delivers multipart messages atomically, so once the first frame
        is in, the rest are too.  The cffi backend (PyPy) never sets ``more``,
        so there the plain ``recv_multipart`` is used.
        """
        if not _FRAMES_KNOW_MORE:
            return self._sock.recv_multipart(_NOBLOCK)
        recv = self._sock.recv
        frame = recv(_NOBLOCK, copy=False)
        frames = [frame.bytes]
        while frame.more:
            frame = recv(_NOBLOCK, copy=False)
            frames.append(frame.bytes)
        return frames

    async def recv_multipart(self) -> list[bytes]:
        """Receive one multipart message.

        Raises:
            anyio.ClosedResourceError: the socket was closed.
        """
        # Yield first: a cancellation delivered after the message is taken
        # (asyncio's own, which anyio's shields cannot hold off) would lose it.
        await anyio.lowlevel.checkpoint()
        while True:
            if self._closed:
                raise anyio.ClosedResourceError
            try:
                return self._recv_frames()
            except zmq.Again:
                await self._wait()

    async def pump(self, on_message: Callable[[list[bytes]], object]) -> None:
        """Receive forever, handing every message to ``on_message``.

        ``on_message`` is synchronous and must not raise: it runs between the
        receive and the next wait, so a message taken off the socket is always
        delivered.  Returns when the socket is closed.

        Readiness is read from ``EVENTS`` rather than by letting ``recv``
        raise ``Again``: reading ``EVENTS`` processes the mailbox just as that
        failed ``recv`` would (so waiting right after it is safe), without
        building an exception per wakeup.
        """
        sock = self._sock
        recv = self._recv_frames
        events = sock.getsockopt
        self._reader = _LoopReader.open(self._fd)
        try:
            while not self._closed:
                for _ in range(_BATCH):
                    if not events(_EVENTS) & _POLLIN:  # type: ignore[operator]
                        await self._wait()
                        break
                    try:
                        frames = recv()
                    except zmq.Again:  # pragma: no cover - EVENTS said readable
                        continue
                    on_message(frames)
                else:
                    # A flood: yield without a cancel point, so nothing already
                    # received is dropped, and let other tasks run.
                    await anyio.lowlevel.cancel_shielded_checkpoint()
        except (anyio.ClosedResourceError, zmq.ZMQError):
            if not self._closed:
                raise
        finally:
            reader, self._reader = self._reader, None
            if reader is not None:
                reader.close()

    # -- closing ---------------------------------------------------------------

    def close(self, linger: int = 0) -> None:
        """Close the socket, dropping what is still unsent after ``linger`` ms (then,
        in the context's ``term``); wakes a waiting receiver."""
        if self._closed:
            return
        self._closed = True
        reader, self._reader = self._reader, None
        if reader is not None:
            reader.close()
        else:
            anyio.notify_closing(self._fd)
        self._sock.close(linger=linger)


@final
class _LoopReader:
    """On asyncio, the pump's fd registered with the loop once, for its whole life.

    ``anyio.wait_readable`` adds and removes an asyncio reader on every wait
    (two ``epoll_ctl`` calls and a future per message, measured at ~40 us of
    client CPU per execute round trip).  A pump waits thousands of times on
    the same fd, so on asyncio it keeps one reader and a future to await.
    The reader is level-triggered but harmless: the fd reads as ready only
    while libzmq has unprocessed commands, and the pump processes them
    (``EVENTS``) before every wait.  trio (and asyncio loops without
    ``add_reader``, e.g. Proactor) keep using ``anyio.wait_readable``.
    """

    __slots__ = ("_fd", "_loop", "_waiter")

    def __init__(self, loop: asyncio.AbstractEventLoop, fd: int) -> None:
        self._loop = loop
        self._fd = fd
        self._waiter: asyncio.Future[None] | None = None
        loop.add_reader(fd, self.wake)

    @classmethod
    def open(cls, fd: int) -> _LoopReader | None:
        if sniffio.current_async_library() != "asyncio":
            return None
        try:
            return cls(asyncio.get_running_loop(), fd)
        except NotImplementedError:
            return None

    @property
    def waiting(self) -> bool:
        return self._waiter is not None

    def wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def wait(self) -> None:
        self._waiter = waiter = self._loop.create_future()
        try:
            await waiter
        finally:
            self._waiter = None

    def close(self) -> None:
        self._loop.remove_reader(self._fd)
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_exception(anyio.ClosedResourceError())
