"""The client: a kernel you can send requests to, by launching it or connecting to it.

Every request method is an *action*: it registers an inbox for the request's
``msg_id``, sends, hands every message caused by the request to the handlers in
arrival order, and returns the typed reply content once the kernel has sent
both the reply and ``status: idle`` (see ``_request``).  Awaiting it is a
cancellable scope: cancel it, or let ``timeout=`` or an enclosing
``anyio.fail_after`` expire, and an execute interrupts the kernel, waits
(bounded) for the request to finish, and then lets the cancellation or
``TimeoutError`` through, leaving the kernel ready for the next request.

Handlers run in the task that awaits the action, never in a receive loop, so a
slow handler slows only its own action.  Two background tasks of the kernel
take what no request waits for: one hands output that arrives after its
request finished to that request's handlers, the other dispatches comm
messages the kernel sends by itself to comms and comm targets.  Each keeps
arrival order, so a slow callback there delays later late output (or later
comm messages), never a request.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import (
    AbstractContextManager,
    contextmanager,
    nullcontext,
    suppress,
)
from typing import Any, Final, Literal, TypeVar, final

import anyio
import anyio.abc
from anyio.streams.memory import MemoryObjectReceiveStream

from .._exceptions import (
    ExecutionError,
    JupyterServerError,
    KernelError,
    KernelStartError,
    MalformedMessage,
    WireError,
)
from ..kernel._channels import Channels, ChannelStatistics
from ..kernel._kernelspec import KernelSpec
from ..kernel._lifecycle import Event, State
from ..kernel._process import KernelFiles, KernelProcess
from ..kernel._remote import RemoteKernel
from ..transport import Channel
from ..wire import (
    AbortedReply,
    CommInfoReply,
    CommInfoRequest,
    CompleteReply,
    CompleteRequest,
    ConnectionInfo,
    CreateSubshellReply,
    DebugReply,
    DebugRequest,
    DeleteSubshellReply,
    DeleteSubshellRequest,
    ErrorReply,
    ExecuteReply,
    ExecuteRequest,
    HistoryReply,
    HistoryRequest,
    InspectReply,
    InspectRequest,
    InterruptReply,
    IsCompleteReply,
    IsCompleteRequest,
    KernelInfoReply,
    ListSubshellReply,
    Message,
    Session,
    ShutdownReply,
    ShutdownRequest,
)
from ._action import Action, ActionContext, StdinCallback, StdinRelay
from ._comms import Comms
from ._handlers import Handler, HeldHandler, deliver, hold
from ._startup import start_process, wait_ready, watch_process
from ._widgets import Widgets

__all__ = ["Kernel", "StdinCallback"]

log = logging.getLogger("sidecar")

DEFAULT_GRACE: Final = 5.0
_LATE_MEMORY: Final = 256
_Reply = TypeVar("_Reply")
_COMM_TYPES: Final = frozenset({"comm_open", "comm_msg", "comm_close"})


@final
class Kernel:
    """A connected kernel.  Get one from :func:`launch`, :func:`connect` or
    :func:`connect_server`.

    Attributes:
        connection_info: where the kernel listens.
        info: the kernel_info reply it gave when it became ready.
        process: the kernel process when sidecar launched it, else None.
        spec: the kernelspec it was launched from, else None.
        comms: the kernel's comms and comm targets.
        widgets: the state of its ipywidgets, kept as a frontend keeps it.
        handlers: handlers given every message of every request, before the
            request's own (e.g. a log of everything sent to this kernel).
        interrupt_mode: how :meth:`interrupt` interrupts: ``"signal"`` (SIGINT
            to the process group, for a kernel sidecar launched) or
            ``"message"`` (``interrupt_request`` on control).
        grace: seconds a request that has its reply waits for its idle (or
            the other way round) before it completes anyway.
    """

    def __init__(
        self,
        channels: Channels,
        task_group: anyio.abc.TaskGroup,
        *,
        connection_info: ConnectionInfo | None = None,
        process: KernelProcess | None = None,
        spec: KernelSpec | None = None,
        interrupt_mode: Literal["signal", "message"] = "message",
        grace: float = DEFAULT_GRACE,
        files: KernelFiles | None = None,
        start_options: Mapping[str, Any] | None = None,
        remote: RemoteKernel | None = None,
    ) -> None:
        self._channels = channels
        self._remote = remote
        self._connection_info = connection_info
        self._files = files
        self._start_options = dict(start_options or {})
        self._tg = task_group
        self.process = process
        self.spec = spec
        self.interrupt_mode: Literal["signal", "message"] = interrupt_mode
        self.grace = grace
        self.info: KernelInfoReply | None = None
        self.handlers: list[Handler] = []
        self._late: OrderedDict[str, list[HeldHandler]] = OrderedDict()
        self.comms: Final = Comms(self)
        self.widgets: Final = Widgets(self._send_widget_update)
        self._action_context = ActionContext(
            channels=channels,
            widgets=self.widgets,
            on_comm=self._on_comm,
            interrupt=self._interrupt_on_cancel,
        )
        self._watching: anyio.CancelScope | None = None

    # -- properties ------------------------------------------------------------

    @property
    def connection_info(self) -> ConnectionInfo | None:
        """Where the kernel listens and the key it signs with (None when it is
        reached through something else than its connection file)."""
        return self._connection_info

    @property
    def kernel_id(self) -> str | None:
        """The kernel's id on its Jupyter Server, for a kernel reached through
        :func:`~sidecar.connect_server` (else None)."""
        return None if self._remote is None else self._remote.kernel_id

    @property
    def session(self) -> Session:
        """The wire session that builds, signs and verifies our messages."""
        return self._channels.session

    @property
    def kernel_session(self) -> str | None:
        """The kernel's own session id (it changes when the kernel restarts)."""
        return self._channels.kernel_session

    def statistics(self) -> ChannelStatistics:
        """Counters of the messages received, routed and dropped so far."""
        return self._channels.statistics()

    @property
    def execution_state(self) -> str:
        """The kernel's last published state: ``busy``, ``idle``, ``starting``..."""
        return self._channels.execution_state

    @property
    def execution_count(self) -> int | None:
        """The last execution count the kernel published (any client's execute)."""
        return self._channels.execution_count

    def observe(
        self, max_buffer: int = 1000
    ) -> AbstractContextManager[MemoryObjectReceiveStream[tuple[Channel, Message]]]:
        """Receive, while in the block, every message no request of ours caused.

        Other clients' outputs, ``debug_event`` messages, comm traffic the
        kernel starts by itself.  When the observer falls ``max_buffer``
        messages behind, newer ones are dropped for it (and logged) rather
        than stalling the receive loops.
        """
        return self._channels.observe(max_buffer)

    @contextmanager
    def tap(self, callback: Callable[[Channel, Message], None]) -> Iterator[None]:
        """Call ``callback(channel, message)`` with every message the kernel sends (in the block).

        Every one, whatever request caused it, before it is routed: this is
        how a server relays iopub to its frontends.  The callback runs in the
        receive loop, so it must be quick and must not block (hand the
        message to a task, e.g. through ``send_nowait`` on a memory stream);
        what it raises is logged and does not stop the loop.
        """
        taps = self._channels.taps
        taps.append(callback)
        try:
            yield
        finally:
            taps.remove(callback)

    def on_state_change(self, callback: Callable[[str, str], None]) -> AbstractContextManager[None]:
        """Call ``callback(before, after)`` when :attr:`state` changes, while in the block."""
        return self._channels.listen(callback)

    # -- the action machinery ------------------------------------------------------

    async def request(
        self,
        channel: Literal["shell", "control"],
        msg_type: str,
        content: Any = None,
        *,
        handlers: Sequence[Handler] = (),
        timeout: float | None = None,
        needs_idle: bool = True,
        interrupt_on_cancel: bool = False,
        stdin: StdinCallback | None = None,
        subshell_id: str | None = None,
        metadata: Mapping[str, Any] | None = None,
        buffers: Sequence[bytes] = (),
    ) -> Any:
        """Send any request and wait until it is done; the reply's content.

        The building block of every request method; use it for message types
        sidecar has no method for.  The reply is the message of type
        ``x_reply`` for an ``x_request`` (anything else the kernel sends on
        the channel goes to the handlers); a message type not ending in
        ``_request`` (e.g. ``comm_open``) has no reply, is done on idle, and
        returns None.

        Args:
            channel: ``"shell"`` or ``"control"``.
            handlers: get every message the request causes, reply included
                (after the kernel's :attr:`handlers`).
            timeout: seconds before ``TimeoutError``.
            needs_idle: wait for ``status: idle`` as well as the reply.
            interrupt_on_cancel: on cancel or timeout, interrupt the kernel and
                wait (bounded) for the request to finish before re-raising.
            stdin: answers ``input_request`` messages of this request.

        Returns:
            The reply's content: a struct of :mod:`sidecar.wire` for the
            message types it knows (``ErrorReply`` or ``AbortedReply`` when
            the status says so), else a dict.

        Raises:
            KernelDied: the kernel died before the request was done.
            KernelRestarted: the kernel restarted before the request was done.
            NoReply: the kernel went idle but never sent the reply.
            MalformedMessage: the reply's content is not what the spec says.
            HandlerError: a handler raised (the request itself completed).
            TimeoutError: ``timeout`` expired.
        """
        reply = await self._request(
            channel,
            msg_type,
            content,
            handlers=handlers,
            timeout=timeout,
            needs_idle=needs_idle,
            interrupt_on_cancel=interrupt_on_cancel,
            stdin=stdin,
            subshell_id=subshell_id,
            metadata=metadata,
            buffers=buffers,
        )
        return None if reply is None else reply.content

    async def _ask(
        self,
        reply: type[_Reply],
        channel: Literal["shell", "control"],
        msg_type: str,
        content: Any = None,
        **options: Any,
    ) -> _Reply | ErrorReply | AbortedReply:
        """:meth:`request` for a request whose reply content is ``reply`` (or an error or
        aborted reply), checked: a reply of another shape is a malformed message."""
        result = await self.request(channel, msg_type, content, **options)
        if not isinstance(result, reply | ErrorReply | AbortedReply):
            raise MalformedMessage(
                f"the {msg_type} got a reply of the wrong shape: {type(result).__name__}"
            )
        return result

    async def forward(
        self,
        channel: Literal["shell", "control"],
        message: Message,
        *,
        handlers: Sequence[Handler] = (),
        relay_stdin: StdinRelay | None = None,
        timeout: float | None = None,
    ) -> Message | None:
        """Send a request someone else built (a frontend's) and wait until it is done.

        The kernel gets the message as it is, header included (only the
        signature is ours), so its replies and outputs name the frontend's
        ``msg_id`` and session.  Done like any request: on its reply and idle
        (a ``shutdown_request`` on its reply alone; a message without reply,
        such as ``comm_msg``, on idle).  ``relay_stdin`` answers its
        ``input_request`` messages with the frontend's ``input_reply``.

        Returns:
            The reply message, or None for a message without reply.

        Raises:
            KernelDied, KernelRestarted: the kernel went away first.
            HandlerError: a handler raised (the request itself completed).
        """
        channels = self._channels
        if channels.state is not State.READY:
            await channels.wait_usable()
        action = Action(
            self._action_context,
            channel,
            message,
            [*self.handlers, *handlers],
            grace=self.grace,
            needs_idle=message.msg_type != "shutdown_request",
            relay_stdin=relay_stdin,
        )
        return await action.run(timeout=timeout, interrupt_on_cancel=False)

    async def _request(
        self,
        channel: Literal["shell", "control"],
        msg_type: str,
        content: Any,
        *,
        handlers: Sequence[Handler],
        timeout: float | None,
        needs_idle: bool = True,
        interrupt_on_cancel: bool = False,
        stdin: StdinCallback | None = None,
        subshell_id: str | None = None,
        metadata: Mapping[str, Any] | None = None,
        buffers: Sequence[bytes] = (),
    ) -> Message | None:
        """:meth:`request`, returning the reply message (None for a request without reply)."""
        channels = self._channels
        if channels.state is not State.READY:
            await channels.wait_usable()
        if self.handlers:
            handlers = [*self.handlers, *handlers]
        kwargs: dict[str, Any] = {} if subshell_id is None else {"subshell_id": subshell_id}
        message = channels.session.message(
            msg_type, content, metadata=metadata, buffers=buffers, **kwargs
        )
        action = Action(
            self._action_context,
            channel,
            message,
            handlers,
            grace=self.grace,
            needs_idle=needs_idle,
            stdin=stdin,
        )
        try:
            reply = await action.run(timeout=timeout, interrupt_on_cancel=interrupt_on_cancel)
        finally:
            if handlers:
                self._remember_late(message.msg_id, handlers)
        return reply

    async def _on_comm(self, channel: Channel, message: Message) -> None:
        """A comm message from the kernel: to the widget models, then to the comm registry.

        Nothing the kernel sends may escape from here: a malformed comm
        message is logged, counted and dropped.
        """
        try:
            self.widgets.apply(message)
            await self.comms.dispatch(message)
        except WireError as e:
            self._channels.drop_malformed(channel, message, e)
        except Exception as e:  # a bug in the widget emulation must not kill a loop
            log.exception("error while handling %s", message.msg_type)
            self._channels.drop_malformed(channel, message, e)

    async def _send_widget_update(self, comm_id: str, state: dict[str, Any]) -> Message | None:
        if comm_id not in self.comms:
            return None
        comm = self.comms[comm_id]
        return await comm.send({"method": "update", "state": state, "buffer_paths": []})

    def _remember_late(self, msg_id: str, handlers: Sequence[Handler]) -> None:
        late = self._late
        late[msg_id] = [hold(handler) for handler in handlers]
        if len(late) > _LATE_MEMORY:
            late.popitem(last=False)

    def _start_background(self) -> None:
        """Start the tasks that take what no request waits for (see the module doc)."""
        self._tg.start_soon(self._route_late, name="sidecar late output")
        self._tg.start_soon(self._dispatch_comms, name="sidecar comms")

    async def _route_late(self) -> None:
        """Hand output that arrives after a request finished to its handlers."""
        with self._channels.observe(max_buffer=10_000) as unsolicited:
            async for channel, message in unsolicited:
                parent = message.parent_id
                if parent is None or (held := self._late.get(parent)) is None:
                    continue
                handlers = [h for h in (get() for get in held) if h is not None]
                if handlers:
                    errors = await deliver(handlers, message)
                    if any(isinstance(e, WireError) for e in errors):
                        self._channels.drop_malformed(channel, message, errors[0])
                else:
                    # Every handler is gone: nobody can see this request's output.
                    del self._late[parent]

    async def _dispatch_comms(self) -> None:
        """Dispatch the comm messages no request of ours caused."""
        with self._channels.observe(max_buffer=10_000) as unsolicited:
            async for channel, message in unsolicited:
                if message.msg_type in _COMM_TYPES:
                    await self._on_comm(channel, message)

    # -- shell requests ------------------------------------------------------------

    async def execute(
        self,
        code: str,
        *,
        handlers: Sequence[Handler] = (),
        silent: bool = False,
        store_history: bool = True,
        user_expressions: Mapping[str, str] | None = None,
        allow_stdin: bool | None = None,
        stop_on_error: bool = True,
        stdin: StdinCallback | None = None,
        timeout: float | None = None,
        raise_on_error: bool = False,
        subshell_id: str | None = None,
    ) -> ExecuteReply | ErrorReply | AbortedReply:
        """Run ``code``; the reply once it is done (reply and idle both in).

        Cancelling, or ``timeout``, interrupts the kernel and waits (bounded)
        for this request to finish before re-raising, so the kernel is ready
        for the next one.

        Args:
            handlers: see :data:`Handler`; they get busy, execute_input, every
                output, idle and the reply, in arrival order.
            allow_stdin: defaults to whether ``stdin`` is given. Without a
                callback the kernel raises ``StdinNotImplementedError`` on
                ``input()``, a clear error rather than a hang.
            stdin: ``await stdin(prompt, password)`` answers ``input()``.
            raise_on_error: raise :class:`~sidecar.ExecutionError` for an error
                reply instead of returning it.
            subshell_id: run in this subshell (see :meth:`create_subshell`).

        Raises:
            ExecutionError: the code raised and ``raise_on_error`` is set.
            KernelDied: the kernel died meanwhile.
            TimeoutError: ``timeout`` expired (the kernel was interrupted).
        """
        if allow_stdin is None:
            allow_stdin = stdin is not None
        reply: ExecuteReply | ErrorReply | AbortedReply = await self.request(
            "shell",
            "execute_request",
            ExecuteRequest(
                code=code,
                silent=silent,
                store_history=store_history,
                user_expressions=dict(user_expressions or {}),
                allow_stdin=allow_stdin,
                stop_on_error=stop_on_error,
            ),
            handlers=handlers,
            timeout=timeout,
            interrupt_on_cancel=True,
            stdin=stdin,
            subshell_id=subshell_id,
        )
        if raise_on_error and isinstance(reply, ErrorReply):
            raise ExecutionError(reply.ename, reply.evalue, reply.traceback)
        return reply

    async def kernel_info(
        self,
        *,
        channel: Literal["shell", "control"] = "shell",
        handlers: Sequence[Handler] = (),
        timeout: float | None = None,
    ) -> KernelInfoReply | ErrorReply | AbortedReply:
        """The kernel's kernel_info reply (protocol version, language...)."""
        return await self._ask(
            KernelInfoReply, channel, "kernel_info_request", handlers=handlers, timeout=timeout
        )

    async def complete(
        self,
        code: str,
        cursor_pos: int | None = None,
        *,
        handlers: Sequence[Handler] = (),
        timeout: float | None = None,
    ) -> CompleteReply | ErrorReply | AbortedReply:
        """Completions at ``cursor_pos`` (default: end of ``code``)."""
        pos = len(code) if cursor_pos is None else cursor_pos
        return await self._ask(
            CompleteReply,
            "shell",
            "complete_request",
            CompleteRequest(code=code, cursor_pos=pos),
            handlers=handlers,
            timeout=timeout,
        )

    async def inspect(
        self,
        code: str,
        cursor_pos: int | None = None,
        *,
        detail_level: Literal[0, 1] = 0,
        handlers: Sequence[Handler] = (),
        timeout: float | None = None,
    ) -> InspectReply | ErrorReply | AbortedReply:
        """Introspection (docstring, signature) of the name at ``cursor_pos``."""
        pos = len(code) if cursor_pos is None else cursor_pos
        content = InspectRequest(code=code, cursor_pos=pos, detail_level=detail_level)
        return await self._ask(
            InspectReply, "shell", "inspect_request", content, handlers=handlers, timeout=timeout
        )

    async def history(
        self,
        hist_access_type: Literal["range", "tail", "search"] = "tail",
        *,
        output: bool = False,
        raw: bool = True,
        session: int | None = None,
        start: int | None = None,
        stop: int | None = None,
        n: int | None = None,
        pattern: str | None = None,
        unique: bool = False,
        handlers: Sequence[Handler] = (),
        timeout: float | None = None,
    ) -> HistoryReply | ErrorReply | AbortedReply:
        """Input (and optionally output) history: a range, the tail, or a search."""
        fields: dict[str, Any] = {
            "output": output,
            "raw": raw,
            "hist_access_type": hist_access_type,
        }
        if hist_access_type == "range":
            fields.update(session=session or 0, start=start or 0)
            if stop is not None:
                fields["stop"] = stop
        elif hist_access_type == "tail":
            fields["n"] = 10 if n is None else n
        else:
            fields.update(pattern=pattern or "*", unique=unique)
            if n is not None:
                fields["n"] = n
        return await self._ask(
            HistoryReply,
            "shell",
            "history_request",
            HistoryRequest(**fields),
            handlers=handlers,
            timeout=timeout,
        )

    async def is_complete(
        self, code: str, *, handlers: Sequence[Handler] = (), timeout: float | None = None
    ) -> IsCompleteReply | ErrorReply | AbortedReply:
        """Whether ``code`` is complete, incomplete (and the indent), or invalid."""
        return await self._ask(
            IsCompleteReply,
            "shell",
            "is_complete_request",
            IsCompleteRequest(code=code),
            handlers=handlers,
            timeout=timeout,
        )

    async def comm_info(
        self,
        target_name: str | None = None,
        *,
        handlers: Sequence[Handler] = (),
        timeout: float | None = None,
    ) -> CommInfoReply | ErrorReply | AbortedReply:
        """The open comms, optionally only those of ``target_name``."""
        content = (
            CommInfoRequest() if target_name is None else CommInfoRequest(target_name=target_name)
        )
        return await self._ask(
            CommInfoReply, "shell", "comm_info_request", content, handlers=handlers, timeout=timeout
        )

    async def send_comm(
        self,
        msg_type: Literal["comm_open", "comm_msg", "comm_close"],
        content: Any,
        *,
        metadata: Mapping[str, Any] | None = None,
        buffers: Sequence[bytes] = (),
    ) -> Message:
        """Send a comm message on shell (comm messages have no reply); the message sent."""
        message = self._channels.session.message(
            msg_type, content, metadata=metadata, buffers=buffers
        )
        await self._channels.send("shell", message)
        return message

    # -- control requests --------------------------------------------------------------

    async def interrupt(
        self, *, handlers: Sequence[Handler] = (), timeout: float | None = 10.0
    ) -> None:
        """Interrupt what the kernel runs, by its ``interrupt_mode``.

        ``signal`` sends SIGINT to the kernel's process group (only possible
        for a kernel sidecar launched); ``message`` sends ``interrupt_request``
        on control and waits for the reply (``handlers`` get its messages).
        A kernel on a Jupyter Server is interrupted by the server (its REST
        API), which does it by the kernelspec's own interrupt mode.

        Raises:
            JupyterServerError: the server refused to interrupt the kernel.
        """
        if self._remote is not None:
            with anyio.fail_after(timeout) if timeout is not None else nullcontext():
                await self._remote.interrupt()
            return
        if self.interrupt_mode == "signal" and self.process is not None:
            self.process.interrupt()
            return
        reply: InterruptReply | ErrorReply | AbortedReply = await self.request(
            "control", "interrupt_request", handlers=handlers, timeout=timeout
        )
        if isinstance(reply, ErrorReply):
            log.warning("interrupt_request failed: %s: %s", reply.ename, reply.evalue)

    async def _interrupt_on_cancel(self) -> None:
        """:meth:`interrupt` for a cancelled request: a server's refusal is logged,
        and the cancellation goes on."""
        try:
            await self.interrupt()
        except JupyterServerError as e:
            log.warning("could not interrupt the cancelled request: %s", e)

    async def shutdown(
        self,
        *,
        restart: bool = False,
        handlers: Sequence[Handler] = (),
        timeout: float | None = 5.0,
    ) -> ShutdownReply | ErrorReply | AbortedReply:
        """Ask the kernel to shut down (or restart itself); its reply.

        For a kernel sidecar launched, leaving the ``async with`` block does
        this and makes sure the process is gone; use :meth:`restart` to
        restart one.  Done on the reply alone: a kernel may exit before its
        idle reaches us.
        """
        return await self._ask(
            ShutdownReply,
            "control",
            "shutdown_request",
            ShutdownRequest(restart=restart),
            handlers=handlers,
            timeout=timeout,
            needs_idle=False,
        )

    async def debug_request(
        self,
        command: str,
        arguments: Mapping[str, Any] | None = None,
        *,
        seq: int = 1,
        handlers: Sequence[Handler] = (),
        timeout: float | None = None,
    ) -> DebugReply:
        """A Debug Adapter Protocol request on control; the DAP response."""
        content = DebugRequest(seq=seq, command=command)
        if arguments is not None:
            content = DebugRequest(seq=seq, command=command, arguments=dict(arguments))
        result: DebugReply = await self.request(
            "control", "debug_request", content, handlers=handlers, timeout=timeout
        )
        return result

    async def create_subshell(
        self, *, handlers: Sequence[Handler] = (), timeout: float | None = 10.0
    ) -> CreateSubshellReply | ErrorReply | AbortedReply:
        """Create a subshell (protocol 5.5): run code concurrently with the main shell."""
        return await self._ask(
            CreateSubshellReply,
            "control",
            "create_subshell_request",
            handlers=handlers,
            timeout=timeout,
        )

    async def delete_subshell(
        self, subshell_id: str, *, handlers: Sequence[Handler] = (), timeout: float | None = 10.0
    ) -> DeleteSubshellReply | ErrorReply | AbortedReply:
        """Delete a subshell made by :meth:`create_subshell`."""
        return await self._ask(
            DeleteSubshellReply,
            "control",
            "delete_subshell_request",
            DeleteSubshellRequest(subshell_id=subshell_id),
            handlers=handlers,
            timeout=timeout,
        )

    async def list_subshell(
        self, *, handlers: Sequence[Handler] = (), timeout: float | None = 10.0
    ) -> ListSubshellReply | ErrorReply | AbortedReply:
        """The ids of the kernel's subshells."""
        return await self._ask(
            ListSubshellReply,
            "control",
            "list_subshell_request",
            handlers=handlers,
            timeout=timeout,
        )

    # -- lifecycle -----------------------------------------------------------------------

    @property
    def state(self) -> str:
        """The kernel's lifecycle state: ``starting``, ``ready``, ``restarting``,
        ``lost`` (a kernel we do not own stopped answering; it is served again
        once it answers), ``dead`` or ``closed``."""
        return self._channels.state.value

    async def _wait_ready(self, timeout: float, source: str) -> None:
        """Wait until the kernel is ready; if it is not, an error that says why."""
        reply = await wait_ready(self._channels, self.process, timeout, source)
        if isinstance(reply.content, KernelInfoReply):
            self.info = reply.content

    def _watch(self, process: KernelProcess) -> None:
        """Watch ``process`` for exit; a restart stops watching the process it replaces."""
        if self._watching is not None:
            self._watching.cancel()
        self._watching = scope = anyio.CancelScope()
        self._tg.start_soon(watch_process, self._channels, process, scope)

    async def restart(self, *, timeout: float = 60.0) -> None:
        """Restart the kernel: a fresh process on the same connection.

        Requests waiting at that moment fail with
        :class:`~sidecar.KernelRestarted`; requests made while it restarts
        wait for the new kernel.  A kernel sidecar launched gets a new
        process, even after it died.  A kernel on a Jupyter Server is
        restarted by the server (its REST API).  For any other kernel sidecar
        did not launch, this asks the kernel to restart itself
        (``shutdown_request`` with ``restart=True``) and waits for it to
        answer again.

        Raises:
            KernelStartError: the new kernel exited or did not answer within
                ``timeout`` (the kernel is then dead, or lost if not ours).
            JupyterServerError: the server could not restart the kernel.
        """
        conn = self._channels
        process = self.process
        deadline = anyio.current_time() + timeout
        if self._remote is not None:
            conn.handle(Event.RESTART_BEGUN, "the kernel is restarting (asked of its server)")
            try:
                with anyio.fail_after(timeout):
                    await self._remote.restart()
            except TimeoutError:
                conn.handle(Event.RESTART_FAILED, "the server did not restart the kernel")
                raise KernelStartError(
                    f"the server did not restart the kernel within {timeout} s"
                ) from None
            except BaseException:
                conn.handle(Event.RESTART_FAILED, "the server did not restart the kernel")
                raise
        elif process is None:
            with anyio.move_on_after(5.0), suppress(KernelError):
                await self.shutdown(restart=True)
            conn.handle(Event.RESTART_BEGUN, "the kernel is restarting")
        else:
            spec, files = self.spec, self._files
            assert spec is not None
            assert files is not None
            # The old process is going: its exit says nothing any more.
            if self._watching is not None:
                self._watching.cancel()
            with anyio.move_on_after(2.5), suppress(KernelError):
                await self.shutdown(restart=True, timeout=None)
                await process.wait()
            conn.handle(Event.RESTART_BEGUN, "the kernel was restarted")
            await process.stop()
            conn.transport.expect_new_kernel()
            self.process = await start_process(spec, files, self._tg, self._start_options)
            self._watch(self.process)
        try:
            # One timeout for the whole restart, not one per step.
            await self._wait_ready(max(0.0, deadline - anyio.current_time()), "restart")
        except BaseException:
            conn.handle(Event.RESTART_FAILED, "the restarted kernel did not come up")
            raise
