"""One kernel shared by many standard frontends: jupyter_client's BlockingKernelClient.

A real ipykernel behind ``sidecar.serve`` (on asyncio and trio), and real
jupyter_client frontends in worker threads, several at once.
"""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any, TypeVar

import anyio
import nbformat
import pytest
from frontends import frontend, stdout_of
from jupyter_client.blocking import BlockingKernelClient

import sidecar

pytestmark = [pytest.mark.anyio, pytest.mark.kernel]

T = TypeVar("T")


@pytest.fixture(scope="module")
async def shared(
    anyio_backend: str, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[sidecar.SharedKernel]:
    tmp = tmp_path_factory.mktemp("serve")
    async with (
        sidecar.launch("python3") as kernel,
        sidecar.serve(
            kernel, connection_file=tmp / "shared.json", notebook=tmp / "shared.ipynb"
        ) as shared,
    ):
        yield shared


def _file(shared: sidecar.SharedKernel) -> Path:
    assert shared.connection_file is not None
    return shared.connection_file


async def test_the_connection_file_is_a_kernels(shared: sidecar.SharedKernel) -> None:
    path = _file(shared)
    assert (path.stat().st_mode & 0o777) == 0o600
    fields = json.loads(path.read_text())
    assert fields["transport"] == "tcp"
    assert fields["key"]
    assert fields["key"] != shared.kernel.connection_info.key  # type: ignore[union-attr]
    assert all(fields[f"{c}_port"] > 0 for c in ("shell", "iopub", "stdin", "control", "hb"))


async def test_frontends_share_one_kernel_and_see_each_others_outputs(
    shared: sidecar.SharedKernel,
) -> None:
    path = _file(shared)
    seen_by_b: list[str] = []
    b_listening = threading.Event()
    a_done = threading.Event()

    def b_watches(client: BlockingKernelClient) -> None:
        b_listening.set()
        while not a_done.is_set() or client.iopub_channel.msg_ready():
            try:
                msg = client.get_iopub_msg(timeout=0.2)
            except Exception:
                continue
            if msg["msg_type"] == "stream":
                seen_by_b.append(msg["content"]["text"])

    def a_runs(client: BlockingKernelClient) -> str:
        b_listening.wait(30)
        reply, out = stdout_of(client, "shared_value = 41 + 1\nprint('from A', shared_value)")
        assert reply["content"]["status"] == "ok"
        a_done.set()
        return out

    async with anyio.create_task_group() as tg:
        tg.start_soon(frontend, path, b_watches)
        try:
            out = await frontend(path, a_runs)
        finally:
            a_done.set()  # a thread cannot be cancelled: it must be told
    assert out == "from A 42\n"
    assert "from A 42\n" in seen_by_b
    # B reads what A set; kernel_info answers every frontend.
    _reply, out = await frontend(path, lambda c: stdout_of(c, "print(shared_value)"))
    assert out == "42\n"
    info = await frontend(path, lambda c: c.kernel_info(reply=True, timeout=30))
    assert info["content"]["language_info"]["name"] == "python"


async def test_each_frontend_gets_exactly_its_own_replies(shared: sidecar.SharedKernel) -> None:
    path = _file(shared)

    def run_many(tag: str) -> Callable[[BlockingKernelClient], list[str]]:
        def work(client: BlockingKernelClient) -> list[str]:
            got = []
            for i in range(34):
                reply, out = stdout_of(client, f"print('{tag}{i}')")
                assert reply["content"]["status"] == "ok"
                got.append(out.strip())
            return got

        return work

    results: dict[str, list[str]] = {}

    async def one(tag: str) -> None:
        results[tag] = await frontend(path, run_many(tag))

    with anyio.fail_after(120):
        async with anyio.create_task_group() as tg:
            for tag in "abc":
                tg.start_soon(one, tag)
    for tag in "abc":
        assert results[tag] == [f"{tag}{i}" for i in range(34)]


async def test_input_goes_only_to_the_frontend_that_asked(shared: sidecar.SharedKernel) -> None:
    path = _file(shared)
    others_saw_input: list[str] = []
    stop = threading.Event()

    def bystander(client: BlockingKernelClient) -> None:
        while not stop.is_set():
            try:
                msg = client.get_stdin_msg(timeout=0.2)
            except Exception:
                continue
            others_saw_input.append(msg["msg_type"])

    def asker(client: BlockingKernelClient) -> str:
        prompts: list[str] = []

        def answer(msg: dict[str, Any]) -> None:
            prompts.append(msg["content"]["prompt"])
            client.input("typed by C")

        reply, out = stdout_of(
            client, "print(input('name? '))", allow_stdin=True, stdin_hook=answer
        )
        assert reply["content"]["status"] == "ok"
        assert prompts == ["name? "]
        return out

    async with anyio.create_task_group() as tg:
        tg.start_soon(frontend, path, bystander)
        try:
            await anyio.sleep(0.5)
            out = await frontend(path, asker)
        finally:
            stop.set()  # a thread cannot be cancelled: it must be told
    assert out == "typed by C\n"
    assert others_saw_input == []


async def test_a_frontend_that_vanishes_mid_execute_disturbs_no_one(
    shared: sidecar.SharedKernel,
) -> None:
    path = _file(shared)

    def vanish(client: BlockingKernelClient) -> None:
        client.execute("import time; time.sleep(1); print('nobody hears this')")
        # stop_channels (in frontend()) closes the sockets mid-execute

    await frontend(path, vanish)
    reply, out = await frontend(path, lambda c: stdout_of(c, "print('still here')"))
    assert reply["content"]["status"] == "ok"
    assert out == "still here\n"


async def test_the_document_holds_every_executed_cell(shared: sidecar.SharedKernel) -> None:
    path = _file(shared)
    await frontend(path, lambda c: stdout_of(c, "print('in the document')"))
    await frontend(path, lambda c: c.execute_interactive("1 + 1", silent=True, timeout=30))
    notebook = shared.document.notebook
    sources = [cell.source for cell in notebook.cells]
    assert "print('in the document')" in sources
    assert "1 + 1" not in sources  # silent executes are not cells
    cell = next(c for c in notebook.cells if c.source == "print('in the document')")
    assert sidecar.outputs_to_dicts(cell.outputs) == [  # type: ignore[attr-defined]
        {"output_type": "stream", "name": "stdout", "text": "in the document\n"}
    ]
    # And the file on disk, written after the execute, is valid nbformat.
    notebook_file = path.with_name("shared.ipynb")
    with anyio.fail_after(10):
        while "in the document" not in notebook_file.read_text():
            await anyio.sleep(0.05)
    nbformat.validate(nbformat.read(str(notebook_file), as_version=4))


async def test_sidecar_clients_attach_beside_others_and_a_wrong_key_is_named(
    shared: sidecar.SharedKernel, tmp_path: Path
) -> None:
    """sidecar's own client is a frontend like any: each connection is welcomed
    on a topic of its own, so one more is ready at once and one with a wrong
    key is told so, however many are attached already."""
    path = _file(shared)
    wrong = tmp_path / "wrong.json"
    wrong.write_text(json.dumps({**json.loads(path.read_text()), "key": "not-the-key"}))
    async with sidecar.connect(path) as first, sidecar.connect(path) as second:
        reply = await second.execute("print('second')")
        assert reply.status == "ok"
        with anyio.fail_after(5), pytest.raises(sidecar.AuthenticationError, match=r"wrong\.json"):
            async with sidecar.connect(wrong, ready_timeout=30):
                pass
        assert (await first.kernel_info()).status == "ok"


async def test_a_frontends_shutdown_request_detaches_only_it(shared: sidecar.SharedKernel) -> None:
    path = _file(shared)
    reply = await frontend(path, lambda c: c.shutdown() and c.get_control_msg(timeout=30))
    assert reply["content"]["status"] == "ok"
    assert shared.kernel.state == "ready"
    reply, out = await frontend(path, lambda c: stdout_of(c, "print('alive')"))
    assert out == "alive\n"


async def test_hooks_refuse_and_rewrite(tmp_path: Path) -> None:
    async def deny_rm(request: sidecar.FrontendRequest) -> sidecar.Refuse | None:
        if request.code is not None and "rm -rf" in request.code:
            return sidecar.Refuse("no rm -rf here")
        return None

    async def shout(request: sidecar.FrontendRequest) -> sidecar.wire.Message | None:
        code = request.code
        if code is None or "shout" not in code:
            return None
        message = request.message
        content = sidecar.wire.ExecuteRequest(code=code.upper().replace("SHOUT", "print"))
        return sidecar.wire.Message(
            message.header, content, parent_header=message.parent_header, metadata=message.metadata
        )

    async with (
        sidecar.launch("python3") as kernel,
        sidecar.serve(
            kernel, connection_file=tmp_path / "hooked.json", request_hooks=[deny_rm, shout]
        ) as shared,
    ):
        path = _file(shared)
        reply, out = await frontend(path, lambda c: stdout_of(c, "import os  # rm -rf /"))
        assert reply["content"]["status"] == "error"
        assert reply["content"]["evalue"] == "no rm -rf here"
        reply, out = await frontend(path, lambda c: stdout_of(c, "shout('hello')"))
        assert reply["content"]["status"] == "ok"
        assert out == "HELLO\n"
        assert shared.refused == 1


async def test_a_dead_kernel_is_told_to_frontends(tmp_path: Path) -> None:
    async with (
        sidecar.launch("python3") as kernel,
        sidecar.serve(kernel, connection_file=tmp_path / "dying.json") as shared,
    ):
        path = _file(shared)
        statuses: list[str] = []

        def watch_and_fail(client: BlockingKernelClient) -> dict[str, Any]:
            assert kernel.process is not None
            client.execute("import time; time.sleep(30)")
            time.sleep(0.5)
            os.kill(kernel.process.pid, signal.SIGKILL)
            reply = client.get_shell_msg(timeout=30)
            deadline = time.monotonic() + 10
            while "dead" not in statuses and time.monotonic() < deadline:
                try:
                    msg = client.get_iopub_msg(timeout=0.2)
                except Exception:
                    continue
                if msg["msg_type"] == "status":
                    statuses.append(msg["content"]["execution_state"])
            return reply  # type: ignore[no-any-return]

        reply = await frontend(path, watch_and_fail)
        assert reply["content"]["status"] == "error"
        assert reply["content"]["ename"] == "KernelDied"
        assert "dead" in statuses


async def test_the_example_hooks_lint_audit_and_deny(tmp_path: Path) -> None:
    from sidecar.server._hooks import AuditLog, deny, lint

    audit = AuditLog(tmp_path / "audit.jsonl")
    async with (
        sidecar.launch("python3") as kernel,
        sidecar.serve(
            kernel,
            connection_file=tmp_path / "hooked.json",
            request_hooks=[audit.on_request, deny(r"\bos\.system\b"), lint()],
            message_hooks=[audit.on_message],
        ) as shared,
    ):
        path = _file(shared)

        def run(code: str) -> Callable[[BlockingKernelClient], tuple[dict[str, Any], str, str]]:
            def work(client: BlockingKernelClient) -> tuple[dict[str, Any], str, str]:
                err: list[str] = []

                def hook(msg: dict[str, Any]) -> None:
                    if msg["msg_type"] == "stream" and msg["content"]["name"] == "stderr":
                        err.append(msg["content"]["text"])

                reply = client.execute_interactive(code, output_hook=hook, timeout=30)
                return reply, "", "".join(err)

            return work

        reply, _, err = await frontend(path, run("print(undefined_name_here)"))
        assert "lint: line 1: undefined name 'undefined_name_here'" in err
        assert reply["content"]["status"] == "error"  # it ran: NameError
        reply, _, err = await frontend(path, run("import os; os.system('true')"))
        assert reply["content"]["status"] == "error"
        assert "denied" in reply["content"]["evalue"]
        reply, _, _ = await frontend(path, run("x = 1"))
        assert reply["content"]["status"] == "ok"
    audit.close()
    lines = [json.loads(line) for line in (tmp_path / "audit.jsonl").read_text().splitlines()]
    executes = [line for line in lines if line["msg_type"] == "execute_request"]
    assert [e["code"] for e in executes] == [
        "print(undefined_name_here)",
        "import os; os.system('true')",
        "x = 1",
    ]
    assert [e["status"] for e in executes] == ["error", "error", "ok"]
    assert executes[1]["ename"] == "Refused"
    assert all(e["frontend"] and e["seconds"] >= 0 for e in executes)
