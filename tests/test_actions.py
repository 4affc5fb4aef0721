"""Requests, handlers and outputs against a real ipykernel (one per module and backend)."""

from __future__ import annotations

import gc
import os
import signal
import weakref
from typing import Any

import anyio
import pytest

import sidecar
from sidecar.wire import (
    AbortedReply,
    CommInfoReply,
    CompleteReply,
    ErrorReply,
    ExecuteReply,
    HistoryReply,
    InspectReply,
    IsCompleteReply,
    KernelInfoReply,
    Message,
)

pytestmark = [pytest.mark.anyio, pytest.mark.kernel]


async def run(kernel: sidecar.Kernel, code: str, **kwargs: Any) -> sidecar.Outputs:
    outputs = sidecar.Outputs()
    reply = await kernel.execute(code, handlers=[outputs], **kwargs)
    assert isinstance(reply, ExecuteReply), reply
    return outputs


async def test_stream_merging_with_carriage_return_and_backspace(kernel: sidecar.Kernel) -> None:
    out = await run(
        kernel,
        "import sys\n"
        "print('a'); print('b')\n"
        "sys.stdout.write('10%\\r'); sys.stdout.flush(); sys.stdout.write('100%\\n')\n"
        # Flushed: stdout and stderr go out in the order each is flushed.
        "print('abc\\b\\bX', flush=True)\n"
        "print('to stderr', file=sys.stderr)",
    )
    assert out.outputs[0] == {
        "output_type": "stream",
        "name": "stdout",
        "text": "a\nb\n100%\naX\n",
    }
    assert out.outputs[-1]["name"] == "stderr"
    assert out.text("stderr") == "to stderr\n"


async def test_execute_result_display_and_count(kernel: sidecar.Kernel) -> None:
    out = await run(kernel, "from IPython.display import display\ndisplay({'k': 1})\n6 * 7")
    display, result = out.outputs
    assert display["output_type"] == "display_data"
    assert display["data"]["text/plain"] == "{'k': 1}"
    assert result["output_type"] == "execute_result"
    assert result["data"] == {"text/plain": "42"}
    assert result["execution_count"] == out.execution_count
    assert kernel.execution_count == out.execution_count


async def test_update_display_reaches_every_output_showing_it(kernel: sidecar.Kernel) -> None:
    displays: dict[str, list[dict[str, Any]]] = {}
    first = sidecar.Outputs(displays)
    await kernel.execute(
        "from IPython.display import display, update_display\n"
        "display('one', display_id='d1')\n"
        "display('other')\n"
        "display('one again', display_id='d1');",
        handlers=[first],
    )
    second = sidecar.Outputs(displays)
    await kernel.execute("update_display('updated', display_id='d1')", handlers=[second])
    texts = [o["data"]["text/plain"] for o in first.outputs]
    assert texts == ["'updated'", "'other'", "'updated'"]
    assert all("transient" not in o for o in first.outputs)
    assert second.outputs == []


async def test_clear_output_wait_clears_on_the_next_output(kernel: sidecar.Kernel) -> None:
    out = await run(
        kernel,
        "from IPython.display import clear_output\n"
        "print('gone')\n"
        "clear_output(wait=True)\n"
        "print('kept')\n"
        "print('also kept')",
    )
    assert out.outputs == [{"output_type": "stream", "name": "stdout", "text": "kept\nalso kept\n"}]
    out = await run(kernel, "from IPython.display import clear_output\nprint('x')\nclear_output()")
    assert out.outputs == []


async def test_error_is_a_value_or_raises_when_asked(kernel: sidecar.Kernel) -> None:
    outputs = sidecar.Outputs()
    reply = await kernel.execute("1 / 0", handlers=[outputs])
    assert isinstance(reply, ErrorReply)
    assert reply.ename == "ZeroDivisionError"
    assert outputs.outputs[-1]["output_type"] == "error"
    assert outputs.outputs[-1]["ename"] == "ZeroDivisionError"
    with pytest.raises(sidecar.ExecutionError, match="ZeroDivisionError"):
        await kernel.execute("1 / 0", raise_on_error=True)


async def test_requests_after_an_error_are_aborted_not_hung(kernel: sidecar.Kernel) -> None:
    replies: dict[str, Any] = {}

    async def send(name: str, code: str) -> None:
        replies[name] = await kernel.execute(code)

    with anyio.fail_after(20):
        async with anyio.create_task_group() as tg:
            tg.start_soon(send, "fails", "import time; time.sleep(0.3); 1 / 0")
            await anyio.sleep(0.1)
            tg.start_soon(send, "queued", "print('never runs')")
    assert isinstance(replies["fails"], ErrorReply)
    assert isinstance(replies["queued"], AbortedReply)


