"""Handlers: the callables and objects that get the messages of a request.

A handler is either a callable taking a :class:`~sidecar.wire.Message` (sync
or async), or an object whose ``on_<msg_type>`` methods (sync or async) get
the messages of that type, its ``__call__`` (if any) getting the rest.  An
object may also have ``on_request_done(request, reply)``, called once when a
request it was given to has ended (``reply`` is None if it ended without one:
the kernel died, restarted, or the request was cancelled).

This module is the one place that calls user code with a message: the request
engine, late output, comm callbacks and widget capture all go through
:func:`invoke` and :func:`deliver`, so "call it, await it if it is awaitable,
log what it raises" and "dispatch by ``on_<msg_type>``" are written here alone.
"""

from __future__ import annotations

import inspect
import logging
import types
import weakref
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Protocol, TypeAlias

from .._exceptions import WireError
from ..wire import Message

__all__ = ["Handler", "HeldHandler", "deliver", "hold", "invoke", "notify_done"]

log = logging.getLogger("sidecar")


class Handler(Protocol):
    """Gets every message a request causes, in arrival order; sync or async.

    Objects with ``on_<msg_type>`` methods are handlers too (their methods get
    the messages of that type and ``__call__`` the rest), as is any object
    with ``on_<msg_type>`` methods only; give such an object a ``__call__`` to
    satisfy this protocol for a type checker.
    """

    def __call__(self, message: Message, /) -> Awaitable[None] | None: ...


HeldHandler: TypeAlias = Callable[[], "Handler | None"]


async def invoke(fn: Callable[..., Any], *args: Any) -> Exception | None:
    """Call ``fn(*args)``, await the result if awaitable; the exception it raised, if any.

    The exception is logged here, but for a :class:`~sidecar.WireError` (the
    handler read a malformed message's content): that is the kernel's fault,
    which the caller counts and logs once per message.
    """
    try:
        result = fn(*args)
        if inspect.isawaitable(result):
            await result
    except WireError as e:
        return e
    except Exception as e:
        log.exception("%r raised", fn)
        return e
    return None


_METHOD_NAMES: dict[str, str] = {}


def _method_name(msg_type: str) -> str:
    # Memoized: one f-string per message is measurable at 30,000 messages/s,
    # and message types are few (a kernel inventing them is capped below).
    name = _METHOD_NAMES.get(msg_type)
    if name is None:
        name = f"on_{msg_type}"
        if len(_METHOD_NAMES) < 1024:
            _METHOD_NAMES[msg_type] = name
    return name


async def deliver(handlers: Sequence[Any], message: Message) -> list[Exception]:
    """Give ``message`` to every handler in order; what the handlers raised.

    A :class:`~sidecar.WireError` among them means the message was malformed
    (a handler read its content): the kernel's fault, not the handler's.

    :func:`invoke` written out: this runs for every message a request gets,
    and a coroutine per handler per message costs more than most handlers.
    """
    errors: list[Exception] = []
    name = _method_name(message.msg_type)
    for handler in handlers:
        target = getattr(handler, name, None)
        if target is None:
            if not callable(handler):
                continue
            target = handler
        try:
            result = target(message)
            if result is not None and inspect.isawaitable(result):
                await result
        except WireError as e:
            errors.append(e)
        except Exception as e:
            log.exception("%r raised", target)
            errors.append(e)
    return errors


async def notify_done(handlers: Sequence[Any], request: Message, reply: Message | None) -> None:
    """Call ``on_request_done(request, reply)`` of every handler that has one."""
    for handler in handlers:
        hook = getattr(handler, "on_request_done", None)
        if hook is not None:
            await invoke(hook, request, reply)


def _strong(handler: Any) -> HeldHandler:
    return lambda: handler


def hold(handler: Any) -> HeldHandler:
    """Keep a finished request's handler for late output, without keeping a collector alive.

    A collector (an object with ``on_<msg_type>`` methods, such as
    :class:`~sidecar.Outputs`) and a bound method are held weakly: once their
    owner drops them nobody could see what they would collect, and holding
    them would keep every output of the last requests in memory.  Anything
    else (a function, a lambda, a ``functools.partial``, a callable object)
    may act through its side effects alone, so it is held strongly.
    """
    try:
        if isinstance(handler, types.MethodType):
            return weakref.WeakMethod(handler)
        if _is_collector(type(handler)):
            return weakref.ref(handler)
    except TypeError:  # no __weakref__ slot
        pass
    return _strong(handler)


_COLLECTOR_TYPES: weakref.WeakKeyDictionary[type, bool] = weakref.WeakKeyDictionary()


def _is_collector(cls: type) -> bool:
    # Cached: dir() of a class costs more than the rest of a request's end.
    known = _COLLECTOR_TYPES.get(cls)
    if known is None:
        names = dir(cls)
        known = any(n.startswith("on_") and callable(getattr(cls, n, None)) for n in names)
        _COLLECTOR_TYPES[cls] = known
    return known
