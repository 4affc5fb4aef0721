"""Jupyter messages over a websocket to a Jupyter Server, with no I/O.

A Jupyter Server (and Kernel Gateway, Enterprise Gateway) relays a kernel's
channels over one websocket per client, ``/api/kernels/{id}/channels``.  The
server signs and verifies for us, so a websocket message carries no signature:
only the channel name and the message's *parts*::

    [header, parent_header, metadata, content, *buffers]

the same bytes as the frames after the signature on ZeroMQ.  Two framings
exist, chosen by the websocket subprotocol:

- ``v1.kernel.websocket.jupyter.org`` (:data:`WS_V1_SUBPROTOCOL`), binary::

      n = len(parts) + 2                 8 bytes, little endian
      offsets[0] .. offsets[n - 1]       8 bytes each, little endian
      channel                            UTF-8, from offsets[0] to offsets[1]
      parts[i]                           from offsets[i + 1] to offsets[i + 2]

  The parts pass through the server as they are: nothing is decoded twice.
- the legacy framing, when no subprotocol is agreed: a text message holding
  one JSON object (``header``, ``parent_header``, ``metadata``, ``content``,
  ``channel``); with buffers, a binary message instead::

      nbufs = 1 + len(buffers)           4 bytes, big endian
      offsets[0] .. offsets[nbufs - 1]   4 bytes each, big endian
      the JSON object, then each buffer

Invariants: every function here is pure; bad bytes raise only
:class:`~sidecar.MalformedMessage`; ``deserialize_*`` of what the matching
``serialize_*`` made gives the channel and parts back, byte for byte (the JSON
parts of the legacy framing as the JSON text of each value).
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from itertools import pairwise
from typing import Final

import msgspec

from .._exceptions import MalformedMessage
from ._session import Frame

__all__ = [
    "WS_V1_SUBPROTOCOL",
    "deserialize_ws_json",
    "deserialize_ws_v1",
    "serialize_ws_json",
    "serialize_ws_v1",
]

WS_V1_SUBPROTOCOL: Final = "v1.kernel.websocket.jupyter.org"
"""The websocket subprotocol of the binary framing (jupyter_server 2 and later)."""

_U64: Final = struct.Struct("<Q")
_JSON_PARTS: Final = 4


def serialize_ws_v1(channel: str, parts: Sequence[Frame]) -> bytes:
    """One binary websocket message of the v1 framing.

    Args:
        channel: ``"shell"``, ``"control"``, ``"stdin"`` or ``"iopub"``.
        parts: header, parent header, metadata and content (JSON bytes), then
            the buffers.
    """
    name = channel.encode()
    count = len(parts) + 2
    offset = 8 * (count + 1)
    offsets = [offset]
    offset += len(name)
    offsets.append(offset)
    for part in parts:
        offset += len(part)
        offsets.append(offset)
    head = struct.pack(f"<{count + 1}Q", count, *offsets)
    return b"".join([head, name, *parts])


def deserialize_ws_v1(data: bytes | bytearray | memoryview) -> tuple[str, list[memoryview]]:
    """The channel and parts of a v1 binary websocket message.

    The parts are views into ``data``: nothing is copied.

    Raises:
        MalformedMessage: the offsets do not describe ``data``, the channel
            is not UTF-8, or there are fewer than the 4 JSON parts.
    """
    view = memoryview(data).cast("B")
    size = len(view)
    if size < 8:
        raise MalformedMessage(f"v1 websocket message of {size} bytes has no offset count")
    (count,) = _U64.unpack_from(view)
    if count < 2 + _JSON_PARTS:
        raise MalformedMessage(
            f"v1 websocket message has {count} offsets; a channel and 4 JSON parts need 6"
        )
    if 8 * (count + 1) > size:
        raise MalformedMessage(f"v1 websocket message of {size} bytes cannot hold {count} offsets")
    offsets = struct.unpack_from(f"<{count}Q", view, 8)
    previous = 8 * (count + 1)
    if offsets[0] != previous or offsets[-1] != size:
        raise MalformedMessage(
            f"v1 websocket message offsets {offsets[0]}..{offsets[-1]} do not span "
            f"bytes {previous}..{size}"
        )
    for offset in offsets:
        if offset < previous:
            raise MalformedMessage("v1 websocket message offsets go backwards")
        previous = offset
    try:
        channel = bytes(view[offsets[0] : offsets[1]]).decode()
    except UnicodeDecodeError:
        raise MalformedMessage("v1 websocket message channel is not UTF-8") from None
    parts = [view[offsets[i] : offsets[i + 1]] for i in range(1, count - 1)]
    return channel, parts


class _LegacyMessage(msgspec.Struct):
    """The JSON object of the legacy framing; the parts stay the JSON they were."""

    header: msgspec.Raw
    channel: str | None = None
    parent_header: msgspec.Raw = msgspec.Raw(b"{}")
    metadata: msgspec.Raw = msgspec.Raw(b"{}")
    content: msgspec.Raw = msgspec.Raw(b"{}")


_legacy_decoder: Final = msgspec.json.Decoder(_LegacyMessage)
_DECODE_ERRORS: Final = (msgspec.DecodeError, UnicodeDecodeError, RecursionError)
_U32: Final = struct.Struct("!I")


def serialize_ws_json(channel: str, parts: Sequence[Frame]) -> str | bytes:
    """One websocket message of the legacy framing: text, or binary with buffers.

    The JSON parts are spliced in as they are, never decoded.
    """
    header, parent, metadata, content, *buffers = parts
    text = b"".join(
        [
            b'{"header":',
            header,
            b',"parent_header":',
            parent,
            b',"metadata":',
            metadata,
            b',"content":',
            content,
            b',"channel":',
            msgspec.json.encode(channel),
            b',"buffers":[]}',
        ]
    )
    if not buffers:
        return text.decode()
    nbufs = 1 + len(buffers)
    offsets = [4 * (nbufs + 1)]
    for frame in [text, *buffers[:-1]]:
        offsets.append(offsets[-1] + len(frame))
    return b"".join([struct.pack(f"!{nbufs + 1}I", nbufs, *offsets), text, *buffers])


def deserialize_ws_json(
    data: str | bytes | bytearray | memoryview,
) -> tuple[str | None, list[Frame]]:
    """The channel (None if absent) and parts of a legacy-framed websocket message.

    ``data`` is the text of a text message, or the bytes of a binary one
    (JSON followed by buffers).

    Raises:
        MalformedMessage: not JSON, no header, or offsets that do not describe
            ``data``.
    """
    buffers: list[Frame] = []
    if isinstance(data, str):
        text: bytes | memoryview = data.encode()
    else:
        view = memoryview(data).cast("B")
        size = len(view)
        if size < 4:
            raise MalformedMessage(f"binary websocket message of {size} bytes has no offsets")
        (nbufs,) = _U32.unpack_from(view)
        if nbufs < 1 or 4 * (nbufs + 1) > size:
            raise MalformedMessage(
                f"binary websocket message of {size} bytes cannot hold {nbufs} offsets"
            )
        offsets = [*struct.unpack_from(f"!{nbufs}I", view, 4), size]
        if offsets[0] < 4 * (nbufs + 1) or any(b < a for a, b in pairwise(offsets)):
            raise MalformedMessage("binary websocket message offsets do not describe it")
        text = view[offsets[0] : offsets[1]]
        buffers = [view[offsets[i] : offsets[i + 1]] for i in range(1, nbufs)]
    try:
        message = _legacy_decoder.decode(text)
    except _DECODE_ERRORS as e:
        raise MalformedMessage(f"websocket message is not a Jupyter message as JSON: {e}") from None
    parts: list[Frame] = [
        bytes(message.header),
        bytes(message.parent_header),
        bytes(message.metadata),
        bytes(message.content),
        *buffers,
    ]
    return message.channel, parts
