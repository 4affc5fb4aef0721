"""When is a request done?  The pure state machine behind every action.

A request is done when the kernel has sent **both** its reply (on the channel
the request went to) **and** ``status: idle`` on iopub with the request as
parent.  The two travel on different sockets, so they arrive in either order;
everything else with the request as parent (busy, outputs, ``input_request``)
is delivered in arrival order around them.

Some requests are done on the reply alone: ``shutdown_request``, whose kernel
may exit before its idle reaches us.

Rules, checked by property tests over every interleaving:

1. ``done`` becomes true exactly once, on the message that completes the pair.
2. A second reply or a second idle is reported as ``"duplicate"``, never as a
   reply or idle again.
3. Every message fed is classified exactly once.
"""

from __future__ import annotations

from typing import Literal, final

from .wire import Message

__all__ = ["Kind", "RequestState"]

Kind = Literal["reply", "idle", "busy", "output", "stdin", "duplicate"]


@final
class RequestState:
    """Fed the messages of one request, says what each is and when it is done."""

    __slots__ = ("busy", "done", "idle", "needs_idle", "reply", "reply_channel")

    def __init__(self, reply_channel: str, *, needs_idle: bool = True) -> None:
        self.reply_channel = reply_channel
        self.needs_idle = needs_idle
        self.reply: Message | None = None
        self.busy = False
        self.idle = False
        self.done = False

    @property
    def started(self) -> bool:
        """The kernel began working on the request (or already finished it)."""
        return self.busy or self.idle or self.reply is not None

    @property
    def half_done(self) -> bool:
        """One of reply and idle arrived but not the other."""
        return not self.done and (self.reply is not None or self.idle)

    def feed(self, channel: str, message: Message) -> Kind:
        """Classify ``message`` (received on ``channel``) and update the state."""
        kind: Kind
        if channel == "iopub":
            if message.header.msg_type == "status":
                state = message.content.execution_state
                if state == "idle":
                    if self.idle:
                        return "duplicate"
                    self.idle = True
                    kind = "idle"
                elif state == "busy":
                    self.busy = True
                    return "busy"
                else:
                    return "output"
            else:
                return "output"
        elif channel == "stdin":
            return "stdin"
        elif channel == self.reply_channel:
            if self.reply is not None:
                return "duplicate"
            self.reply = message
            kind = "reply"
        else:
            return "output"
        if self.reply is not None and (self.idle or not self.needs_idle):
            self.done = True
        return kind
