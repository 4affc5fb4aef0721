"""The pure lifecycle state machine, over every sequence of events."""

from __future__ import annotations

import pytest
from hypothesis import given, settings, strategies as st

import sidecar
from sidecar.kernel._lifecycle import TRANSITIONS, Event, Lifecycle, State

events = st.lists(st.sampled_from(list(Event)), max_size=40)


@settings(max_examples=400)
@given(events, st.booleans())
def test_every_step_follows_the_table(sequence: list[Event], owned: bool) -> None:
    life = Lifecycle(owned=owned)
    for event in sequence:
        before = life.state
        error = life.handle(event, "why")
        after = life.state
        if event is Event.CLOSE:
            assert after is State.CLOSED
            assert error is None
            continue
        entry = TRANSITIONS.get((before, event, owned)) or TRANSITIONS.get((before, event, None))
        if entry is None:
            # Not listed: nothing changes, nothing fails.
            assert after is before
            assert error is None
            continue
        target, failure = entry
        assert after is target
        if failure == "died":
            assert isinstance(error, sidecar.KernelDied)
        elif failure == "restarted":
            assert isinstance(error, sidecar.KernelRestarted)
        else:
            assert error is None
        # New requests fail exactly in LOST and DEAD.
        assert (life.error is not None) == (after in (State.LOST, State.DEAD))


@settings(max_examples=300)
@given(events, st.booleans())
def test_closed_is_final_and_dead_ends_only_in_our_restart(
    sequence: list[Event], owned: bool
) -> None:
    life = Lifecycle(owned=owned)
    seen_closed = False
    for event in sequence:
        before = life.state
        life.handle(event)
        if seen_closed:
            assert life.state is State.CLOSED
        seen_closed = seen_closed or life.state is State.CLOSED
        if before is State.DEAD and life.state is not State.DEAD:
            assert event in (Event.RESTART_BEGUN, Event.CLOSE)
            assert owned or event is Event.CLOSE


def test_a_kernel_we_do_not_own_is_lost_not_dead_and_comes_back() -> None:
    life = Lifecycle(owned=False)
    life.handle(Event.READY)
    died = life.handle(Event.HEARTBEAT_LOST, "no heartbeat for 4.0 s")
    assert isinstance(died, sidecar.KernelDied)
    assert life.state is State.LOST
    assert isinstance(life.error, sidecar.KernelDied)
    assert life.handle(Event.HEARTBEAT_BACK) is None
    assert life.state is State.RECOVERING
    assert life.error is None
    life.handle(Event.READY)
    assert life.state is State.READY


def test_a_kernel_we_own_is_dead_on_a_lost_heartbeat_until_restarted() -> None:
    life = Lifecycle(owned=True)
    life.handle(Event.READY)
    life.handle(Event.HEARTBEAT_LOST)
    assert life.state is State.DEAD
    life.handle(Event.HEARTBEAT_BACK)
    assert life.state is State.DEAD
    life.handle(Event.RESTART_BEGUN)
    assert life.state is State.RESTARTING
    life.handle(Event.READY)
    assert life.state is State.READY


@pytest.mark.parametrize(
    ("event", "error"),
    [
        (Event.NEW_SESSION, sidecar.KernelRestarted),
        (Event.STATUS_RESTARTING, sidecar.KernelRestarted),
        (Event.STATUS_DEAD, sidecar.KernelDied),
    ],
)
def test_what_a_manager_says_ends_waiting_requests(event: Event, error: type) -> None:
    life = Lifecycle(owned=False)
    life.handle(Event.READY)
    assert isinstance(life.handle(event, "said so"), error)
    assert life.state in (State.RECOVERING, State.LOST)


def test_the_exit_code_is_kept() -> None:
    life = Lifecycle(owned=True)
    life.handle(Event.READY)
    died = life.handle(Event.PROCESS_EXITED, "the kernel process exited", exit_code=9)
    assert isinstance(died, sidecar.KernelDied)
    assert died.exit_code == 9
    assert life.error is died
