"""When is a request done?  The pure state machine behind every action.

A request is done when the kernel has sent **both** its reply (the reply type
of the request, e.g. ``execute_reply`` for ``execute_request``, on the channel
the request went to) **and** ``status: idle`` on iopub with the request as
parent.  The two travel on different sockets, so they arrive in either order;
everything else with the request as parent (busy, outputs, ``input_request``,
a message of another type on the reply channel) is delivered in arrival order
around them.

Some requests are done on the reply alone: ``shutdown_request``, whose kernel
may exit before its idle reaches us.  Some have no reply and are done on idle
alone: ``comm_open`` and the other comm messages.

When one half has arrived and the other does not come within a grace period,
the caller calls :meth:`RequestState.expire`: a request with its reply is then
done anyway; one with only its idle cannot be (there is nothing to return).

Rules, checked by property tests over every interleaving:

1. ``done`` becomes true exactly once: on the message that completes the pair,
   or on :meth:`~RequestState.expire`.
2. A second reply or a second idle is reported as ``"duplicate"``, never as a
   reply or idle again.
3. Only a message of the expected reply type is the reply; any other message
   on the reply channel is ``"other"``.
4. Every message fed is classified exactly once.
"""

from __future__ import annotations

from typing import Literal, final

from ..wire import Message

__all__ = ["Kind", "RequestState", "reply_type_of"]

Kind = Literal["reply", "idle", "busy", "output", "stdin", "duplicate", "other"]


def reply_type_of(msg_type: str) -> str | None:
    """The reply type that completes a request: ``x_request`` -> ``x_reply``; else None."""
    if msg_type.endswith("_request"):
        return msg_type[: -len("_request")] + "_reply"
    return None


@final
class RequestState:
    """Fed the messages of one request, says what each is and when it is done.

    Args:
        reply_channel: the channel the request was sent on.
        reply_type: the ``msg_type`` of its reply; None for a request with no
            reply (done on idle alone).
        needs_idle: wait for ``status: idle`` as well as the reply.
    """

    __slots__ = ("busy", "done", "idle", "needs_idle", "reply", "reply_channel", "reply_type")

    def __init__(
        self, reply_channel: str, reply_type: str | None, *, needs_idle: bool = True
    ) -> None:
        if reply_type is None and not needs_idle:
            raise ValueError("a request with no reply must wait for idle")
        self.reply_channel = reply_channel
        self.reply_type = reply_type
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
        """Classify ``message`` (received on ``channel``) and update the state.

        Raises:
            MalformedMessage: a ``status`` message whose content is not valid.
        """
        kind: Kind
        msg_type = message.header.msg_type
        if channel == "iopub":
            if msg_type != "status":
                return "output"
            state = message.content.execution_state
            if state == "busy":
                self.busy = True
                return "busy"
            if state != "idle":
                return "output"
            if self.idle:
                return "duplicate"
            self.idle = True
            kind = "idle"
        elif channel == "stdin":
            return "stdin"
        elif channel != self.reply_channel or msg_type != self.reply_type:
            return "other"
        elif self.reply is not None:
            return "duplicate"
        else:
            self.reply = message
            kind = "reply"
        self._check_done()
        return kind

    def _check_done(self) -> None:
        if self.done:
            return
        has_reply = self.reply is not None or self.reply_type is None
        if has_reply and (self.idle or not self.needs_idle):
            self.done = True

    def expire(self) -> bool:
        """The other half did not come in time: done on the reply alone, if there is one.

        Returns whether the request is done; False means only idle came, and
        there is no reply to return.
        """
        if not self.done and self.reply is not None:
            self.done = True
        return self.done
