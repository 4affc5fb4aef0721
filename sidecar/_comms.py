"""Comms: long-lived two-way channels between the kernel and the client.

A comm is opened by either side (``comm_open`` with a ``target_name``), then
both send ``comm_msg`` until one sends ``comm_close``.  Every kernel has one
:class:`Comms` registry (``kernel.comms``) that sees every comm message,
whether it was caused by one of our requests or arrived on its own, routes it
by ``comm_id`` to its :class:`Comm`, and calls the target callbacks
registered for comms the kernel opens.

It also keeps the state of ipywidgets models the way nbclient does (each
``comm_msg``/``comm_open`` carrying ``data.state`` updates the model's
state), so a notebook run can save ``metadata.widgets``, and it plays the
frontend's part for ``Output`` widgets: while one captures (``with out:`` in
the kernel sets its ``msg_id``), the outputs of that request go into the
widget's ``outputs`` state, synced back to the kernel, instead of the cell.
"""

from __future__ import annotations

import base64
import inspect
import logging
import uuid
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Final, final

from ._outputs import Outputs
from .wire import CommClose, CommMsg, CommOpen, Message

if TYPE_CHECKING:
    from ._client import Kernel

__all__ = ["Comm", "CommTarget", "Comms", "OutputWidget"]

log = logging.getLogger("sidecar.comms")

CommTarget = Callable[["Comm", Message], "Awaitable[None] | None"]
"""Called as ``target(comm, comm_open_message)`` when the kernel opens a comm."""

MessageCallback = Callable[[Message], "Awaitable[None] | None"]


async def _call(fn: Callable[..., Any], *args: Any) -> None:
    try:
        result = fn(*args)
        if inspect.isawaitable(result):
            await result
    except Exception:
        log.exception("comm callback %r raised", fn)


@final
class Comm:
    """One comm.  Made by :meth:`Comms.open` or when the kernel opens one."""

    def __init__(self, kernel: Kernel, comm_id: str, target_name: str) -> None:
        self.kernel = kernel
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
        data: Mapping[str, Any],
        *,
        metadata: Mapping[str, Any] | None = None,
        buffers: Sequence[bytes] = (),
    ) -> Message:
        """Send ``comm_msg`` to the kernel side of this comm."""
        if self.closed:
            raise RuntimeError(f"comm {self.comm_id} is closed")
        content = CommMsg(comm_id=self.comm_id, data=dict(data))
        return await self.kernel.send_comm("comm_msg", content, metadata=metadata, buffers=buffers)

    async def close(self, data: Mapping[str, Any] | None = None) -> None:
        """Send ``comm_close`` and forget this comm."""
        if self.closed:
            return
        self.closed = True
        self.kernel.comms._comms.pop(self.comm_id, None)
        content = CommClose(comm_id=self.comm_id, data=dict(data or {}))
        await self.kernel.send_comm("comm_close", content)

    async def _receive(self, message: Message) -> None:
        self.messages.append(message)
        for listener in self._listeners:
            await _call(listener, message)

    def __repr__(self) -> str:
        state = " closed" if self.closed else ""
        return f"<Comm {self.target_name!r} {self.comm_id}{state}>"


_OUTPUT_MODEL: Final = ("@jupyter-widgets/output", "OutputModel")


@final
class OutputWidget:
    """The frontend side of an ipywidgets ``Output`` widget: collects what it captures."""

    def __init__(self, comms: Comms, comm_id: str) -> None:
        self._comms = comms
        self.comm_id = comm_id
        self.collector = Outputs()
        self.msg_id = ""

    @property
    def outputs(self) -> list[dict[str, Any]]:
        return self.collector.outputs

    async def capture(self, message: Message) -> None:
        """Take an output (or clear_output) meant for the cell."""
        method = getattr(self.collector, f"on_{message.msg_type}", None)
        if method is None:
            return
        method(message)
        self._comms.widget_state.setdefault(self.comm_id, {})["outputs"] = self.outputs
        comm = self._comms._comms.get(self.comm_id)
        if comm is not None and not comm.closed:
            # The kernel-side model learns its outputs, as from a frontend.
            await comm.send(
                {"method": "update", "state": {"outputs": self.outputs}, "buffer_paths": []}
            )


