"""One kernel shared by many frontends: the sidecar speaks the kernel protocol to them.

Every frontend talks to the sidecar and only the sidecar talks to the kernel.
:func:`serve` binds a kernel's five sockets for frontends (with a key of its
own) and relays:

- a frontend's request (shell or control) is verified once, run through the
  request hooks, and forwarded with its own header (re-signed with the
  kernel's key) by :meth:`Kernel.forward <sidecar.Kernel.forward>`; the reply
  goes back to that frontend alone, by its ZeroMQ identity;
- everything the kernel publishes on iopub goes to every frontend (an XPUB,
  so a frontend that does not read is dropped from, never waited for), after
  the message hooks;
- an ``input_request`` goes to the frontend whose execute asked for input,
  and its ``input_reply`` back to the kernel;
- ``interrupt_request`` interrupts the kernel as the kernel needs (signal or
  message); ``shutdown_request`` detaches the frontend that sent it, unless
  the server was told to let frontends stop (or restart) the kernel, because
  one frontend leaving must not end the others' session.

The document lives here: every execute that is not ``silent`` (frontends use
silent ones for introspection) becomes a cell of one
:class:`~sidecar.NotebookDocument` (the cell of ``metadata.cellId`` when the
frontend sends one, as JupyterLab and VS Code do), its outputs applied as
they arrive, whoever sent it.  With a notebook path, the document is written
atomically after executes complete (reply and idle both in, so late outputs
are there), by one writer that coalesces executes arriving faster than it
writes, and at exit.

Nothing a frontend sends escapes from here: what fails verification is
dropped (counted by the transport), a hook that raises refuses the request
with a well-formed error reply, and a frontend that vanishes mid-request
disturbs no one.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import AsyncExitStack, asynccontextmanager, suppress
from pathlib import Path
from typing import Any, Final, Literal, TypeAlias, final

import anyio
import anyio.abc
import msgspec
from anyio.streams.memory import MemoryObjectSendStream

from .._exceptions import KernelError
from .._task_groups import open_task_group
from ..client._kernel import Kernel
from ..notebook._document import NotebookDocument
from ..notebook._model import CodeCell, NotebookError, read_notebook, write_file_atomically
from ..transport import Channel, ZmqServer, open_zmq_server
from ..wire import (
    ConnectionInfo,
    ErrorReply,
    IopubWelcome,
    Message,
    Status,
    Stream,
    read_connection_file,
    write_connection_file,
)

__all__ = [
    "Frontend",
    "FrontendRequest",
    "MessageHook",
    "Refuse",
    "RequestHook",
    "SharedKernel",
    "serve",
]

log = logging.getLogger("sidecar.serve")

ShutdownPolicy: TypeAlias = Literal["detach", "forward", "exit"]

_OUTBOX: Final = 10_000


@final
class Frontend(msgspec.Struct, frozen=True):
    """A frontend attached to the shared kernel."""

    identity: bytes
    """Its ZeroMQ identity: how replies find it."""
    session: str
    """The session id in its messages' headers."""


@final
class Refuse(msgspec.Struct, frozen=True):
    """What a request hook returns to refuse a request: the frontend gets an
    error reply saying ``reason``, and the kernel never sees the request."""

    reason: str


@final
class FrontendRequest:
    """A frontend's request, as request hooks see it.

    Attributes:
        channel: ``"shell"`` or ``"control"``.
        message: the request (a hook may return a changed copy).
        frontend: who sent it.
    """

    def __init__(
        self, shared: SharedKernel, channel: Channel, message: Message, frontend: Frontend
    ) -> None:
        self._shared = shared
        self.channel = channel
        self.message = message
        self.frontend = frontend

    @property
    def code(self) -> str | None:
        """The code of an ``execute_request``, else None."""
        if self.message.msg_type != "execute_request":
            return None
        code = self.message.content.code
        return code if isinstance(code, str) else None

    def stderr(self, text: str) -> None:
        """Show ``text`` under the request, as the kernel's stderr would, to every frontend."""
        self._shared._publish_about(self.message, "stream", Stream(name="stderr", text=text))


