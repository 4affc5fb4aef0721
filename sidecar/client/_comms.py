"""Comms: long-lived two-way channels between the kernel and the client.

A comm is opened by either side (``comm_open`` with a ``target_name``), then
both send ``comm_msg`` until one sends ``comm_close``.  Every kernel has one
:class:`Comms` registry (``kernel.comms``) that sees every comm message,
whether it was caused by one of our requests or arrived on its own, routes it
by ``comm_id`` to its :class:`Comm`, and calls the target callbacks
registered for comms the kernel opens.  ``data`` is any JSON value: the spec
says an object, but kernels send what their code gave them.

The ipywidgets side of comms (widget state, Output capture) is ``_widgets``.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any, Literal, Protocol, final

from .._exceptions import CommRefused
from ..wire import CommClose, CommMsg, CommOpen, Message
from ._handlers import Handler, invoke

__all__ = ["Comm", "CommTarget", "Comms"]

log = logging.getLogger("sidecar.comms")

CommTarget = Callable[["Comm", Message], "Awaitable[None] | None"]
"""Called as ``target(comm, comm_open_message)`` when the kernel opens a comm."""

MessageCallback = Callable[[Message], "Awaitable[None] | None"]


class _Kernel(Protocol):
    """What comms need of a kernel: sending comm messages and awaiting a request."""

    async def send_comm(
        self,
        msg_type: Literal["comm_open", "comm_msg", "comm_close"],
        content: Any,
        *,
        metadata: Mapping[str, Any] | None = None,
        buffers: Sequence[bytes] = (),
    ) -> Message: ...

    async def request(
        self,
        channel: Literal["shell", "control"],
        msg_type: str,
        content: Any = None,
        *,
        handlers: Sequence[Handler] = (),
        timeout: float | None = None,
        metadata: Mapping[str, Any] | None = None,
        buffers: Sequence[bytes] = (),
    ) -> Any: ...


@final
class Comm:
    """One comm.  Made by :meth:`Comms.open` or when the kernel opens one."""

    def __init__(
        self, kernel: _Kernel, comm_id: str, target_name: str, registry: dict[str, Comm]
    ) -> None:
        self.kernel = kernel
        self._registry = registry
        self.comm_id = comm_id
        self.target_name = target_name
        self.closed = False
        self.messages: list[Message] = []
        self._listeners: list[MessageCallback] = []

    def on_msg(self, callback: MessageCallback) -> None:
        """Call ``callback(message)`` (sync or async) for each ``comm_msg``/``comm_close``."""
        self._listeners.append(callback)

    async def send(
        self,
        data: Any,
        *,
        metadata: Mapping[str, Any] | None = None,
        buffers: Sequence[bytes] = (),
    ) -> Message:
        """Send ``comm_msg`` with ``data`` (any JSON value) to the kernel side of this comm.

        Raises:
            RuntimeError: the comm is closed.
        """
        if self.closed:
            raise RuntimeError(f"comm {self.comm_id} is closed")
        content = CommMsg(comm_id=self.comm_id, data=data)
        return await self.kernel.send_comm("comm_msg", content, metadata=metadata, buffers=buffers)

    async def close(self, data: Any = None) -> None:
        """Send ``comm_close`` and forget this comm."""
        if self.closed:
            return
        self.closed = True
        self._registry.pop(self.comm_id, None)
        content = CommClose(comm_id=self.comm_id, data={} if data is None else data)
        await self.kernel.send_comm("comm_close", content)

    async def _receive(self, message: Message) -> None:
        self.messages.append(message)
        for listener in self._listeners:
            await invoke(listener, message)

    def __repr__(self) -> str:
        state = " closed" if self.closed else ""
        return f"<Comm {self.target_name!r} {self.comm_id}{state}>"


@final
class Comms:
    """The comms of one kernel, and its comm targets."""

    def __init__(self, kernel: _Kernel) -> None:
        self._kernel = kernel
        self._comms: dict[str, Comm] = {}
        self._targets: dict[str, CommTarget] = {}

    def __getitem__(self, comm_id: str) -> Comm:
        return self._comms[comm_id]

    def __contains__(self, comm_id: object) -> bool:
        return comm_id in self._comms

    def __len__(self) -> int:
        return len(self._comms)

    def register_target(self, target_name: str, target: CommTarget) -> None:
        """Call ``target(comm, message)`` when the kernel opens a comm to ``target_name``."""
        self._targets[target_name] = target

    async def open(
        self,
        target_name: str,
        data: Any = None,
        *,
        metadata: Mapping[str, Any] | None = None,
        buffers: Sequence[bytes] = (),
        on_msg: MessageCallback | None = None,
        handlers: Sequence[Handler] = (),
        timeout: float | None = None,
    ) -> Comm:
        """Open a comm to ``target_name`` in the kernel, once the kernel has handled it.

        Waits until the kernel went idle after the ``comm_open``, so that a
        target that does not exist is known: ipykernel answers with
        ``comm_close``.  Messages the target sends back meanwhile reach
        ``on_msg`` and ``handlers``.

        Raises:
            CommRefused: the kernel closed the comm while opening it (no
                such target, or the target raised).
            KernelDied, KernelRestarted: the kernel went away meanwhile.
            TimeoutError: ``timeout`` expired.
        """
        comm = Comm(self._kernel, uuid.uuid4().hex, target_name, self._comms)
        if on_msg is not None:
            comm.on_msg(on_msg)
        self._comms[comm.comm_id] = comm
        content = CommOpen(
            comm_id=comm.comm_id, target_name=target_name, data={} if data is None else data
        )
        try:
            await self._kernel.request(
                "shell",
                "comm_open",
                content,
                metadata=metadata,
                buffers=buffers,
                handlers=handlers,
                timeout=timeout,
            )
        except BaseException:
            self._comms.pop(comm.comm_id, None)
            raise
        if comm.closed:
            raise CommRefused(target_name)
        return comm

    async def dispatch(self, message: Message) -> None:
        """Route a comm message from the kernel (the Kernel calls this for all of them).

        Raises:
            MalformedMessage: its content is malformed.
        """
        content = message.content
        if not isinstance(content, CommOpen | CommMsg | CommClose):
            return
        if isinstance(content, CommOpen):
            opened = Comm(self._kernel, content.comm_id, content.target_name, self._comms)
            self._comms[opened.comm_id] = opened
            target = self._targets.get(content.target_name)
            if target is not None:
                await invoke(target, opened, message)
            else:
                log.debug("no comm target %r registered", content.target_name)
            return
        comm = self._comms.get(content.comm_id)
        if comm is None:
            log.debug("%s for unknown comm %s", message.msg_type, content.comm_id)
            return
        if isinstance(content, CommClose):
            comm.closed = True
            del self._comms[comm.comm_id]
        await comm._receive(message)
