"""A task group that gives back a lone exception as itself (used by every layer)."""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anyio
import anyio.abc

if sys.version_info < (3, 11):
    from exceptiongroup import BaseExceptionGroup  # type: ignore[import-not-found,unused-ignore]

__all__ = ["open_task_group"]


@asynccontextmanager
async def open_task_group() -> AsyncIterator[anyio.abc.TaskGroup]:
    """A task group that raises a lone exception as itself.

    anyio (like trio) wraps whatever leaves a task group in an
    ``ExceptionGroup``, even the block's own exception when the background
    tasks were merely cancelled.  sidecar's context managers promise the
    caller its own exception back (``except KeyError`` must work around
    ``async with sidecar.launch()``), so a group holding exactly one
    exception is unwrapped; a real group (two tasks failed) stays a group.
    """
    try:
        async with anyio.create_task_group() as tg:
            yield tg
    except BaseExceptionGroup as group:
        if len(group.exceptions) == 1:
            raise group.exceptions[0] from None
        raise