RequestHook: TypeAlias = Callable[[FrontendRequest], Awaitable["Message | Refuse | None"]]
"""Sees each frontend request before the kernel does: returns None to pass it,
a message to send instead, or :class:`Refuse`."""

MessageHook: TypeAlias = Callable[[Channel, Message], Awaitable["Message | None"]]
"""Sees each message on its way from the kernel to frontends: returns None to
pass it as it is, or a message to send instead."""


@final
class SharedKernel:
    """A kernel served to many frontends.  Made by :func:`serve`.

    Attributes:
        kernel: the kernel (sidecar's own connection to it).
        document: every execute of every frontend, as one notebook.
        connection_info: what frontends connect with (the connection file's content).
        connection_file: where that was written, if anywhere.
        frontends: the frontends seen, by ZeroMQ identity.
    """

    def __init__(
        self,
        kernel: Kernel,
        document: NotebookDocument,
        *,
        request_hooks: Sequence[RequestHook],
        message_hooks: Sequence[MessageHook],
        on_shutdown: ShutdownPolicy,
        notebook_path: Path | None,
    ) -> None:
        self.kernel = kernel
        self.document = document
        self.frontends: dict[bytes, Frontend] = {}
        self.connection_file: Path | None = None
        self._request_hooks = list(request_hooks)
        self._message_hooks = list(message_hooks)
        self._on_shutdown = on_shutdown
        self._notebook_path = notebook_path
        self._server: ZmqServer | None = None
        self._task_group: anyio.abc.TaskGroup | None = None
        self._cells: dict[str, CodeCell] = {}
        self._stdin_waiters: dict[bytes, tuple[anyio.Event, list[Message]]] = {}
        send, receive = anyio.create_memory_object_stream[tuple[Channel, Message]](_OUTBOX)
        self._outbox_in, self._outbox = send, receive
        self._dirty = anyio.Event()
        # One write of the file at a time: the final save must not be
        # overtaken by an older one still in its thread.
        self._saving = anyio.Lock()
        self._done = anyio.Event()
        self._listeners: list[MemoryObjectSendStream[str]] = []
        self.dropped_to_frontends = 0
        self.refused = 0

    @property
    def connection_info(self) -> ConnectionInfo:
        """What frontends connect with: the ports bound, the sidecar's own key."""
        assert self._server is not None, "not serving"
        return self._server.info

    def wait_done(self) -> Awaitable[None]:
        """Wait until a frontend's ``shutdown_request`` ends the serving (policy ``exit``
        or ``forward``), or the kernel is gone for good."""
        return self._done.wait()

    @asynccontextmanager
    async def changes(self, max_buffer: int = 100) -> AsyncIterator[AsyncIterator[str]]:
        """Yield an iterator of the ids of cells as their executes complete.

        A subscriber that falls ``max_buffer`` behind misses ids, not the
        document: read :attr:`document` for the current state.
        """
        send, receive = anyio.create_memory_object_stream[str](max_buffer)
        self._listeners.append(send)
        try:
            async with receive:
                yield receive
        finally:
            self._listeners.remove(send)
            send.close()

    # -- what the frontends' sockets tell us ----------------------------------------------

    def _on_message(self, channel: Channel, message: Message) -> None:
        if channel == "stdin":
            self._stdin_answer(message)
            return
        if not message.identities or self._task_group is None:
            return
        identity = message.identities[0]
        frontend = self.frontends.get(identity)
        if frontend is None:
            frontend = self.frontends[identity] = Frontend(identity, message.header.session)
            log.info("frontend %s attached", identity.hex())
        self._task_group.start_soon(self._serve_request, channel, message, frontend)

    def _on_subscribed(self, topic: bytes) -> None:
        if topic:
            # A topic of a frontend's own (sidecar's clients subscribe to one):
            # greet that frontend alone, as a 5.5 kernel does.
            assert self._server is not None
            welcome = IopubWelcome(subscription=topic.decode(errors="replace"))
            with contextlib.suppress(anyio.WouldBlock):
                self._server.send_nowait("iopub", self._message("iopub_welcome", welcome), [topic])
            return
        # Greet the new subscriber (5.5), and tell every late joiner the state.
        self._publish(self._message("iopub_welcome", IopubWelcome()))
        state = self.kernel.execution_state
        busy_or_idle = state if state in ("busy", "idle") else "idle"
        self._publish(self._message("status", Status(execution_state=busy_or_idle)))

    # -- requests -----------------------------------------------------------------------

    async def _serve_request(self, channel: Channel, message: Message, frontend: Frontend) -> None:
        request = FrontendRequest(self, channel, message, frontend)
        try:
            refusal = await self._run_request_hooks(request)
            if refusal is not None:
                self.refused += 1
                await self._refuse(request, refusal.reason)
                return
            message = request.message
            if message.msg_type == "shutdown_request":
                await self._shutdown_request(request)
            elif message.msg_type == "interrupt_request":
                await self.kernel.interrupt()
                await self._reply(request, "interrupt_reply", {"status": "ok"})
            else:
                await self._forward(request)
        except KernelError as e:
            await self._refuse(request, f"{type(e).__name__}: {e}", ename=type(e).__name__)
        except Exception:  # a bug here must not end the serving
            log.exception("error while serving %s", message.msg_type)
            await self._refuse(request, "the sidecar failed to serve this request")

    async def _run_request_hooks(self, request: FrontendRequest) -> Refuse | None:
        for hook in self._request_hooks:
            try:
                decision = await hook(request)
            except Exception as e:
                # A deny-list that crashed must not let the code through.
                log.exception("request hook %r raised", hook)
                return Refuse(f"a request hook failed: {type(e).__name__}: {e}")
            if isinstance(decision, Refuse):
                return decision
            if isinstance(decision, Message):
                request.message = decision
        return None

    async def _forward(self, request: FrontendRequest) -> None:
        message = request.message
        cell = self._cell_for(message)
        handlers: list[Callable[[Message], Any]] = [self._relay_replies(request)]
        if cell is not None:
            handlers.append(self.document.record(cell))

        async def relay_stdin(input_request: Message) -> Message:
            return await self._ask_frontend(request.frontend, input_request)

        to: Literal["shell", "control"] = "control" if request.channel == "control" else "shell"
        try:
            await self.kernel.forward(to, message, handlers=handlers, relay_stdin=relay_stdin)
        finally:
            if cell is not None:
                self._cell_done(cell)

    def _relay_replies(self, request: FrontendRequest) -> Callable[[Message], Awaitable[None]]:
        """A handler sending the request's reply to the frontend that asked (iopub
        reaches every frontend through the tap)."""

        async def relay(message: Message) -> None:
            if message.msg_type.endswith("_reply"):
                await self._send_to(request.frontend, request.channel, message)

        return relay

    async def _shutdown_request(self, request: FrontendRequest) -> None:
        restart = bool(getattr(request.message.content, "restart", False))
        policy = self._on_shutdown
        if policy == "forward":
            if restart:
                await self.kernel.restart()
            else:
                await self.kernel.shutdown()
                self._done.set()
            await self._reply(request, "shutdown_reply", {"status": "ok", "restart": restart})
            return
        if restart:
            await self._refuse(
                request, "frontends do not restart this shared kernel", ename="Refused"
            )
            return
        await self._reply(request, "shutdown_reply", {"status": "ok", "restart": False})
        self.frontends.pop(request.frontend.identity, None)
        log.info("frontend %s detached", request.frontend.identity.hex())
        if policy == "exit":
            self._done.set()

    async def _refuse(
        self, request: FrontendRequest, reason: str, *, ename: str = "Refused"
    ) -> None:
        """Answer as the kernel would with an error: busy, the reason on stderr,
        the error reply, idle, so that no frontend waits for anything."""
        message = request.message
        self._publish_about(message, "status", Status(execution_state="busy"))
        self._publish_about(message, "stream", Stream(name="stderr", text=f"{reason}\n"))
        error = ErrorReply(ename=ename, evalue=reason, traceback=[reason])
        reply_type = message.msg_type.removesuffix("_request") + "_reply"
        if message.msg_type.endswith("_request"):
            await self._reply(request, reply_type, error)
        self._publish_about(message, "status", Status(execution_state="idle"))

    # -- sending to frontends ----------------------------------------------------------------

    def _message(self, msg_type: str, content: Any, parent: Message | None = None) -> Message:
        """A message the sidecar sends on the kernel's behalf.

        Its header names the kernel's session, not ours: a frontend that
        watches the session id to notice restarts (sidecar does) must not
        take the sidecar's own replies for a new kernel.
        """
        assert self._server is not None
        message = self._server.session.message(msg_type, content, parent=parent)
        kernel_session = self.kernel.kernel_session
        if kernel_session:
            message.header = msgspec.structs.replace(message.header, session=kernel_session)
        return message

    async def _reply(self, request: FrontendRequest, msg_type: str, content: Any) -> None:
        reply = self._message(msg_type, content, parent=request.message)
        await self._send_to(request.frontend, request.channel, reply)

    def _publish_about(self, parent: Message, msg_type: str, content: Any) -> None:
        self._publish(self._message(msg_type, content, parent=parent))

    def _publish(self, message: Message) -> None:
        try:
            self._outbox_in.send_nowait(("iopub", message))
        except anyio.WouldBlock:
            self.dropped_to_frontends += 1
            log.warning("frontends fall behind: dropped %s", message.msg_type)

    async def _send_to(self, frontend: Frontend, channel: Channel, message: Message) -> None:
        for hook in self._message_hooks:
            message = await _hooked(hook, channel, message)
        self._server_send(frontend, channel, message)

    def _server_send(self, frontend: Frontend, channel: Channel, message: Message) -> None:
        assert self._server is not None
        try:
            self._server.send_nowait(channel, message, [frontend.identity])
        except anyio.WouldBlock:
            self.dropped_to_frontends += 1

    def _tap(self, channel: Channel, message: Message) -> None:
        if channel == "iopub":
            try:
                self._outbox_in.send_nowait((channel, message))
            except anyio.WouldBlock:
                self.dropped_to_frontends += 1
                log.warning("frontends fall behind: dropped %s", message.msg_type)

    async def _run_outbox(self) -> None:
        """Publish what the kernel (and the sidecar) sends on iopub, in order, after the hooks."""
        assert self._server is not None
        async for channel, message in self._outbox:
            for hook in self._message_hooks:
                message = await _hooked(hook, channel, message)
            try:
                self._server.send_nowait("iopub", message)
            except anyio.WouldBlock:
                self.dropped_to_frontends += 1

    # -- stdin -------------------------------------------------------------------------------

    async def _ask_frontend(self, frontend: Frontend, input_request: Message) -> Message:
        """Send ``input_request`` to ``frontend``; its ``input_reply``, when it comes.

        Matched by the frontend's identity, not by parent: jupyter_client
        sends its ``input_reply`` without a parent header (a frontend answers
        one prompt at a time).
        """
        arrived = anyio.Event()
        slot: list[Message] = []
        self._stdin_waiters[frontend.identity] = (arrived, slot)
        try:
            self._server_send(frontend, "stdin", input_request)
            await arrived.wait()
        finally:
            self._stdin_waiters.pop(frontend.identity, None)
        return slot[0]

    def _stdin_answer(self, message: Message) -> None:
        identity = message.identities[0] if message.identities else b""
        waiter = self._stdin_waiters.get(identity)
        if waiter is None or message.msg_type != "input_reply":
            log.debug("an %s nobody waits for", message.msg_type)
            return
        arrived, slot = waiter
        slot.append(message)
        arrived.set()

    # -- the document ------------------------------------------------------------------------

    def _cell_for(self, message: Message) -> CodeCell | None:
        if message.msg_type != "execute_request":
            return None
        content = message.content
        if getattr(content, "silent", False):
            return None
        cell_id = message.metadata.get("cellId")
        if isinstance(cell_id, str):
            cell = self._cells.get(cell_id)
            if cell is not None:
                cell.source = content.code
                return cell
        cell = self.document.add_code_cell(
            content.code, id=cell_id if isinstance(cell_id, str) and _valid_id(cell_id) else None
        )
        assert isinstance(cell.id, str)
        self._cells[cell.id] = cell
        if isinstance(cell_id, str):
            self._cells[cell_id] = cell
        return cell

    def _cell_done(self, cell: CodeCell) -> None:
        self._dirty.set()
        cell_id = cell.id if isinstance(cell.id, str) else ""
        for listener in self._listeners:
            with suppress(anyio.WouldBlock):
                listener.send_nowait(cell_id)

    async def _write_notebook(self) -> None:
        """Write the document after executes complete: one writer, coalescing."""
        path = self._notebook_path
        assert path is not None
        while True:
            await self._dirty.wait()
            self._dirty = anyio.Event()
            await self._save(path)

    async def _save(self, path: Path) -> None:
        # The content is made here, on the loop that changes the document (a
        # thread would read it half-changed), and costs only the cells that
        # changed; the thread only writes it.
        async with self._saving:
            try:
                content = self.document.ipynb()
            except (NotebookError, TypeError) as e:
                log.error("cannot write %s: %s", path, e)
                return
            try:
                await anyio.to_thread.run_sync(write_file_atomically, content, path)
            except OSError as e:
                log.error("cannot write %s: %s", path, e)

    # -- the kernel's life, told to frontends --------------------------------------------------

    def _on_state(self, before: str, after: str) -> None:
        if after in ("restarting", "recovering", "lost"):
            self._publish(self._message("status", Status(execution_state="restarting")))
        elif after == "dead":
            self._publish(self._message("status", Status(execution_state="dead")))
        elif after == "ready" and before != "starting":
            self._publish(self._message("status", Status(execution_state="starting")))


