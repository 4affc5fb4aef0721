"""A kernel's channels over a transport: routing by parent, observers, and its lifecycle.

:class:`Channels` is the receiver of a :class:`~sidecar.transport.Transport`.
Every message the transport verified is routed by ``parent_header.msg_id`` to
the :class:`~sidecar.kernel._inbox.Inbox` of the request that caused it;
messages no one registered for go to observers (:meth:`Channels.observe`),
and with no observer they are counted and logged at debug level.

What the transport notices (a heartbeat missed or answered, a new kernel
session on the wire, ``status: restarting``/``dead`` from a manager, a message
dropped for its size) and what the kernel layer says (ready, restarting,
process exited) are events of the :class:`~sidecar.kernel._lifecycle.Lifecycle`;
when an event ends what the kernel was doing, every waiting inbox fails with
the error it says (:class:`~sidecar.KernelDied`, :class:`~sidecar.KernelRestarted`).

Nothing a kernel sends escapes from here: a message whose content is
malformed is counted (``dropped_malformed``) and dropped.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager, contextmanager, suppress
from typing import Final, final

import anyio
import anyio.abc
import msgspec
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from .._exceptions import (
    AuthenticationError,
    InvalidSignature,
    KernelError,
    MessageTooLarge,
    WireError,
)
from .._task_groups import open_task_group
from ..transport import Channel, Receiver, Transport
from ..wire import Header, Message, Session, Stream
from ._inbox import Inbox
from ._lifecycle import Event, Lifecycle, State

__all__ = ["ChannelStatistics", "Channels", "open_channels"]

log = logging.getLogger("sidecar.channels")

# A kernel that answers its heartbeat again gets this long to answer
# kernel_info before it counts as lost again (and is retried).
_RECOVERY_TIMEOUT: Final = 10.0
# Requests wait while the lifecycle is in one of these.
_SETTLING: Final = frozenset({State.RESTARTING, State.RECOVERING})


class ChannelStatistics(msgspec.Struct, frozen=True, kw_only=True):
    """The message counters of a kernel's channels, from :meth:`Kernel.statistics`."""

    received: int
    """Messages received on every channel, valid or not."""
    received_bytes: int
    """Bytes of those messages off the wire (0 if the transport does not count them)."""
    routed: int
    """Messages delivered to the request that caused them."""
    unsolicited: int
    """Messages no request waited for (other clients', late output, comms)."""
    dropped_invalid: int
    """Dropped at ingress: bad signature, replayed, not a Jupyter message."""
    dropped_oversized: int
    """Dropped unread for being larger than ``max_message_size``."""
    dropped_malformed: int
    """Authentic messages dropped because their content was malformed."""
    dropped_unobserved: int
    """Unsolicited messages no observer took (none, or one that fell behind)."""
    waiting: int
    """Requests waiting for messages now."""


