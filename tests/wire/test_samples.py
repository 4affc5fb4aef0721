"""Real messages captured from an ipykernel (see capture_samples.py) through sidecar."""

from __future__ import annotations

import base64
import json
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from jupyter_client.session import Session as JupyterSession

from sidecar.wire import (
    CONTENT_TYPES,
    DELIM,
    AbortedReply,
    CommInfoReply,
    CommMsg,
    CommOpen,
    CompleteReply,
    DisplayData,
    ErrorOutput,
    ErrorReply,
    ExecuteInput,
    ExecuteReply,
    ExecuteRequest,
    ExecuteResult,
    HistoryReply,
    InspectReply,
    InvalidSignature,
    IopubWelcome,
    IsCompleteReply,
    KernelInfoReply,
    Message,
    Session,
    Status,
    Stream,
    UpdateDisplayData,
)

DATA = json.loads((Path(__file__).parent / "data" / "samples.json").read_text())
KEY: str = DATA["key"]
SCHEME: str = DATA["signature_scheme"]


def _frames(sample: dict[str, Any]) -> list[bytes]:
    return [base64.b64decode(f) for f in sample["frames"]]


def _id(sample: dict[str, Any]) -> str:
    return f"{sample['channel']}-{sample['direction']}-{sample['msg_type']}"


SAMPLES = DATA["samples"]
ALL = pytest.mark.parametrize("sample", SAMPLES, ids=[_id(s) for s in SAMPLES])


def _decode(sample: dict[str, Any]) -> Message:
    return Session(KEY, SCHEME).deserialize(_frames(sample))


def _only(msg_type: str, **match: Any) -> list[Message]:
    """Every captured message of ``msg_type`` (received ones unless a direction is given)."""
    direction = match.pop("direction", "received")
    return [
        _decode(s) for s in SAMPLES if s["msg_type"] == msg_type and s["direction"] == direction
    ]


def test_the_samples_cover_the_requests() -> None:
    assert KEY
    assert SCHEME == "hmac-sha256"
    types = Counter(s["msg_type"] for s in SAMPLES)
    for expected in [
        "kernel_info_reply",
        "execute_reply",
        "stream",
        "display_data",
        "update_display_data",
        "execute_result",
        "error",
        "is_complete_reply",
        "complete_reply",
        "inspect_reply",
        "history_reply",
        "comm_info_reply",
        "comm_open",
        "comm_msg",
        "status",
        "execute_request",
    ]:
        assert types[expected] >= 1, expected


@ALL
def test_every_sample_deserializes(sample: dict[str, Any]) -> None:
    frames = _frames(sample)
    msg = Session(KEY, SCHEME).deserialize(frames)
    assert msg.msg_type == sample["msg_type"]
    assert msg.identities == frames[: frames.index(DELIM)]
    assert isinstance(msg.metadata, dict)
    content = msg.content
    expected = CONTENT_TYPES.get(msg.msg_type)
    if expected is None:
        assert isinstance(content, dict)
    else:
        allowed = expected.__args__ if hasattr(expected, "__args__") else (expected,)
        assert isinstance(content, allowed)
    when = msg.header.datetime()
    assert when is not None
    assert when.tzinfo is not None
    # Everything the kernel sends answers a request, except the unsolicited
    # iopub_welcome and the "starting" status.
    unsolicited = msg.msg_type == "iopub_welcome" or content == Status(execution_state="starting")
    if sample["direction"] == "received" and not unsolicited:
        assert msg.parent_header is not None


def test_all_samples_through_one_session() -> None:
    """One receiving session takes them all: no two real messages share a signature."""
    session = Session(KEY, SCHEME)
    received = [session.deserialize(_frames(s)) for s in SAMPLES]
    assert len({m.msg_id for m in received}) == len(received)


@ALL
def test_reserialized_samples_are_accepted_by_jupyter_client(sample: dict[str, Any]) -> None:
    msg = _decode(sample)
    frames = [bytes(f) for f in Session(KEY, SCHEME).serialize(msg, msg.identities)]
    original = _frames(sample)
    at = original.index(DELIM)
    # Metadata, content and buffers go out exactly as they came in.
    assert frames[at + 4 :] == original[at + 4 :]
    assert frames[:at] == original[:at]

    jupyter = JupyterSession(key=KEY.encode(), signature_scheme=SCHEME)
    idents, rest = jupyter.feed_identities(frames)
    theirs = jupyter.deserialize(rest)
    reference = JupyterSession(key=KEY.encode(), signature_scheme=SCHEME).deserialize(
        original[at + 1 :]
    )
    assert idents == original[:at]
    for part in ("header", "parent_header", "metadata", "content"):
        assert theirs[part] == reference[part], part
    assert [bytes(b) for b in theirs["buffers"]] == [bytes(b) for b in reference["buffers"]]


