"""The frontend half of ipywidgets: model state, echoes, Output capture.

Unit tests feed scripted comm messages (the ordering races of a real kernel,
made deterministic); the integration test runs nbclient's nested Output
widgets case against a real ipykernel.
"""

from __future__ import annotations

from typing import Any

import msgspec
import pytest

import sidecar
from sidecar.client._widgets import Widgets
from sidecar.wire import CommMsg, CommOpen, Message, Session, Stream

pytestmark = pytest.mark.anyio

kernel_side = Session("k")
client_side = Session("k")
OUTPUT_STATE = {"_model_module": "@jupyter-widgets/output", "_model_name": "OutputModel"}


class Sent:
    """Stands in for the comm: records the updates the widgets send to the kernel."""

    def __init__(self) -> None:
        self.updates: list[Message] = []

    async def __call__(self, comm_id: str, state: dict[str, Any]) -> Message:
        state = msgspec.json.decode(msgspec.json.encode(state))  # as sent: a snapshot
        message = client_side.message(
            "comm_msg", CommMsg(comm_id=comm_id, data={"method": "update", "state": state})
        )
        self.updates.append(message)
        return message


def _from_kernel(msg_type: str, content: Any, parent: Message | None = None) -> Message:
    return kernel_side.message(msg_type, content, parent=parent)


def _echo(update: Message) -> Message:
    state = update.content.data["state"]
    data = {"method": "echo_update", "state": state, "buffer_paths": []}
    return _from_kernel("comm_msg", CommMsg(comm_id="out", data=data), parent=update)


async def test_a_stale_echo_does_not_put_old_outputs_back() -> None:
    sent = Sent()
    widgets = Widgets(sent)
    widgets.apply(
        _from_kernel(
            "comm_open", CommOpen(comm_id="out", target_name="w", data={"state": OUTPUT_STATE})
        )
    )
    request = client_side.message("execute_request")
    widgets.apply(
        _from_kernel("comm_msg", CommMsg(comm_id="out", data={"state": {"msg_id": request.msg_id}}))
    )
    widget = widgets.capturing(request.msg_id)
    assert widget is not None
    for text in ("one\n", "two\n"):
        stream = _from_kernel("stream", Stream(name="stdout", text=text), parent=request)
        await widgets.capture(widget, stream)
    first, second = sent.updates
    # The kernel echoes both updates, after both outputs were captured.
    widgets.apply(_echo(first))
    assert widgets.state["out"]["outputs"][0]["text"] == "one\ntwo\n"
    widgets.apply(_echo(second))
    assert widgets.state["out"]["outputs"][0]["text"] == "one\ntwo\n"
    # Once our latest update is echoed, an echo of someone else's update applies.
    other = client_side.message(
        "comm_msg", CommMsg(comm_id="out", data={"method": "update", "state": {"outputs": []}})
    )
    widgets.apply(_echo(other))
    assert widgets.state["out"]["outputs"] == []


def test_echoes_of_keys_we_never_set_apply() -> None:
    widgets = Widgets(Sent())
    widgets.apply(
        _from_kernel(
            "comm_open",
            CommOpen(
                comm_id="s",
                target_name="w",
                data={"state": {"_model_name": "IntSliderModel", "value": 1}},
            ),
        )
    )
    data = {"method": "echo_update", "state": {"value": 5}}
    widgets.apply(_from_kernel("comm_msg", CommMsg(comm_id="s", data=data)))
    assert widgets.state["s"]["value"] == 5


def test_malformed_buffer_paths_are_a_malformed_message() -> None:
    widgets = Widgets(Sent())
    data = {"state": {"a": 1}, "buffer_paths": [5]}
    with pytest.raises(sidecar.MalformedMessage, match="buffer_paths"):
        widgets.apply(_from_kernel("comm_msg", CommMsg(comm_id="s", data=data)))


NESTED = """
import ipywidgets
output_outer = ipywidgets.Output()
output_inner = ipywidgets.Output()
with output_inner:
    print('in inner')
    with output_outer:
        print('in outer')
    print('also in inner')
"""


@pytest.mark.kernel
async def test_nested_output_widgets_keep_every_output(kernel: sidecar.Kernel) -> None:
    """nbclient's Output.ipynb case: it lost 'also in inner' in most runs to
    stale echoes; looped, since the race needs the kernel's timing."""
    pytest.importorskip("ipywidgets")
    for _ in range(20):
        kernel.widgets.state.clear()
        cell = sidecar.Outputs()
        await kernel.execute(NESTED, handlers=[cell])
        texts = sorted(
            "".join(o.get("text", "") for o in state["outputs"])
            for state in kernel.widgets.state.values()
            if state.get("_model_name") == "OutputModel"
        )
        assert texts == ["in inner\nalso in inner\n", "in outer\n"]
        assert cell.outputs == []
