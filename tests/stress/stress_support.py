"""What the stress suite shares: its scale, its seed, the figures it records, probes.

Not a test module: imported as ``stress_support``.  The suite runs in two
sizes.  By default (``python -m pytest``, and so CI) each case runs small
enough that the whole suite adds well under a minute on two cores;
``SIDECAR_STRESS=full`` (``nox -s stress``) runs each at its full size and,
with ``SIDECAR_STRESS_FIGURES=path``, records the figures of every case in
that JSON file, which ``python tests/stress/figures.py path`` prints as
tables (``docs/reliability.md`` records one full run).

Randomness (the rogue peer's fuzzing) comes from one seed,
``SIDECAR_STRESS_SEED``, so a failure is replayed by running with the seed
its message names.
"""

from __future__ import annotations

import datetime
import fcntl
import json
import os
import platform
import statistics
import sys
from collections.abc import AsyncIterator, Iterator, Sequence
from contextlib import asynccontextmanager, contextmanager
from importlib import metadata
from pathlib import Path
from typing import Any, TypeVar

import anyio
import pytest
import zmq
from conftest import kernel_processes_of
from frontends import in_thread

FULL = os.environ.get("SIDECAR_STRESS", "").lower() == "full"
"""The full size (``nox -s stress``) rather than the short one."""
SEED = int(os.environ.get("SIDECAR_STRESS_SEED", "20261124"))
FIGURES = os.environ.get("SIDECAR_STRESS_FIGURES")
"""Where to record the figures (a JSON file), if anywhere."""

T = TypeVar("T")


def scale(short: T, full: T) -> T:
    """``full`` in the full run, else ``short``."""
    return full if FULL else short


# -- figures --------------------------------------------------------------------------


def _versions() -> dict[str, str]:
    names = ["anyio", "ipykernel", "ipywidgets", "jupyter_client", "msgspec", "pyzmq", "sidecar"]
    found = {name: metadata.version(name) for name in names}
    found["trio"] = metadata.version("trio")
    found["libzmq"] = zmq.zmq_version()
    found["python"] = platform.python_version()
    return dict(sorted(found.items()))


def record(case: str, backend: str, **figures: Any) -> None:
    """Keep ``figures`` of ``case`` on ``backend`` in the figures file (if one is set).

    Read, updated and written back at once, so the file is whole after every
    test, whatever happens to the ones after it.
    """
    if not FIGURES:
        return
    path = Path(FIGURES)
    path.parent.mkdir(parents=True, exist_ok=True)
    # Locked: the soaks of both backends run at once, in two processes.
    with open(path.with_suffix(".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        _update(path, case, backend, figures)


def _update(path: Path, case: str, backend: str, figures: dict[str, Any]) -> None:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        data = {}
    data["run"] = {
        "size": "full" if FULL else "short",
        "seed": SEED,
        "date": datetime.date.today().isoformat(),
        "cores": os.cpu_count(),
        "platform": platform.platform(),
        "versions": _versions(),
    }
    data.setdefault("cases", {}).setdefault(case, {})[backend] = figures
    path.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")


def summary(values: Sequence[float], digits: int = 4) -> dict[str, float]:
    """Median and maximum of ``values``, rounded, for a figure."""
    return {
        "median": round(statistics.median(values), digits),
        "max": round(max(values), digits),
    }


# -- probes ---------------------------------------------------------------------------


def open_fds() -> int:
    """File descriptors open in this process now."""
    return len(os.listdir("/proc/self/fd"))


def rss_kib() -> int:
    """This process's resident set size (VmRSS), in KiB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS in /proc/self/status")


def our_kernels() -> set[int]:
    """The live kernel processes this process started (directly or through jupyter_client)."""
    return set(kernel_processes_of(os.getpid()))


@contextmanager
def no_new_kernels_left() -> Iterator[None]:
    """Asserts that every kernel process started in the block is gone when it ends."""
    before = our_kernels()
    yield
    left = our_kernels() - before
    assert not left, f"kernel processes left behind: {sorted(left)}"


async def wait_until(predicate: Any, what: str, timeout: float = 10.0) -> float:
    """Poll ``predicate`` until true; the seconds it took.  Fails naming ``what``."""
    started = anyio.current_time()
    try:
        with anyio.fail_after(timeout):
            while not predicate():
                await anyio.sleep(0.005)
    except TimeoutError:
        raise AssertionError(f"not within {timeout} s: {what}") from None
    return anyio.current_time() - started


# -- a kernel that someone else (jupyter_client) owns -----------------------------------


SLOW_START_VARIABLE = "SIDECAR_STRESS_SLOW_START"


def slow_starting_kernelspec(root: Path) -> str:
    """A kernelspec under ``root`` whose ipykernel sleeps $SIDECAR_STRESS_SLOW_START
    seconds before it binds: a restart that takes that long to rebind."""
    spec_dir = root / "kernels" / "stress-slowpy"
    spec_dir.mkdir(parents=True, exist_ok=True)
    code = (
        f"import os, time; time.sleep(float(os.environ.get({SLOW_START_VARIABLE!r}, 0)));"
        " from ipykernel.kernelapp import launch_new_instance; launch_new_instance()"
    )
    argv = [sys.executable, "-c", code, "-f", "{connection_file}"]
    (spec_dir / "kernel.json").write_text(json.dumps({"argv": argv, "display_name": "slow"}))
    return "stress-slowpy"


@asynccontextmanager
async def kernel_of_jupyter_client(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, *, slow_start: bool = False
) -> AsyncIterator[Any]:
    """A kernel that jupyter_client's (blocking) KernelManager starts and owns, not us.

    With ``slow_start``, its kernelspec is :func:`slow_starting_kernelspec`.
    """
    from jupyter_client.manager import KernelManager

    name = "python3"
    if slow_start:
        monkeypatch.setenv("JUPYTER_PATH", str(tmp_path))
        name = slow_starting_kernelspec(tmp_path)
    manager = KernelManager(kernel_name=name)
    manager.connection_file = str(tmp_path / "kernel.json")
    await in_thread(manager.start_kernel)
    try:
        yield manager
    finally:
        with anyio.CancelScope(shield=True):
            await in_thread(lambda: manager.shutdown_kernel(now=True))
