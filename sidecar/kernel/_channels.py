"""The five channels of one kernel, their receive loops, and routing.

:func:`open_connection` opens shell, control and stdin (DEALER sockets sharing
the session id as their ZeroMQ identity, which is what lets the kernel's stdin
ROUTER reach us), iopub (SUB, everything) and heartbeat (REQ).  One pump task
per socket runs in a task group owned by the ``async with`` block, so none
outlives it.

Every incoming message is verified and decoded once, at ingress, then routed by
``parent_header.msg_id`` to the :class:`Inbox` of the request that caused it.
Messages no one registered for go to observers (:meth:`Connection.observe`);
with no observer they are counted and logged at debug level.  Frames that fail
verification are logged and dropped; the pump goes on.

What the connection learns of the kernel's life (heartbeat lost or back, a
new kernel session on the wire, ``status: restarting``/``dead`` from a
manager) and what the kernel layer tells it (ready, restarting, process
exited) are events of its :class:`~sidecar._lifecycle.Lifecycle`; when an
event ends what the kernel was doing, every waiting inbox fails with the error
it says (:class:`~sidecar.KernelDied`, :class:`~sidecar.KernelRestarted`).
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager, suppress
from typing import Any, Final, Literal, final

import anyio
import anyio.abc
import msgspec
import zmq
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream
from zmq.utils.monitor import parse_monitor_message

from .._exceptions import AuthenticationError, InvalidSignature, KernelError, WireError
from .._task_groups import open_task_group
from ..transport._socket import AsyncSocket
from ..wire import ConnectionInfo, Message, Session
from ._lifecycle import Event, Lifecycle, State

__all__ = ["Channel", "Connection", "Inbox", "open_connection"]

log = logging.getLogger("sidecar.connection")

Channel = Literal["shell", "control", "stdin", "iopub"]

# How long a DEALER waits before retrying a connect.  ZeroMQ's 100 ms default
# is what makes stdin and control join late when we connect before the kernel
# has bound; an input_request sent in that window is dropped by the kernel's
# ROUTER.  Backing off to 100 ms keeps a dead endpoint cheap, and a restarted
# kernel is still found within a tenth of a second of binding.
_RECONNECT_IVL_MS: Final = 10
_RECONNECT_IVL_MAX_MS: Final = 100

# A kernel that answers its heartbeat again gets this long to answer
# kernel_info before it counts as lost again (and is retried).
_RECOVERY_TIMEOUT: Final = 10.0
# Requests wait while the lifecycle is in one of these.
_SETTLING: Final = frozenset({State.RESTARTING, State.RECOVERING})


# Messages an Inbox hands out back to back before it yields to other tasks:
# yielding per message cost a scheduler pass per message under a flood (a
# third of the client's CPU), and a batch as small as the pumps' still keeps
# every other task running.
_YIELD_EVERY: Final = 64


class Statistics(msgspec.Struct, frozen=True, kw_only=True):
    """Counters of one connection, for :meth:`Connection.statistics`."""

    received: int
    """Messages received on every channel, valid or not."""
    routed: int
    """Messages delivered to the request that caused them."""
    unsolicited: int
    """Messages no request waited for (other clients', late output, comms)."""
    dropped_invalid: int
    """Frames dropped at ingress: bad signature, replayed, not a Jupyter message."""
    dropped_malformed: int
    """Authentic messages dropped because their content was malformed."""
    dropped_unobserved: int
    """Unsolicited messages no observer took (none, or one that fell behind)."""
    waiting: int
    """Requests waiting for messages now."""


@final
class Inbox:
    """Where the messages caused by one request are delivered, in arrival order.

    The pumps put messages in without ever blocking; the request's task takes
    them out.  Failing it makes the taker raise once the queue is drained.
    """

    __slots__ = ("_error", "_items", "_ready", "_streak", "msg_id")

    def __init__(self, msg_id: str) -> None:
        self.msg_id = msg_id
        self._items: deque[tuple[Channel, Message]] = deque()
        self._ready = anyio.Event()
        self._streak = 0
        self._error: BaseException | None = None

    def put(self, channel: Channel, message: Message) -> None:
        self._items.append((channel, message))
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


@final
class Connection:
    """The open channels of one kernel.  Made by :func:`open_connection`."""

    def __init__(
        self,
        info: ConnectionInfo,
        session: Session,
        sockets: dict[Channel, AsyncSocket],
        *,
        owned: bool = False,
    ) -> None:
        self.info: Final = info
        self.session: Final = session
        self._sockets = sockets
        self._monitors: list[AsyncSocket] = []
        self._routes: dict[str, Inbox] = {}
        self._observers: list[MemoryObjectSendStream[tuple[Channel, Message]]] = []
        self.lifecycle: Final = Lifecycle(owned=owned)
        self._settled = anyio.Event()
        self._task_group: anyio.abc.TaskGroup | None = None
        self._authentication_error: AuthenticationError | None = None
        self.heartbeat_answered = False
        """The kernel answered a heartbeat at least once."""
        self._iopub_seen = anyio.Event()
        self._abort_on_failure: set[anyio.CancelScope] = set()
        self._kernel_session: str | None = None
        self.execution_state: str = "unknown"
        self.execution_count: int | None = None
        self._received = 0
        self._routed = 0
        self._unsolicited = 0
        self._dropped_invalid = 0
        self._verified = 0
        self._dropped_malformed = 0
        self._dropped_unobserved = 0

    # -- state -----------------------------------------------------------------

    @property
    def error(self) -> KernelError | None:
        """Why requests fail now (:class:`~sidecar.KernelDied`...), if they do."""
        return self.lifecycle.error

    @property
    def state(self) -> State:
        """The kernel's lifecycle state: starting, ready, restarting, lost, dead, closed."""
        return self.lifecycle.state

    @property
    def kernel_session(self) -> str | None:
        """The kernel's own session id, once a message from it arrived."""
        return self._kernel_session

    def statistics(self) -> Statistics:
        """The counters of this connection so far."""
        return Statistics(
            received=self._received,
            routed=self._routed,
            unsolicited=self._unsolicited,
            dropped_invalid=self._dropped_invalid,
            dropped_malformed=self._dropped_malformed,
            dropped_unobserved=self._dropped_unobserved,
            waiting=len(self._routes),
        )

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
        for scope in self._abort_on_failure:
            scope.cancel()

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
        if error is not None:
            for inbox in self._routes.values():
                inbox.fail(error)
        if after in (State.LOST, State.DEAD, State.CLOSED):
            for scope in self._abort_on_failure:
                scope.cancel()

    async def _recover(self) -> None:
        """Prove the channels of a kernel that answers again, then serve it.

        Runs in the connection's task group when the lifecycle enters
        ``RECOVERING``.  Bounded: a kernel that does not answer kernel_info
        in time is lost again, and the next heartbeat it answers retries.
        """
        self._iopub_seen = anyio.Event()
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

    def register(self, msg_id: str) -> Inbox:
        """An inbox for the replies and outputs of the request ``msg_id``.

        Register *before* sending, so that nothing can arrive unrouted.

        Raises:
            KernelDied, KernelRestarted: the kernel is dead or lost.
        """
        error = self.lifecycle.error
        if error is not None:
            raise error
        inbox = self._routes[msg_id] = Inbox(msg_id)
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

    def _on_frames(self, channel: Channel, frames: list[bytes]) -> None:
        self._received += 1
        try:
            message = self.session.deserialize(frames)
        except WireError as e:
            self._dropped_invalid += 1
            log.warning("dropped an invalid message on %s: %s", channel, e)
            if isinstance(e, InvalidSignature) and not self._verified:
                self._authentication_failed(e)
            return
        self._verified += 1
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

    def _check_kernel_session(self, channel: Channel, message: Message) -> None:
        session = message.header.session
        if not session:
            # Some kernels send messages without a session (xeus-python's
            # iopub_welcome): they say nothing about restarts.
            return
        known = self._kernel_session
        if session != known:
            self._kernel_session = session
            if known is not None:
                log.info("kernel session changed: the kernel restarted")
                self.handle(Event.NEW_SESSION, f"the kernel restarted (new session on {channel})")

    def _on_iopub(self, message: Message) -> None:
        self._iopub_seen.set()
        if message.msg_type == "execute_input":
            count = message.content.execution_count
            if isinstance(count, int):
                self.execution_count = count
        elif message.msg_type == "status":
            state = message.content.execution_state
            # "starting" from a new process is caught by the session check;
            # "restarting" and "dead" are what a nanny or gateway publishes
            # for a kernel it restarts or lost.
            if state == "restarting":
                self.handle(Event.STATUS_RESTARTING, "the kernel's manager is restarting it")
            elif state == "dead":
                self.handle(Event.STATUS_DEAD, "the kernel's manager says it is dead")
            self.execution_state = state

    # -- sending -------------------------------------------------------------------

    async def send(self, channel: Channel, message: Message) -> None:
        """Sign and send ``message`` on ``channel``.

        Raises:
            KernelDied, KernelRestarted: the kernel is dead or lost.
        """
        error = self.lifecycle.error
        if error is not None:
            raise error
        await self._sockets[channel].send(self.session.serialize(message))

    def send_nowait(self, channel: Channel, message: Message) -> None:
        """Like :meth:`send`, for cleanup paths that cannot wait.

        Raises:
            anyio.WouldBlock: the socket's high-water mark is reached.
        """
        error = self.lifecycle.error
        if error is not None:
            raise error
        self._sockets[channel].send_nowait(self.session.serialize(message))

    # -- readiness -----------------------------------------------------------------

    async def wait_ready(self) -> Message:
        """Wait until every channel is proven live; return the kernel_info reply.

        A SUB socket drops what is published before its subscription reaches
        the kernel, so the first outputs of the first execute could be lost.
        Iopub is live once any message arrives on it: 5.5 kernels send
        ``iopub_welcome`` on subscription; older ones publish busy/idle for
        the kernel_info requests we repeat until that happens.  Stdin and
        control are live once their ZeroMQ handshake with the kernel is done
        (socket monitor), so an ``input_request`` is never dropped.

        Bound it with ``anyio.fail_after``; it returns early with an error if
        the connection fails meanwhile.
        """
        with anyio.CancelScope() as scope:
            self._abort_on_failure.add(scope)
            try:
                if self.lifecycle.error is None and self._authentication_error is None:
                    for monitor in self._monitors:
                        await _wait_handshake(monitor)
            finally:
                self._abort_on_failure.discard(scope)
        error = self._authentication_error or self.lifecycle.error
        if error is not None:
            raise error
        self._close_monitors()
        delay = 0.05
        while True:
            request = self.session.message("kernel_info_request")
            inbox = self.register(request.msg_id)
            try:
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

    def watch_handshakes(self) -> None:
        """Watch the ZeroMQ handshakes of stdin and control; :meth:`wait_ready` waits for them.

        Called when the connection opens, and again before a restarted kernel
        binds, so that its stdin and control are proven live as well.
        """
        self._close_monitors()
        for channel in ("control", "stdin"):
            sock = self._sockets[channel].socket
            monitor = sock.get_monitor_socket(zmq.EVENT_HANDSHAKE_SUCCEEDED)
            self._monitors.append(AsyncSocket(monitor))

    def _close_monitors(self) -> None:
        for channel, sock in self._sockets.items():
            if channel in ("stdin", "control"):
                with suppress(zmq.ZMQError):
                    sock.socket.disable_monitor()
        for monitor in self._monitors:
            monitor.close()
        self._monitors.clear()


async def _wait_reply(inbox: Inbox) -> Message:
    while True:
        channel, message = await inbox.get()
        if channel != "iopub":
            return message


async def _wait_handshake(monitor: AsyncSocket) -> None:
    while True:
        event = parse_monitor_message(await monitor.recv_multipart())
        if event["event"] == zmq.EVENT_HANDSHAKE_SUCCEEDED:
            return


async def _heartbeat(
    conn: Connection, context: zmq.Context[Any], endpoint: str, interval: float
) -> None:
    """Ping every ``interval`` s; two pings in a row unanswered for ``interval`` s
    each mean the kernel stopped answering, the next answer that it is back.

    A REQ socket that missed a reply is stuck in the wrong state, so each miss
    gets a fresh socket.  The loop never ends by itself: what a lost heartbeat
    means (dead, or lost until it answers again) is the lifecycle's to say.
    """
    misses = 0
    while True:
        sock = AsyncSocket(_socket(context, zmq.REQ, conn.info))
        sock.socket.connect(endpoint)
        try:
            while True:
                started = anyio.current_time()
                await sock.send([b"ping"])
                with anyio.move_on_after(interval):
                    await sock.recv_multipart()
                    conn.heartbeat_answered = True
                    misses = 0
                    if conn.state is State.LOST:
                        conn.handle(Event.HEARTBEAT_BACK, "the heartbeat answers again")
                    await anyio.sleep(max(0.0, interval - (anyio.current_time() - started)))
                    continue
                if conn.heartbeat_answered or conn.state is not State.STARTING:
                    # A kernel still starting has not bound its heartbeat yet:
                    # that is slow, not dead (the ready timeout bounds it).
                    misses += 1
                if misses == 2:
                    conn.handle(Event.HEARTBEAT_LOST, f"no heartbeat for {misses * interval:.1f} s")
                break
        finally:
            sock.close()


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
async def open_connection(
    info: ConnectionInfo,
    *,
    session: Session | None = None,
    context: zmq.Context[Any] | None = None,
    heartbeat_interval: float | None = 2.0,
    owned: bool = False,
) -> AsyncIterator[Connection]:
    """Open the channels of the kernel described by ``info``.

    The connection is not proven live yet: call :meth:`Connection.wait_ready`.

    Args:
        session: the wire session (one with ``info``'s key by default).
        context: a ZeroMQ context to use; by default one is created and
            terminated with the connection.
        heartbeat_interval: seconds between heartbeats; None for no heartbeat.
        owned: the kernel is ours (launched and watched): a lost heartbeat
            means it is dead, not lost until it answers again.
    """
    session = session or Session.from_connection_info(info)
    own_context = context is None
    ctx: zmq.Context[Any] = zmq.Context(io_threads=1) if context is None else context
    sockets: dict[Channel, AsyncSocket] = {}
    conn: Connection | None = None
    try:
        identity = session.session_id.encode()
        dealers: tuple[Channel, ...] = ("shell", "control", "stdin")
        for channel in dealers:
            dealer = _socket(ctx, zmq.DEALER, info)
            dealer.identity = identity
            sockets[channel] = AsyncSocket(dealer)
        iopub = _socket(ctx, zmq.SUB, info)
        iopub.setsockopt(zmq.SUBSCRIBE, b"")
        sockets["iopub"] = AsyncSocket(iopub)
        conn = Connection(info, session, sockets, owned=owned)
        conn.watch_handshakes()  # before connecting, so no handshake goes unseen
        for channel, sock in sockets.items():
            sock.socket.connect(info.endpoint(channel))
        async with open_task_group() as tg:
            conn._task_group = tg
            # The pumps are shielded: when a scope around the whole block is
            # cancelled, cleanup (interrupting a cancelled execute, a polite
            # shutdown_request) still needs replies to arrive.  They stop when
            # the block is left.
            pump_scopes = [anyio.CancelScope(shield=True) for _ in sockets]
            for scope, (channel, pumped) in zip(pump_scopes, sockets.items(), strict=True):
                tg.start_soon(_pump, scope, pumped, _bind(conn, channel), name=f"sidecar {channel}")
            if heartbeat_interval is not None:
                tg.start_soon(_heartbeat, conn, ctx, info.endpoint("hb"), heartbeat_interval)
            try:
                yield conn
            finally:
                conn.handle(Event.CLOSE)
                for scope in pump_scopes:
                    scope.cancel()
                tg.cancel_scope.cancel()
    finally:
        if conn is not None:
            conn._close_monitors()
        for opened in sockets.values():
            opened.close()
        if own_context:
            ctx.term()


async def _pump(
    scope: anyio.CancelScope, sock: AsyncSocket, on_message: Callable[[list[bytes]], object]
) -> None:
    with scope:
        await sock.pump(on_message)


def _bind(conn: Connection, channel: Channel) -> Any:
    on_frames = conn._on_frames

    def on_message(frames: list[bytes]) -> None:
        on_frames(channel, frames)

    return on_message
