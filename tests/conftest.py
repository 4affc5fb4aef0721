from __future__ import annotations

import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from hypothesis import HealthCheck, settings

import sidecar

if TYPE_CHECKING:
    from jupyter_servers import RunningServer

settings.register_profile("default", deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("default")


@pytest.fixture(params=["asyncio", "trio"], scope="module")
def anyio_backend(request: pytest.FixtureRequest) -> str:
    """Every async test runs on both backends.

    Module scope lets a module share one kernel per backend (``kernel``),
    where a fresh kernel per test would prove nothing more.
    """
    return request.param  # type: ignore[no-any-return]


@pytest.fixture(scope="module")
async def kernel(anyio_backend: str) -> AsyncIterator[sidecar.Kernel]:
    """One ipykernel shared by the tests of a module, on the current backend."""
    async with sidecar.launch("python3") as k:
        yield k


def kernel_processes_of(pid: int) -> list[int]:
    """Live processes started with JPY_PARENT_PID=pid, i.e. kernels we launched."""
    found = []
    marker = f"JPY_PARENT_PID={pid}".encode()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == pid:
            continue
        try:
            environ = (entry / "environ").read_bytes()
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # A zombie is already dead; its parent is about to reap it.
        if marker in environ.split(b"\0") and stat.rsplit(")", 1)[1].split()[0] != "Z":
            found.append(int(entry.name))
    return found


@pytest.fixture(scope="session", autouse=True)
def no_orphan_kernels() -> Iterator[None]:
    """After the whole session, no kernel process of ours is left running."""
    yield
    if not Path("/proc").is_dir():
        return
    left = kernel_processes_of(os.getpid())
    assert not left, f"kernel processes left behind: {left}"


@pytest.fixture(scope="session")
def jupyter_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    """A ``jupyter server`` on loopback with a token, shared by the whole session."""
    pytest.importorskip("jupyter_server")
    from jupyter_servers import jupyter_server as start

    with start(tmp_path_factory.mktemp("jupyter-server")) as server:
        yield server


@pytest.fixture(scope="session")
def kernel_gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    """A ``jupyter kernelgateway`` on loopback with a token, shared by the whole session."""
    pytest.importorskip("kernel_gateway")
    from jupyter_servers import jupyter_server as start

    with start(tmp_path_factory.mktemp("kernel-gateway"), "gateway") as server:
        yield server
