"""Kernels other than ipykernel: xeus-python, a C++ kernel from PyPI.

It differs from ipykernel where clients get things wrong: it binds TCP only
(no IPC), sends ``parent_header: null`` and messages without a session id,
and exits on SIGINT.  The test extra installs it, so this runs in CI.
"""

from __future__ import annotations

import sys

import anyio
import pytest

import sidecar
from sidecar.wire import CompleteReply, ErrorReply, ExecuteReply, IsCompleteReply

pytestmark = [
    pytest.mark.anyio,
    pytest.mark.kernel,
    pytest.mark.skipif(sys.platform == "win32", reason="xeus-python has no Windows wheel"),
]


@pytest.fixture(scope="module")
async def xpython(anyio_backend: str) -> object:
    with anyio.fail_after(60):
        async with sidecar.launch("xpython") as kernel:
            yield kernel


async def test_launches_with_the_default_transport(xpython: sidecar.Kernel) -> None:
    assert xpython.info is not None
    assert xpython.info.implementation == "xeus-python"
    assert xpython.connection_info.transport == "tcp"
    assert xpython.info.language_info.codemirror_mode


async def test_outputs_errors_and_input(xpython: sidecar.Kernel) -> None:
    outputs = sidecar.Outputs()
    reply = await xpython.execute("print('hi')\n1 + 1", handlers=[outputs])
    assert isinstance(reply, ExecuteReply)
    assert outputs.text() == "hi\n"
    assert outputs.outputs[-1]["data"] == {"text/plain": "2"}
    error = await xpython.execute("1 / 0")
    assert isinstance(error, ErrorReply)
    assert "ZeroDivisionError" in error.ename  # xeus-python says "<class ...>"

    async def answer(prompt: str, password: bool) -> str:
        return f"answer to {prompt}"

    typed = sidecar.Outputs()
    await xpython.execute("print(input('q?'))", stdin=answer, handlers=[typed])
    assert typed.text() == "answer to q?\n"
    # Nothing it sent was dropped (null parents, session-less welcome).
    stats = xpython.statistics()
    assert stats.dropped_invalid == 0
    assert stats.dropped_malformed == 0


async def test_introspection(xpython: sidecar.Kernel) -> None:
    completions = await xpython.complete("pri")
    assert isinstance(completions, CompleteReply)
    assert "print" in completions.matches
    verdict = await xpython.is_complete("x = (")
    assert isinstance(verdict, IsCompleteReply)
    assert verdict.status == "incomplete"


async def test_restart(xpython: sidecar.Kernel) -> None:
    await xpython.execute("marker = 1")
    await xpython.restart()
    reply = await xpython.execute("'marker' in globals()", handlers=[outputs := sidecar.Outputs()])
    assert isinstance(reply, ExecuteReply)
    assert outputs.outputs[-1]["data"] == {"text/plain": "False"}


async def test_a_notebook_runs_on_it(xpython: sidecar.Kernel) -> None:
    notebook = sidecar.new_notebook(
        cells=[sidecar.new_code_cell("x = 20"), sidecar.new_code_cell("print(x + 1)")]
    )
    await sidecar.run_notebook(notebook, xpython)
    assert sidecar.outputs_to_dicts(notebook.cells[1].outputs) == [  # type: ignore[union-attr]
        {"output_type": "stream", "name": "stdout", "text": "21\n"}
    ]


async def test_ipc_is_refused_with_the_kernels_own_words() -> None:
    """xeus-python cannot bind IPC: the error carries what it said."""
    with anyio.fail_after(60), pytest.raises(sidecar.KernelStartError) as failed:
        async with sidecar.launch("xpython", transport="ipc"):
            pass
    assert failed.value.exit_code is not None
    assert failed.value.stderr