async def test_input_answered_by_a_callback(kernel: sidecar.Kernel) -> None:
    prompts: list[tuple[str, bool]] = []

    async def answer(prompt: str, password: bool) -> str:
        prompts.append((prompt, password))
        return "secret" if password else "Ada"

    out = await run(
        kernel,
        "import getpass\nname = input('name? ')\npw = getpass.getpass('pw? ')\nprint(name, pw)",
        stdin=answer,
    )
    assert prompts == [("name? ", False), ("pw? ", True)]
    assert out.text() == "Ada secret\n"


async def test_input_without_a_callback_is_a_clear_error(kernel: sidecar.Kernel) -> None:
    reply = await kernel.execute("input('no one answers')")
    assert isinstance(reply, ErrorReply)
    assert reply.ename == "StdinNotImplementedError"


async def test_introspection_requests(kernel: sidecar.Kernel) -> None:
    await kernel.execute("import os\nsome_variable = 1")
    complete = await kernel.complete("some_vari")
    assert isinstance(complete, CompleteReply)
    assert "some_variable" in complete.matches
    inspect = await kernel.inspect("os.path.join")
    assert isinstance(inspect, InspectReply)
    assert inspect.found
    assert "text/plain" in inspect.data
    assert isinstance(await kernel.is_complete("for i in range(3):"), IsCompleteReply)
    verdict = await kernel.is_complete("for i in range(3):")
    assert isinstance(verdict, IsCompleteReply)
    assert verdict.status == "incomplete"
    assert (await kernel.is_complete("x = 1")).status == "complete"  # type: ignore[union-attr]
    info = await kernel.kernel_info()
    assert isinstance(info, KernelInfoReply)
    assert info.language_info.name == "python"
    comms = await kernel.comm_info()
    assert isinstance(comms, CommInfoReply)


async def test_history(kernel: sidecar.Kernel) -> None:
    await kernel.execute("history_marker = 'abc'")
    tail = await kernel.history("tail", n=5)
    assert isinstance(tail, HistoryReply)
    assert any("history_marker" in entry[2] for entry in tail.history)  # type: ignore[operator]
    found = await kernel.history("search", pattern="history_marker*")
    assert isinstance(found, HistoryReply)
    assert found.history
    ranged = await kernel.history("range", session=0, start=1, output=True)
    assert isinstance(ranged, HistoryReply)
    assert ranged.history


async def test_comm_round_trip_with_a_target_in_the_kernel(kernel: sidecar.Kernel) -> None:
    await kernel.execute(
        "def _echo_target(comm, open_msg):\n"
        "    comm.send({'opened_with': open_msg['content']['data']})\n"
        "    @comm.on_msg\n"
        "    def _(msg):\n"
        "        comm.send({'echo': msg['content']['data']})\n"
        "get_ipython().kernel.comm_manager.register_target('echo', _echo_target)"
    )
    received = anyio.Event()
    got: list[dict[str, Any]] = []

    def on_msg(message: Message) -> None:
        got.append(message.content.data)
        if len(got) == 2:
            received.set()

    comm = await kernel.comms.open("echo", {"hello": 1}, on_msg=on_msg)
    # open() returns once the kernel has handled the comm_open: the target's
    # first message is in already.
    assert got == [{"opened_with": {"hello": 1}}]
    await comm.send({"ping": 2})
    with anyio.fail_after(10):
        await received.wait()
    assert got == [{"opened_with": {"hello": 1}}, {"echo": {"ping": 2}}]
    info = await kernel.comm_info("echo")
    assert isinstance(info, CommInfoReply)
    assert comm.comm_id in info.comms
    await comm.close()


async def test_comm_opened_by_the_kernel_reaches_a_registered_target(
    kernel: sidecar.Kernel,
) -> None:
    opened: list[sidecar.Comm] = []
    kernel.comms.register_target("from-kernel", lambda comm, message: opened.append(comm))
    await kernel.execute(
        "from comm import create_comm\n"
        "c = create_comm(target_name='from-kernel', data={'state': {'_model_name': 'M', 'v': 1}})\n"
        "c.send({'state': {'v': 2}})"
    )
    assert len(opened) == 1
    assert opened[0].target_name == "from-kernel"
    assert kernel.widgets.state[opened[0].comm_id] == {"_model_name": "M", "v": 2}
    metadata = kernel.widgets.metadata()
    assert metadata is not None
    state = metadata["application/vnd.jupyter.widget-state+json"]["state"]
    assert state[opened[0].comm_id]["model_name"] == "M"


