"""jupyter_client's Session as an oracle, in both directions.

Frames sidecar serializes must verify and deserialize in jupyter_client, and
frames jupyter_client serializes must verify and deserialize in sidecar, with
the same header, parent, metadata, content, buffers and identities.  The
"kernel" side of each exchange is a ROUTER, so its frames carry identities.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import msgspec
import pytest
from hypothesis import given, settings, strategies as st
from jupyter_client.jsonutil import ISO8601_PAT
from jupyter_client.session import Session as JupyterSession
from wire_strategies import (
    buffer_lists,
    json_objects,
    typed_contents,
    untyped_contents,
)

from sidecar.wire import (
    DELIM,
    ExecuteReply,
    ExecuteRequest,
    Header,
    InvalidSignature,
    Session,
    Status,
    Stream,
)

KEYS = pytest.mark.parametrize(
    ("key", "scheme"),
    [
        (b"a-shared-secret-key", "hmac-sha256"),
        (b"another \x00\xff secret", "hmac-sha512"),
        (b"", "hmac-sha256"),
    ],
    ids=["sha256", "sha512", "unsigned"],
)
INTEROP = settings(max_examples=60)

# jupyter_client turns any header string that looks like an ISO 8601 date into
# a datetime (and warns if it is naive): keep generated names clear of that.
names = st.text(min_size=1, max_size=16).filter(lambda s: not ISO8601_PAT.match(s))
identities = st.lists(
    st.binary(min_size=1, max_size=12).filter(lambda b: b != DELIM), min_size=1, max_size=3
)
contents = typed_contents() | untyped_contents()


def _jupyter(key: bytes, scheme: str, **kwargs: Any) -> JupyterSession:
    # jupyter_client makes up a random key when given none: pass it explicitly.
    return JupyterSession(key=key, signature_scheme=scheme, **kwargs)


def _header_dict(header: Header) -> dict[str, Any]:
    """A sidecar header as jupyter_client presents it (``date`` parsed)."""
    out: dict[str, Any] = msgspec.to_builtins(header)
    out["date"] = header.datetime()
    assert isinstance(out["date"], datetime)
    return out


def _content_dict(content: Any) -> Any:
    """Content as plain JSON types (tuples become lists, as on the wire)."""
    return msgspec.json.decode(msgspec.json.encode(content))


# -- sidecar -> jupyter_client --------------------------------------------------------


@KEYS
@INTEROP
@given(
    content=contents,
    metadata=json_objects,
    buffers=buffer_lists,
    username=names,
    session_id=names,
    with_parent=st.booleans(),
)
def test_client_request_to_jupyter_kernel(
    key: bytes,
    scheme: str,
    content: tuple[str, Any],
    metadata: dict[str, Any],
    buffers: list[Any],
    username: str,
    session_id: str,
    with_parent: bool,
) -> None:
    """A DEALER (us) sends; the kernel's ROUTER sees our identity in front."""
    ours = Session(key, scheme, session_id=session_id, username=username)
    msg_type, body = content
    parent = ours.message("execute_request", ExecuteRequest(code="1")) if with_parent else None
    msg = ours.message(msg_type, body, parent=parent, metadata=metadata, buffers=buffers)
    frames = ours.serialize(msg)
    assert frames[0] == DELIM  # a DEALER sends no identity

    routed = [b"client-identity", *(bytes(f) for f in frames)]
    kernel = _jupyter(key, scheme)
    idents, rest = kernel.feed_identities(routed)
    received = kernel.deserialize(rest)

    assert idents == [b"client-identity"]
    assert received["header"] == _header_dict(msg.header)
    assert received["msg_id"] == msg.msg_id
    assert received["msg_type"] == msg_type
    expected_parent = {} if parent is None else _header_dict(parent.header)
    assert received["parent_header"] == expected_parent
    assert received["metadata"] == metadata
    assert received["content"] == _content_dict(body)
    assert [bytes(b) for b in received["buffers"]] == [bytes(b) for b in buffers]


@KEYS
@INTEROP
@given(
    content=contents,
    metadata=json_objects,
    buffers=buffer_lists,
    client_ids=identities,
)
def test_our_kernel_side_reply_to_jupyter_client(
    key: bytes,
    scheme: str,
    content: tuple[str, Any],
    metadata: dict[str, Any],
    buffers: list[Any],
    client_ids: list[bytes],
) -> None:
    """We play the kernel's ROUTER: identities first, then the message."""
    client = _jupyter(key, scheme)
    request = client.msg("execute_request", {"code": "x"})
    ours = Session(key, scheme)
    # The request as our ROUTER would have received it.
    incoming = ours.deserialize([*client_ids, *client.serialize(request)])
    assert incoming.identities == client_ids
    assert incoming.content == ExecuteRequest(code="x")

    msg_type, body = content
    reply = ours.message(msg_type, body, parent=incoming, metadata=metadata, buffers=buffers)
    frames = ours.serialize(reply, incoming.identities)
    assert frames[: len(client_ids)] == client_ids

    idents, rest = client.feed_identities([bytes(f) for f in frames])
    received = client.deserialize(rest)
    assert idents == client_ids
    assert received["header"] == _header_dict(reply.header)
    assert received["parent_header"] == request["header"]
    assert received["metadata"] == metadata
    assert received["content"] == _content_dict(body)
    assert [bytes(b) for b in received["buffers"]] == [bytes(b) for b in buffers]


