"""``sidecar serve`` as a newcomer uses it: a process, real frontends, signals.

The command runs as a subprocess; frontends are jupyter_client's
BlockingKernelClient and ``jupyter console --existing`` driven in tmux.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import nbformat
import pytest
from conftest import kernel_processes_of
from frontends import frontend, in_thread, stdout_of

pytestmark = [pytest.mark.kernel]

SIDECAR = [sys.executable, "-m", "sidecar"]


@contextmanager
def sidecar_serve(*args: str, ready: Path) -> Iterator[subprocess.Popen[str]]:
    """``sidecar serve ARGS``, once its connection file ``ready`` exists; stopped with SIGTERM."""
    process = subprocess.Popen(
        [*SIDECAR, "serve", *args], stderr=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    try:
        deadline = time.monotonic() + 60
        while not ready.exists():
            if process.poll() is not None or time.monotonic() > deadline:
                _, err = process.communicate(timeout=10)
                pytest.fail(f"sidecar serve did not start: {err}")
            time.sleep(0.05)
        yield process
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:  # pragma: no cover - a hang is the failure
                process.kill()
                process.wait()
                pytest.fail("sidecar serve did not stop on SIGTERM")
        process.communicate()  # and close the pipes


def _tmux_console(connection_file: Path, session: str) -> Iterator[None]:
    subprocess.run(
        [
            "tmux",
            "new-session",
            "-d",
            "-s",
            session,
            "-x",
            "160",
            "-y",
            "40",
            f"{shutil.which('jupyter')} console --existing {connection_file} "
            # Show what other frontends run and print, as sidecar broadcasts it.
            "--ZMQTerminalInteractiveShell.include_other_output=True",
        ],
        check=True,
    )
    try:
        yield
    finally:
        subprocess.run(["tmux", "kill-session", "-t", session], check=False)


def _screen(session: str) -> str:
    done = subprocess.run(
        ["tmux", "capture-pane", "-t", session, "-p"], capture_output=True, text=True, check=True
    )
    return done.stdout


def _wait_for_screen(session: str, text: str, seconds: float = 30) -> str:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        screen = _screen(session)
        if text in screen:
            return screen
        time.sleep(0.2)
    pytest.fail(f"never shown in the console: {text!r}; the screen:\n{_screen(session)}")


@pytest.mark.anyio
@pytest.mark.skipif(shutil.which("tmux") is None, reason="needs tmux")
@pytest.mark.timeout(120)
async def test_console_and_a_python_client_share_one_kernel_and_one_notebook(
    tmp_path: Path, anyio_backend: str
) -> None:
    """What the README promises: start it, attach jupyter console and a
    BlockingKernelClient at once, run code from both, find both cells in
    the notebook; SIGTERM leaves no kernel and no connection file."""
    pytest.importorskip("jupyter_console")
    shared, notebook = tmp_path / "shared.json", tmp_path / "shared.ipynb"
    session = f"sidecar-test-{os.getpid()}-{anyio_backend}"
    with sidecar_serve(
        "--kernel",
        "python3",
        "--connection-file",
        str(shared),
        "--notebook",
        str(notebook),
        ready=shared,
    ) as process:
        for _ in _tmux_console(shared, session):
            _wait_for_screen(session, "In [1]:")
            subprocess.run(
                [
                    "tmux",
                    "send-keys",
                    "-t",
                    session,
                    "from_console = 6 * 7; print(from_console)",
                    "Enter",
                ],
                check=True,
            )
            _wait_for_screen(session, "42")
            _reply, out = await frontend(
                shared, lambda c: stdout_of(c, "print('python sees', from_console)")
            )
            assert out == "python sees 42\n"
            # The console sees the other frontend's output on iopub, too.
            _wait_for_screen(session, "python sees 42")
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=30) == 143
        assert not kernel_processes_of(process.pid)
    assert not shared.exists()
    cells = nbformat.read(str(notebook), as_version=4).cells
    nbformat.validate(nbformat.read(str(notebook), as_version=4))
    sources = [cell.source for cell in cells]
    assert "from_console = 6 * 7; print(from_console)" in sources
    assert "print('python sees', from_console)" in sources
    assert all(cell.outputs for cell in cells)


@pytest.mark.anyio
@pytest.mark.timeout(120)
async def test_a_kernelspec_puts_a_frontend_on_the_shared_kernel(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, anyio_backend: str
) -> None:
    """'sidecar kernelspec install' makes a kernel that jupyter_client starts
    like any other and that lands on the shared one; shutting it down ends
    only that proxy."""
    from jupyter_client.manager import KernelManager

    shared = tmp_path / "shared.json"
    prefix = tmp_path / "prefix"
    with sidecar_serve("--kernel", "python3", "--connection-file", str(shared), ready=shared):
        installed = subprocess.run(
            [
                *SIDECAR,
                "kernelspec",
                "install",
                "shared-test",
                "--connect",
                str(shared),
                "--prefix",
                str(prefix),
            ],
            capture_output=True,
            text=True,
            check=True,
        )
        spec_dir = Path(installed.stdout.strip())
        spec = json.loads((spec_dir / "kernel.json").read_text())
        assert spec["interrupt_mode"] == "message"
        _reply, out = await frontend(shared, lambda c: stdout_of(c, "marker = 'set directly'"))
        monkeypatch.setenv("JUPYTER_PATH", str(prefix / "share" / "jupyter"))

        def through_the_kernelspec() -> tuple[str, bool]:
            manager = KernelManager(kernel_name="shared-test")
            manager.start_kernel()
            client = manager.client()
            client.start_channels()
            try:
                client.wait_for_ready(timeout=60)
                _reply, out = stdout_of(client, "print(marker)")
            finally:
                client.stop_channels()
                manager.shutdown_kernel(now=False)
            return out, manager.is_alive()

        out, proxy_alive = await in_thread(through_the_kernelspec)
        assert out == "set directly\n"
        assert not proxy_alive
        # The shared kernel itself goes on.
        _reply, out = await frontend(shared, lambda c: stdout_of(c, "print(marker)"))
        assert out == "set directly\n"


@pytest.mark.anyio
@pytest.mark.timeout(120)
async def test_a_launched_kernel_that_dies_is_started_again(
    tmp_path: Path, anyio_backend: str
) -> None:
    shared = tmp_path / "shared.json"
    pid = "import os; print(os.getpid())"
    with sidecar_serve("--kernel", "python3", "--connection-file", str(shared), ready=shared) as p:
        _reply, out = await frontend(shared, lambda c: stdout_of(c, pid))
        first = int(out)
        os.kill(first, signal.SIGKILL)
        deadline = time.monotonic() + 60
        while True:
            try:
                _reply, out = await frontend(shared, lambda c: stdout_of(c, pid))
                if out.strip().isdigit() and int(out) != first:
                    break
            except Exception:
                if time.monotonic() > deadline:
                    raise
            time.sleep(0.2)
        assert p.poll() is None


def test_bad_usage_is_one_line_and_status_2(tmp_path: Path) -> None:
    missing = tmp_path / "missing.json"
    for args in (
        ["serve", "--existing", str(missing)],
        ["serve", "--notebook", str(tmp_path / "no" / "such" / "dir.ipynb")],
        ["kernelspec", "install", "x", "--connect", str(missing)],
        ["serve", "--kernel", "a", "--existing", str(missing)],
        ["serve", "--server", "ftp://nowhere"],
    ):
        done = subprocess.run([*SIDECAR, *args], capture_output=True, text=True, timeout=60)
        assert done.returncode == 2, (args, done.stderr)
        assert done.stderr.startswith("sidecar: "), done.stderr
        assert done.stderr.count("\n") == 1, done.stderr