async def test_timeout_interrupts_and_leaves_the_kernel_usable(kernel: sidecar.Kernel) -> None:
    seen: list[Message] = []
    started = anyio.current_time()
    with pytest.raises(TimeoutError):
        await kernel.execute("import time; time.sleep(30)", handlers=[seen.append], timeout=0.5)
    assert anyio.current_time() - started < 5
    # The interrupted request finished before execute re-raised: its idle is in.
    assert seen[-1].msg_type in ("status", "execute_reply")
    out = await run(kernel, "print('next')")
    assert out.text() == "next\n"


async def test_cancel_scope_around_execute(kernel: sidecar.Kernel) -> None:
    with anyio.move_on_after(0.5) as scope:
        await kernel.execute("import time; time.sleep(30)")
    assert scope.cancelled_caught
    out = await run(kernel, "print('still fine')")
    assert out.text() == "still fine\n"


async def test_hundred_concurrent_executes_get_exactly_their_own_outputs(
    kernel: sidecar.Kernel,
) -> None:
    results: dict[int, str] = {}

    async def one(i: int) -> None:
        out = await run(kernel, f"print({i})")
        results[i] = out.text()

    with anyio.fail_after(60):
        async with anyio.create_task_group() as tg:
            for i in range(100):
                tg.start_soon(one, i)
    assert results == {i: f"{i}\n" for i in range(100)}


async def test_control_request_answers_during_a_long_execute(kernel: sidecar.Kernel) -> None:
    async with anyio.create_task_group() as tg:
        tg.start_soon(kernel.execute, "import time; time.sleep(2)")
        await anyio.sleep(0.3)
        started = anyio.current_time()
        info = await kernel.kernel_info(channel="control")
        assert anyio.current_time() - started < 1.0
        assert isinstance(info, KernelInfoReply)


async def test_subshell_runs_while_the_main_shell_sleeps(kernel: sidecar.Kernel) -> None:
    created = await kernel.create_subshell()
    if isinstance(created, ErrorReply):
        pytest.skip(f"kernel has no subshells: {created.evalue}")
    subshell_id = created.subshell_id  # type: ignore[union-attr]
    listed = await kernel.list_subshell()
    assert subshell_id in listed.subshell_id  # type: ignore[union-attr]
    async with anyio.create_task_group() as tg:
        tg.start_soon(kernel.execute, "import time; time.sleep(2)")
        await anyio.sleep(0.3)
        started = anyio.current_time()
        out = await run(kernel, "print('from the subshell')", subshell_id=subshell_id)
        assert anyio.current_time() - started < 1.5
        assert out.text() == "from the subshell\n"
    deleted = await kernel.delete_subshell(subshell_id)
    assert deleted.status == "ok"


async def test_failing_and_slow_handlers_do_not_stall_others(kernel: sidecar.Kernel) -> None:
    def broken(message: Message) -> None:
        raise ValueError("handler bug")

    with pytest.raises(sidecar.HandlerError) as info:
        await kernel.execute("print('x')", handlers=[broken])
    assert isinstance(info.value.errors[0], ValueError)
    assert isinstance(info.value.reply, ExecuteReply)

    release = anyio.Event()

    async def slow(message: Message) -> None:
        await release.wait()

    async with anyio.create_task_group() as tg:
        tg.start_soon(lambda: kernel.execute("print('slow')", handlers=[slow]))
        await anyio.sleep(0.2)
        # Another request completes while the first one's handler is stuck.
        with anyio.fail_after(5):
            out = await run(kernel, "print('fast')")
        assert out.text() == "fast\n"
        release.set()


async def test_output_after_idle_reaches_the_requests_handlers(kernel: sidecar.Kernel) -> None:
    """A background thread prints after the cell finished: ipykernel labels it
    with the cell's msg_id, so it goes to that request's handlers, not to the
    next request's, even though the action is long done."""
    late = anyio.Event()
    seen: list[str] = []

    def collect(message: Message) -> None:
        if message.msg_type == "stream":
            seen.append(message.content.text)
            if "late" in message.content.text:
                late.set()

    await kernel.execute(
        "import threading, time\n"
        "def _later():\n"
        "    time.sleep(0.3); print('late', flush=True)\n"
        "threading.Thread(target=_later).start()\n"
        "print('on time')",
        handlers=[collect],
    )
    assert seen == ["on time\n"]
    with anyio.fail_after(5):
        await late.wait()
    assert seen == ["on time\n", "late\n"]
    other = await run(kernel, "print('other')")
    assert other.text() == "other\n"


