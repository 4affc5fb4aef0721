"""Getting a kernel: :func:`launch` one from its kernelspec, or :func:`connect` to one.

Both compose the layers below: a ZeroMQ transport for the connection file,
the channels (routing and lifecycle) over it, and for a launched kernel its
process, watched for exit and stopped for sure when the block is left.
"""

from __future__ import annotations

import logging
import os
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import AbstractAsyncContextManager, AsyncExitStack, asynccontextmanager
from functools import partial
from typing import Any, Final, Literal

import anyio
import msgspec

from .._exceptions import KernelError, KernelStartError
from .._task_groups import open_task_group
from ..kernel._channels import open_channels
from ..kernel._kernelspec import KernelSpec, get_kernelspec
from ..kernel._process import make_kernel_files
from ..transport import Receiver, Transport, ZmqContext, open_zmq_transport
from ..wire import ConnectionInfo, Session, read_connection_file
from ._kernel import Kernel, _ready_or_died, _start_process

__all__ = ["connect", "launch"]

log = logging.getLogger("sidecar")


def _open_zmq(
    info: ConnectionInfo,
    receiver: Receiver,
    session: Session,
    *,
    heartbeat_interval: float | None,
    max_message_size: int | None,
    context: ZmqContext | None,
) -> AbstractAsyncContextManager[Transport]:
    return open_zmq_transport(
        info,
        receiver,
        session=session,
        heartbeat_interval=heartbeat_interval,
        max_message_size=max_message_size,
        context=context,
    )


@asynccontextmanager
async def connect(
    connection: str | os.PathLike[str] | ConnectionInfo,
    *,
    ready_timeout: float = 30.0,
    heartbeat_interval: float | None = 2.0,
    interrupt_mode: Literal["signal", "message"] = "message",
    max_message_size: int | None = None,
    context: ZmqContext | None = None,
) -> AsyncIterator[Kernel]:
    """Connect to a kernel someone else started, by its connection file.

    Returns once every channel is proven live.  Leaving the block closes the
    sockets and leaves the kernel running: call :meth:`Kernel.shutdown` to
    stop it.

    A kernel we connect to is not ours: when it stops answering heartbeats
    (its manager restarts it, it is paused), waiting requests fail with
    :class:`~sidecar.KernelDied` and new ones fail at once until it answers
    again; then it is served again, whether it is the same process or a new
    one (see :attr:`Kernel.state`).

    Raises:
        ConnectionFileError: the file is missing or invalid.
        AuthenticationError: the kernel signs with another key (in seconds).
        TimeoutError: the kernel did not answer within ``ready_timeout``; the
            message says what did answer (nothing, only the heartbeat...).
        KernelDied: its heartbeat stopped while connecting.
    """
    if isinstance(connection, ConnectionInfo):
        info, source = connection, "the connection info given"
    else:
        info, source = read_connection_file(connection), os.fspath(connection)
    opener = partial(
        _open_zmq,
        info,
        heartbeat_interval=heartbeat_interval,
        max_message_size=max_message_size,
        context=context,
    )
    async with (
        open_channels(opener, Session.from_connection_info(info), owned=False) as channels,
        open_task_group() as tg,
    ):
        kernel = Kernel(channels, tg, connection_info=info, interrupt_mode=interrupt_mode)
        kernel._start_background()
        try:
            await _ready_or_died(kernel, ready_timeout, source)
            yield kernel
        finally:
            tg.cancel_scope.cancel()


_PORT_IN_USE: Final = ("Address already in use", "EADDRINUSE")


