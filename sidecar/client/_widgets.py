"""The frontend's half of ipywidgets: model state, and Output widgets that capture.

A notebook run saves the state of every widget model in ``metadata.widgets``
(as nbclient does), so :class:`Widgets` keeps each model's state as a frontend
does: a ``comm_open`` or ``comm_msg`` whose ``data.state`` is a dict updates
the model, and binary buffers named by ``data.buffer_paths`` are kept base64
encoded.

It also plays the frontend's part for ``Output`` widgets.  While one captures
(``with out:`` in the kernel sets its ``msg_id``), the outputs of that request
go into the widget's ``outputs`` state instead of the cell, and the new state
is sent back to the kernel as an ``update``.  ipywidgets answers each update
with an ``echo_update`` carrying the state it received; those echoes arrive
after newer outputs were captured, so applying them would put stale outputs
back.  As ``@jupyter-widgets/base`` does, a key we updated ignores every echo
until the echo of our latest update of it has come.
"""

from __future__ import annotations

import base64
import logging
from collections.abc import Awaitable, Callable
from typing import Any, Final, final

from .._exceptions import MalformedMessage
from ..wire import CommClose, CommMsg, CommOpen, Message
from ._outputs import Outputs

__all__ = ["OutputWidget", "Widgets"]

log = logging.getLogger("sidecar.widgets")

_OUTPUT_MODEL: Final = ("@jupyter-widgets/output", "OutputModel")

SendUpdate = Callable[[str, dict[str, Any]], Awaitable["Message | None"]]
"""``await send_update(comm_id, state)``: send an ``update`` to the kernel; the message sent."""


@final
class OutputWidget:
    """An ipywidgets ``Output`` widget: what it captured so far."""

    def __init__(self, comm_id: str) -> None:
        self.comm_id = comm_id
        self.collector = Outputs()
        self.msg_id = ""

    @property
    def outputs(self) -> list[dict[str, Any]]:
        return self.collector.outputs


def _state_of(content: CommOpen | CommMsg | CommClose) -> dict[str, Any] | None:
    data = content.data
    if not isinstance(data, dict):
        return None
    state = data.get("state")
    return state if isinstance(state, dict) else None


def _buffer_paths(data: dict[str, Any]) -> list[list[str | int]]:
    paths = data.get("buffer_paths") or []
    if not isinstance(paths, list) or not all(
        isinstance(path, list) and all(isinstance(key, str | int) for key in path) for path in paths
    ):
        raise MalformedMessage(f"buffer_paths is not a list of lists of keys: {paths!r}")
    return paths