async def test_late_output_reaches_an_outputs_the_caller_still_holds(
    kernel: sidecar.Kernel,
) -> None:
    outputs = sidecar.Outputs()
    await kernel.execute(
        "import threading, time\n"
        "threading.Thread(target=lambda: (time.sleep(0.3), print('late', flush=True))).start()\n"
        "print('on time')",
        handlers=[outputs],
    )
    assert outputs.text() == "on time\n"
    with anyio.fail_after(5):
        while outputs.text() != "on time\nlate\n":
            await anyio.sleep(0.02)


async def test_finished_requests_do_not_keep_dropped_handlers_alive(
    kernel: sidecar.Kernel,
) -> None:
    """Handlers kept for late output are held weakly where they can be: a
    collector its owner dropped is freed, so the outputs of past requests do
    not pile up in memory.  A function or another callable is kept: its
    effect may be all it does."""

    class Collector:
        def __init__(self) -> None:
            self.messages: list[Message] = []

        def __call__(self, message: Message) -> None:
            self.messages.append(message)

    outputs, collector, inline = sidecar.Outputs(), Collector(), Collector()
    refs = [weakref.ref(outputs), weakref.ref(collector)]
    kept = weakref.ref(inline)
    seen: list[str] = []

    def note(message: Message) -> None:
        seen.append(message.msg_type)

    await kernel.execute("print('x' * 1000)", handlers=[outputs, collector.__call__, note, inline])
    assert outputs.text() == "x" * 1000 + "\n"
    assert [m.msg_type for m in collector.messages].count("stream") == 1
    assert "stream" in seen
    del outputs, collector, inline
    gc.collect()
    assert [ref() for ref in refs] == [None, None]
    # A callable that is not a collector may act by side effect alone: kept.
    assert kept() is not None


async def test_debug_request(kernel: sidecar.Kernel) -> None:
    reply = await kernel.debug_request("initialize", {"adapterID": "sidecar"})
    # ipykernel answers even when debugpy is missing, with success false.
    assert reply.command == "initialize"
    assert reply.type == "response"


async def test_status_is_observable(kernel: sidecar.Kernel) -> None:
    await kernel.execute("pass")
    assert kernel.execution_state == "idle"
    states: list[str] = []

    def on_status(message: Message) -> None:
        if message.msg_type == "status":
            states.append(message.content.execution_state)

    await kernel.execute("pass", handlers=[on_status])
    assert states == ["busy", "idle"]


async def test_ten_waiting_actions_fail_when_the_kernel_is_killed() -> None:
    async with sidecar.launch("python3") as kernel:
        assert kernel.process is not None
        failures: list[BaseException] = []

        async def wait(i: int) -> None:
            try:
                await kernel.execute(f"import time; time.sleep(60)  # {i}")
            except sidecar.KernelDied as e:
                failures.append(e)

        with anyio.fail_after(15):
            async with anyio.create_task_group() as tg:
                for i in range(10):
                    tg.start_soon(wait, i)
                await anyio.sleep(0.5)
                os.kill(kernel.process.pid, signal.SIGKILL)
        assert len(failures) == 10


async def test_output_widget_captures_outputs_into_its_state(kernel: sidecar.Kernel) -> None:
    pytest.importorskip("ipywidgets")
    cell = sidecar.Outputs()
    await kernel.execute(
        "import ipywidgets\n"
        "out = ipywidgets.Output()\n"
        "with out:\n"
        "    print('inside the widget')\n"
        "    display('shown inside')\n"
        "print('in the cell')",
        handlers=[cell],
    )
    assert cell.text() == "in the cell\n"
    outputs = [
        state["outputs"]
        for state in kernel.widgets.state.values()
        if state.get("_model_name") == "OutputModel" and state.get("outputs")
    ]
    assert outputs == [
        [
            {"output_type": "stream", "name": "stdout", "text": "inside the widget\n"},
            {
                "output_type": "display_data",
                "data": {"text/plain": "'shown inside'"},
                "metadata": {},
            },
        ]
    ]
    # The kernel-side model learnt its outputs from us, as from a frontend.
    reply = await kernel.execute("print(len(out.outputs))", handlers=[cell])
    assert isinstance(reply, ExecuteReply)
    assert cell.text().endswith("2\n")


