"""A kernel on a Jupyter Server, Kernel Gateway or Enterprise Gateway: :func:`connect_server`.

It composes the layers below as :func:`~sidecar.launch` does: the server's
REST API starts (or finds) the kernel, the websocket transport carries its
channels, the same routing and lifecycle run over it, and the same
:class:`~sidecar.Kernel` comes out, interrupted and restarted through REST.
"""

from __future__ import annotations

import logging
import os
import ssl
from collections.abc import AsyncIterator, Mapping
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from functools import partial
from typing import Final

import anyio

from .._exceptions import JupyterServerError
from .._task_groups import open_task_group
from ..kernel._channels import open_channels
from ..kernel._remote import KernelServer, RemoteKernel
from ..transport import Framing, Receiver, Transport, open_websocket_transport
from ..wire import Session
from ._kernel import Kernel

__all__ = ["connect_server"]

log = logging.getLogger("sidecar")

_TOKEN_VARIABLE: Final = "JUPYTER_TOKEN"


@asynccontextmanager
async def connect_server(
    url: str,
    *,
    token: str | None = None,
    kernel_name: str | None = None,
    kernel_id: str | None = None,
    path: str | None = None,
    env: Mapping[str, str] | None = None,
    headers: Mapping[str, str] | None = None,
    verify: bool | str | os.PathLike[str] | ssl.SSLContext = True,
    framing: Framing = "auto",
    ready_timeout: float = 60.0,
    shutdown_timeout: float = 10.0,
    heartbeat_interval: float | None = 5.0,
) -> AsyncIterator[Kernel]:
    """A kernel on a Jupyter Server (or Kernel Gateway, Enterprise Gateway), for the block.

    Starts a kernel through the server's REST API, or attaches to the
    running kernel ``kernel_id``; opens its channels over the server's
    websocket; yields the same :class:`Kernel` as :func:`launch` once it
    answers.  Leaving the block shuts down (shielded, bounded) a kernel it
    started, and leaves alone one it attached to.

    The kernel is the server's: :meth:`Kernel.interrupt` and
    :meth:`Kernel.restart` ask the server (REST).  When the server restarts
    it (it died, or someone restarted it) or gives up on it, waiting
    requests fail with :class:`~sidecar.KernelRestarted` or
    :class:`~sidecar.KernelDied`, new ones fail at once until it answers
    again, and then it is served again.  A dropped websocket is opened again
    with the same session id, and the server replays what the kernel sent
    meanwhile.

    Args:
        url: the server's base URL, e.g. ``http://127.0.0.1:8888`` (with its
            base path, if any: ``https://hub.example.org/user/me/``).
        token: the server's token; ``JUPYTER_TOKEN`` if None.
        kernel_name: the kernelspec to start (the server's default if None).
        kernel_id: attach to this running kernel instead of starting one.
        path: the kernel's working directory, relative to the server's root.
        env: environment variables for the kernel, for servers that take them
            (Enterprise Gateway reads ``KERNEL_*`` variables from it).
        headers: sent with every request (e.g. ``{"Authorization": "Bearer
            ..."}`` in place of the token).
        verify: TLS verification: True (system CAs), False (none, for a
            self-signed certificate you trust), a CA bundle's path, or an
            ``ssl.SSLContext``.
        framing: the websocket framing: ``auto`` (the binary
            ``v1.kernel.websocket.jupyter.org`` if the server offers it, else
            JSON), ``v1`` or ``json``.
        ready_timeout: seconds until the kernel must answer kernel_info.
        shutdown_timeout: seconds the server gets to shut down a kernel we
            started.
        heartbeat_interval: seconds between websocket pings (a socket silent
            for two is opened again), and between asking the server whether
            it still has the kernel (a kernel deleted or culled under us is
            dead to its requests, :class:`~sidecar.KernelDied`).  None for
            neither.

    Raises:
        TokenRejected: the server refused the token (at the first request).
        NoSuchKernel: the server has no kernelspec ``kernel_name``.
        JupyterServerError: the server cannot be reached, has no kernel
            ``kernel_id`` (``status`` 404), or refused to start one.
        TimeoutError: the kernel did not answer within ``ready_timeout``.
    """
    if kernel_name is not None and kernel_id is not None:
        raise ValueError("give kernel_name (start a kernel) or kernel_id (attach), not both")
    if token is None:
        token = os.environ.get(_TOKEN_VARIABLE) or None
    async with KernelServer(url, token=token, headers=headers, verify=verify) as server:
        if kernel_id is None:
            # Shielded (the requests have timeouts of their own): cancelled
            # once the server has made the kernel, we would never learn its
            # id, and it would stay on the server for good.  A cancellation
            # meanwhile takes effect in the block below, which deletes it.
            with anyio.CancelScope(shield=True):
                new_id = await server.start_kernel(kernel_name, path=path, env=env)
            remote = server.kernel(new_id)
            started = True
        else:
            remote = server.kernel(kernel_id)
            await remote.model()  # 404 now, not a websocket that never opens
            started = False
        try:
            opener = partial(
                _open_websocket,
                remote,
                framing=framing,
                heartbeat_interval=heartbeat_interval,
            )
            async with (
                open_channels(opener, Session(), owned=False) as channels,
                open_task_group() as tg,
            ):
                kernel = Kernel(channels, tg, remote=remote)
                kernel._start_background()
                if heartbeat_interval is not None:
                    tg.start_soon(
                        _watch_presence,
                        remote,
                        channels,
                        heartbeat_interval,
                        name="sidecar presence",
                    )
                try:
                    await kernel._wait_ready(ready_timeout, remote.channels_url)
                    yield kernel
                finally:
                    tg.cancel_scope.cancel()
        finally:
            if started:
                await _shutdown(remote, shutdown_timeout)