@final
class _FrontendSide:
    """What the frontends' sockets tell a shared kernel (the transport's receiver)."""

    def __init__(self, shared: SharedKernel) -> None:
        self._shared = shared

    def on_message(self, channel: Channel, message: Message) -> None:
        self._shared._on_message(channel, message)

    def on_invalid(self, channel: Channel, error: Exception) -> None:
        pass  # counted and logged by the transport

    def on_subscribed(self, topic: bytes) -> None:
        self._shared._on_subscribed(topic)


async def _hooked(hook: MessageHook, channel: Channel, message: Message) -> Message:
    try:
        changed = await hook(channel, message)
    except Exception:
        log.exception("message hook %r raised; the message goes on unchanged", hook)
        return message
    return message if changed is None else changed


_CELL_ID: Final = re.compile(r"^[a-zA-Z0-9-_]{1,64}$")


def _valid_id(cell_id: str) -> bool:
    return _CELL_ID.match(cell_id) is not None


def _serving_info(path: Path | None, ip: str) -> tuple[ConnectionInfo, bool]:
    """What to bind: a connection file that exists says (a frontend's manager
    wrote it, as for a kernel); else fresh ports on ``ip`` and a new key.
    The second value says whether the file is ours to write and remove."""
    if path is not None and path.exists():
        return read_connection_file(path), False
    info = ConnectionInfo(
        transport="tcp",
        ip=ip,
        shell_port=0,
        iopub_port=0,
        stdin_port=0,
        control_port=0,
        hb_port=0,
        key=uuid.uuid4().hex,
        kernel_name="sidecar",
    )
    return info, True


