"""The lifecycle of a kernel as the client sees it: one pure state machine.

Invariants (the h11 way: every transition in one table, and nothing else
changes the state):

1. The state changes only in :meth:`Lifecycle.handle`, and only along
   :data:`TRANSITIONS`.  An event not listed for the current state changes
   nothing: events come from the outside world (a heartbeat that fails while
   we restart the kernel ourselves is expected), not from bugs.
2. Requests are accepted in ``READY`` (and while ``STARTING``, for the
   readiness probe).  In ``RESTARTING`` and ``RECOVERING`` they wait for it to
   end; in ``LOST`` and ``DEAD`` they fail at once with
   :attr:`Lifecycle.error`; in ``CLOSED`` the connection is gone.
3. A transition that ends what the kernel was doing says so: :meth:`handle`
   returns the error the requests waiting at that moment fail with
   (:class:`~sidecar.KernelDied` or :class:`~sidecar.KernelRestarted`).
4. ``CLOSED`` is final.  ``DEAD`` is final but for a restart we make.  A
   kernel we do not own is never declared dead by a missed heartbeat: it is
   ``LOST`` until it answers again (a restart by another manager that takes
   longer than two heartbeats, a paused process), then ``RECOVERING`` while
   its channels are proven live again (a new kernel's iopub drops what it
   publishes before our subscription reaches it), then ``READY``.

The usual paths::

    STARTING -> READY -> RESTARTING -> READY              (restart())
    READY -> RECOVERING -> READY                          (restarted by someone else)
    READY -> LOST -> RECOVERING -> READY                  (not ours: heartbeat lost, back)
    READY -> DEAD -> RESTARTING -> READY                  (ours: died, restart())
    READY or LOST -> DEAD                                 (gone from its server for good)
    any -> CLOSED
"""

from __future__ import annotations

import enum
from typing import Final, Literal, final

from .._exceptions import KernelDied, KernelError, KernelRestarted

__all__ = ["TRANSITIONS", "Event", "Lifecycle", "State"]


class State(enum.Enum):
    STARTING = "starting"
    """Launched or connecting; not proven ready yet."""
    READY = "ready"
    """Answering requests."""
    RESTARTING = "restarting"
    """We are restarting it: requests wait for the new kernel."""
    RECOVERING = "recovering"
    """It answers again after a restart by someone else or a lost heartbeat:
    requests wait while its channels are proven live."""
    LOST = "lost"
    """A kernel we do not own stopped answering, or its manager is restarting
    it: requests fail at once until it answers again."""
    DEAD = "dead"
    """Its process exited, or a kernel we own stopped answering."""
    CLOSED = "closed"
    """The connection is closed."""


class Event(enum.Enum):
    READY = "ready"
    """The kernel answered kernel_info on every channel (start or restart done)."""
    HEARTBEAT_LOST = "heartbeat_lost"
    HEARTBEAT_BACK = "heartbeat_back"
    PROCESS_EXITED = "process_exited"
    """The process of a kernel we own exited (its watcher is replaced with the
    process on a restart, so an old process exiting says nothing)."""
    RESTART_BEGUN = "restart_begun"
    """We began restarting the kernel."""
    RESTART_FAILED = "restart_failed"
    """The new kernel of our restart, or a recovering one, did not answer in time."""
    NEW_SESSION = "new_session"
    """A message came from a new kernel session: it restarted under us."""
    STATUS_RESTARTING = "status_restarting"
    """A nanny or gateway published ``status: restarting``."""
    STATUS_DEAD = "status_dead"
    """A nanny or gateway published ``status: dead``."""
    GONE = "gone"
    """The kernel can never be reached again: the server no longer has it
    (deleted or culled), or refuses us now."""
    CLOSE = "close"


_Fail = Literal["died", "restarted"] | None

_ALIVE: Final = (State.STARTING, State.READY, State.RESTARTING, State.RECOVERING, State.LOST)

