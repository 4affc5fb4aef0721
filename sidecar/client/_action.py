"""One request, from its send until it is done: an *action*.

An :class:`Action` registers an inbox for its request's ``msg_id`` before it
sends, hands every message the request causes to the handlers in arrival
order, answers ``input_request`` on the request's behalf, and is done when
:class:`~sidecar.client._request.RequestState` says so (reply and idle).
Cancelled, an action that may interrupt waits (bounded, shielded) for the
kernel to finish the request after interrupting it, so the kernel is ready
for the next one.  The messages of a request never stall the receive loops:
they wait in its inbox until the action's task takes them.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence
from contextlib import nullcontext
from typing import Final, TypeAlias, final

import anyio
import msgspec

from .._exceptions import HandlerError, KernelDied, KernelRestarted, NoReply, WireError
from ..kernel._channels import Channels
from ..kernel._inbox import Inbox
from ..transport import Channel
from ..wire import InputReply, Message
from ._handlers import Handler, deliver, notify_done
from ._request import RequestState, reply_type_of
from ._widgets import OutputWidget, Widgets

__all__ = ["Action", "ActionContext", "StdinCallback", "StdinRelay"]

log = logging.getLogger("sidecar")

StdinCallback: TypeAlias = Callable[[str, bool], Awaitable[str]]
"""Answers ``input()`` in the kernel: ``await callback(prompt, password)`` -> the text."""

StdinRelay: TypeAlias = Callable[[Message], Awaitable[Message]]
"""Hands an ``input_request`` to whoever made the request; their ``input_reply``."""

CANCEL_WAIT: Final = 10.0
"""Seconds a cancelled action waits for the interrupted request to finish."""

_COMM_TYPES: Final = frozenset({"comm_open", "comm_msg", "comm_close"})
_OUTPUT_TYPES: Final = frozenset(
    {"stream", "display_data", "update_display_data", "execute_result", "error", "clear_output"}
)


@final
class ActionContext(msgspec.Struct, frozen=True):
    """What an action needs of its kernel."""

    channels: Channels
    widgets: Widgets
    on_comm: Callable[[Channel, Message], Awaitable[None]]
    """Dispatches a comm message to widgets and comms (never raises for its content)."""
    interrupt: Callable[[], Awaitable[None]]


@final
class Action:
    """One request on its way: made, run once."""

    def __init__(
        self,
        context: ActionContext,
        channel: Channel,
        message: Message,
        handlers: Sequence[Handler],
        *,
        grace: float,
        needs_idle: bool = True,
        stdin: StdinCallback | None = None,
        relay_stdin: StdinRelay | None = None,
    ) -> None:
        self._context = context
        self._channels = context.channels
        self.channel = channel
        self.message = message
        self.handlers = handlers
        self.grace = grace
        self._stdin = stdin
        self._relay_stdin = relay_stdin
        self.state = RequestState(channel, reply_type_of(message.msg_type), needs_idle=needs_idle)
        self.errors: list[Exception] = []

    async def run(self, *, timeout: float | None, interrupt_on_cancel: bool) -> Message | None:
        """Send the request and wait until it is done; the reply (None if it has none).

        Raises:
            KernelDied, KernelRestarted: the kernel went away first.
            NoReply: the kernel went idle but never sent the reply.
            HandlerError: a handler raised (the request itself completed).
            TimeoutError: ``timeout`` expired.
        """
        channels, state, msg_id = self._channels, self.state, self.message.msg_id
        inbox = channels.register(msg_id, self.channel)
        try:
            with anyio.fail_after(timeout) if timeout is not None else nullcontext():
                try:
                    await channels.send(self.channel, self.message)
                    await self._consume(inbox, collect_errors=True)
                except anyio.get_cancelled_exc_class():
                    if interrupt_on_cancel and not state.done:
                        with anyio.CancelScope(shield=True):
                            await self._abandon(inbox)
                    raise
        finally:
            channels.unregister(msg_id)
            if self.handlers:
                with anyio.CancelScope(shield=True), anyio.move_on_after(CANCEL_WAIT):
                    reply = state.reply if state.done else None
                    await notify_done(self.handlers, self.message, reply)
        if self.errors:
            reply_content = None if state.reply is None else state.reply.content
            raise HandlerError(self.errors, reply_content) from self.errors[0]
        return state.reply

    async def _consume(self, inbox: Inbox, *, collect_errors: bool) -> None:
        state = self.state
        deadline: float | None = None
        grace = self.grace
        while not state.done:
            if deadline is None or not inbox.empty():
                # With the other half already queued, no timer is needed.
                channel, message = await inbox.get()
            else:
                with anyio.move_on_after(deadline - anyio.current_time()) as scope:
                    channel, message = await inbox.get()
                if scope.cancelled_caught:
                    self._expire(grace)
                    return
            try:
                kind = state.feed(channel, message)
            except WireError as e:
                self._channels.drop_malformed(channel, message, e)
                continue
            if kind == "stdin":
                await self._answer_stdin(message, self._stdin)
            elif message.msg_type in _COMM_TYPES:
                await self._context.on_comm(channel, message)
            elif kind == "output" and message.msg_type in _OUTPUT_TYPES:
                widget = self._context.widgets.capturing(message.parent_id)
                if widget is not None:
                    # An ipywidgets Output widget is capturing: the output is
                    # the widget's, not the request's (as in a frontend).
                    await self._capture(widget, channel, message)
                    continue
            if self.handlers:
                await self.deliver(channel, message, collect_errors=collect_errors)
            if deadline is None and state.half_done:
                # An oversized output took what followed it on iopub (the
                # idle too, as a rule): the reply is all that will come.
                grace = 0.0 if inbox.iopub_lost else self.grace
                deadline = anyio.current_time() + grace

    async def deliver(self, channel: Channel, message: Message, *, collect_errors: bool) -> None:
        """Give ``message`` to the handlers; keep what they raised, count a malformed message."""
        errors = await deliver(self.handlers, message)
        if not errors:
            return
        malformed: WireError | None = None
        for error in errors:
            if isinstance(error, WireError):
                malformed = error
            elif collect_errors:
                self.errors.append(error)
        if malformed is not None:
            self._channels.drop_malformed(channel, message, malformed)

    def _expire(self, grace: float) -> None:
        state = self.state
        if not state.expire():
            # Idle without a reply: there is nothing to return, and inventing
            # a reply would hide a broken kernel.
            raise NoReply(f"the kernel went idle but sent no reply within {grace} s")
        assert state.reply is not None
        log.warning(
            "%s: got the reply but no idle within %.1f s; completing anyway",
            state.reply.msg_type,
            grace,
        )

    async def _abandon(self, inbox: Inbox) -> None:
        """After a cancel: interrupt our request once it runs, wait until it is done."""
        state = self.state
        with anyio.move_on_after(CANCEL_WAIT) as scope:
            try:
                while not state.started:
                    channel, message = await inbox.get()
                    try:
                        kind = state.feed(channel, message)
                    except WireError as e:
                        self._channels.drop_malformed(channel, message, e)
                        continue
                    if kind == "stdin":
                        await self._answer_stdin(message, None)
                    await self.deliver(channel, message, collect_errors=False)
                if not state.done:
                    await self._context.interrupt()
                    await self._consume(inbox, collect_errors=False)
            except (KernelDied, KernelRestarted, NoReply):
                return
        if scope.cancelled_caught:
            log.warning("the cancelled request did not finish within %s s", CANCEL_WAIT)

    async def _answer_stdin(self, message: Message, stdin: StdinCallback | None) -> None:
        if message.msg_type != "input_request":
            return
        if self._relay_stdin is not None:
            await self._channels.send("stdin", await self._relay_stdin(message))
            return
        try:
            request = message.content
            prompt, password = request.prompt, request.password
        except WireError as e:
            # The kernel still waits in input(): answer, or it hangs.
            self._channels.drop_malformed("stdin", message, e)
            prompt, password, stdin = "", False, None
        if stdin is None:
            # The kernel is blocked in input(): answering is the only way to
            # unblock it.  Say clearly in the value that nobody could answer.
            log.warning("input_request with no stdin callback; answering with an empty string")
            value = ""
        else:
            value = await stdin(prompt, password)
        reply = self._channels.session.message(
            "input_reply", InputReply(value=value), parent=message
        )
        await self._channels.send("stdin", reply)

    async def _capture(self, widget: OutputWidget, channel: Channel, message: Message) -> None:
        try:
            await self._context.widgets.capture(widget, message)
        except WireError as e:
            self._channels.drop_malformed(channel, message, e)
