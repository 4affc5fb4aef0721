"""The websocket framings against jupyter_server's own serializer, the oracle.

Both directions of both framings: what sidecar sends must read in
jupyter_server as the message it was, and what jupyter_server sends must
read in sidecar as the message it was.  Bad bytes raise only
``MalformedMessage``.
"""

from __future__ import annotations

import contextlib
import json
from typing import Any

import pytest
from hypothesis import given, settings, strategies as st
from jupyter_client.jsonutil import json_default
from jupyter_client.session import Session as JupyterSession

pytest.importorskip("jupyter_server")
from jupyter_server.services.kernels.connection.base import (
    deserialize_binary_message,
    deserialize_msg_from_ws_v1,
    serialize_binary_message,
    serialize_msg_to_ws_v1,
)
from wire_strategies import buffer_lists, json_objects

from sidecar.wire import (
    DELIM,
    MalformedMessage,
    Message,
    Session,
    deserialize_ws_json,
    deserialize_ws_v1,
    serialize_ws_json,
    serialize_ws_v1,
)

CODEC = settings(max_examples=50)
# One for the module: a jupyter_client Session takes milliseconds to make.
SERVER = JupyterSession(key=b"")
channels = st.sampled_from(["shell", "control", "stdin", "iopub"]) | st.text(max_size=12)
parts_lists = st.lists(st.binary(max_size=64), min_size=4, max_size=9)


def _parts(session: Session, message: Message) -> list[bytes]:
    """A message's websocket parts: its frames after the (empty) signature."""
    return [bytes(f) for f in session.serialize(message)[2:]]


def _read(session: Session, parts: list[Any]) -> Message:
    return session.deserialize([DELIM, b"", *parts])


# -- v1 ---------------------------------------------------------------------------


@CODEC
@given(channels, parts_lists)
def test_v1_bytes_equal_the_servers(channel: str, parts: list[bytes]) -> None:
    ours = serialize_ws_v1(channel, parts)
    assert ours == serialize_msg_to_ws_v1(parts, channel)
    assert deserialize_msg_from_ws_v1(ours) == (channel, parts)


@CODEC
@given(channels, parts_lists)
def test_v1_reads_what_the_server_writes(channel: str, parts: list[bytes]) -> None:
    got_channel, got = deserialize_ws_v1(serialize_msg_to_ws_v1(parts, channel))
    assert got_channel == channel
    assert [bytes(p) for p in got] == parts


@CODEC
@given(json_objects, buffer_lists)
def test_v1_carries_a_whole_message(content: dict[str, Any], buffers: list[bytes]) -> None:
    client, server = Session(), SERVER
    message = client.message("custom_msg", content, metadata={"m": 1}, buffers=buffers)
    data = serialize_ws_v1("shell", _parts(client, message))
    # What the server does with it: split, then sign and send the parts raw.
    channel, msg_list = deserialize_msg_from_ws_v1(data)
    seen = server.deserialize([b"", *msg_list])
    assert channel == "shell"
    assert seen["header"]["msg_id"] == message.msg_id
    assert seen["content"] == content
    assert seen["metadata"] == {"m": 1}
    assert [bytes(b) for b in seen["buffers"]] == buffers
    # and back: the server relays a kernel's frames after the signature.
    kernel_msg = server.msg("custom_msg", content, parent=seen["header"])
    frames = server.serialize(kernel_msg)  # DELIM, signature, 4 JSON frames
    relayed = serialize_msg_to_ws_v1([*frames[2:6], *buffers], "iopub")
    got_channel, parts = deserialize_ws_v1(relayed)
    received = _read(client, parts)
    assert got_channel == "iopub"
    assert received.parent_id == message.msg_id
    assert received.content == content
    assert [bytes(b) for b in received.buffers] == buffers


def test_v1_refuses_what_does_not_add_up() -> None:
    good = serialize_ws_v1("shell", [b"{}", b"{}", b"{}", b"{}"])
    bad = [
        b"",
        b"\x01",
        good[:-1],
        good + b"x",
        (2).to_bytes(8, "little") + good[8:],
        (10**6).to_bytes(8, "little") + good[8:],
        good[:8] + (0).to_bytes(8, "little") + good[16:],
        serialize_msg_to_ws_v1([b"{}"] * 4, "shell").replace(b"shell", b"\xff\xfeell"),
    ]
    for data in bad:
        with pytest.raises(MalformedMessage):
            deserialize_ws_v1(data)


@settings(max_examples=300)
@given(st.binary(max_size=200))
def test_v1_random_bytes_raise_only_malformed(data: bytes) -> None:
    with contextlib.suppress(MalformedMessage):
        deserialize_ws_v1(data)


# -- legacy JSON ---------------------------------------------------------------------


@CODEC
@given(json_objects, buffer_lists, st.sampled_from(["shell", "control", "stdin"]))
def test_json_reads_in_the_server(
    content: dict[str, Any], buffers: list[bytes], channel: str
) -> None:
    client = Session()
    message = client.message("custom_msg", content, metadata={"m": [1]}, buffers=buffers)
    data = serialize_ws_json(channel, _parts(client, message))
    # What the server does with it (ZMQChannelsWebsocketConnection.handle_incoming_message).
    if isinstance(data, bytes):
        msg = deserialize_binary_message(data)
    else:
        msg = json.loads(data)
        assert not buffers
    assert msg.pop("channel") == channel
    assert msg["header"]["msg_id"] == message.msg_id
    assert msg["content"] == content
    assert msg["metadata"] == {"m": [1]}
    assert [bytes(b) for b in msg["buffers"]] == buffers
    assert msg["parent_header"] == {}


@CODEC
@given(json_objects, buffer_lists)
def test_json_reads_what_the_server_writes(content: dict[str, Any], buffers: list[bytes]) -> None:
    client, server = Session(), SERVER
    request = client.message("custom_request", {})
    # What the server sends (ZMQChannelsWebsocketConnection._reserialize_reply).
    msg = server.msg("custom_msg", content, parent={"msg_id": request.msg_id, "msg_type": "x"})
    msg["buffers"] = buffers
    msg["channel"] = "iopub"
    data = serialize_binary_message(msg) if buffers else json.dumps(msg, default=json_default)
    channel, parts = deserialize_ws_json(data)
    received = _read(client, parts)
    assert channel == "iopub"
    assert received.msg_id == msg["header"]["msg_id"]
    assert received.parent_id == request.msg_id
    assert received.content == content
    assert [bytes(b) for b in received.buffers] == buffers


def test_json_without_channel_or_parent() -> None:
    channel, parts = deserialize_ws_json('{"header": {"msg_id": "1", "msg_type": "status"}}')
    assert channel is None
    assert parts[1:] == [b"{}", b"{}", b"{}"]


@settings(max_examples=300)
@given(st.binary(max_size=200) | st.text(max_size=100))
def test_json_random_input_raises_only_malformed(data: bytes | str) -> None:
    with contextlib.suppress(MalformedMessage):
        deserialize_ws_json(data)