@final
class Widgets:
    """The ipywidgets models of one kernel, as a frontend sees them."""

    def __init__(self, send_update: SendUpdate) -> None:
        self._send_update = send_update
        self.sends_updates = True
        """Send each Output widget's captured outputs back to the kernel, as
        a frontend does.  Off when real frontends do it (a shared kernel)."""
        self.state: dict[str, dict[str, Any]] = {}
        """``comm_id`` -> the model's state."""
        self.buffers: dict[str, dict[tuple[str | int, ...], dict[str, Any]]] = {}
        """``comm_id`` -> buffer path -> ``{"data", "encoding", "path"}``."""
        self._output_widgets: dict[str, OutputWidget] = {}
        self._capturing: dict[str, list[OutputWidget]] = {}
        # comm_id -> key -> msg_id of our latest update of that key
        self._awaiting_echo: dict[str, dict[str, str]] = {}

    def apply(self, message: Message) -> None:
        """Update the models from a comm message of the kernel.

        Raises:
            MalformedMessage: the content or the ``buffer_paths`` are malformed.
        """
        content = message.content
        if not isinstance(content, CommOpen | CommMsg | CommClose):
            return
        comm_id = content.comm_id
        if isinstance(content, CommClose):
            # The state stays: a notebook saves the last state of closed widgets too.
            self._awaiting_echo.pop(comm_id, None)
            widget = self._output_widgets.pop(comm_id, None)
            if widget is not None:
                self._stop_capture(widget)
            return
        state = _state_of(content)
        if state is None:
            return
        assert isinstance(content.data, dict)
        paths = _buffer_paths(content.data)
        if content.data.get("method") == "echo_update":
            state = self._unawaited(comm_id, state, message.parent_id)
        self.state.setdefault(comm_id, {}).update(state)
        if paths:
            known = self.buffers.setdefault(comm_id, {})
            for path, buffer in zip(paths, message.buffers, strict=False):
                known[tuple(path)] = {
                    "data": base64.b64encode(bytes(buffer)).decode("ascii"),
                    "encoding": "base64",
                    "path": path,
                }
        self._track_output_widget(content, state)

    def _unawaited(
        self, comm_id: str, state: dict[str, Any], parent_id: str | None
    ) -> dict[str, Any]:
        """The keys of an echo that we are not waiting to hear back ourselves."""
        awaiting = self._awaiting_echo.get(comm_id)
        if not awaiting:
            return state
        kept = {}
        for key, value in state.items():
            latest = awaiting.get(key)
            if latest is None:
                kept[key] = value
            elif latest == parent_id:
                del awaiting[key]
        return kept

    def _track_output_widget(self, content: CommOpen | CommMsg, state: dict[str, Any]) -> None:
        comm_id = content.comm_id
        if isinstance(content, CommOpen):
            model = (state.get("_model_module"), state.get("_model_name"))
            if model == _OUTPUT_MODEL:
                self._output_widgets[comm_id] = OutputWidget(comm_id)
        widget = self._output_widgets.get(comm_id)
        if widget is None or "msg_id" not in state:
            return
        self._stop_capture(widget)
        msg_id = state["msg_id"]
        widget.msg_id = msg_id if isinstance(msg_id, str) else ""
        if widget.msg_id:
            self._capturing.setdefault(widget.msg_id, []).append(widget)

    def _stop_capture(self, widget: OutputWidget) -> None:
        stack = self._capturing.get(widget.msg_id)
        if stack and widget in stack:
            stack.remove(widget)
            if not stack:
                del self._capturing[widget.msg_id]

    def capturing(self, msg_id: str | None) -> OutputWidget | None:
        """The Output widget capturing the outputs of request ``msg_id``, if any."""
        if msg_id is None or not self._capturing:
            return None
        stack = self._capturing.get(msg_id)
        return stack[-1] if stack else None

    async def capture(self, widget: OutputWidget, message: Message) -> None:
        """Put an output (or clear_output) meant for the cell into ``widget``.

        Raises:
            MalformedMessage: the output's content is malformed.
        """
        method = getattr(widget.collector, f"on_{message.msg_type}", None)
        if method is None:
            return
        method(message)
        outputs = widget.outputs
        self.state.setdefault(widget.comm_id, {})["outputs"] = outputs
        if not self.sends_updates:
            return
        # The kernel-side model learns its outputs, as from a frontend.
        sent = await self._send_update(widget.comm_id, {"outputs": outputs})
        if sent is not None:
            self._awaiting_echo.setdefault(widget.comm_id, {})["outputs"] = sent.msg_id

    def metadata(self) -> dict[str, Any] | None:
        """``metadata.widgets`` of a notebook, as nbclient saves it; None if no widgets."""
        models = {
            comm_id: {
                "model_name": state.get("_model_name"),
                "model_module": state.get("_model_module"),
                "model_module_version": state.get("_model_module_version"),
                "state": state,
            }
            for comm_id, state in self.state.items()
            if "_model_name" in state
        }
        if not models:
            return None
        for comm_id, model in models.items():
            buffers = self.buffers.get(comm_id)
            if buffers:
                model["buffers"] = list(buffers.values())
        return {
            "application/vnd.jupyter.widget-state+json": {
                "state": models,
                "version_major": 2,
                "version_minor": 0,
            }
        }
