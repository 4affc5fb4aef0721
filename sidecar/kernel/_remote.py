"""Kernels on a Jupyter Server: its REST API (``/api/kernels``, ``/api/kernelspecs``).

Jupyter Server, Kernel Gateway and Enterprise Gateway share the API: start a
kernel, look one up, interrupt, restart and delete it.  This module is the
remote counterpart of ``_process``: where a local kernel is a process we
signal, a remote one is a resource we ask the server to act on.  Its channels
go through :mod:`sidecar.transport._websocket`.

Every error is ours: a refused token is :class:`~sidecar.TokenRejected`,
every other refusal or an unreachable server :class:`~sidecar.JupyterServerError`
(the message says what was asked and what the server answered).
"""

from __future__ import annotations

import os
import ssl
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Final, final
from urllib.parse import quote, urljoin, urlsplit

from .._exceptions import JupyterServerError, NoSuchKernel, TokenRejected

if TYPE_CHECKING:
    # Imported when a server is first used: httpx costs a tenth of a second
    # that `import sidecar` would otherwise pay for every local kernel.
    import httpx

__all__ = ["KernelServer", "RemoteKernel", "make_ssl_context"]

_REQUEST_TIMEOUT: Final = 60.0
# A restart answers once the new kernel answered kernel_info; a start once
# the kernel is up.  Enterprise Gateway may be starting a pod: minutes.
_START_TIMEOUT: Final = 300.0


def make_ssl_context(verify: bool | str | os.PathLike[str] | ssl.SSLContext) -> ssl.SSLContext:
    """The TLS context for ``verify``: True (system CAs), False (no checks), a CA
    bundle's path, or a context made by the caller."""
    if isinstance(verify, ssl.SSLContext):
        return verify
    if verify is True:
        return ssl.create_default_context()
    if verify is False:
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        return context
    return ssl.create_default_context(cafile=os.fspath(verify))