async def _watch_presence(remote: RemoteKernel, receiver: Receiver, interval: float) -> None:
    """Ask the server every ``interval`` s whether it still has the kernel.

    A kernel deleted through the REST API (by another client, or culled)
    dies without a word on our websocket: jupyter_server keeps the socket
    open and answers its pings, so a request waiting for the kernel would
    wait for ever.  Only a 404 is taken as an answer; an unreachable server
    is the websocket's to notice.
    """
    while True:
        await anyio.sleep(interval)
        try:
            await remote.model()
        except JupyterServerError as e:
            if e.status == 404:
                receiver.on_gone(
                    f"the server no longer has kernel {remote.kernel_id} (HTTP 404): "
                    "it was shut down through the server, or culled"
                )
                return
            log.debug("could not ask %s for kernel %s: %s", remote.server.url, remote.kernel_id, e)


def _open_websocket(
    remote: RemoteKernel,
    receiver: Receiver,
    session: Session,
    *,
    framing: Framing,
    heartbeat_interval: float | None,
) -> AbstractAsyncContextManager[Transport]:
    server = remote.server
    return open_websocket_transport(
        remote.channels_url,
        receiver,
        session=session,
        headers=list(server.headers.items()),
        ssl_context=server.ssl_context,
        framing=framing,
        heartbeat_interval=heartbeat_interval,
    )


async def _shutdown(remote: RemoteKernel, timeout: float) -> None:
    """Delete the kernel we started: shielded and bounded, whatever ended the block."""
    with anyio.CancelScope(shield=True), anyio.move_on_after(timeout) as scope:
        try:
            await remote.shutdown()
        except JupyterServerError as e:
            if e.status != 404:  # already gone: fine
                log.warning("could not shut down kernel %s: %s", remote.kernel_id, e)
    if scope.cancelled_caught:
        log.warning(
            "kernel %s on %s did not shut down within %s s",
            remote.kernel_id,
            remote.server.url,
            timeout,
        )
