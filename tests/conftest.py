from __future__ import annotations

import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

import sidecar

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
