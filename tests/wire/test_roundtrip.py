"""Session.serialize -> Session.deserialize gives back the same message."""

from __future__ import annotations

import hashlib
import hmac
from datetime import datetime, timedelta, timezone
from typing import Any

import msgspec
import pytest
from hypothesis import given, settings, strategies as st
from wire_strategies import (
    SCHEMES,
    headers,
    json_objects,
    keys,
    messages,
    schemes,
    typed_contents,
    untyped_contents,
)

from sidecar.wire import (
    DELIM,
    AbortedReply,
    ErrorReply,
    ExecuteReply,
    ExecuteRequest,
    Header,
    Message,
    Session,
    Signer,
    Stream,
)
from sidecar.wire._signing import _usable


def _expected_signature(key: bytes | str, scheme: str, frames: list[Any]) -> bytes:
    """An independent HMAC over the 4 JSON frames after the delimiter."""
    if isinstance(key, str):
        key = key.encode()
    if not key:
        return b""
    at = frames.index(DELIM)
    h = hmac.new(key, b"".join(bytes(f) for f in frames[at + 2 : at + 6]), scheme[5:])
    return h.hexdigest().encode()


@settings(max_examples=400)
@given(message=messages(), key=keys, scheme=schemes)
def test_roundtrip_any_message(message: Message, key: bytes | str, scheme: str) -> None:
    sender = Session(key, scheme)
    receiver = Session(key, scheme)
    frames = sender.serialize(message, message.identities)

    n_ids = len(message.identities)
    assert frames[:n_ids] == message.identities
    assert frames[n_ids] == DELIM
    assert len(frames) == n_ids + 6 + len(message.buffers)
    assert frames[n_ids + 1] == _expected_signature(key, scheme, frames)

    received = receiver.deserialize(frames)
    assert received == message
    assert received.header == message.header
    assert received.parent_header == message.parent_header
    assert received.metadata == message.metadata
    assert received.content == message.content
    assert type(received.content) is type(message.content)
    assert received.identities == [bytes(i) for i in message.identities]
    assert [bytes(b) for b in received.buffers] == [bytes(b) for b in message.buffers]


@settings(max_examples=150)
@given(message=messages(), key=keys, scheme=schemes)
def test_roundtrip_from_memoryview_frames(message: Message, key: bytes | str, scheme: str) -> None:
    """Frames as zero-copy views (what pyzmq gives with copy=False) decode the same."""
    frames = Session(key, scheme).serialize(message, message.identities)
    views = [memoryview(bytes(f)) for f in frames]
    received = Session(key, scheme).deserialize(views)
    assert received == message
    assert all(type(i) is bytes for i in received.identities)


@settings(max_examples=150)
@given(
    message=messages(),
    identities=st.lists(st.binary(min_size=1, max_size=8).filter(lambda b: b != DELIM), max_size=3),
    key=keys,
)
def test_explicit_identities_replace_the_message_identities(
    message: Message, identities: list[bytes], key: bytes | str
) -> None:
    frames = Session(key).serialize(message, identities)
    assert frames[: len(identities)] == identities
    received = Session(key).deserialize(frames)
    assert received.identities == identities
    assert received.header == message.header
    assert received.content == message.content


@settings(max_examples=150)
@given(contents=typed_contents(), key=keys, scheme=schemes)
def test_typed_content_roundtrip(contents: tuple[str, Any], key: bytes | str, scheme: str) -> None:
    msg_type, content = contents
    sender = Session(key, scheme)
    frames = sender.serialize(sender.message(msg_type, content))
    received = Session(key, scheme).deserialize(frames)
    assert type(received.content) is type(content)
    assert received.content == content
    # Replies carry their status on the wire even though it is the union tag.
    raw = msgspec.json.decode(received.raw_content())
    if isinstance(content, (ErrorReply, AbortedReply, ExecuteReply)):
        assert raw["status"] == content.status


@settings(max_examples=150)
@given(contents=untyped_contents(), metadata=json_objects, key=keys)
def test_unknown_type_content_roundtrips_as_dict(
    contents: tuple[str, Any], metadata: dict[str, Any], key: bytes | str
) -> None:
    msg_type, content = contents
    sender = Session(key)
    frames = sender.serialize(sender.message(msg_type, content, metadata=metadata))
    received = Session(key).deserialize(frames)
    assert type(received.content) is dict
    assert received.content == content
    assert received.metadata == metadata


