"""Hypothesis strategies for Jupyter messages, shared by the wire tests.

Not a test module: imported as ``wire_strategies`` (pytest puts this
directory on ``sys.path`` for the test modules next to it).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from hypothesis import strategies as st
from msgspec import UNSET

from sidecar.wire import (
    CONTENT_TYPES,
    DELIM,
    AbortedReply,
    CommInfoReply,
    CommOpen,
    CompleteReply,
    DebugReply,
    DisplayData,
    ErrorOutput,
    ErrorReply,
    ExecuteReply,
    ExecuteRequest,
    ExecuteResult,
    Header,
    HelpLink,
    HistoryReply,
    InputReply,
    InspectReply,
    IsCompleteReply,
    KernelInfoReply,
    LanguageInfo,
    Message,
    Status,
    Stream,
    UpdateDisplayData,
)

SCHEMES = (
    "hmac-sha256",
    "hmac-sha512",
    "hmac-sha1",
    "hmac-md5",
    "hmac-sha3_256",
    "hmac-blake2b",
)

# Reply types whose status is the ok/error/aborted tag.
TAGGED_REPLIES = tuple(
    name for name, t in CONTENT_TYPES.items() if name.endswith("_reply") and not isinstance(t, type)
)

text = st.text(max_size=20)
ints = st.integers(min_value=-(2**63), max_value=2**63 - 1)

json_scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | text
)
json_values = st.recursive(
    json_scalars,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=12,
)
json_objects = st.dictionaries(st.text(max_size=10), json_values, max_size=5)

subshell_ids = st.one_of(st.just(UNSET), st.none(), text)

headers = st.builds(
    Header,
    msg_id=text,
    msg_type=text,
    session=text,
    username=text,
    date=text,
    version=text,
    subshell_id=subshell_ids,
)


def headers_of(msg_type: str) -> st.SearchStrategy[Header]:
    return st.builds(
        Header,
        msg_id=text,
        msg_type=st.just(msg_type),
        session=text,
        username=text,
        date=text,
        version=text,
        subshell_id=subshell_ids,
    )


unknown_msg_types = text.filter(lambda s: s not in CONTENT_TYPES)

# -- typed content ---------------------------------------------------------------

optional_int = st.none() | ints


def maybe(strategy: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.just(UNSET) | strategy


error_replies = st.builds(
    ErrorReply,
    ename=text,
    evalue=text,
    traceback=st.lists(text, max_size=3),
    execution_count=st.one_of(st.just(UNSET), optional_int),
)
aborted_replies = st.builds(AbortedReply, execution_count=st.one_of(st.just(UNSET), optional_int))

language_infos = st.builds(
    LanguageInfo,
    name=text,
    version=text,
    mimetype=maybe(text),
    file_extension=maybe(text),
    pygments_lexer=maybe(text),
    codemirror_mode=st.one_of(st.just(UNSET), text, json_objects),
    nbconvert_exporter=maybe(text),
)

history_entries = st.tuples(ints, ints, text | st.tuples(text, st.none() | text))

# msg_type -> strategy for its content struct (status "ok" for replies).
TYPED_CONTENT: dict[str, st.SearchStrategy[Any]] = {
    "stream": st.builds(Stream, name=st.sampled_from(["stdout", "stderr"]) | text, text=text),
    "execute_request": st.builds(
        ExecuteRequest,
        code=text,
        silent=st.booleans(),
        store_history=st.booleans(),
        user_expressions=json_objects,
        allow_stdin=st.booleans(),
        stop_on_error=st.booleans(),
    ),
    "execute_reply": st.builds(
        ExecuteReply,
        execution_count=optional_int,
        payload=st.lists(json_objects, max_size=2),
        user_expressions=json_objects,
    ),
    "display_data": st.builds(
        DisplayData, data=json_objects, metadata=json_objects, transient=maybe(json_objects)
    ),
    "update_display_data": st.builds(
        UpdateDisplayData, data=json_objects, metadata=json_objects, transient=maybe(json_objects)
    ),
    "execute_result": st.builds(
        ExecuteResult,
        execution_count=optional_int,
        data=json_objects,
        metadata=json_objects,
        transient=maybe(json_objects),
    ),
    "error": st.builds(ErrorOutput, ename=text, evalue=text, traceback=st.lists(text, max_size=3)),
    "status": st.builds(Status, execution_state=st.sampled_from(["busy", "idle"]) | text),
    "kernel_info_reply": st.builds(
        KernelInfoReply,
        protocol_version=text,
        implementation=text,
        implementation_version=text,
        language_info=language_infos,
        banner=text,
        debugger=st.booleans(),
        help_links=st.lists(st.builds(HelpLink, text=text, url=text), max_size=2),
        supported_features=st.lists(text, max_size=3),
    ),
    "complete_reply": st.builds(
        CompleteReply,
        matches=st.lists(text, max_size=3),
        cursor_start=ints,
        cursor_end=ints,
        metadata=json_objects,
    ),
    "inspect_reply": st.builds(
        InspectReply, found=st.booleans(), data=json_objects, metadata=json_objects
    ),
    "history_reply": st.builds(HistoryReply, history=st.lists(history_entries, max_size=3)),
    "is_complete_reply": st.builds(
        IsCompleteReply,
        status=st.sampled_from(["complete", "incomplete", "invalid", "unknown"]),
        indent=maybe(text),
    ),
    "comm_info_reply": st.builds(
        CommInfoReply, comms=st.dictionaries(text, json_objects, max_size=3)
    ),
    "comm_open": st.builds(
        CommOpen,
        comm_id=text,
        target_name=text,
        data=json_objects,
        target_module=st.one_of(st.just(UNSET), st.none(), text),
    ),
    "debug_reply": st.builds(
        DebugReply,
        seq=ints,
        type=text,
        request_seq=ints,
        success=st.booleans(),
        command=text,
        message=maybe(text),
        body=maybe(json_objects),
    ),
    "input_reply": st.builds(InputReply, value=text),
}


@st.composite
def typed_contents(draw: st.DrawFn) -> tuple[str, Any]:
    """(msg_type, content struct): a known type's struct, or an error/aborted reply."""
    kind = draw(st.sampled_from(["typed", "error", "aborted"]))
    if kind == "typed":
        msg_type = draw(st.sampled_from(sorted(TYPED_CONTENT)))
        return msg_type, draw(TYPED_CONTENT[msg_type])
    msg_type = draw(st.sampled_from(TAGGED_REPLIES))
    return msg_type, draw(error_replies if kind == "error" else aborted_replies)