@final
class KernelServer:
    """The REST API of one Jupyter Server (or gateway), used inside ``async with``.

    Args:
        url: the server's base URL, e.g. ``http://127.0.0.1:8888/`` (with the
            base path, if it has one: ``https://hub.example.org/user/me/``).
        token: sent as ``Authorization: token ...`` (unless ``headers`` has
            an ``Authorization`` of its own).
        headers: added to every request, websocket included.
        verify: TLS verification (see :func:`make_ssl_context`).
    """

    def __init__(
        self,
        url: str,
        *,
        token: str | None = None,
        headers: Mapping[str, str] | None = None,
        verify: bool | str | os.PathLike[str] | ssl.SSLContext = True,
    ) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"a Jupyter Server URL is http(s)://host[:port][/base/], not {url!r}")
        self.url: Final = parts._replace(
            path=parts.path if parts.path.endswith("/") else parts.path + "/",
            query="",
            fragment="",
        ).geturl()
        extra = dict(headers or {})
        if token and not any(k.lower() == "authorization" for k in extra):
            extra["Authorization"] = f"token {token}"
        self.headers: Final = extra
        self.ssl_context: Final = make_ssl_context(verify) if parts.scheme == "https" else None
        self._client: httpx.AsyncClient | None = None

    async def __aenter__(self) -> KernelServer:
        import httpx

        self._client = httpx.AsyncClient(
            headers=self.headers,
            verify=self.ssl_context or True,
            timeout=_REQUEST_TIMEOUT,
            trust_env=True,
        )
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        client, self._client = self._client, None
        if client is not None:
            await client.aclose()

    def endpoint(self, path: str) -> str:
        return urljoin(self.url, path)

    def channels_url(self, kernel_id: str) -> str:
        """The websocket URL of a kernel's channels."""
        return self.endpoint(f"api/kernels/{quote(kernel_id, safe='')}/channels")

    async def request(
        self, method: str, path: str, *, json: Any = None, timeout: float = _REQUEST_TIMEOUT
    ) -> Any:
        """``method`` on ``path`` (relative to the base URL); the decoded JSON answer.

        Raises:
            TokenRejected: HTTP 401 or 403.
            JupyterServerError: any other error status, or no answer.
        """
        assert self._client is not None, "use KernelServer in async with"
        import httpx

        url = self.endpoint(path)
        try:
            response = await self._client.request(method, url, json=json, timeout=timeout)
        except httpx.HTTPError as e:
            raise JupyterServerError(
                f"{method} {url}: no answer from the server ({e or type(e).__name__})", url=url
            ) from e
        status = response.status_code
        if status in (401, 403):
            raise TokenRejected(
                f"{url} refused our token (HTTP {status}); pass token= or set JUPYTER_TOKEN",
                url=url,
                status=status,
            )
        if status >= 400:
            raise JupyterServerError(
                f"{method} {url}: HTTP {status}: {_reason(response)}", url=url, status=status
            )
        if status == 204 or not response.content:
            return None
        try:
            return response.json()
        except ValueError as e:
            raise JupyterServerError(
                f"{method} {url}: the answer is not JSON (is this a Jupyter Server?)",
                url=url,
                status=status,
            ) from e

    async def kernelspecs(self) -> dict[str, Any]:
        """``GET /api/kernelspecs``: ``{"default": name, "kernelspecs": {name: ...}}``."""
        specs: dict[str, Any] = await self.request("GET", "api/kernelspecs")
        return specs

    async def start_kernel(
        self,
        kernel_name: str | None = None,
        *,
        path: str | None = None,
        env: Mapping[str, str] | None = None,
    ) -> str:
        """Start a kernel; its id.

        Raises:
            NoSuchKernel: the server has no kernelspec of that name.
        """
        if kernel_name is not None:
            specs = (await self.kernelspecs()).get("kernelspecs", {})
            if kernel_name not in specs:
                raise NoSuchKernel(kernel_name, list(specs))
        body: dict[str, Any] = {}
        if kernel_name is not None:
            body["name"] = kernel_name
        if path is not None:
            body["path"] = path
        if env:
            body["env"] = dict(env)
        model = await self.request("POST", "api/kernels", json=body, timeout=_START_TIMEOUT)
        if not isinstance(model, dict) or not isinstance(model.get("id"), str):
            raise JupyterServerError(
                f"POST {self.endpoint('api/kernels')} answered without a kernel id: {model!r}",
                url=self.endpoint("api/kernels"),
            )
        kernel_id: str = model["id"]
        return kernel_id

    def kernel(self, kernel_id: str) -> RemoteKernel:
        return RemoteKernel(self, kernel_id)


@final
class RemoteKernel:
    """One kernel on a :class:`KernelServer`, by id."""

    def __init__(self, server: KernelServer, kernel_id: str) -> None:
        self.server: Final = server
        self.kernel_id: Final = kernel_id
        self._path: Final = f"api/kernels/{quote(kernel_id, safe='')}"

    @property
    def channels_url(self) -> str:
        return self.server.channels_url(self.kernel_id)

    async def model(self) -> dict[str, Any]:
        """``GET /api/kernels/{id}``: name, execution_state, connections...

        Raises:
            JupyterServerError: no such kernel (``status`` 404).
        """
        model: dict[str, Any] = await self.server.request("GET", self._path)
        return model

    async def interrupt(self) -> None:
        """Ask the server to interrupt the kernel (by its kernelspec's interrupt mode)."""
        await self.server.request("POST", f"{self._path}/interrupt")

    async def restart(self) -> None:
        """Ask the server to restart the kernel; returns once the new one answers."""
        await self.server.request("POST", f"{self._path}/restart", timeout=_START_TIMEOUT)

    async def shutdown(self) -> None:
        """Ask the server to shut the kernel down and forget it."""
        await self.server.request("DELETE", self._path)


def _reason(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return response.reason_phrase or response.text[:300]
    if isinstance(body, dict):
        return str(body.get("message") or body.get("reason") or body)[:300]
    return str(body)[:300]
