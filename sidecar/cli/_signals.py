"""SIGINT and SIGTERM for the whole life of the command line.

A signal cancels the command, so every kernel it started is interrupted and
shut down, and its files removed, before the process exits with 128 + the
signal number.
"""

from __future__ import annotations

import logging
import signal
import sys
import threading
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from types import FrameType
from typing import Any, final

import anyio

from .._task_groups import open_task_group

__all__ = ["Signalled", "Signals", "status_of_signal", "until_signalled"]

log = logging.getLogger("sidecar.cli")


class Signalled(BaseException):
    """A signal arrived while no event loop was there to turn it into a cancellation."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


@final
class Signals:
    """SIGINT and SIGTERM for the whole life of :func:`main`.

    Installed first thing, so that Python's default (a KeyboardInterrupt
    raised wherever the code happens to be, or for SIGTERM death on the
    spot) never applies once ``main`` runs.  Outside the event loop a signal
    stops the command at once (:class:`Signalled`); inside it, the signal
    is recorded, and :func:`until_signalled` turns it into a cancellation
    whether it came before, during or after its own receiver was installed.
    With this handler in place neither trio nor asyncio installs its own
    KeyboardInterrupt handler (both only replace Python's default).
    """

    def __init__(self) -> None:
        self.caught: list[int] = []
        self.in_loop = False
        self._previous: dict[int, Any] = {}
        self.ignored: set[int] = set()
        """Signals ignored when sidecar started (a shell's background job
        ignores SIGINT): they stay ignored."""

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        self.caught.append(signum)
        if not self.in_loop:
            raise Signalled(signum)

    def install(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            return
        for signum in (signal.SIGINT, signal.SIGTERM):
            if signum in self.ignored:
                continue
            if signum not in self._previous and signal.getsignal(signum) == signal.SIG_IGN:
                self.ignored.add(signum)
                continue
            previous = signal.signal(signum, self._handle)
            self._previous.setdefault(signum, previous)

    @property
    def watched(self) -> list[signal.Signals]:
        """The signals that cancel a command."""
        return [s for s in (signal.SIGINT, signal.SIGTERM) if s not in self.ignored]

    def restore(self, *, finished: bool = False) -> None:
        """Put the handlers back; ``finished``: the process is about to exit
        with its status decided, so a late Ctrl-C is ignored rather than
        turned into death by SIGINT while the interpreter shuts down."""
        for signum, previous in self._previous.items():
            ignore = finished and signum == signal.SIGINT
            signal.signal(signum, signal.SIG_IGN if ignore else previous)
        self._previous.clear()

    @contextmanager
    def in_event_loop(self) -> Iterator[None]:
        self.in_loop = True
        try:
            yield
        finally:
            self.in_loop = False


def status_of_signal(signum: int, what: str = "") -> int:
    name = "interrupted" if signum == signal.SIGINT else "terminated"
    print(f"sidecar: {name}{what}", file=sys.stderr)
    return 128 + signum


async def until_signalled(
    command: Callable[[], Awaitable[int]], what: str, signals: Signals
) -> int:
    """``command()``, cancelled by SIGINT or SIGTERM: exit status 128 + the signal.

    Cancelling is what makes a signal safe: every kernel the command started
    is interrupted and shut down, and its files removed, before the process
    exits.  The receiver stays installed until the command has unwound, so
    further signals are swallowed rather than killing the cleanup half-way;
    and once a signal came, an error raised by the cleanup does not change
    the status.  A signal that came before the receiver was installed (while
    the event loop started) cancels the command before it begins.
    """
    if not signals.watched:
        return await command()
    caught: list[int] = []
    command_scope = anyio.CancelScope()
    with anyio.open_signal_receiver(*signals.watched) as received:
        if signals.caught:
            caught.append(signals.caught[0])
            command_scope.cancel()
        async with open_task_group() as tg:

            async def watch() -> None:
                async for signum in received:
                    if not caught:
                        caught.append(signum)
                        command_scope.cancel()

            tg.start_soon(watch)
            try:
                with command_scope:
                    status = await command()
            except Exception:
                if not caught:
                    raise
                log.warning("error while cleaning up after a signal", exc_info=True)
            finally:
                tg.cancel_scope.cancel()
    # asyncio puts Python's defaults back when its receiver closes: ours again.
    signals.install()
    if caught:
        return status_of_signal(caught[0], what)
    return status
