"""Real Jupyter Servers and Kernel Gateways on loopback, for the remote kernel tests.

Not a test module: imported as ``jupyter_servers``.  Each server runs in a
process of its own, with its own config, data and runtime directories (no
user config leaks in), a token, and a port of its own; it is stopped (and its
kernels with it) when the ``with`` block ends.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Literal

import httpx
import msgspec

TOKEN = "sidecar-test-token"


class RunningServer(msgspec.Struct, frozen=True):
    url: str
    token: str
    process: subprocess.Popen[bytes]
    log: Path


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _argv(kind: Literal["server", "gateway"], port: int, root: Path) -> list[str]:
    if kind == "server":
        return [
            sys.executable,
            "-m",
            "jupyter_server",
            f"--ServerApp.token={TOKEN}",
            "--ServerApp.ip=127.0.0.1",
            f"--ServerApp.port={port}",
            "--ServerApp.port_retries=0",
            "--ServerApp.open_browser=False",
            "--ServerApp.allow_root=True",
            f"--ServerApp.root_dir={root}",
            # What a jupyter_server extension installed here would add is not
            # what these tests are about.
            "--ServerApp.jpserver_extensions={}",
        ]
    return [
        sys.executable,
        "-m",
        "kernel_gateway",
        f"--KernelGatewayApp.auth_token={TOKEN}",
        "--KernelGatewayApp.ip=127.0.0.1",
        f"--KernelGatewayApp.port={port}",
        "--KernelGatewayApp.port_retries=0",
    ]


@contextmanager
def jupyter_server(
    tmp: Path, kind: Literal["server", "gateway"] = "server", *, timeout: float = 30.0
) -> Iterator[RunningServer]:
    """Start a ``jupyter server`` (or ``jupyter kernelgateway``); stop it on exit."""
    root = tmp / "root"
    root.mkdir(exist_ok=True)
    env = {
        **os.environ,
        "JUPYTER_CONFIG_DIR": os.fspath(tmp / "config"),
        "JUPYTER_RUNTIME_DIR": os.fspath(tmp / "runtime"),
        "JUPYTER_TOKEN": "",
        "PYTHONUNBUFFERED": "1",
    }
    env.pop("JUPYTER_TOKEN")
    for _attempt in range(3):
        port = _free_port()
        log = tmp / f"{kind}-{port}.log"
        with log.open("wb") as out:
            process = subprocess.Popen(
                _argv(kind, port, root),
                cwd=root,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        url = f"http://127.0.0.1:{port}"
        try:
            if _wait_up(url, process, timeout):
                break
        except BaseException:
            _stop(process)
            raise
        _stop(process)
    else:
        raise RuntimeError(f"{kind} did not start:\n{log.read_text()[-3000:]}")
    try:
        yield RunningServer(url=url, token=TOKEN, process=process, log=log)
    finally:
        _stop(process)


def _wait_up(url: str, process: subprocess.Popen[bytes], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    headers = {"Authorization": f"token {TOKEN}"}
    while time.monotonic() < deadline:
        if process.poll() is not None:
            return False  # e.g. the port was taken meanwhile
        try:
            if httpx.get(f"{url}/api/kernelspecs", headers=headers, timeout=1).status_code == 200:
                return True
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    return False


def _stop(process: subprocess.Popen[bytes]) -> None:
    """SIGINT twice is how jupyter_server shuts down at once, kernels included."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