@final
class Channels(Receiver):
    """The channels of one kernel.  Made by :func:`open_channels`."""

    def __init__(self, session: Session, *, owned: bool) -> None:
        self.session: Final = session
        self.lifecycle: Final = Lifecycle(owned=owned)
        self._transport: Transport | None = None
        self._task_group: anyio.abc.TaskGroup | None = None
        self._routes: dict[str, Inbox] = {}
        self._observers: list[MemoryObjectSendStream[tuple[Channel, Message]]] = []
        self.taps: list[Callable[[Channel, Message], None]] = []
        self._listeners: list[Callable[[str, str], None]] = []
        """Called with every message the kernel sends, before it is routed
        (synchronously, in the receive loop: a tap must be quick and must
        not block; what it raises is logged)."""
        self._settled = anyio.Event()
        self._abort_on_failure: set[anyio.CancelScope] = set()
        self._iopub_seen = anyio.Event()
        self._iopub_seen_set = False
        self._authentication_error: AuthenticationError | None = None
        self._kernel_session: str | None = None
        self._busy_with: Header | None = None
        self._heartbeat_misses = 0
        self.heartbeat_answered = False
        """The kernel answered a heartbeat at least once."""
        self.execution_state: str = "unknown"
        self.execution_count: int | None = None
        self._verified = 0
        self._routed = 0
        self._unsolicited = 0
        self._dropped_malformed = 0
        self._dropped_unobserved = 0

    @property
    def transport(self) -> Transport:
        assert self._transport is not None, "not open"
        return self._transport

    # -- state -----------------------------------------------------------------

    @property
    def error(self) -> KernelError | None:
        """Why requests fail now (:class:`~sidecar.KernelDied`...), if they do."""
        return self.lifecycle.error

    @property
    def state(self) -> State:
        """The kernel's lifecycle state."""
        return self.lifecycle.state

    @property
    def kernel_session(self) -> str | None:
        """The kernel's own session id, once a message from it arrived."""
        return self._kernel_session

    def statistics(self) -> ChannelStatistics:
        """The counters so far."""
        moved = self.transport.statistics()
        return ChannelStatistics(
            received=moved.received,
            received_bytes=moved.received_bytes,
            routed=self._routed,
            unsolicited=self._unsolicited,
            dropped_invalid=moved.dropped_invalid,
            dropped_oversized=moved.dropped_oversized,
            dropped_malformed=self._dropped_malformed,
            dropped_unobserved=self._dropped_unobserved,
            waiting=len(self._routes),
        )

    def drop_malformed(self, channel: Channel, message: Message, error: Exception) -> None:
        """Count and log an authentic message that could not be used: what the kernel
        sends never escapes a receive loop or a routing task."""
        self._dropped_malformed += 1
        log.warning("dropped a malformed %s on %s: %s", message.msg_type, channel, error)

    def handle(self, event: Event, reason: str = "", *, exit_code: int | None = None) -> None:
        """Tell the lifecycle what happened; fail the waiting requests if that ends them."""
        before = self.lifecycle.state
        error = self.lifecycle.handle(event, reason, exit_code=exit_code)
        after = self.lifecycle.state
        if after is not before:
            log.debug("kernel %s -> %s on %s: %s", before.value, after.value, event.value, reason)
            if before in _SETTLING:
                self._settled.set()
            if after in _SETTLING:
                self._settled = anyio.Event()
            if after is State.RECOVERING and self._task_group is not None:
                self._task_group.start_soon(self._recover, name="sidecar recovery")
            for listener in self._listeners:
                try:
                    listener(before.value, after.value)
                except Exception:
                    log.exception("a state listener raised")
        if error is not None:
            for inbox in self._routes.values():
                inbox.fail(error)
        if after in (State.LOST, State.DEAD, State.CLOSED):
            self._abort_waits()

    def _abort_waits(self) -> None:
        for scope in self._abort_on_failure:
            scope.cancel()

    @contextmanager
    def listen(self, callback: Callable[[str, str], None]) -> Iterator[None]:
        """Call ``callback(before, after)`` on every state change, while in the block."""
        self._listeners.append(callback)
        try:
            yield
        finally:
            self._listeners.remove(callback)

    async def _recover(self) -> None:
        """Prove the channels of a kernel that answers again, then serve it.

        Runs in the channels' task group when the lifecycle enters
        ``RECOVERING``.  Bounded: a kernel that does not answer kernel_info
        in time is lost again, and the next heartbeat it answers retries.
        """
        self._iopub_seen = anyio.Event()
        self._iopub_seen_set = False
        with anyio.move_on_after(_RECOVERY_TIMEOUT) as scope:
            try:
                await self.wait_ready()
            except KernelError:
                return  # lost again meanwhile: the lifecycle knows
        if self.lifecycle.state is not State.RECOVERING:
            return
        if scope.cancelled_caught:
            self.handle(Event.RESTART_FAILED, "the kernel answers its heartbeat but not requests")
        else:
            self.handle(Event.READY)

    async def wait_usable(self) -> None:
        """Return once a request may be sent: at once, or once a restart or recovery is over.

        Raises:
            KernelDied, KernelRestarted: the kernel is dead or lost.
        """
        while self.lifecycle.state in _SETTLING:
            await self._settled.wait()
        error = self.lifecycle.error
        if error is not None:
            raise error

    # -- routing -----------------------------------------------------------------

    def register(self, msg_id: str, channel: Channel) -> Inbox:
        """An inbox for the replies and outputs of the request ``msg_id`` sent on ``channel``.

        Register *before* sending, so that nothing can arrive unrouted.

        Raises:
            KernelDied, KernelRestarted: the kernel is dead or lost.
        """
        error = self.lifecycle.error
        if error is not None:
            raise error
        inbox = self._routes[msg_id] = Inbox(msg_id, channel)
        return inbox

    def unregister(self, msg_id: str) -> None:
        """Stop routing to the inbox of ``msg_id``; later messages go to observers."""
        self._routes.pop(msg_id, None)

    @contextmanager
    def observe(
        self, max_buffer: int = 1000
    ) -> Iterator[MemoryObjectReceiveStream[tuple[Channel, Message]]]:
        """Receive every message no request is registered for, while in the block.

        When the observer falls ``max_buffer`` messages behind, newer ones are
        dropped for it (and logged) rather than stalling the receive loops.
        """
        send, receive = anyio.create_memory_object_stream[tuple[Channel, Message]](max_buffer)
        self._observers.append(send)
        try:
            with receive:
                yield receive
        finally:
            self._observers.remove(send)
            send.close()

    def _deliver(self, channel: Channel, message: Message) -> None:
        parent = message.parent_id
        inbox = self._routes.get(parent) if parent is not None else None
        if inbox is not None:
            self._routed += 1
            inbox.put(channel, message)
            return
        self._unsolicited += 1
        if not self._observers:
            self._dropped_unobserved += 1
            log.debug("no one waits for %s on %s (parent %s)", message.msg_type, channel, parent)
            return
        for observer in self._observers:
            try:
                observer.send_nowait((channel, message))
            except anyio.WouldBlock:
                self._dropped_unobserved += 1
                log.warning("observer is full: dropped %s on %s", message.msg_type, channel)

    # -- the Receiver protocol: what the transport tells us ----------------------------

    def on_message(self, channel: Channel, message: Message) -> None:
        self._verified += 1
        for tap in self.taps:
            try:
                tap(channel, message)
            except Exception:
                log.exception("a tap raised on %s", message.msg_type)
        try:
            self._check_kernel_session(channel, message)
            if channel == "iopub":
                self._on_iopub(message)
            self._deliver(channel, message)
        except WireError as e:
            self.drop_malformed(channel, message, e)
        except Exception as e:  # a bug here must not kill the receive loop
            log.exception("error while routing %s on %s", message.msg_type, channel)
            self.drop_malformed(channel, message, e)

    def on_invalid(self, channel: Channel, error: Exception) -> None:
        if isinstance(error, InvalidSignature) and not self._verified:
            self._authentication_failed(error)

    def _authentication_failed(self, error: InvalidSignature) -> None:
        """Not one message from the kernel verified, and this one's signature is
        wrong: our key is not the kernel's.  Say so now, rather than wait for a
        reply the kernel will never send (it drops what we sign, silently)."""
        if self.lifecycle.state is not State.STARTING or self._authentication_error:
            return
        self._authentication_error = failure = AuthenticationError(
            f"the kernel signs with another key than ours: its messages fail "
            f"verification ({error}); the key is not the kernel's"
        )
        for inbox in self._routes.values():
            inbox.fail(failure)
        self._abort_waits()

    def on_oversized(self, channel: Channel, limit: int) -> None:
        """A message over ``max_message_size`` was dropped unread: tell its request.

        Its parent is unknown, so it is inferred: a reply on shell or control
        belongs to the oldest request on that channel still without one (the
        kernel answers in order); an output on iopub to the request the
        kernel is busy with, as a placeholder output in its place; an
        ``input_request`` is answered empty, or the kernel would wait forever.
        """
        try:
            if channel == "iopub":
                self._oversized_output(limit)
            elif channel == "stdin":
                self._oversized_input_request()
            else:
                self._oversized_reply(channel, limit)
        except Exception:  # a bug here must not kill the transport's watch
            log.exception("error while handling an oversized message on %s", channel)

    def _oversized_reply(self, channel: Channel, limit: int) -> None:
        inbox = next(
            (i for i in self._routes.values() if i.channel == channel and not i.answered), None
        )
        if inbox is not None:
            inbox.fail(MessageTooLarge(channel, limit))

    def _oversized_output(self, limit: int) -> None:
        parent = self._busy_with
        inbox = self._routes.get(parent.msg_id) if parent is not None else None
        if inbox is None:
            return
        text = (
            f"[sidecar dropped an output larger than max_message_size={limit} bytes; "
            "what the kernel sent right after it may be lost too]\n"
        )
        inbox.iopub_lost = True
        placeholder = self.session.message(
            "stream", Stream(name="stderr", text=text), parent=parent
        )
        self._routed += 1
        inbox.put("iopub", placeholder)

    def _oversized_input_request(self) -> None:
        parent = self._busy_with
        if parent is None or self._task_group is None:
            return
        log.warning("answered an oversized input_request with an empty string")
        reply = self.session.message("input_reply", {"value": ""}, parent=parent)
        self._task_group.start_soon(self._send_quietly, "stdin", reply)

    async def _send_quietly(self, channel: Channel, message: Message) -> None:
        with suppress(anyio.ClosedResourceError, anyio.BrokenResourceError):
            await self.transport.send(channel, message)

    def on_gone(self, reason: str) -> None:
        self.handle(Event.GONE, reason)

    def on_heartbeat(self, answered: bool, waited: float) -> None:
        if answered:
            self.heartbeat_answered = True
            self._heartbeat_misses = 0
            if self.lifecycle.state is State.LOST:
                self.handle(Event.HEARTBEAT_BACK, "the heartbeat answers again")
            return
        if not self.heartbeat_answered and self.lifecycle.state is State.STARTING:
            # A kernel still starting has not bound its heartbeat yet: that is
            # slow, not dead (the start timeout bounds it).
            return
        self._heartbeat_misses += 1
        if self._heartbeat_misses == 2:
            self.handle(Event.HEARTBEAT_LOST, f"no heartbeat for {2 * waited:.1f} s")

    def _check_kernel_session(self, channel: Channel, message: Message) -> None:
        session = message.header.session
        if not session or session == self.session.session_id:
            # Some kernels send messages without a session (xeus-python's
            # iopub_welcome): they say nothing about restarts.  Nor do the
            # messages a Jupyter Server makes up itself (``status:
            # restarting``, rate-limit warnings): it builds them with the
            # websocket's session id, which is ours.
            return
        known = self._kernel_session
        if session != known:
            self._kernel_session = session
            if known is not None:
                log.info("kernel session changed: the kernel restarted")
                self.handle(Event.NEW_SESSION, f"the kernel restarted (new session on {channel})")

    def _on_iopub(self, message: Message) -> None:
        if not self._iopub_seen_set:
            # A plain flag in front of the event: this runs for every iopub message.
            self._iopub_seen_set = True
            self._iopub_seen.set()
        msg_type = message.msg_type
        if msg_type == "execute_input":
            count = message.content.execution_count
            if isinstance(count, int):
                self.execution_count = count
        elif msg_type == "status":
            state = message.content.execution_state
            if state == "busy":
                self._busy_with = message.parent_header
            elif state == "idle":
                self._busy_with = None
            # "starting" from a new process is caught by the session check;
            # "restarting" and "dead" are what a nanny or gateway publishes
            # for a kernel it restarts or lost.
            elif state == "restarting":
                self.handle(Event.STATUS_RESTARTING, "the kernel's manager is restarting it")
            elif state == "dead":
                self.handle(Event.STATUS_DEAD, "the kernel's manager says it is dead")
            self.execution_state = state

    # -- sending -------------------------------------------------------------------

    async def send(self, channel: Channel, message: Message) -> None:
        """Send ``message`` on ``channel``.

        Raises:
            KernelDied, KernelRestarted: the kernel is dead or lost.
        """
        error = self.lifecycle.error
        if error is not None:
            raise error
        await self.transport.send(channel, message)

    def send_nowait(self, channel: Channel, message: Message) -> None:
        """Like :meth:`send`, for cleanup paths that cannot wait.

        Raises:
            anyio.WouldBlock: the channel cannot take more now.
        """
        error = self.lifecycle.error
        if error is not None:
            raise error
        self.transport.send_nowait(channel, message)

    # -- readiness -----------------------------------------------------------------

    async def wait_ready(self) -> Message:
        """Wait until every channel is proven live; return the kernel_info reply.

        A SUB socket drops what is published before its subscription reaches
        the kernel, so the first outputs of the first execute could be lost.
        Iopub is live once any message arrives on it: 5.5 kernels send
        ``iopub_welcome`` on subscription; older ones publish busy/idle for
        the kernel_info requests we repeat until that happens.  Stdin and
        control are live once the transport says they are connected, so an
        ``input_request`` is never dropped.

        Bound it with ``anyio.fail_after``; it returns early with an error if
        the kernel dies meanwhile.

        Raises:
            AuthenticationError: the kernel signs with another key.
            KernelDied: the kernel died meanwhile.
            MessageTooLarge: the kernel_info reply was over ``max_message_size``.
        """
        with anyio.CancelScope() as scope:
            self._abort_on_failure.add(scope)
            try:
                if self.lifecycle.error is None and self._authentication_error is None:
                    await self.transport.wait_connected()
            finally:
                self._abort_on_failure.discard(scope)
        self._raise_if_failed()
        delay = 0.05
        while True:
            request = self.session.message("kernel_info_request")
            inbox = self.register(request.msg_id, "shell")
            try:
                self._raise_if_failed()
                await self.send("shell", request)
                reply = await _wait_reply(inbox)
            finally:
                self.unregister(request.msg_id)
            if self._iopub_seen.is_set():
                return reply
            with anyio.move_on_after(delay):
                await self._iopub_seen.wait()
            if self._iopub_seen.is_set():
                return reply
            delay = min(delay * 2, 1.0)

    def _raise_if_failed(self) -> None:
        error = self._authentication_error or self.lifecycle.error
        if error is not None:
            raise error


async def _wait_reply(inbox: Inbox) -> Message:
    while True:
        channel, message = await inbox.get()
        if channel != "iopub":
            return message


OpenTransport = Callable[[Receiver, Session], AbstractAsyncContextManager[Transport]]
"""Opens a transport that delivers to the receiver and uses the session given."""


@asynccontextmanager
async def open_channels(
    open_transport: OpenTransport, session: Session, *, owned: bool
) -> AsyncIterator[Channels]:
    """The channels of a kernel over the transport ``open_transport`` opens.

    The kernel is not proven live yet: call :meth:`Channels.wait_ready`.

    Args:
        session: the session the transport builds and verifies messages with.
        owned: the kernel is ours (launched and watched): a lost heartbeat
            means it is dead, not lost until it answers again.
    """
    channels = Channels(session, owned=owned)
    async with open_transport(channels, session) as transport:
        channels._transport = transport
        async with open_task_group() as tg:
            channels._task_group = tg
            try:
                yield channels
            finally:
                channels.handle(Event.CLOSE)
                tg.cancel_scope.cancel()