@pytest.mark.parametrize("scheme", SCHEMES)
@pytest.mark.parametrize("key", [b"secret", "unicode key \N{SNOWMAN}", b"\x00\xff" * 40])
def test_every_scheme_signs_and_verifies(scheme: str, key: bytes | str) -> None:
    sender = Session(key, scheme)
    msg = sender.message("execute_request", ExecuteRequest(code="1 + 1"), buffers=[b"buf"])
    frames = sender.serialize(msg)
    signature = bytes(frames[1])
    assert signature == _expected_signature(key, scheme, frames)
    digest_size = hashlib.new(scheme[5:]).digest_size
    assert len(signature) == 2 * digest_size
    assert signature == signature.lower()
    assert Session(key, scheme).deserialize(frames) == msg


@settings(max_examples=100)
@given(message=messages())
def test_empty_key_gives_an_empty_signature_frame(message: Message) -> None:
    session = Session(b"")
    assert not session.signer.enabled
    frames = session.serialize(message, message.identities)
    at = frames.index(DELIM)
    assert frames[at + 1] == b""
    assert Session("").deserialize(frames) == message


def test_buffers_pass_through_without_copy() -> None:
    view = memoryview(bytearray(b"\x00" * 1024))
    raw = b"raw bytes buffer"
    session = Session(b"key")
    msg = session.message("comm_msg", {"comm_id": "c", "data": {}}, buffers=[view, raw])
    frames = session.serialize(msg)
    assert frames[-2] is view
    assert frames[-1] is raw

    # And on the way in: the received message holds the very frames it was given.
    received = Session(b"key").deserialize(frames)
    assert received.buffers[0] is view
    assert received.buffers[1] is raw


def test_a_received_message_is_sent_on_without_its_identities() -> None:
    """What a ROUTER received names where it came from; sent on (a frontend's
    request to the kernel), it must not: identities are given, never kept."""
    session = Session(b"key")
    frames = session.serialize(session.message("kernel_info_request", {}), [b"frontend"])
    received = Session(b"key").deserialize(frames)
    assert received.identities == [b"frontend"]
    assert Session(b"key").serialize(received)[0] == DELIM


def test_received_content_is_forwarded_byte_for_byte() -> None:
    """A received message re-serializes its metadata and content frames as they came."""
    session = Session(b"key")
    msg = session.message("stream", Stream(name="stdout", text="hi"), metadata={"m": [1, 2]})
    frames = session.serialize(msg)
    received = Session(b"key").deserialize(frames)
    again = Session(b"key").serialize(received)
    assert again[4] is frames[4]  # metadata
    assert again[5] is frames[5]  # content
    assert Session(b"key").deserialize(again) == msg


def test_message_builder_fills_the_header() -> None:
    session = Session(b"k", session_id="sess-1", username="alice")
    request = session.message("execute_request", ExecuteRequest(code="x"))
    reply = session.message(
        "execute_reply", ExecuteReply(execution_count=1), parent=request, subshell_id="sub"
    )
    assert request.header.session == "sess-1"
    assert request.header.username == "alice"
    assert request.header.version == "5.4"
    assert request.msg_id != reply.msg_id
    assert reply.parent_header == request.header
    assert reply.parent_id == request.msg_id
    assert reply.header.subshell_id == "sub"
    sent = request.header.datetime()
    assert sent is not None
    assert sent.tzinfo is not None
    assert abs(datetime.now(timezone.utc) - sent) < timedelta(minutes=5)

    received = Session(b"k").deserialize(session.serialize(reply))
    assert received == reply
    assert received.parent_id == request.msg_id


@settings(max_examples=100)
@given(header=headers, parent=st.none() | headers)
def test_header_and_parent_roundtrip_exactly(header: Header, parent: Header | None) -> None:
    msg = Message(header, {"x": 1}, parent_header=parent)
    received = Session().deserialize(Session().serialize(msg))
    assert received.header == header
    assert received.parent_header == parent
    assert received.msg_type == header.msg_type
    assert received.msg_id == header.msg_id


def test_no_parent_is_sent_as_empty_object() -> None:
    session = Session(b"k")
    frames = session.serialize(session.message("status", {"execution_state": "idle"}))
    assert frames[3] == b"{}"
    assert frames[4] == b"{}"  # empty metadata too
    assert Session(b"k").deserialize(frames).parent_header is None


@pytest.mark.parametrize(
    "scheme",
    sorted(f"hmac-{a}" for a in hashlib.algorithms_available if _usable(a)),
)
@given(key=st.binary(min_size=1, max_size=300), parts=st.lists(st.binary(max_size=200), max_size=5))
def test_signature_equals_hmac_new_for_every_scheme_and_key_length(
    scheme: str, key: bytes, parts: list[bytes]
) -> None:
    """Keys shorter than, equal to and longer than the block size (64 or 128
    bytes, 136-144 for sha3): the prepared pads give hmac.new's exact digest."""
    name = scheme.removeprefix("hmac-")
    expected = hmac.new(key, b"".join(parts), name).hexdigest().encode()
    assert Signer(key, scheme).sign(parts) == expected