# -- jupyter_client -> sidecar --------------------------------------------------------


@KEYS
@INTEROP
@given(
    content=contents,
    metadata=json_objects,
    buffers=buffer_lists,
    kernel_ids=identities,
    username=names,
)
def test_jupyter_kernel_reply_to_us(
    key: bytes,
    scheme: str,
    content: tuple[str, Any],
    metadata: dict[str, Any],
    buffers: list[Any],
    kernel_ids: list[bytes],
    username: str,
) -> None:
    """jupyter_client plays the kernel and replies through its ROUTER, with buffers."""
    ours = Session(key, scheme)
    request = ours.message("execute_request", ExecuteRequest(code="x"))
    kernel = _jupyter(key, scheme, username=username)
    idents, rest = kernel.feed_identities([b"our-id", *(bytes(f) for f in ours.serialize(request))])
    assert idents == [b"our-id"]
    parent = kernel.deserialize(rest)

    msg_type, body = content
    reply = kernel.msg(msg_type, _content_dict(body), parent=parent, metadata=metadata)
    frames = [*kernel.serialize(reply, ident=kernel_ids), *buffers]

    received = ours.deserialize(frames)
    assert received.identities == kernel_ids
    header = reply["header"]
    assert received.header == Header(
        msg_id=header["msg_id"],
        msg_type=msg_type,
        session=header["session"],
        username=username,
        date=received.header.date,
        version=header["version"],
    )
    assert received.header.datetime() == header["date"]
    assert received.parent_header == request.header
    assert received.parent_id == request.msg_id
    assert received.metadata == metadata
    assert received.content == body
    assert type(received.content) is type(body)
    assert [bytes(b) for b in received.buffers] == [bytes(b) for b in buffers]
    # Buffers are handed over as given, not copied.
    for got, sent in zip(received.buffers, buffers, strict=True):
        assert got is sent


@KEYS
@INTEROP
@given(content=contents, metadata=json_objects, buffers=buffer_lists)
def test_jupyter_client_request_to_us(
    key: bytes,
    scheme: str,
    content: tuple[str, Any],
    metadata: dict[str, Any],
    buffers: list[Any],
) -> None:
    """A jupyter_client DEALER sends (no identity) with buffers; we receive."""
    client = _jupyter(key, scheme)
    msg_type, body = content
    msg = client.msg(msg_type, _content_dict(body), metadata=metadata)
    frames = [*client.serialize(msg), *buffers]
    received = Session(key, scheme).deserialize(frames)
    assert received.identities == []
    assert received.parent_header is None
    assert received.msg_id == msg["header"]["msg_id"]
    assert received.header.session == client.session
    assert received.metadata == metadata
    assert received.content == body
    assert [bytes(b) for b in received.buffers] == [bytes(b) for b in buffers]


# -- fixed cases -------------------------------------------------------------------------


@KEYS
def test_signatures_are_identical(key: bytes, scheme: str) -> None:
    """Same four frames, same signature: the HMAC is computed the same way."""
    ours = Session(key, scheme)
    msg = ours.message("stream", Stream(name="stdout", text="hi"), metadata={"a": 1})
    frames = [bytes(f) for f in ours.serialize(msg)]
    assert _jupyter(key, scheme).sign(frames[2:6]) == frames[1]


@KEYS
def test_conversation(key: bytes, scheme: str) -> None:
    """Request, busy, reply, idle: each side accepts everything the other sends."""
    client = Session(key, scheme)
    kernel = _jupyter(key, scheme)
    request = client.message("execute_request", ExecuteRequest(code="1 + 1", silent=True))
    idents, rest = kernel.feed_identities([b"dealer", *map(bytes, client.serialize(request))])
    got = kernel.deserialize(rest)
    assert got["content"]["code"] == "1 + 1"
    assert got["content"]["silent"] is True

    busy = kernel.msg("status", {"execution_state": "busy"}, parent=got)
    reply = kernel.msg("execute_reply", {"status": "ok", "execution_count": 1}, parent=got)
    idle = kernel.msg("status", {"execution_state": "idle"}, parent=got)
    topic = [b"kernel.x.status"]
    received = [
        client.deserialize(kernel.serialize(busy, ident=topic)),
        client.deserialize(kernel.serialize(reply, ident=idents)),
        client.deserialize(kernel.serialize(idle, ident=topic)),
    ]
    assert [m.parent_id for m in received] == [request.msg_id] * 3
    assert [m.identities for m in received] == [topic, idents, topic]
    assert [m.msg_type for m in received] == ["status", "execute_reply", "status"]
    assert received[0].content == Status(execution_state="busy")
    assert received[1].content == ExecuteReply(execution_count=1)
    assert received[2].content == Status(execution_state="idle")


def test_tampered_frames_are_refused_by_both() -> None:
    key = b"k"
    ours = Session(key)
    frames = [bytes(f) for f in ours.serialize(ours.message("stream", {"name": "x", "text": "y"}))]
    frames[5] = frames[5].replace(b"y", b"z")
    with pytest.raises(ValueError, match="Invalid Signature"):
        _jupyter(key, "hmac-sha256").deserialize(frames[1:])

    theirs = _jupyter(key, "hmac-sha256")
    jframes = theirs.serialize(theirs.msg("stream", {"name": "x", "text": "y"}))
    jframes[5] = jframes[5].replace(b"y", b"z")
    with pytest.raises(InvalidSignature):
        Session(key).deserialize(jframes)
