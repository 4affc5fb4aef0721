"""The command line against a real Jupyter Server: ``--server URL --token T``."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from frontends import frontend, stdout_of
from jupyter_servers import RunningServer
from test_serve_cli import sidecar_serve

pytestmark = [pytest.mark.kernel, pytest.mark.anyio]

ROOT = Path(__file__).resolve().parent.parent
TOUR = ROOT / "examples" / "tour.ipynb"


def sidecar_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "sidecar", *args], capture_output=True, text=True, timeout=60
    )


def _outputs(path: Path) -> list[Any]:
    cells = json.loads(path.read_text())["cells"]
    return [(c.get("execution_count"), c.get("outputs")) for c in cells]


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_run_on_the_server_writes_what_a_local_run_writes(
    jupyter_server: RunningServer, tmp_path: Path, backend: str
) -> None:
    remote, local = tmp_path / "remote.ipynb", tmp_path / "local.ipynb"
    server = ("--server", jupyter_server.url, "--token", jupyter_server.token)
    done = sidecar_cli("--backend", backend, "run", str(TOUR), "-o", str(remote), "-q", *server)
    assert done.returncode == 0, done.stderr
    done = sidecar_cli("--backend", backend, "run", str(TOUR), "-o", str(local), "-q")
    assert done.returncode == 0, done.stderr
    assert _outputs(remote) == _outputs(local)


def test_run_four_notebooks_on_four_remote_kernels_at_once(
    jupyter_server: RunningServer, tmp_path: Path
) -> None:
    for i in range(4):
        shutil.copy(TOUR, tmp_path / f"nb{i}.ipynb")
    out = tmp_path / "out"
    server = ("--server", jupyter_server.url, "--token", jupyter_server.token)
    paths = [str(tmp_path / f"nb{i}.ipynb") for i in range(4)]
    done = sidecar_cli("run", *paths, "-o", f"{out}/", "-j", "4", "-q", *server)
    assert done.returncode == 0, done.stderr
    expected = _outputs(out / "nb0.ipynb")
    assert all(_outputs(out / f"nb{i}.ipynb") == expected for i in range(1, 4))


def test_exec_on_the_server(jupyter_server: RunningServer) -> None:
    server = ("--server", jupyter_server.url, "--token", jupyter_server.token)
    done = sidecar_cli("exec", "import os; print('remote'); 6 * 7", *server)
    assert done.returncode == 0, done.stderr
    assert done.stdout == "remote\n42\n"


def test_a_wrong_token_fails_at_once_with_a_clear_message(
    jupyter_server: RunningServer, tmp_path: Path
) -> None:
    started = time.monotonic()
    done = sidecar_cli("exec", "1", "--server", jupyter_server.url, "--token", "wrong")
    assert time.monotonic() - started < 10  # a Python start-up, no waiting
    assert done.returncode == 1
    assert "refused our token (HTTP 403)" in done.stderr


def test_server_usage_errors() -> None:
    done = sidecar_cli("exec", "1", "--server", "ftp://nowhere")
    assert done.returncode == 2
    assert "--server ftp://nowhere" in done.stderr
    done = sidecar_cli("run", str(TOUR), "--server", "http://127.0.0.1:9", "--cwd", ".")
    assert done.returncode == 2
    assert "--cwd is for local kernels" in done.stderr


async def test_serve_shares_a_kernel_on_the_server(
    jupyter_server: RunningServer, tmp_path: Path
) -> None:
    """``sidecar serve --server``: frontends on this machine, the kernel on the
    server; the document kept here."""
    shared, notebook = tmp_path / "shared.json", tmp_path / "shared.ipynb"
    server = ("--server", jupyter_server.url, "--token", jupyter_server.token)
    args = ("--connection-file", str(shared), "--notebook", str(notebook), *server)
    with sidecar_serve(*args, ready=shared):
        reply, out = await frontend(shared, lambda c: stdout_of(c, "import os; print(6 * 7)"))
        assert reply["content"]["status"] == "ok"
        assert out == "42\n"
    cells = json.loads(notebook.read_text())["cells"]
    assert ["".join(c["source"]) for c in cells] == ["import os; print(6 * 7)"]
    assert "".join(cells[0]["outputs"][0]["text"]) == "42\n"
