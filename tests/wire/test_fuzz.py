"""Bad bytes only ever raise WireError subclasses, and forged bytes are never accepted.

The hypothesis tests take valid frames and break them (truncate, reorder,
drop, duplicate, flip bytes, insert invalid UTF-8, blow frames up, swap JSON
frames for junk or for JSON of the wrong shape), then deserialize them and
read every lazily decoded part.  Any exception that is not a
``sidecar.WireError`` fails the test.
"""

from __future__ import annotations

import json
import re
from datetime import datetime, timezone
from typing import Any

import pytest
from hypothesis import HealthCheck, event, given, settings, strategies as st
from wire_strategies import TAGGED_REPLIES, json_values

from sidecar import WireError
from sidecar.wire import (
    CONTENT_TYPES,
    DELIM,
    AbortedReply,
    CommMsg,
    DisplayData,
    ErrorReply,
    ExecuteReply,
    ExecuteRequest,
    Header,
    InvalidSignature,
    KernelInfoReply,
    LanguageInfo,
    MalformedMessage,
    Message,
    ReplayedMessage,
    ReplayGuard,
    Session,
    Signer,
    Status,
    Stream,
)

KEY = b"fuzz-key"
FUZZ = settings(
    max_examples=2500,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

# -- a pool of valid messages to break --------------------------------------------------


def _pool() -> list[Message]:
    s = Session(b"", session_id="kernel", username="k")
    request = s.message(
        "execute_request", ExecuteRequest(code="print('é') # \N{SNOWMAN}", silent=True)
    )
    nested: dict[str, Any] = {"a": [1, 2.5, None, True, {"b": ["c", {"d": -(2**70)}]}], "e": ""}
    return [
        request,
        s.message("status", Status(execution_state="busy"), parent=request),
        s.message("stream", Stream(name="stdout", text="x" * 200 + "\n"), parent=request),
        s.message("execute_reply", ExecuteReply(execution_count=3), parent=request),
        s.message(
            "execute_reply",
            ErrorReply(ename="ZeroDivisionError", evalue="division by zero", traceback=["t"]),
            parent=request,
            metadata={"started": "2024-01-01T00:00:00Z", "dependencies_met": True},
        ),
        s.message("inspect_reply", AbortedReply(), parent=request),
        s.message(
            "display_data",
            DisplayData(data={"text/plain": "x", "image/png": "iVBOR"}, transient={"id": "1"}),
            parent=request,
            metadata=nested,
        ),
        s.message(
            "kernel_info_reply",
            KernelInfoReply(
                protocol_version="5.4",
                language_info=LanguageInfo(name="python", codemirror_mode={"name": "ipython"}),
            ),
            parent=request,
            subshell_id="sub-1",
        ),
        s.message(
            "comm_msg",
            CommMsg(comm_id="c1", data={"buffer_paths": [["x"]]}),
            buffers=[b"\x00\x01\x02", memoryview(b"\xff" * 16)],
        ),
        s.message("custom_thing", nested, metadata=nested, subshell_id=None),
        s.message("is_complete_reply", {"status": "incomplete", "indent": "  "}, parent=request),
        s.message("history_reply", {"status": "ok", "history": [[1, 2, ["in", None]]]}),
        Message(
            Header(msg_id="", msg_type="", date="not a date", version=""),
            {},
            identities=[b"router-id", b"\x00\xffbinary-id"],
        ),
        Message(
            Header(msg_id="m", msg_type="comm_open", session="s"),
            {"comm_id": "c", "target_name": "t", "data": {}, "target_module": None},
            parent_header=Header(msg_id="p", msg_type="execute_request"),
            identities=[b"kernel.1234.comm_open"],
            buffers=[b""],
        ),
    ]


POOL = _pool()

# -- ways to break frames ---------------------------------------------------------------

NON_UTF8 = [
    b"\xff",
    b"\x80",
    b"\xc3\x28",  # bad continuation byte
    b"\xc0\xaf",  # overlong "/"
    b"\xed\xa0\x80",  # an encoded surrogate
    b"\xf4\x90\x80\x80",  # above U+10FFFF
    b"\xe2\x82",  # truncated sequence
]
BIG = [2**12, 2**16, 2**20]


def _nested(depth: int, kind: str) -> bytes:
    if kind == "array":
        return b"[" * depth + b"]" * depth
    return b'{"a":' * depth + b"1" + b"}" * depth


def _json(value: Any) -> bytes:
    return json.dumps(value).encode()


text = st.text(max_size=10)
# Valid JSON that has the wrong shape for a header, parent, metadata or content frame.
wrong_json = st.one_of(
    json_values.map(_json),  # arrays, strings, null, numbers, objects...
    st.sampled_from([b"null", b"[]", b'""', b"0", b"true", b"{}", b"[{}]", b'"{}"']),
    st.fixed_dictionaries({"msg_type": text}).map(_json),  # no msg_id
    st.fixed_dictionaries({"msg_id": text}).map(_json),  # no msg_type
    st.fixed_dictionaries({"msg_id": json_values, "msg_type": json_values}).map(_json),
    st.fixed_dictionaries(
        {"msg_id": text, "msg_type": text, "subshell_id": json_values, "date": json_values}
    ).map(_json),
    st.fixed_dictionaries(
        {"status": st.sampled_from(["ok", "error", "aborted", "weird"]) | json_values}
    ).map(_json),
    st.builds(
        lambda k, v: _json({k: v}),
        st.sampled_from(
            ["text", "name", "code", "execution_state", "execution_count", "data", "language_info"]
        ),
        json_values,
    ),
    st.builds(_nested, st.sampled_from([5, 500, 100_000]), st.sampled_from(["array", "object"])),
)
junk = st.binary(max_size=40) | wrong_json


@st.composite
def _mutate(draw: st.DrawFn, frames: list[bytes]) -> list[bytes]:
    """One random mutation of ``frames``."""
    op = draw(
        st.sampled_from(
            [
                "truncate_list",
                "reorder",
                "drop",
                "duplicate",
                "flip_byte",
                "non_utf8",
                "truncate_frame",
                "oversize",
                "replace",
                "replace",
                "replace",
            ]
        )
    )
    frames = list(frames)
    n = len(frames)
    if op == "truncate_list":
        return frames[: draw(st.integers(0, n))]
    if op == "reorder":
        return draw(st.permutations(frames))
    if n == 0:
        return [draw(junk)]
    i = draw(st.integers(0, n - 1))
    if op == "drop":
        del frames[i]
    elif op == "duplicate":
        frames.insert(draw(st.integers(0, n)), frames[i])
    elif op == "flip_byte":
        if frames[i]:
            pos = draw(st.integers(0, len(frames[i]) - 1))
            byte = draw(st.integers(0, 255))
            frames[i] = frames[i][:pos] + bytes([byte]) + frames[i][pos + 1 :]
        else:
            frames[i] = bytes([draw(st.integers(0, 255))])
    elif op == "non_utf8":
        frame = frames[i]
        # Mostly right after a quote, i.e. inside a JSON string or key.
        quotes = [p + 1 for p, c in enumerate(frame) if c == ord('"')]
        positions = st.sampled_from(quotes) if quotes else st.integers(0, len(frame))
        pos = draw(positions | st.integers(0, len(frame)))
        frames[i] = frame[:pos] + draw(st.sampled_from(NON_UTF8)) + frame[pos:]
    elif op == "truncate_frame":
        frames[i] = frames[i][: draw(st.integers(0, max(0, len(frames[i]) - 1)))]
    elif op == "oversize":
        size = draw(st.sampled_from(BIG))
        how = draw(st.sampled_from(["pad", "string", "raw", "many"]))
        if how == "pad":  # still valid JSON, just huge
            frames[i] = frames[i] + b" " * size
        elif how == "string":
            frames[i] = b'{"msg_id": "' + b"x" * size + b'", "msg_type": "stream", "text": "y"}'
        elif how == "raw":
            frames[i] = b"\xfe" * size
        else:
            frames[i:i] = [b"{}"] * (size // 64)
    else:  # replace
        frames[i] = draw(junk)
    return frames


@st.composite
def broken_frames(
    draw: st.DrawFn, session: Session, *, resign: bool
) -> tuple[list[bytes], Message]:
    """(broken frames, the message they were made from)."""
    message = draw(st.sampled_from(POOL))
    frames = [bytes(f) for f in session.serialize(message)]
    for _ in range(draw(st.integers(1, 3))):
        frames = draw(_mutate(frames))
    if resign and DELIM in frames:
        at = frames.index(DELIM)
        if len(frames) >= at + 6:
            frames[at + 1] = session.signer.sign(frames[at + 2 : at + 6])
    return frames, message


def _exercise(session: Session, frames: list[Any]) -> Message | None:
    """Deserialize and read everything; only WireError may come out."""
    try:
        msg = session.deserialize(frames)
    except WireError as e:
        event(f"deserialize: {type(e).__name__}")
        return None
    event("deserialize: accepted")
    for name, read in (("content", lambda: msg.content), ("metadata", lambda: msg.metadata)):
        try:
            read()
        except MalformedMessage as e:
            assert str(e)
            event(f"{name}: MalformedMessage")
        else:
            event(f"{name}: decoded")
    # Whatever was accepted can be inspected and forwarded.
    assert msg.msg_type in repr(msg)
    when = msg.header.datetime()
    assert when is None or isinstance(when, datetime)
    forwarded = Session(session.signer.key).deserialize(Session(session.signer.key).serialize(msg))
    assert forwarded.header == msg.header
    assert forwarded.parent_header == msg.parent_header
    assert bytes(forwarded.raw_content()) == bytes(msg.raw_content())
    assert [bytes(b) for b in forwarded.buffers] == [bytes(b) for b in msg.buffers]
    return msg


# -- the fuzz tests -----------------------------------------------------------------------

unsigned = Session(b"")


@FUZZ
@given(data=st.data())
def test_fuzz_unsigned(data: st.DataObject) -> None:
    """No key: every broken frame reaches the decoders."""
    frames, _ = data.draw(broken_frames(unsigned, resign=False))
    _exercise(Session(b""), frames)
    # The same frames as zero-copy views behave the same.
    _exercise(Session(b""), [memoryview(f) for f in frames])


@FUZZ
@given(data=st.data())
def test_fuzz_signed_and_resigned(data: st.DataObject) -> None:
    """Broken then correctly re-signed: the decoders see it, behind verification."""
    session = Session(KEY, "hmac-sha256")
    frames, _ = data.draw(broken_frames(session, resign=True))
    _exercise(session, frames)


@settings(FUZZ, max_examples=2000)
@given(data=st.data())
def test_fuzz_tampered_is_never_accepted(data: st.DataObject) -> None:
    """Broken and not re-signed: anything accepted is exactly what was signed."""
    session = Session(KEY, "hmac-sha512")
    frames, message = data.draw(broken_frames(session, resign=False))
    original = [bytes(f) for f in Session(KEY, "hmac-sha512").serialize(message)]
    msg = _exercise(session, frames)
    if msg is not None:
        at = frames.index(DELIM)
        o_at = original.index(DELIM)
        assert frames[at + 1 : at + 6] == original[o_at + 1 : o_at + 6]
        assert msg.header == message.header
        assert bytes(msg.raw_content()) == bytes(message.raw_content())
        assert bytes(msg.raw_metadata()) == bytes(message.raw_metadata())


@settings(FUZZ, max_examples=1000)
@given(
    frames=st.lists(
        st.one_of(st.just(DELIM), st.binary(max_size=30), wrong_json, st.just(b"")), max_size=10
    ),
    key=st.sampled_from([b"", KEY]),
)
def test_fuzz_arbitrary_frame_lists(frames: list[bytes], key: bytes) -> None:
    _exercise(Session(key), frames)


# -- framing ------------------------------------------------------------------------------


def _frames(session: Session | None = None, **kwargs: Any) -> list[bytes]:
    session = session or Session(KEY)
    msg = session.message("stream", Stream(name="stdout", text="hi"), **kwargs)
    return [bytes(f) for f in session.serialize(msg)]


def test_no_delimiter() -> None:
    frames = _frames()
    frames.remove(DELIM)
    with pytest.raises(MalformedMessage, match="delimiter") as e:
        Session(KEY).deserialize(frames)
    assert "<IDS|MSG>" in str(e.value)


def test_empty_frame_list() -> None:
    with pytest.raises(MalformedMessage, match="delimiter"):
        Session(KEY).deserialize([])


@pytest.mark.parametrize("keep", range(1, 6))
def test_too_few_frames(keep: int) -> None:
    frames = _frames()[:keep]
    with pytest.raises(MalformedMessage, match=r"after the delimiter, got \d frame"):
        Session(KEY).deserialize(frames)


def test_delimiter_split_at_the_first_one() -> None:
    """Identities come before the first delimiter; a DELIM-valued buffer is just a buffer."""
    session = Session(KEY)
    msg = session.message("comm_msg", {"comm_id": "c", "data": {}}, buffers=[DELIM])
    frames = session.serialize(msg, [b"id"])
    received = Session(KEY).deserialize(frames)
    assert received.identities == [b"id"]
    assert received.buffers == [DELIM]


# -- signatures and replays ----------------------------------------------------------------


def test_bad_signature() -> None:
    frames = _frames()
    frames[1] = b"0" * 64
    with pytest.raises(InvalidSignature, match="does not match"):
        Session(KEY).deserialize(frames)


def test_wrong_key() -> None:
    with pytest.raises(InvalidSignature):
        Session(b"other key").deserialize(_frames())


def test_wrong_scheme() -> None:
    with pytest.raises(InvalidSignature):
        Session(KEY, "hmac-sha512").deserialize(_frames(Session(KEY, "hmac-sha256")))


@pytest.mark.parametrize("index", [2, 3, 4, 5])
def test_any_signed_frame_changed(index: int) -> None:
    frames = _frames(parent=Session().header("execute_request"))
    frames[index] = frames[index].replace(b"}", b', "x": 1}', 1)
    with pytest.raises(InvalidSignature):
        Session(KEY).deserialize(frames)


def test_buffers_and_identities_are_not_signed() -> None:
    frames = _frames(buffers=[b"one"])
    frames[-1] = b"two"
    frames.insert(0, b"an-identity")
    received = Session(KEY).deserialize(frames)
    assert received.buffers == [b"two"]
    assert received.identities == [b"an-identity"]


def test_unsigned_message_with_a_key() -> None:
    frames = _frames(Session(b""))
    assert frames[1] == b""
    with pytest.raises(InvalidSignature, match="unsigned"):
        Session(KEY).deserialize(frames)


def test_replay_is_refused() -> None:
    frames = _frames()
    receiver = Session(KEY)
    first = receiver.deserialize(frames)
    assert first.content == Stream(name="stdout", text="hi")
    with pytest.raises(ReplayedMessage, match="seen before"):
        receiver.deserialize(frames)
    # Another receiver has its own memory.
    assert Session(KEY).deserialize(frames) == first


def test_replay_window_zero_disables_the_guard() -> None:
    frames = _frames()
    receiver = Session(KEY, replay_window=0)
    assert receiver.deserialize(frames) == receiver.deserialize(frames)


def test_unsigned_sessions_keep_no_replay_memory() -> None:
    frames = _frames(Session(b""))
    receiver = Session(b"")
    assert receiver.deserialize(frames) == receiver.deserialize(frames)


def test_replay_guard_is_bounded() -> None:
    guard = ReplayGuard(3)
    for sig in (b"a", b"b", b"c", b"d"):
        guard.check(sig)
    assert len(guard) == 3
    guard.check(b"a")  # the oldest was forgotten
    for sig in (b"c", b"d", b"a"):
        with pytest.raises(ReplayedMessage):
            guard.check(sig)
    assert len(guard) == 3


def test_session_replay_window_forgets_the_oldest() -> None:
    sender = Session(KEY)
    receiver = Session(KEY, replay_window=2)
    first, second, third = (_frames(sender) for _ in range(3))
    for frames in (first, second, third):
        receiver.deserialize(frames)
    receiver.deserialize(first)  # pushed out of the window by the third
    with pytest.raises(ReplayedMessage):
        receiver.deserialize(third)


def test_replay_guard_rejects_a_zero_window() -> None:
    with pytest.raises(ValueError, match="maxlen"):
        ReplayGuard(0)


def test_failed_verification_is_not_remembered() -> None:
    """A forger who sends a tampered copy first cannot get the genuine one refused."""
    genuine = _frames()
    tampered = list(genuine)
    tampered[5] = b'{"name": "stdout", "text": "evil"}'
    receiver = Session(KEY)
    with pytest.raises(InvalidSignature):
        receiver.deserialize(tampered)
    assert receiver.deserialize(genuine).content == Stream(name="stdout", text="hi")


# -- content and header decoding -----------------------------------------------------------


def _signed(header: Any, parent: Any, metadata: Any, content: Any) -> list[bytes]:
    parts = [p if isinstance(p, bytes) else _json(p) for p in (header, parent, metadata, content)]
    return [DELIM, Signer(KEY).sign(parts), *parts]


def _header(msg_type: str, **extra: Any) -> dict[str, Any]:
    return {"msg_id": "m1", "msg_type": msg_type, "session": "s", **extra}


def test_unknown_msg_type_content_is_a_dict() -> None:
    content = {"anything": [1, {"goes": None}], "status": "weird"}
    msg = Session(KEY).deserialize(_signed(_header("vendor_specific"), {}, {}, content))
    assert type(msg.content) is dict
    assert msg.content == content


@pytest.mark.parametrize(
    ("msg_type", "content", "where"),
    [
        ("stream", {"name": "stdout", "text": None}, "text"),
        ("stream", {"name": "stdout"}, "text"),
        ("execute_request", {"code": 1}, "code"),
        ("execute_reply", {"status": "ok", "execution_count": "one"}, "execution_count"),
        ("execute_reply", {"status": "weird"}, "status"),
        ("execute_reply", {"execution_count": "one"}, "execution_count"),
        ("kernel_info_reply", {"status": "ok", "language_info": []}, "language_info"),
        ("status", [], "object"),
        ("display_data", {"data": "text"}, "data"),
    ],
)
def test_known_type_with_wrong_shape(msg_type: str, content: Any, where: str) -> None:
    msg = Session(KEY).deserialize(_signed(_header(msg_type), {}, {}, content))
    with pytest.raises(MalformedMessage, match=repr(msg_type)) as e:
        _ = msg.content
    assert where in str(e.value)
    # The failure is not cached as a success: reading again fails again.
    with pytest.raises(MalformedMessage):
        _ = msg.content


def test_a_reply_without_status_is_ok() -> None:
    """Some kernels leave status out; jupyter_client does not mind, nor do we."""
    msg = Session(KEY).deserialize(
        _signed(_header("kernel_info_reply"), {}, {}, {"protocol_version": "5.3"})
    )
    assert isinstance(msg.content, KernelInfoReply)
    assert msg.content.protocol_version == "5.3"
    assert msg.content.status == "ok"


def test_codemirror_mode_falls_back_to_the_language_name() -> None:
    content = {"status": "ok", "language_info": {"name": "typescript"}}
    msg = Session(KEY).deserialize(_signed(_header("kernel_info_reply"), {}, {}, content))
    assert msg.content.language_info.codemirror_mode == "typescript"
    given = {"status": "ok", "language_info": {"name": "python", "codemirror_mode": {"v": 3}}}
    msg = Session(KEY).deserialize(_signed(_header("kernel_info_reply"), {}, {}, given))
    assert msg.content.language_info.codemirror_mode == {"v": 3}


@pytest.mark.parametrize("metadata", [b"null", b" null "])
def test_null_metadata_is_empty(metadata: bytes) -> None:
    msg = Session(KEY).deserialize(
        _signed(_header("stream"), {}, metadata, {"name": "x", "text": ""})
    )
    assert msg.metadata == {}


@pytest.mark.parametrize("parent", [b"{}", b"{ }", b"{\n}", b" {} ", b"null", b" null\n"])
def test_empty_parent_header_is_none(parent: bytes) -> None:
    msg = Session(KEY).deserialize(
        _signed(_header("status"), parent, {}, {"execution_state": "idle"})
    )
    assert msg.parent_header is None
    assert msg.parent_id is None


@pytest.mark.parametrize(
    "parent", [b"[]", b"5", b'{"msg_type": "x"}', b'{"msg_id": 5, "msg_type": "x"}', b"{"]
)
def test_bad_parent_header(parent: bytes) -> None:
    with pytest.raises(MalformedMessage, match="parent_header"):
        Session(KEY).deserialize(_signed(_header("status"), parent, {}, {}))


@pytest.mark.parametrize(
    "header",
    [b"{}", b"[]", b"null", b'"x"', b'{"msg_id": "m"}', b'{"msg_type": "t"}', b"", b"{"],
)
def test_bad_header(header: bytes) -> None:
    with pytest.raises(MalformedMessage, match="header frame"):
        Session(KEY).deserialize(_signed(header, {}, {}, {}))


@pytest.mark.parametrize("metadata", [b"[]", b"1", b"{", b'{"a": }'])
def test_bad_metadata(metadata: bytes) -> None:
    msg = Session(KEY).deserialize(_signed(_header("stream"), {}, metadata, {}))
    with pytest.raises(MalformedMessage, match="metadata frame"):
        _ = msg.metadata


@pytest.mark.parametrize("msg_type", TAGGED_REPLIES)
def test_error_and_aborted_replies(msg_type: str) -> None:
    session = Session(KEY)
    error = session.deserialize(
        _signed(
            _header(msg_type),
            _header("request"),
            {},
            {"status": "error", "ename": "E", "evalue": "v", "traceback": ["a", "b"]},
        )
    )
    assert error.content == ErrorReply(ename="E", evalue="v", traceback=["a", "b"])
    assert error.content.status == "error"
    aborted = session.deserialize(
        _signed(_header(msg_type, msg_id="m2"), _header("request"), {}, {"status": "aborted"})
    )
    assert aborted.content == AbortedReply()
    assert aborted.content.status == "aborted"
    ok_content: dict[str, Any] = {"status": "ok"}
    if msg_type == "create_subshell_reply":
        ok_content["subshell_id"] = "s1"
    elif msg_type == "list_subshell_reply":
        ok_content["subshell_id"] = ["s1", "s2"]
    ok = session.deserialize(_signed(_header(msg_type, msg_id="m3"), {}, {}, ok_content))
    ok_type = CONTENT_TYPES[msg_type].__args__[0]
    assert type(ok.content) is ok_type
    assert ok.content.status == "ok"


def test_is_complete_reply_status_is_the_verdict() -> None:
    msg = Session(KEY).deserialize(
        _signed(_header("is_complete_reply"), {}, {}, {"status": "incomplete", "indent": "    "})
    )
    assert msg.content.status == "incomplete"
    assert msg.content.indent == "    "


def test_unknown_fields_are_ignored() -> None:
    header = _header("execute_reply", future_field={"x": [1]}, subshell_id="s1", version="5.9")
    parent = _header("execute_request", also_new=True)
    content = {"status": "ok", "execution_count": 7, "brand_new": {"nested": [1, 2]}}
    msg = Session(KEY).deserialize(_signed(header, parent, {"meta": 1}, content))
    assert msg.header == Header(
        msg_id="m1", msg_type="execute_reply", session="s", version="5.9", subshell_id="s1"
    )
    assert msg.parent_header == Header(msg_id="m1", msg_type="execute_request", session="s")
    assert msg.content == ExecuteReply(execution_count=7)
    assert msg.metadata == {"meta": 1}


# Which part fails when frame N (after the delimiter) is bad, and how it is named.
FAILS_AT = {
    2: ("deserialize", "header frame"),
    3: ("deserialize", "parent_header frame"),
    4: ("metadata", "metadata frame"),
    5: ("content", "content frame of 'stream'"),
}


def _assert_malformed_at(frame: int, parts: list[bytes]) -> None:
    frames = [DELIM, Signer(KEY).sign(parts), *parts]
    where, named = FAILS_AT[frame]
    if where == "deserialize":
        with pytest.raises(MalformedMessage, match=re.escape(named)):
            Session(KEY).deserialize(frames)
        return
    msg = Session(KEY).deserialize(frames)
    other = "content" if where == "metadata" else "metadata"
    getattr(msg, other)  # the other lazy part is fine
    with pytest.raises(MalformedMessage, match=re.escape(named)):
        getattr(msg, where)


@pytest.mark.parametrize("frame", [2, 3, 4, 5])
@pytest.mark.parametrize("kind", ["array", "object"])
def test_deeply_nested_json(frame: int, kind: str) -> None:
    """msgspec's depth limit raises RecursionError; it must surface as MalformedMessage."""
    parts = [
        _json(_header("stream")),
        _json(_header("execute_request")),
        b"{}",
        _json({"name": "stdout", "text": "x"}),
    ]
    deep = _nested(100_000, kind)
    parts[frame - 2] = b'{"msg_id": "m", "msg_type": "stream", "x": ' + deep + b"}"
    _assert_malformed_at(frame, parts)


@pytest.mark.parametrize("frame", [2, 3, 4, 5])
@pytest.mark.parametrize("bad", NON_UTF8)
def test_invalid_utf8_in_a_string(frame: int, bad: bytes) -> None:
    """msgspec raises UnicodeDecodeError for these; it must surface as MalformedMessage."""
    parts = [
        _json(_header("stream")),
        _json(_header("execute_request")),
        b'{"k": "v"}',
        _json({"name": "stdout", "text": "x"}),
    ]
    # Put the bad bytes inside the first string value of the frame.
    parts[frame - 2] = parts[frame - 2].replace(b'": "', b'": "' + bad, 1)
    _assert_malformed_at(frame, parts)


def test_date_is_parsed_lazily_and_leniently() -> None:
    ok = Header(msg_id="m", msg_type="t", date="2024-05-06T07:08:09.123456Z")
    parsed = ok.datetime()
    assert parsed == datetime(2024, 5, 6, 7, 8, 9, 123456, tzinfo=timezone.utc)
    for bad in ["", "yesterday", "2024-1-1", 'a"b', "\\", "2024-05-06T07:08:09Z\x00"]:
        assert Header(msg_id="m", msg_type="t", date=bad).datetime() is None


# -- signature schemes -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("scheme", "match"),
    [
        ("hmac-nope", "hashlib has no algorithm 'nope'"),
        ("sha256", "not of the form 'hmac-<algorithm>'"),
        ("hmac-", "not of the form"),
        ("", "not of the form"),
        ("HMAC-SHA256", "not of the form"),
        ("hmac-shake_128", "shake_128"),
    ],
)
@pytest.mark.parametrize("key", [b"", b"k"])
def test_unknown_scheme(scheme: str, match: str, key: bytes) -> None:
    with pytest.raises(ValueError, match=match) as e:
        Signer(key, scheme)
    assert repr(scheme) in str(e.value)
    with pytest.raises(ValueError, match=match):
        Session(key, scheme)


def test_signer_repr_hides_the_key() -> None:
    assert "secret" not in repr(Signer(b"secret"))
    assert repr(Signer(b"")) == "Signer('hmac-sha256', unsigned)"
