"""Jupyter messages to frames and back, with no I/O.

A message on the wire is a list of frames::

    [*identities, b"<IDS|MSG>", signature, header, parent_header, metadata, content, *buffers]

The identities are ZeroMQ routing ids (a ROUTER's view of who sent it; a
DEALER sends none) or, on iopub, the topic.  The four JSON frames are signed
together (see ``_signing``); buffers ride along unsigned and are never copied.

Decoding is split by cost.  :meth:`Session.deserialize` verifies the signature
over the received bytes, then decodes only the header and parent header, which
is all a router needs.  Metadata and content stay as the bytes that arrived and
are decoded the first time someone reads :attr:`Message.content` (measured in
``benchmarks/bench_wire.py``: a 100 KB display_data nobody reads costs nothing
beyond its HMAC).  A ``Message`` built to be sent keeps its content as given and
is encoded once, when serialized.

Invariants:

1. A message that :meth:`Session.deserialize` returns was signed with our key
   (or the key is empty) and its signature was not seen before.
2. Bad bytes only ever raise :class:`~sidecar.WireError` subclasses, whether at
   deserialize time (framing, signature, header) or when content or metadata is
   first read (:class:`~sidecar.MalformedMessage`).
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any, Final, final

import msgspec
from msgspec import UNSET, UnsetType

from .._exceptions import MalformedMessage
from ._content import CONTENT_TYPES
from ._signing import DEFAULT_REPLAY_WINDOW, ReplayGuard, Signer

if TYPE_CHECKING:
    from ._connection_file import ConnectionInfo

__all__ = ["DELIM", "PROTOCOL_VERSION", "Frame", "Header", "Message", "Session"]

DELIM: Final = b"<IDS|MSG>"
"""The frame between the routing identities and the signature."""
PROTOCOL_VERSION: Final = "5.4"
"""The messaging protocol version put in the headers sidecar builds."""

Frame = bytes | memoryview
"""One frame: bytes, or a zero-copy view of a received ZeroMQ frame."""


class Header(msgspec.Struct, kw_only=True, frozen=True, gc=False):
    """A message header (and, for replies and outputs, their ``parent_header``).

    ``date`` stays the ISO 8601 string that was sent: parsing it costs more than
    the rest of the header together, and few readers need it
    (:meth:`datetime` parses it on demand).
    """

    msg_id: str
    msg_type: str
    session: str = ""
    username: str = ""
    date: str = ""
    version: str = PROTOCOL_VERSION
    subshell_id: str | UnsetType | None = UNSET

    def datetime(self) -> datetime | None:
        """``date`` as an aware datetime, or None if absent or unparsable."""
        try:
            return msgspec.json.decode(b'"%s"' % self.date.encode(), type=datetime)
        except (msgspec.ValidationError, msgspec.DecodeError):
            return None


_header_decoder: Final = msgspec.json.Decoder(Header)
_dict_decoder: Final = msgspec.json.Decoder(dict[str, Any])
_null_decoder: Final = msgspec.json.Decoder(None)
_encoder: Final = msgspec.json.Encoder()
_content_decoders: Final[dict[str, msgspec.json.Decoder[Any]]] = {
    name: msgspec.json.Decoder(t) for name, t in CONTENT_TYPES.items()
}
# msgspec raises DecodeError for malformed JSON, but UnicodeDecodeError for
# invalid UTF-8 inside a string and RecursionError for JSON nested too deep.
_DECODE_ERRORS: Final = (msgspec.DecodeError, UnicodeDecodeError, RecursionError)
_EMPTY: Final = b"{}"
_NOT_DECODED: Final[Any] = object()


_second: list[Any] = [-1, ""]


def _now() -> str:
    """The current UTC time as ISO 8601 with microseconds and ``Z``.

    The date-and-seconds part is formatted once a second: a header is built
    for every message sent, and ``datetime.isoformat`` alone costs ~2 us.
    """
    t = time.time()
    sec = int(t)
    cached = _second
    if cached[0] != sec:
        cached[1] = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(sec))
        cached[0] = sec
    return f"{cached[1]}.{int((t - sec) * 1e6):06d}Z"


@final
class Message:
    """One Jupyter message.

    ``content`` is the typed struct for its ``msg_type`` (see
    ``sidecar.wire.CONTENT_TYPES``) or a ``dict`` for types sidecar does not
    know; on a received message it is decoded on first access.
    """

    __slots__ = (
        "_content",
        "_metadata",
        "_raw_content",
        "_raw_metadata",
        "buffers",
        "header",
        "identities",
        "parent_header",
    )

    __hash__ = None  # type: ignore[assignment]  # mutable cache; compare with ==

    def __init__(
        self,
        header: Header,
        content: Any = None,
        *,
        parent_header: Header | None = None,
        metadata: Mapping[str, Any] | None = None,
        buffers: Sequence[Frame] = (),
        identities: Sequence[bytes] = (),
    ) -> None:
        self.header = header
        self.parent_header = parent_header
        self.identities: list[bytes] = list(identities)
        self.buffers: list[Frame] = list(buffers)
        self._content: Any = {} if content is None else content
        self._metadata: Any = {} if metadata is None else dict(metadata)
        self._raw_content: bytes | memoryview | None = None
        self._raw_metadata: bytes | memoryview | None = None

    @classmethod
    def _received(
        cls,
        header: Header,
        parent_header: Header | None,
        raw_metadata: Frame,
        raw_content: Frame,
        buffers: list[Frame],
        identities: list[bytes],
    ) -> Message:
        self = cls.__new__(cls)
        self.header = header
        self.parent_header = parent_header
        self.identities = identities
        self.buffers = buffers
        self._content = _NOT_DECODED
        self._metadata = _NOT_DECODED
        self._raw_content = raw_content
        self._raw_metadata = raw_metadata
        return self

    @property
    def msg_type(self) -> str:
        """``header.msg_type``, e.g. ``"execute_reply"``."""
        return self.header.msg_type

    @property
    def msg_id(self) -> str:
        """``header.msg_id``: replies and outputs name it in their parent header."""
        return self.header.msg_id

    @property
    def parent_id(self) -> str | None:
        """The ``msg_id`` of the request this message answers, if any."""
        parent = self.parent_header
        return None if parent is None else parent.msg_id

    @property
    def content(self) -> Any:
        """The content, decoded by ``msg_type``.

        Raises:
            MalformedMessage: the content frame is not JSON, or does not fit
                the spec's shape for this message type.
        """
        content = self._content
        if content is _NOT_DECODED:
            raw = self._raw_content
            assert raw is not None
            content = self._content = _decode_content(self.header.msg_type, raw)
        return content

    @property
    def metadata(self) -> dict[str, Any]:
        """The metadata dict.

        Raises:
            MalformedMessage: the metadata frame is not a JSON object.
        """
        metadata = self._metadata
        if metadata is _NOT_DECODED:
            raw = self._raw_metadata
            assert raw is not None
            if raw == _EMPTY:
                metadata = {}
            else:
                try:
                    metadata = _dict_decoder.decode(raw)
                except _DECODE_ERRORS as e:
                    # ``null`` is read as no metadata, as jupyter_client reads it.
                    if not _is_null(raw):
                        raise MalformedMessage(f"metadata frame: {e}") from None
                    metadata = {}
            self._metadata = metadata
        return metadata  # type: ignore[no-any-return]

    def raw_content(self) -> bytes | memoryview:
        """The content as JSON bytes: as received, or encoded now."""
        raw = self._raw_content
        if raw is None:
            raw = self._raw_content = _encode("content", self.msg_type, self._content)
        return raw

    def raw_metadata(self) -> bytes | memoryview:
        """The metadata as JSON bytes: as received, or encoded now."""
        raw = self._raw_metadata
        if raw is None:
            metadata = self._metadata
            raw = _EMPTY if not metadata else _encode("metadata", self.msg_type, metadata)
            self._raw_metadata = raw
        return raw

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Message):
            return NotImplemented
        return (
            self.header == other.header
            and self.parent_header == other.parent_header
            and self.metadata == other.metadata
            and self.content == other.content
            and [bytes(b) for b in self.buffers] == [bytes(b) for b in other.buffers]
            and [bytes(i) for i in self.identities] == [bytes(i) for i in other.identities]
        )

    def __repr__(self) -> str:
        parent = f", parent={self.parent_id!r}" if self.parent_header is not None else ""
        return f"<Message {self.msg_type} {self.msg_id!r}{parent}>"


def _decode_content(msg_type: str, raw: Frame) -> Any:
    decoder = _content_decoders.get(msg_type, _dict_decoder)
    try:
        return decoder.decode(raw)
    except _DECODE_ERRORS as e:
        error = e
    # Some kernels leave ``status`` out of a successful reply (the spec's
    # kernel_info_reply did not always have it); jupyter_client does not
    # care, so a reply without one is read as ``status: ok``.
    if msg_type.endswith("_reply") and msg_type in _content_decoders:
        try:
            fields = _dict_decoder.decode(raw)
        except _DECODE_ERRORS:
            pass
        else:
            if "status" not in fields:
                try:
                    return msgspec.convert({**fields, "status": "ok"}, CONTENT_TYPES[msg_type])
                except msgspec.ValidationError as e:
                    error = e
    raise MalformedMessage(f"content frame of {msg_type!r} message: {error}") from None


def _is_null(frame: Frame) -> bool:
    try:
        _null_decoder.decode(frame)
    except _DECODE_ERRORS:
        return False
    return True


def _encode(what: str, msg_type: str, value: Any) -> bytes:
    try:
        return _encoder.encode(value)
    except (msgspec.EncodeError, TypeError, ValueError) as e:
        raise TypeError(f"cannot encode the {what} of a {msg_type!r} message as JSON: {e}") from e


def _decode_header(frame: Frame, name: str) -> Header:
    try:
        return _header_decoder.decode(frame)
    except _DECODE_ERRORS as e:
        raise MalformedMessage(f"{name} frame: {e}") from None


@final
class Session:
    """The sans-IO state of one side of a Jupyter connection.

    It builds messages with this side's session id, serializes and signs them,
    and turns received frames into verified :class:`Message` objects.  It never
    touches a socket: pair it with any transport.

    Args:
        key: the connection's HMAC key; empty means unsigned.
        signature_scheme: ``hmac-<algorithm>``, any algorithm hashlib has.
        session_id: this side's session id (a fresh UUID by default). A client
            also uses it as the ZeroMQ identity of its shell and stdin sockets.
        username: put in every header we build.
        replay_window: how many recent signatures are remembered to refuse
            replays; 0 turns the guard off.

    Raises:
        ValueError: the signature scheme is not usable.
    """

    __slots__ = ("_count", "_guard", "_prefix", "session_id", "signer", "username")

    def __init__(
        self,
        key: bytes | str = b"",
        signature_scheme: str = "hmac-sha256",
        *,
        session_id: str | None = None,
        username: str = "sidecar",
        replay_window: int = DEFAULT_REPLAY_WINDOW,
    ) -> None:
        self.signer: Final = Signer(key, signature_scheme)
        self.session_id: Final = session_id or uuid.uuid4().hex
        self.username: Final = username
        self._guard = ReplayGuard(replay_window) if replay_window and self.signer.enabled else None
        self._prefix = f"{self.session_id}_"
        self._count = 0

    @property
    def replay_guard(self) -> ReplayGuard | None:
        """The signatures remembered to refuse replays (None when off): its
        ``len()`` is bounded by the window, however long the session lives."""
        return self._guard

    @classmethod
    def from_connection_info(cls, info: ConnectionInfo, **kwargs: Any) -> Session:
        """A session with the key and signature scheme of a connection file."""
        return cls(info.key, info.signature_scheme, **kwargs)

    def header(self, msg_type: str, *, subshell_id: str | UnsetType | None = UNSET) -> Header:
        """A fresh header: a new ``msg_id``, this session, the current UTC time."""
        self._count += 1
        return Header(
            msg_id=f"{self._prefix}{self._count}",
            msg_type=msg_type,
            session=self.session_id,
            username=self.username,
            date=_now(),
            subshell_id=subshell_id,
        )

    def message(
        self,
        msg_type: str,
        content: Any = None,
        *,
        parent: Header | Message | None = None,
        metadata: Mapping[str, Any] | None = None,
        buffers: Sequence[Frame] = (),
        subshell_id: str | UnsetType | None = UNSET,
    ) -> Message:
        """Build a message to send.

        Args:
            msg_type: e.g. ``"execute_request"``.
            content: a content struct or a dict (``{}`` if None).
            parent: the message (or its header) this one answers.
            metadata: the metadata dict.
            buffers: binary frames sent after the content, unsigned.
            subshell_id: target a 5.5 subshell.
        """
        if isinstance(parent, Message):
            parent = parent.header
        return Message(
            self.header(msg_type, subshell_id=subshell_id),
            content,
            parent_header=parent,
            metadata=metadata,
            buffers=buffers,
        )

    def serialize(self, message: Message, identities: Iterable[bytes] = ()) -> list[Frame]:
        """The signed frames of ``message``.

        Args:
            identities: routing frames to put before the delimiter (a ROUTER's
                addressee).  None by default, whatever ``message.identities``
                holds: a received message sent on (a frontend's request to
                the kernel) must not carry where it came from.
        """
        header = _header_encode(message.header)
        parent = message.parent_header
        parent_frame = _EMPTY if parent is None else _header_encode(parent)
        metadata = message.raw_metadata()
        content = message.raw_content()
        signature = self.signer.sign((header, parent_frame, metadata, content))
        return [
            *identities,
            DELIM,
            signature,
            header,
            parent_frame,
            metadata,
            content,
            *message.buffers,
        ]

    def deserialize(self, frames: Sequence[Frame]) -> Message:
        """Verify ``frames`` and make them a :class:`Message`.

        Content and metadata are decoded lazily (see :class:`Message`).

        Raises:
            MalformedMessage: no delimiter, too few frames, or a header or parent
                header that is not a JSON object with ``msg_id`` and ``msg_type``.
            InvalidSignature: unsigned or wrongly signed while we have a key.
            ReplayedMessage: this signature was already accepted once.
        """
        try:
            at = frames.index(DELIM)
        except ValueError:
            raise MalformedMessage(f"no {DELIM!r} delimiter among {len(frames)} frames") from None
        if len(frames) < at + 6:
            raise MalformedMessage(
                "expected a signature and 4 JSON frames (header, parent_header, metadata, "
                f"content) after the delimiter, got {len(frames) - at - 1} frame(s)"
            )
        signature, header, parent, metadata, content = frames[at + 1 : at + 6]
        signer = self.signer
        if signer.enabled:
            signature = bytes(signature)
            signer.verify((header, parent, metadata, content), signature)
            if self._guard is not None:
                self._guard.check(signature)
        return Message._received(
            _decode_header(header, "header"),
            None if parent == _EMPTY else _decode_parent(parent),
            metadata,
            content,
            list(frames[at + 6 :]),
            [bytes(f) for f in frames[:at]],
        )

    def __repr__(self) -> str:
        return f"Session({self.session_id!r}, {self.signer!r})"


def _decode_parent(frame: Frame) -> Header | None:
    try:
        return _header_decoder.decode(frame)
    except _DECODE_ERRORS as e:
        # Some kernels send "{ }" or other spellings of an empty object, and
        # some (xeus-python) send ``null`` for no parent; jupyter_client reads
        # both as an empty parent.
        try:
            if not _dict_decoder.decode(frame):
                return None
        except _DECODE_ERRORS:
            try:
                return _null_decoder.decode(frame)
            except _DECODE_ERRORS:
                pass
        raise MalformedMessage(f"parent_header frame: {e}") from None


_header_encode: Final = _encoder.encode
