"""Processes the benchmarks start besides clients: kernels, flood kernels, peer venvs.

Standard library only (at import time): worker processes of kernel-sidecar
run from their own virtualenv, which has neither sidecar nor its dependencies,
and import this module too.
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import shutil
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import IO, Any

REPO = Path(__file__).resolve().parent.parent

KERNEL_SIDECAR = "kernel-sidecar 1.0"
KERNEL_SIDECAR_REQUIREMENT = "kernel-sidecar==1.*"
KERNEL_PROXY = "jupyter-kernel-proxy 1.0"
KERNEL_PROXY_REQUIREMENT = "jupyter-kernel-proxy==1.*"
INSTALL_TIMEOUT = 300.0
START_TIMEOUT = 60.0


# -- peers, each in a virtualenv of its own ------------------------------------------


def _cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "sidecar-bench"


def _peer_python(venv_name: str, requirement: str, probe: str) -> tuple[str | None, str]:
    """The interpreter of ``~/.cache/sidecar-bench/<venv_name>`` with ``requirement``
    installed (made on first use); or None and why not.

    ``probe`` is Python code run by that interpreter that imports the package
    and prints its version, which is the second item on success.
    """
    venv = _cache_dir() / venv_name
    python = venv / "bin" / "python"
    marker = venv / ".installed"
    if not marker.exists():
        shutil.rmtree(venv, ignore_errors=True)
        venv.parent.mkdir(parents=True, exist_ok=True)
        steps = [
            [sys.executable, "-m", "venv", str(venv)],
            [str(python), "-m", "pip", "install", "-q", requirement],
        ]
        for step in steps:
            try:
                done = subprocess.run(
                    step, capture_output=True, text=True, timeout=INSTALL_TIMEOUT, check=False
                )
            except (OSError, subprocess.TimeoutExpired) as e:
                return None, f"cannot install {requirement}: {e}"
            if done.returncode != 0:
                tail = (done.stderr or done.stdout).strip().splitlines()[-1:] or ["?"]
                return None, f"cannot install {requirement}: {tail[0]}"
        marker.touch()
    try:
        done = subprocess.run(
            [str(python), "-c", probe], capture_output=True, text=True, timeout=60, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as e:
        return None, f"{requirement} does not import: {e}"
    if done.returncode != 0:
        tail = done.stderr.strip().splitlines()[-1:] or ["?"]
        return None, f"{requirement} does not import: {tail[0]}"
    return str(python), done.stdout.strip()


def kernel_sidecar_python() -> tuple[str | None, str]:
    """The interpreter of a virtualenv with kernel-sidecar 1.x; or None and why not.

    The virtualenv lives in ``~/.cache/sidecar-bench/kernel-sidecar-venv``
    (``$XDG_CACHE_HOME`` is honoured) and is made on first use with
    ``python -m venv`` and ``pip install "kernel-sidecar==1.*"``: its pins
    (pydantic, an older pyzmq or jupyter_client) must not touch sidecar's
    environment.  Set ``SIDECAR_BENCH_NO_KERNEL_SIDECAR=1`` to skip it.
    On success the second item is kernel-sidecar's version.
    """
    if os.environ.get("SIDECAR_BENCH_NO_KERNEL_SIDECAR"):
        return None, "skipped (SIDECAR_BENCH_NO_KERNEL_SIDECAR is set)"
    return _peer_python(
        "kernel-sidecar-venv",
        KERNEL_SIDECAR_REQUIREMENT,
        "import kernel_sidecar.client, importlib.metadata as m; print(m.version('kernel-sidecar'))",
    )


def kernel_proxy_python() -> tuple[str | None, str]:
    """The interpreter of a virtualenv with jupyter-kernel-proxy 1.x; or None and why not.

    As :func:`kernel_sidecar_python`, in ``~/.cache/sidecar-bench/kernel-proxy-venv``
    (it brings tornado and six, which sidecar does not use);
    ``SIDECAR_BENCH_NO_KERNEL_PROXY=1`` skips it.
    """
    if os.environ.get("SIDECAR_BENCH_NO_KERNEL_PROXY"):
        return None, "skipped (SIDECAR_BENCH_NO_KERNEL_PROXY is set)"
    return _peer_python(
        "kernel-proxy-venv",
        KERNEL_PROXY_REQUIREMENT,
        "import jupyter_kernel_proxy, importlib.metadata as m; "
        "print(m.version('jupyter-kernel-proxy'))",
    )


# -- kernels and flood kernels, started by hand ---------------------------------------


def write_connection_file(path: Path, name: str = "python3") -> dict[str, Any]:
    """An IPC connection file at ``path`` (endpoints next to it); its content."""
    info = {
        "transport": "ipc",
        "ip": str(path.with_suffix("")),
        "shell_port": 1,
        "iopub_port": 2,
        "stdin_port": 3,
        "control_port": 4,
        "hb_port": 5,
        "key": uuid.uuid4().hex,
        "signature_scheme": "hmac-sha256",
        "kernel_name": name,
    }
    path.write_text(json.dumps(info))
    return info


def start_ipykernel(
    python: str, connection_file: Path, env: dict[str, str] | None = None
) -> subprocess.Popen[bytes]:
    """``python -m ipykernel_launcher -f connection_file``, as a child of this process."""
    env = dict(os.environ, **(env or {}), JPY_PARENT_PID=str(os.getpid()))
    return subprocess.Popen(
        [python, "-m", "ipykernel_launcher", "-f", str(connection_file)],
        stdin=subprocess.DEVNULL,
        stdout=sys.stderr,
        env=env,
    )


def stop_process(proc: subprocess.Popen[Any], timeout: float = 5.0) -> None:
    """Terminate ``proc`` (kill it if it lingers) and reap it."""
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


class FloodProcess:
    """A :mod:`benchmarks._flood_kernel` process, and the lines it prints."""

    def __init__(self, python: str, connection_file: Path, n: int) -> None:
        self.connection_file = connection_file
        env = dict(os.environ, JPY_PARENT_PID=str(os.getpid()))
        self.proc = subprocess.Popen(
            [
                python,
                "-m",
                "benchmarks._flood_kernel",
                "--connection-file",
                str(connection_file),
                "--n",
                str(n),
            ],
            cwd=REPO,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            env=env,
        )
        self._stdout: IO[bytes] = self.proc.stdout  # type: ignore[assignment]
        self._buffer = b""
        self.read(START_TIMEOUT)  # {"ready": ...}: the connection file is written

    @property
    def pid(self) -> int:
        return self.proc.pid

    def read(self, timeout: float) -> dict[str, Any]:
        """The generator's next JSON line (after each flood: its send times)."""
        fd = self._stdout.fileno()
        deadline = time.monotonic() + timeout
        while b"\n" not in self._buffer:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([fd], [], [], left)[0]:
                raise RuntimeError(f"the flood kernel said nothing within {timeout:.0f} s")
            chunk = os.read(fd, 1 << 16)
            if not chunk:
                raise RuntimeError(f"the flood kernel exited (status {self.proc.wait()})")
            self._buffer += chunk
        line, self._buffer = self._buffer.split(b"\n", 1)
        data: dict[str, Any] = json.loads(line)
        return data

    def stop(self) -> None:
        stop_process(self.proc)
        self._stdout.close()
        self.connection_file.unlink(missing_ok=True)
