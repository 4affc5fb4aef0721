"""The pure "done on reply + idle" state machine, over every interleaving."""

from __future__ import annotations

from hypothesis import given, settings, strategies as st

from sidecar.client._request import RequestState, reply_type_of
from sidecar.wire import ExecuteReply, Session, Status, Stream

session = Session()
REQUEST = session.message("execute_request")


def _reply() -> tuple[str, object]:
    return "shell", session.message("execute_reply", ExecuteReply(), parent=REQUEST)


def _status(state: str) -> tuple[str, object]:
    return "iopub", session.message("status", Status(execution_state=state), parent=REQUEST)


def _other_on_shell() -> tuple[str, object]:
    return "shell", session.message("bogus_reply", {"status": "ok"}, parent=REQUEST)


def _output(i: int) -> tuple[str, object]:
    return "iopub", session.message("stream", Stream(name="stdout", text=str(i)), parent=REQUEST)


@st.composite
def interleavings(draw: st.DrawFn) -> list[tuple[str, object]]:
    """Busy first (kernels always publish it first), then outputs, the reply and
    idle in any order, possibly a duplicate reply or idle after both."""
    n = draw(st.integers(0, 6))
    middle = [_output(i) for i in range(n)] + [_reply(), _status("idle")]
    middle += [_other_on_shell() for _ in range(draw(st.integers(0, 2)))]
    middle = draw(st.permutations(middle))
    extra = draw(st.lists(st.sampled_from(["reply", "idle", "output"]), max_size=3))
    tail = [
        _reply() if e == "reply" else _status("idle") if e == "idle" else _output(99) for e in extra
    ]
    return [_status("busy"), *middle, *tail]


@settings(max_examples=500)
@given(interleavings(), st.booleans())
def test_done_exactly_once_on_the_completing_message(
    messages: list[tuple[str, object]], needs_idle: bool
) -> None:
    state = RequestState("shell", "execute_reply", needs_idle=needs_idle)
    kinds = []
    became_done = []
    for i, (channel, message) in enumerate(messages):
        before = state.done
        kinds.append(state.feed(channel, message))  # type: ignore[arg-type]
        if state.done and not before:
            became_done.append(i)
    assert len(became_done) == 1
    done_at = became_done[0]
    first_reply = next(i for i, k in enumerate(kinds) if k == "reply")
    if needs_idle:
        first_idle = next(i for i, k in enumerate(kinds) if k == "idle")
        assert done_at == max(first_reply, first_idle)
    else:
        assert done_at == first_reply
    # Every message is classified once; only one reply and one idle count.
    assert len(kinds) == len(messages)
    assert kinds.count("reply") == 1
    assert kinds.count("idle") <= 1
    assert kinds.count("busy") == 1
    outputs = sum(1 for channel, m in messages if m.msg_type == "stream")  # type: ignore[attr-defined]
    assert kinds.count("output") == outputs
    others = sum(1 for channel, m in messages if m.msg_type == "bogus_reply")  # type: ignore[attr-defined]
    assert kinds.count("other") == others
    assert state.reply is not None
    assert state.reply.msg_type == "execute_reply"


def test_half_done_until_the_pair_is_complete() -> None:
    state = RequestState("shell", "execute_reply")
    assert not state.started
    state.feed(*_status("busy"))  # type: ignore[arg-type]
    assert state.started
    assert not state.half_done
    state.feed(*_reply())  # type: ignore[arg-type]
    assert state.half_done
    assert not state.done
    state.feed(*_status("idle"))  # type: ignore[arg-type]
    assert state.done
    assert not state.half_done


def test_stdin_messages_are_classified_as_stdin() -> None:
    state = RequestState("shell", "execute_reply")
    request = session.message("input_request", {"prompt": "", "password": False}, parent=REQUEST)
    assert state.feed("stdin", request) == "stdin"
    assert not state.done


def test_a_message_of_another_type_on_the_reply_channel_is_not_the_reply() -> None:
    state = RequestState("shell", "execute_reply")
    state.feed(*_status("busy"))  # type: ignore[arg-type]
    state.feed(*_status("idle"))  # type: ignore[arg-type]
    assert state.feed(*_other_on_shell()) == "other"  # type: ignore[arg-type]
    assert not state.done
    assert state.reply is None
    assert state.feed(*_reply()) == "reply"  # type: ignore[arg-type]
    assert state.done


def test_expire_completes_on_the_reply_alone_but_not_on_idle_alone() -> None:
    with_reply = RequestState("shell", "execute_reply")
    with_reply.feed(*_reply())  # type: ignore[arg-type]
    assert with_reply.expire()
    assert with_reply.done
    idle_only = RequestState("shell", "execute_reply")
    idle_only.feed(*_status("idle"))  # type: ignore[arg-type]
    assert not idle_only.expire()
    assert not idle_only.done


def test_a_request_without_reply_is_done_on_idle() -> None:
    state = RequestState("shell", None)
    state.feed(*_status("busy"))  # type: ignore[arg-type]
    assert not state.done
    assert state.feed(*_other_on_shell()) == "other"  # type: ignore[arg-type]
    assert state.feed(*_status("idle")) == "idle"  # type: ignore[arg-type]
    assert state.done


def test_reply_types() -> None:
    assert reply_type_of("execute_request") == "execute_reply"
    assert reply_type_of("create_subshell_request") == "create_subshell_reply"
    assert reply_type_of("comm_open") is None