@st.composite
def untyped_contents(draw: st.DrawFn) -> tuple[str, Any]:
    """(msg_type, content dict) for a message type sidecar does not know."""
    return draw(unknown_msg_types), draw(json_objects)


def _as_frame(data: bytes, how: str) -> bytes | memoryview:
    if how == "bytes":
        return data
    if how == "memoryview":
        return memoryview(data)
    return memoryview(bytearray(data))


frames_data = st.builds(
    _as_frame, st.binary(max_size=64), st.sampled_from(["bytes", "memoryview", "bytearray"])
)
buffer_lists = st.lists(frames_data, max_size=3)
identity_lists = st.lists(
    st.binary(min_size=1, max_size=16).filter(lambda b: b != DELIM), max_size=3
)


@st.composite
def messages(
    draw: st.DrawFn,
    contents: Callable[[], st.SearchStrategy[tuple[str, Any]]] | None = None,
) -> Message:
    """Any message: typed or untyped content, a parent or none, buffers, identities."""
    if contents is None:
        msg_type, content = draw(typed_contents() | untyped_contents())
    else:
        msg_type, content = draw(contents())
    return Message(
        draw(headers_of(msg_type)),
        content,
        parent_header=draw(st.none() | headers),
        metadata=draw(json_objects),
        buffers=draw(buffer_lists),
        identities=draw(identity_lists),
    )


keys = st.just(b"") | st.binary(min_size=1, max_size=64) | st.text(min_size=1, max_size=32)
schemes = st.sampled_from(SCHEMES)