def test_kernel_info_reply() -> None:
    replies = _only("kernel_info_reply")
    assert replies
    for msg in replies:
        info = msg.content
        assert isinstance(info, KernelInfoReply)
        assert info.status == "ok"
        assert info.language_info.name == "python"
        assert info.language_info.mimetype == "text/x-python"
        assert info.implementation == "ipython"
        assert info.protocol_version.startswith("5.")
        assert msg.parent_header is not None
        assert msg.parent_header.msg_type == "kernel_info_request"


def test_execute_replies() -> None:
    contents = [m.content for m in _only("execute_reply")]
    oks = [c for c in contents if isinstance(c, ExecuteReply)]
    errors = [c for c in contents if isinstance(c, ErrorReply)]
    aborted = [c for c in contents if isinstance(c, AbortedReply)]
    assert len(oks) + len(errors) + len(aborted) == len(contents)
    assert oks
    assert all(isinstance(c.execution_count, int) for c in oks)
    assert [e.ename for e in errors] == ["ZeroDivisionError"]
    assert errors[0].evalue == "division by zero"
    assert errors[0].traceback
    assert len(aborted) == 1


def test_iopub_outputs() -> None:
    streams = [m.content for m in _only("stream")]
    assert Stream(name="stdout", text="hello, sidecar\n") in streams
    assert Stream(name="stderr", text="to stderr\n") in streams

    (result,) = [m.content for m in _only("execute_result")]
    assert isinstance(result, ExecuteResult)
    assert result.data == {"text/plain": "42"}

    (display,) = [m.content for m in _only("display_data")]
    (update,) = [m.content for m in _only("update_display_data")]
    assert isinstance(display, DisplayData)
    assert isinstance(update, UpdateDisplayData)
    assert display.data["text/html"] == "<b>first</b>"
    assert update.data["text/plain"] == "second"
    assert isinstance(display.transient, dict)
    assert display.transient == update.transient
    assert "display_id" in display.transient

    (error,) = [m.content for m in _only("error")]
    assert isinstance(error, ErrorOutput)
    assert error.ename == "ZeroDivisionError"

    inputs = [m.content for m in _only("execute_input")]
    assert all(isinstance(i, ExecuteInput) for i in inputs)
    assert ExecuteInput(code="6 * 7", execution_count=result.execution_count) in inputs

    states = {m.content.execution_state for m in _only("status")}
    assert {"busy", "idle"} <= states
    assert all(isinstance(m.content, Status) for m in _only("status"))
    for welcome in _only("iopub_welcome"):
        assert isinstance(welcome.content, IopubWelcome)
        assert welcome.parent_header is None


def test_comm_messages_with_buffers() -> None:
    (opened,) = _only("comm_open")
    (sent,) = _only("comm_msg")
    assert isinstance(opened.content, CommOpen)
    assert opened.content.target_name == "sidecar.sample"
    assert opened.content.data == {"x": 1}
    assert [bytes(b) for b in opened.buffers] == [b"\x00\x01\xffbinary"]
    assert isinstance(sent.content, CommMsg)
    assert sent.content.comm_id == opened.content.comm_id
    assert sent.content.data == {"y": 2}
    assert [bytes(b) for b in sent.buffers] == [b"abc", b"\xde\xad\xbe\xef"]
    assert opened.identities == [f"comm-{opened.content.comm_id}".encode()]


def test_shell_replies() -> None:
    verdicts = {m.content.status: m.content for m in _only("is_complete_reply")}
    assert isinstance(verdicts["incomplete"], IsCompleteReply)
    assert verdicts["incomplete"].indent == "    "
    assert "complete" in verdicts

    (complete,) = [m.content for m in _only("complete_reply")]
    assert isinstance(complete, CompleteReply)
    assert "os" in complete.matches
    assert (complete.cursor_start, complete.cursor_end) == (7, 8)

    (inspect,) = [m.content for m in _only("inspect_reply")]
    assert isinstance(inspect, InspectReply)
    assert inspect.found
    assert "text/plain" in inspect.data

    histories = [m.content for m in _only("history_reply")]
    assert all(isinstance(h, HistoryReply) for h in histories)
    plain, with_output = histories
    assert all(isinstance(entry[2], str) for entry in plain.history)
    assert all(isinstance(entry[2], tuple) for entry in with_output.history)
    # The last five inputs, ending with the one that raised (its output is None).
    assert len(plain.history) == len(with_output.history) == 5
    assert plain.history[-1][2] == "1 / 0"
    assert with_output.history[-1][2] == ("1 / 0", None)

    (comm_info,) = [m.content for m in _only("comm_info_reply")]
    assert isinstance(comm_info, CommInfoReply)
    assert comm_info.status == "ok"


def test_requests_jupyter_client_sent() -> None:
    requests = _only("execute_request", direction="sent")
    assert requests
    for msg in requests:
        assert isinstance(msg.content, ExecuteRequest)
        assert msg.identities == []
        assert msg.parent_header is None
    assert ExecuteRequest(code="6 * 7") in [m.content for m in requests]


def test_a_sample_is_refused_with_the_wrong_key() -> None:
    with pytest.raises(InvalidSignature):
        Session(KEY + "x", SCHEME).deserialize(_frames(SAMPLES[0]))
