"""Kernel processes: connection files, starting, signalling, and stopping for sure.

A kernel is started in its own session (so its own process group), with stdin
from ``/dev/null`` and ``JPY_PARENT_PID`` set, so that ipykernel exits by
itself if we die without cleaning up.  Its stdout and stderr are drained into
a bounded log (the last lines are kept for error messages and ``--kernel-log``)
and to the ``sidecar.kernel`` logger.

Stopping escalates: the caller first asks politely (``shutdown_request`` on
control, in the client layer), then :meth:`KernelProcess.stop` sends SIGTERM
to the process group, waits, then SIGKILL, and always reaps.  It runs shielded
from cancellation, so a cancelled ``async with`` still leaves no process behind.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import uuid
from collections import deque
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Final, Literal, final

import anyio
import anyio.abc
from jupyter_core.paths import jupyter_runtime_dir

from ..transport import curve_keypair
from ..wire import ConnectionInfo, write_connection_file
from ._kernelspec import KernelSpec

__all__ = ["KernelFiles", "KernelProcess", "make_kernel_files", "start_kernel_process"]

log = logging.getLogger("sidecar.kernel")

_LOG_LINES: Final = 200
# An AF_UNIX path is limited to 108 bytes on Linux (104 on macOS).
_MAX_IPC_PATH: Final = 100
_recent_ports: set[int] = set()


@final
class KernelFiles:
    """The connection file, and for IPC the private socket directory, of one kernel."""

    def __init__(self, info: ConnectionInfo, connection_file: Path, ipc_dir: Path | None) -> None:
        self.info = info
        self.connection_file = connection_file
        self.ipc_dir = ipc_dir

    def remove(self) -> None:
        self.connection_file.unlink(missing_ok=True)
        if self.ipc_dir is not None:
            shutil.rmtree(self.ipc_dir, ignore_errors=True)


def _runtime_dir() -> Path:
    path = Path(jupyter_runtime_dir())
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    return path


def _free_ports(ip: str, count: int = 5) -> list[int]:
    """Ports free right now, all distinct, none handed out recently by us.

    All sockets stay bound until every port is picked, so no two are equal;
    the kernel binds them later, and a port taken in between is caught by the
    caller's retry.
    """
    family = socket.AF_INET6 if ":" in ip else socket.AF_INET
    held: list[socket.socket] = []
    ports: list[int] = []
    try:
        while len(ports) < count:
            s = socket.socket(family, socket.SOCK_STREAM)
            held.append(s)
            s.bind((ip, 0))
            port = s.getsockname()[1]
            if port not in _recent_ports:
                ports.append(port)
    finally:
        for s in held:
            s.close()
    _recent_ports.update(ports)
    if len(_recent_ports) > 4096:
        _recent_ports.clear()
    return ports


def make_kernel_files(
    kernel_name: str,
    *,
    transport: Literal["ipc", "tcp"],
    ip: str = "127.0.0.1",
    key: str | None = None,
    curve: bool = False,
) -> KernelFiles:
    """Choose endpoints and write a fresh connection file (mode 0600)."""
    runtime = _runtime_dir()
    kid = uuid.uuid4().hex
    key = uuid.uuid4().hex if key is None else key
    ipc_dir: Path | None = None
    public: str | None = None
    secret: str | None = None
    if curve:
        public, secret = curve_keypair()
    if transport == "ipc":
        # IPC "ports" are suffixes of a path in a private (0700) directory.
        ipc_dir = Path(tempfile.mkdtemp(prefix="sidecar-", dir=runtime))
        if len(str(ipc_dir)) + 10 > _MAX_IPC_PATH:
            shutil.rmtree(ipc_dir, ignore_errors=True)
            ipc_dir = Path(tempfile.mkdtemp(prefix="sidecar-"))
        host, ports = str(ipc_dir / "k"), [1, 2, 3, 4, 5]
    else:
        host, ports = ip, _free_ports(ip)
    shell, iopub, stdin, control, hb = ports
    info = ConnectionInfo(
        transport=transport,
        ip=host,
        shell_port=shell,
        iopub_port=iopub,
        stdin_port=stdin,
        control_port=control,
        hb_port=hb,
        key=key,
        kernel_name=kernel_name,
        curve_publickey=public,
        curve_secretkey=secret,
    )
    path = runtime / f"kernel-sidecar-{kid}.json"
    write_connection_file(info, path)
    return KernelFiles(info, path, ipc_dir)


@final
class KernelProcess:
    """A kernel process we started and are responsible for."""

    def __init__(self, spec: KernelSpec, process: anyio.abc.Process) -> None:
        self.spec = spec
        self._process = process
        self.pid: Final = process.pid
        self._log: deque[str] = deque(maxlen=_LOG_LINES)

    @property
    def returncode(self) -> int | None:
        """The exit status once the process has exited, else None."""
        return self._process.returncode

    def log_tail(self, lines: int = 30) -> str:
        """The last ``lines`` lines the kernel wrote to stdout or stderr."""
        return "\n".join(list(self._log)[-lines:])

    async def _drain(self, stream: anyio.abc.ByteReceiveStream, name: str) -> None:
        pending = b""
        # Closed here at end of file: trio leaves the read end open until the
        # process object is collected, a descriptor per launch.
        async with stream:
            async for chunk in stream:
                pending += chunk
                *complete, pending = pending.split(b"\n")
                for raw in complete:
                    line = raw.decode(errors="replace")
                    self._log.append(line)
                    log.debug("[kernel %s %s] %s", self.pid, name, line)
        if pending:
            self._log.append(pending.decode(errors="replace"))

    async def wait(self) -> int:
        """Wait for the process to exit; its exit status."""
        return await self._process.wait()

    def signal(self, signum: int) -> None:
        """Send ``signum`` to the kernel's whole process group."""
        if self._process.returncode is not None:
            return
        try:
            if sys.platform == "win32":
                self._process.send_signal(signum)
            else:
                os.killpg(self.pid, signum)
        except ProcessLookupError:
            pass

    def interrupt(self) -> None:
        """SIGINT to the process group: what ``interrupt_mode: signal`` means."""
        self.signal(signal.SIGINT)

    async def stop(self, grace: float = 5.0) -> int | None:
        """Terminate, then kill, the process group, and reap; shielded, bounded.

        Call after a polite ``shutdown_request`` had its chance (the caller
        waits for that, if it asked): this sends SIGTERM at once, and SIGKILL
        ``grace / 2`` later.  A kernel cancelled while starting was never
        asked, and waiting for it to leave by itself only delayed the exit.
        """
        process = self._process
        with anyio.CancelScope(shield=True):
            for signum in (signal.SIGTERM, signal.SIGKILL):
                if process.returncode is not None:
                    break
                self.signal(signum)
                with anyio.move_on_after(grace / 2 if signum != signal.SIGKILL else 10):
                    await process.wait()
            if sys.platform != "win32":
                # The kernel may have left children in its group (e.g. a
                # subprocess it spawned); they must not outlive it.
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(self.pid, signal.SIGKILL)
        return process.returncode


async def start_kernel_process(
    spec: KernelSpec,
    files: KernelFiles,
    task_group: anyio.abc.TaskGroup,
    *,
    cwd: str | os.PathLike[str] | None = None,
    env: Mapping[str, str] | None = None,
    extra_arguments: Sequence[str] = (),
) -> KernelProcess:
    """Start the kernel of ``spec`` on ``files``; its output is drained in ``task_group``."""
    full_env = dict(os.environ)
    full_env.update(spec.env)
    if env:
        full_env.update(env)
    full_env["JPY_PARENT_PID"] = str(os.getpid())
    argv = [*spec.command(str(files.connection_file)), *extra_arguments]
    process = await anyio.open_process(
        argv,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        cwd=cwd,
        env=full_env,
        start_new_session=sys.platform != "win32",
    )
    kernel = KernelProcess(spec, process)
    assert process.stdout is not None
    assert process.stderr is not None
    task_group.start_soon(kernel._drain, process.stdout, "stdout", name="sidecar kernel stdout")
    task_group.start_soon(kernel._drain, process.stderr, "stderr", name="sidecar kernel stderr")
    return kernel
