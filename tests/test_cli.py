"""The command line as a user meets it: exit codes and what is printed."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.kernel


def sidecar(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "sidecar", *args],
        capture_output=True,
        text=True,
        input=stdin,
        timeout=60,
    )


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_exec_prints_outputs(backend: str) -> None:
    done = sidecar(
        "--backend",
        backend,
        "exec",
        "import sys; print('out'); print('err', file=sys.stderr); display('shown'); 6 * 7",
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout == "out\n'shown'\n42\n"
    assert done.stderr == "err\n"


def test_exec_reads_code_from_stdin() -> None:
    done = sidecar("exec", "-", stdin="print(sum(range(10)))\n")
    assert done.returncode == 0, done.stderr
    assert done.stdout == "45\n"


def test_exec_error_exit_code_and_traceback() -> None:
    done = sidecar("exec", "1 / 0")
    assert done.returncode == 1
    assert "ZeroDivisionError" in done.stderr


def test_exec_missing_kernel() -> None:
    done = sidecar("exec", "--kernel", "no-such-kernel", "1")
    assert done.returncode == 2
    assert "no kernelspec named 'no-such-kernel'" in done.stderr
    assert "python3" in done.stderr


def test_exec_timeout() -> None:
    done = sidecar("exec", "--timeout", "0.5", "import time; time.sleep(30)")
    assert done.returncode == 3
    assert "timed out" in done.stderr


def test_kernelspecs_lists_python3() -> None:
    done = sidecar("kernelspecs")
    assert done.returncode == 0
    assert done.stdout.split()[0] == "python3"


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_sigterm_during_exec_shuts_the_kernel_down_even_when_repeated(
    tmp_path: Path, backend: str
) -> None:
    runtime = tmp_path / "runtime"
    code = "import os, time\nprint(os.getpid(), flush=True)\ntime.sleep(60)"
    proc = subprocess.Popen(
        [sys.executable, "-m", "sidecar", "--backend", backend, "exec", code],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=dict(os.environ, JUPYTER_RUNTIME_DIR=str(runtime)),
    )
    try:
        assert proc.stdout is not None
        kernel_pid = int(proc.stdout.readline())
        proc.send_signal(signal.SIGTERM)
        # A second signal during the cleanup must not cut it short.
        time.sleep(0.1)
        proc.send_signal(signal.SIGTERM)
        _, stderr = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 143, stderr
    assert "sidecar: terminated" in stderr
    with pytest.raises(ProcessLookupError):
        os.kill(kernel_pid, 0)
    assert list(runtime.iterdir()) == []