@asynccontextmanager
async def serve(
    kernel: Kernel,
    *,
    connection_file: str | os.PathLike[str] | None = None,
    ip: str = "127.0.0.1",
    notebook: str | os.PathLike[str] | None = None,
    request_hooks: Sequence[RequestHook] = (),
    message_hooks: Sequence[MessageHook] = (),
    on_shutdown: ShutdownPolicy = "detach",
) -> AsyncIterator[SharedKernel]:
    """Serve ``kernel`` to any number of standard Jupyter frontends while the block runs.

    Binds a kernel's sockets on ``ip`` (TCP, ports picked as they bind) with
    a key of its own, and writes ``connection_file`` (mode 0600) once ready;
    attach with ``jupyter console --existing FILE``, jupyter_client's
    ``BlockingKernelClient``, nbclient... A ``connection_file`` that already
    exists is read and bound instead, as a kernel binds the file it is
    started with: that is how a kernelspec puts a frontend-started "kernel"
    in front of a shared one.

    Args:
        kernel: the kernel to share (from :func:`~sidecar.launch` or
            :func:`~sidecar.connect`); it stays the caller's to close.
        notebook: keep the document in this ``.ipynb`` (read first if it
            exists, so executes add to it).
        request_hooks: see :data:`RequestHook`, called in order.
        message_hooks: see :data:`MessageHook`, called in order.
        on_shutdown: what a frontend's ``shutdown_request`` does:
            ``"detach"`` (the default: that frontend leaves, the kernel and
            the others stay), ``"exit"`` (the serving ends, the kernel stays),
            or ``"forward"`` (the kernel shuts down, or restarts).

    Raises:
        OSError: a connection file given could not be written or read.
    """
    path = None if connection_file is None else Path(connection_file)
    notebook_path = None if notebook is None else Path(notebook)
    existing = (
        await anyio.to_thread.run_sync(read_notebook, notebook_path)
        if notebook_path is not None and notebook_path.exists()
        else None
    )
    document = NotebookDocument(kernel, existing)
    shared = SharedKernel(
        kernel,
        document,
        request_hooks=request_hooks,
        message_hooks=message_hooks,
        on_shutdown=on_shutdown,
        notebook_path=notebook_path,
    )
    info, ours = _serving_info(path, ip)
    async with AsyncExitStack() as stack:
        stack.callback(shared._outbox.close)
        stack.callback(shared._outbox_in.close)
        # The frontends play the Output widget's part now; the sidecar only
        # keeps the widget's state from what they send.
        kernel.widgets.sends_updates = False
        stack.callback(setattr, kernel.widgets, "sends_updates", True)
        shared._server = await stack.enter_async_context(
            open_zmq_server(info, _FrontendSide(shared))
        )
        stack.enter_context(kernel.tap(shared._tap))
        stack.enter_context(kernel.on_state_change(shared._on_state))
        tg = await stack.enter_async_context(open_task_group())
        shared._task_group = tg
        stack.callback(tg.cancel_scope.cancel)
        tg.start_soon(shared._run_outbox, name="sidecar serve iopub")
        if notebook_path is not None:
            tg.start_soon(shared._write_notebook, name="sidecar serve notebook")
            stack.push_async_callback(_final_save, shared, notebook_path)
        if path is not None and ours:
            await anyio.to_thread.run_sync(write_connection_file, shared.connection_info, path)
            shared.connection_file = path
            stack.callback(path.unlink, missing_ok=True)
        yield shared


async def _final_save(shared: SharedKernel, path: Path) -> None:
    with anyio.CancelScope(shield=True):
        await shared._save(path)