# (state, event, owned) -> (new state, what the waiting requests get).
# ``owned`` is None where it does not matter.
_TABLE: Final[dict[tuple[State, Event, bool | None], tuple[State, _Fail]]] = {
    (State.STARTING, Event.READY, None): (State.READY, None),
    (State.STARTING, Event.HEARTBEAT_LOST, None): (State.DEAD, "died"),
    (State.STARTING, Event.PROCESS_EXITED, None): (State.DEAD, "died"),
    (State.READY, Event.HEARTBEAT_LOST, True): (State.DEAD, "died"),
    (State.READY, Event.HEARTBEAT_LOST, False): (State.LOST, "died"),
    (State.READY, Event.PROCESS_EXITED, None): (State.DEAD, "died"),
    (State.READY, Event.RESTART_BEGUN, None): (State.RESTARTING, "restarted"),
    (State.READY, Event.NEW_SESSION, None): (State.RECOVERING, "restarted"),
    (State.READY, Event.STATUS_RESTARTING, False): (State.LOST, "restarted"),
    (State.READY, Event.STATUS_DEAD, False): (State.LOST, "died"),
    (State.RESTARTING, Event.READY, None): (State.READY, None),
    (State.RESTARTING, Event.PROCESS_EXITED, None): (State.DEAD, "died"),
    (State.RESTARTING, Event.RESTART_FAILED, True): (State.DEAD, "died"),
    (State.RESTARTING, Event.RESTART_FAILED, False): (State.LOST, "died"),
    (State.RECOVERING, Event.READY, None): (State.READY, None),
    (State.RECOVERING, Event.RESTART_FAILED, None): (State.LOST, "died"),
    (State.RECOVERING, Event.HEARTBEAT_LOST, None): (State.LOST, "died"),
    (State.RECOVERING, Event.STATUS_RESTARTING, None): (State.LOST, "restarted"),
    (State.RECOVERING, Event.STATUS_DEAD, None): (State.LOST, "died"),
    (State.RECOVERING, Event.RESTART_BEGUN, None): (State.RESTARTING, "restarted"),
    (State.LOST, Event.HEARTBEAT_BACK, None): (State.RECOVERING, None),
    (State.LOST, Event.NEW_SESSION, None): (State.RECOVERING, "restarted"),
    (State.LOST, Event.RESTART_BEGUN, None): (State.RESTARTING, "restarted"),
    (State.DEAD, Event.RESTART_BEGUN, True): (State.RESTARTING, None),
    **{(state, Event.GONE, None): (State.DEAD, "died") for state in _ALIVE},
}
TRANSITIONS: Final = _TABLE
"""Every legal transition: ``(state, event, owned)`` -> ``(state, failure)``.

``owned`` is None where it does not matter; ``failure`` says what the
requests waiting at that moment get.  ``close`` leads from any state to
``CLOSED`` and is not listed.
"""


@final
class Lifecycle:
    """The lifecycle state of one kernel connection.  Pure: no I/O, no clock.

    Args:
        owned: sidecar launched the kernel (and watches its process).
    """

    __slots__ = ("_error", "owned", "state")

    def __init__(self, *, owned: bool) -> None:
        self.owned = owned
        self.state = State.STARTING
        self._error: KernelError | None = None

    @property
    def error(self) -> KernelError | None:
        """What a new request fails with now (in ``LOST`` and ``DEAD``), else None."""
        return self._error if self.state in (State.LOST, State.DEAD) else None

    @property
    def accepts_requests(self) -> bool:
        return self.state in (State.READY, State.STARTING)

    def handle(
        self, event: Event, reason: str = "", *, exit_code: int | None = None
    ) -> KernelError | None:
        """Apply ``event``; the error the waiting requests fail with, if it ends them.

        ``reason`` says what happened, in words for the error message.
        """
        if event is Event.CLOSE:
            self.state = State.CLOSED
            return None
        found = _TABLE.get((self.state, event, self.owned)) or _TABLE.get((self.state, event, None))
        if found is None:
            return None
        self.state, failure = found
        error: KernelError | None = None
        if failure == "died":
            error = KernelDied(reason or "the kernel died", exit_code=exit_code)
        elif failure == "restarted":
            error = KernelRestarted(reason or "the kernel restarted")
        if self.state in (State.LOST, State.DEAD) and error is not None:
            self._error = error
        return error

    def __repr__(self) -> str:
        owner = "owned" if self.owned else "connected"
        return f"<Lifecycle {self.state.value} ({owner})>"