async def test_comm_data_that_is_not_an_object(kernel: sidecar.Kernel) -> None:
    """ipykernel sends whatever comm.send() was given: a string, a list."""
    await kernel.execute(
        "def _plain_target(comm, open_msg):\n"
        "    comm.send('connected')\n"
        "    @comm.on_msg\n"
        "    def _(msg):\n"
        "        comm.send([msg['content']['data'], 'back'])\n"
        "get_ipython().kernel.comm_manager.register_target('plain', _plain_target)"
    )
    got: list[Any] = []
    echoed = anyio.Event()

    def on_msg(message: Message) -> None:
        got.append(message.content.data)
        if len(got) == 2:
            echoed.set()

    comm = await kernel.comms.open("plain", "hello", on_msg=on_msg)
    await comm.send("ping")
    with anyio.fail_after(10):
        await echoed.wait()
    assert got == ["connected", ["ping", "back"]]
    await comm.close("bye")
    # A comm the kernel opens with plain data reaches its target too.
    opened: list[Any] = []
    kernel.comms.register_target("plain-from-kernel", lambda c, m: opened.append(m.content.data))
    await kernel.execute(
        "from comm import create_comm\n"
        "c2 = create_comm(target_name='plain-from-kernel', data='just text')\n"
        "c2.send(42)"
    )
    assert opened == ["just text"]
    assert kernel.statistics().dropped_malformed == 0


async def test_opening_a_comm_to_no_target_is_refused(kernel: sidecar.Kernel) -> None:
    with anyio.fail_after(10), pytest.raises(sidecar.CommRefused) as refused:
        await kernel.comms.open("no-such-target", {"x": 1})
    assert refused.value.target_name == "no-such-target"
    assert len([c for c in ("no-such-target",) if c in kernel.comms]) == 0


async def test_every_request_method_takes_handlers(kernel: sidecar.Kernel) -> None:
    seen: dict[str, list[str]] = {}

    def recorder(name: str) -> Any:
        seen[name] = []
        return lambda message: seen[name].append(message.msg_type)

    await kernel.kernel_info(handlers=[recorder("kernel_info")])
    await kernel.kernel_info(channel="control", handlers=[recorder("kernel_info_control")])
    await kernel.complete("impo", handlers=[recorder("complete")])
    await kernel.inspect("print", handlers=[recorder("inspect")])
    await kernel.history("tail", n=1, handlers=[recorder("history")])
    await kernel.is_complete("x = (", handlers=[recorder("is_complete")])
    await kernel.comm_info(handlers=[recorder("comm_info")])
    await kernel.list_subshell(handlers=[recorder("list_subshell")])
    for name, kinds in seen.items():
        reply = name.removesuffix("_control") + "_reply"
        assert sorted(kinds) == sorted(["status", reply, "status"]), (name, kinds)


async def test_kernel_wide_handlers_and_the_request_done_hook(kernel: sidecar.Kernel) -> None:
    class Log:
        def __init__(self) -> None:
            self.messages: list[str] = []
            self.done: list[tuple[str, str | None]] = []

        def __call__(self, message: Message) -> None:
            self.messages.append(message.msg_type)

        async def on_request_done(self, request: Message, reply: Message | None) -> None:
            await anyio.lowlevel.checkpoint()
            self.done.append((request.msg_type, None if reply is None else reply.msg_type))

    log = Log()
    kernel.handlers.append(log)
    try:
        own: list[str] = []
        await kernel.execute("print('hi')", handlers=[lambda m: own.append(m.msg_type)])
        await kernel.complete("pri")
    finally:
        kernel.handlers.remove(log)
    assert log.messages.count("stream") == 1
    assert "complete_reply" in log.messages
    assert own.count("stream") == 1
    assert log.done == [
        ("execute_request", "execute_reply"),
        ("complete_request", "complete_reply"),
    ]
    # Cancelled: the kernel is interrupted, and the hook hears of the end with
    # the interrupted execute's reply.
    log.done.clear()
    with anyio.move_on_after(0.5):
        await kernel.execute("import time; time.sleep(5)", handlers=[log])
    assert log.done == [("execute_request", "execute_reply")]
    # A request that never gets its reply ends without one.
    log.done.clear()
    with anyio.move_on_after(0.5):
        await kernel.request("shell", "no_such_request", handlers=[log])
    assert log.done == [("no_such_request", None)]