@final
class Comms:
    """The comms of one kernel, its comm targets, and ipywidgets state."""

    def __init__(self, kernel: Kernel) -> None:
        self._kernel = kernel
        self._comms: dict[str, Comm] = {}
        self._targets: dict[str, CommTarget] = {}
        self.widget_state: dict[str, dict[str, Any]] = {}
        self.widget_buffers: dict[str, dict[tuple[str, ...], dict[str, Any]]] = {}
        self._output_widgets: dict[str, OutputWidget] = {}
        self._capturing: dict[str, list[OutputWidget]] = {}

    def capturing(self, msg_id: str | None) -> OutputWidget | None:
        """The Output widget capturing the outputs of request ``msg_id``, if any."""
        if msg_id is None:
            return None
        stack = self._capturing.get(msg_id)
        return stack[-1] if stack else None

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
        data: Mapping[str, Any] | None = None,
        *,
        metadata: Mapping[str, Any] | None = None,
        buffers: Sequence[bytes] = (),
    ) -> Comm:
        """Open a comm to ``target_name`` in the kernel."""
        comm = Comm(self._kernel, uuid.uuid4().hex, target_name)
        self._comms[comm.comm_id] = comm
        content = CommOpen(comm_id=comm.comm_id, target_name=target_name, data=dict(data or {}))
        await self._kernel.send_comm("comm_open", content, metadata=metadata, buffers=buffers)
        return comm

    async def dispatch(self, message: Message) -> None:
        """Route a comm message from the kernel (the Kernel calls this for all of them)."""
        content = message.content
        if not isinstance(content, CommOpen | CommMsg | CommClose):
            return
        self._update_widget_state(message, content)
        self._track_output_widget(content)
        if isinstance(content, CommOpen):
            opened = Comm(self._kernel, content.comm_id, content.target_name)
            self._comms[opened.comm_id] = opened
            target = self._targets.get(content.target_name)
            if target is not None:
                await _call(target, opened, message)
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

    def _track_output_widget(self, content: CommOpen | CommMsg | CommClose) -> None:
        comm_id = content.comm_id
        state = content.data.get("state")
        model = (
            (state.get("_model_module"), state.get("_model_name"))
            if isinstance(state, dict)
            else None
        )
        if isinstance(content, CommOpen) and model == _OUTPUT_MODEL:
            self._output_widgets[comm_id] = OutputWidget(self, comm_id)
        widget = self._output_widgets.get(comm_id)
        if widget is None:
            return
        if isinstance(content, CommClose):
            del self._output_widgets[comm_id]
            self._stop_capture(widget)
            return
        if isinstance(state, dict) and "msg_id" in state:
            self._stop_capture(widget)
            widget.msg_id = state["msg_id"] or ""
            if widget.msg_id:
                self._capturing.setdefault(widget.msg_id, []).append(widget)

    def _stop_capture(self, widget: OutputWidget) -> None:
        stack = self._capturing.get(widget.msg_id)
        if stack and widget in stack:
            stack.remove(widget)
            if not stack:
                del self._capturing[widget.msg_id]

    def _update_widget_state(
        self, message: Message, content: CommOpen | CommMsg | CommClose
    ) -> None:
        state = content.data.get("state")
        if not isinstance(state, dict):
            return
        self.widget_state.setdefault(content.comm_id, {}).update(state)
        paths = content.data.get("buffer_paths")
        if paths:
            known = self.widget_buffers.setdefault(content.comm_id, {})
            for path, buffer in zip(paths, message.buffers, strict=False):
                known[tuple(path)] = {
                    "data": base64.b64encode(bytes(buffer)).decode("ascii"),
                    "encoding": "base64",
                    "path": path,
                }

    def widgets_metadata(self) -> dict[str, Any] | None:
        """``metadata.widgets`` of a notebook, as nbclient saves it; None if no widgets."""
        models = {
            comm_id: {
                "model_name": state.get("_model_name"),
                "model_module": state.get("_model_module"),
                "model_module_version": state.get("_model_module_version"),
                "state": state,
            }
            for comm_id, state in self.widget_state.items()
            if "_model_name" in state
        }
        if not models:
            return None
        for comm_id, model in models.items():
            buffers = self.widget_buffers.get(comm_id)
            if buffers:
                model["buffers"] = list(buffers.values())
        return {
            "application/vnd.jupyter.widget-state+json": {
                "state": models,
                "version_major": 2,
                "version_minor": 0,
            }
        }