@asynccontextmanager
async def launch(
    kernel_name: str = "python3",
    *,
    transport: Literal["ipc", "tcp"] = "tcp",
    ip: str = "127.0.0.1",
    encrypt: bool = False,
    cwd: str | os.PathLike[str] | None = None,
    env: Mapping[str, str] | None = None,
    extra_arguments: Sequence[str] = (),
    startup_timeout: float = 60.0,
    shutdown_timeout: float = 5.0,
    heartbeat_interval: float | None = 2.0,
    max_message_size: int | None = None,
    context: ZmqContext | None = None,
    start_attempts: int = 3,
) -> AsyncIterator[Kernel]:
    """Launch a kernel from its kernelspec, and own it for the block.

    The kernel runs in its own process group.  Leaving the block, whatever
    happened in it (error, cancellation, timeout), asks the kernel to shut
    down, then terminates and kills its process group, reaps it, and removes
    its connection file.

    Args:
        kernel_name: the kernelspec's name.
        transport: ``"tcp"`` on ``ip`` (the default: every kernel that
            jupyter_client can start supports it), or ``"ipc"``: Unix domain
            sockets in a private directory, with no port race and nothing
            reachable from the network, for kernels that support it
            (ipykernel does; xeus-python does not).
        encrypt: for TCP, give the kernel a CurveZMQ keypair so its traffic is
            encrypted (the kernel must support it).
        cwd: the kernel's working directory.
        env: variables added to the kernel's environment.
        extra_arguments: appended to the kernelspec's command line (e.g.
            ``["--HistoryManager.hist_file=:memory:"]`` for ipykernel).
        startup_timeout: seconds until the kernel must answer kernel_info.
        shutdown_timeout: seconds a kernel gets to exit before it is killed.
        heartbeat_interval: seconds between heartbeats; None for none.
        max_message_size: the largest frame, in bytes, taken from the kernel
            (None: no limit).  A larger one is dropped unread, so a kernel
            that prints gigabytes cannot exhaust our memory: an output that
            large becomes a placeholder output, a reply that large fails its
            request with :class:`~sidecar.MessageTooLarge`, and the channel
            keeps working.
        context: a pyzmq ``Context`` to share with other kernels (by default
            each has its own).
        start_attempts: a kernel that cannot bind its ports is retried this
            many times on fresh ports.

    Raises:
        NoSuchKernel: no kernelspec of that name.
        KernelStartError: the kernel exited or did not answer in time (the
            error carries the tail of its output).
    """
    spec = get_kernelspec(kernel_name)
    options = _LaunchOptions(
        transport=transport,
        ip=ip,
        encrypt=encrypt,
        process={"cwd": cwd, "env": env, "extra_arguments": list(extra_arguments)},
        startup_timeout=startup_timeout,
        shutdown_timeout=shutdown_timeout,
        heartbeat_interval=heartbeat_interval,
        max_message_size=max_message_size,
        context=context,
    )
    for attempt in range(1, start_attempts + 1):
        stack = AsyncExitStack()
        try:
            kernel = await stack.enter_async_context(_launch_once(spec, options))
        except KernelStartError as e:
            if attempt < start_attempts and any(s in e.stderr for s in _PORT_IN_USE):
                log.info("the kernel could not bind its ports; retrying on fresh ones")
                continue
            raise
        break
    async with stack:
        yield kernel


class _LaunchOptions(msgspec.Struct, kw_only=True, frozen=True):
    transport: Literal["ipc", "tcp"]
    ip: str
    encrypt: bool
    process: dict[str, Any]
    startup_timeout: float
    shutdown_timeout: float
    heartbeat_interval: float | None
    max_message_size: int | None
    context: Any


@asynccontextmanager
async def _launch_once(spec: KernelSpec, options: _LaunchOptions) -> AsyncIterator[Kernel]:
    files = make_kernel_files(
        spec.name, transport=options.transport, ip=options.ip, curve=options.encrypt
    )
    kernel: Kernel | None = None
    try:
        async with open_task_group() as tg:
            process = await _start_process(spec, files, tg, options.process)
            try:
                opener = partial(
                    _open_zmq,
                    files.info,
                    heartbeat_interval=options.heartbeat_interval,
                    max_message_size=options.max_message_size,
                    context=options.context,
                )
                session = Session.from_connection_info(files.info)
                async with open_channels(opener, session, owned=True) as channels:
                    kernel = Kernel(
                        channels,
                        tg,
                        connection_info=files.info,
                        process=process,
                        spec=spec,
                        interrupt_mode=spec.interrupt_mode,
                        files=files,
                        start_options=options.process,
                    )
                    kernel._watch(process)
                    kernel._start_background()
                    await _ready_or_died(kernel, options.startup_timeout, spec.name)
                    try:
                        yield kernel
                    finally:
                        await _shutdown(kernel, options.shutdown_timeout)
            finally:
                # Whatever happened, the process (the current one, after
                # restarts) is gone when we leave.
                last = kernel.process if kernel is not None and kernel.process else process
                await last.stop(options.shutdown_timeout)
                tg.cancel_scope.cancel()
    finally:
        files.remove()


async def _shutdown(kernel: Kernel, timeout: float) -> None:
    """Ask politely, bounded and shielded; :meth:`KernelProcess.stop` does the rest."""
    process = kernel.process
    if process is None or process.returncode is not None or kernel._channels.error is not None:
        return
    with anyio.CancelScope(shield=True), anyio.move_on_after(timeout / 2):
        try:
            await kernel.shutdown(timeout=None)
        except KernelError:
            return
        await process.wait()
