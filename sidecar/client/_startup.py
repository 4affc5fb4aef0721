"""Bringing a kernel up and noticing it go: start its process, wait until it
is ready (or say why it is not), watch the process exit."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import anyio
import anyio.abc

from .._exceptions import AuthenticationError, KernelDied, KernelStartError
from ..kernel._channels import Channels
from ..kernel._kernelspec import KernelSpec
from ..kernel._lifecycle import Event
from ..kernel._process import KernelFiles, KernelProcess, start_kernel_process
from ..wire import Message

__all__ = ["start_process", "wait_ready", "watch_process"]


async def watch_process(
    channels: Channels, process: KernelProcess, scope: anyio.CancelScope
) -> None:
    """Tell ``channels`` when ``process`` exits (unless ``scope`` is cancelled first)."""
    with scope:
        code = await process.wait()
        channels.handle(Event.PROCESS_EXITED, "the kernel process exited", exit_code=code)


async def start_process(
    spec: KernelSpec, files: KernelFiles, tg: anyio.abc.TaskGroup, options: Mapping[str, Any]
) -> KernelProcess:
    """Start the kernel of ``spec``; a missing program is a :class:`~sidecar.KernelStartError`."""
    try:
        return await start_kernel_process(spec, files, tg, **options)
    except OSError as e:
        raise KernelStartError(f"cannot start kernel {spec.name!r} ({spec.argv[0]}): {e}") from e


async def wait_ready(
    channels: Channels, process: KernelProcess | None, timeout: float, source: str
) -> Message:
    """Wait until the kernel is ready (see :meth:`Channels.wait_ready`); its kernel_info reply.

    A kernel that is not ready gets an error that says why: the tail of its
    output if we launched it (``process``), what answered if we did not.
    ``source`` names where the connection came from (a connection file).

    Raises:
        AuthenticationError: the kernel signs with another key.
        KernelStartError: the launched kernel exited or did not answer.
        TimeoutError: the kernel we connect to did not answer in time.
        KernelDied: it died meanwhile.
    """
    try:
        with anyio.fail_after(timeout):
            reply = await channels.wait_ready()
    except AuthenticationError as e:
        raise AuthenticationError(f"{source}: {e}") from None
    except (KernelDied, TimeoutError) as e:
        if process is None:
            if isinstance(e, TimeoutError):
                raise TimeoutError(_no_answer(channels, timeout, source)) from None
            raise
        with anyio.CancelScope(shield=True):
            with anyio.move_on_after(0.5):
                await process.wait()
            await anyio.sleep(0.05)  # the last lines of stderr
        reason = (
            "the kernel exited during start-up"
            if process.returncode is not None
            else f"the kernel did not answer within {timeout} s"
        )
        raise KernelStartError(
            reason, exit_code=process.returncode, stderr=process.log_tail()
        ) from e
    channels.handle(Event.READY)
    return reply


def _no_answer(channels: Channels, timeout: float, source: str) -> str:
    """Why connecting timed out, from what was seen meanwhile."""
    shell = channels.transport.describe("shell")
    if channels.heartbeat_answered:
        return (
            f"{source}: the kernel answers its heartbeat but not kernel_info_request "
            f"on {shell} within {timeout} s"
        )
    if channels.statistics().received:
        return f"{source}: the kernel did not answer kernel_info_request within {timeout} s"
    return (
        f"{source}: no kernel answered within {timeout} s (nothing at {shell}): "
        "is the kernel running?"
    )
