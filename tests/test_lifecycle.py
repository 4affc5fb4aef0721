"""Kernel lifecycle against real ipykernel processes: launch, connect, die, restart, stop."""

from __future__ import annotations

import json
import os
import signal
import socket
import stat
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import TypeVar

import anyio
import pytest
from conftest import kernel_processes_of
from frontends import in_thread
from jupyter_client.blocking import BlockingKernelClient
from jupyter_client.manager import KernelManager

import sidecar
from sidecar.wire import ErrorReply, ExecuteReply, KernelInfoReply, Message, Stream

pytestmark = [pytest.mark.anyio, pytest.mark.kernel]

T = TypeVar("T")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie (killed, not yet reaped) counts as dead.
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return False
    return state != "Z"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _stdout(messages: list[Message]) -> str:
    return "".join(
        m.content.text
        for m in messages
        if m.msg_type == "stream" and isinstance(m.content, Stream) and m.content.name == "stdout"
    )


async def _interrupted_sleep(kernel: sidecar.Kernel) -> ErrorReply:
    """Run a 30 s sleep, interrupt it after 0.5 s, return the error reply."""

    async def interrupt_soon() -> None:
        await anyio.sleep(0.5)
        await kernel.interrupt()

    async with anyio.create_task_group() as tg:
        tg.start_soon(interrupt_soon)
        reply = await kernel.execute("import time; time.sleep(30)")
    assert isinstance(reply, ErrorReply)
    assert reply.ename == "KeyboardInterrupt"
    return reply


async def _waiting_request_fails_on(
    kernel: sidecar.Kernel, restart: Callable[[], Awaitable[object]]
) -> None:
    """While a long execute waits, ``restart()``: the execute raises KernelRestarted."""
    failure: list[BaseException] = []

    async def wait_forever() -> None:
        try:
            await kernel.execute("import time; time.sleep(60)")
        except sidecar.KernelRestarted as e:
            failure.append(e)

    with anyio.fail_after(30):
        async with anyio.create_task_group() as tg:
            tg.start_soon(wait_forever)
            await anyio.sleep(0.5)
            await restart()
    assert failure, "the waiting request did not fail with KernelRestarted"


async def test_launch_answers_kernel_info_and_cleans_up() -> None:
    async with sidecar.launch("python3") as kernel:
        assert isinstance(kernel.info, KernelInfoReply)
        assert kernel.info.language_info.name == "python"
        assert kernel.process is not None
        pid = kernel.process.pid
        files = kernel._files
        assert files is not None
        connection_file = files.connection_file
        assert stat.S_IMODE(connection_file.stat().st_mode) == 0o600
        assert json.loads(connection_file.read_text())["transport"] == "tcp"
        reply = await kernel.kernel_info()
        assert isinstance(reply, KernelInfoReply)
    assert not _alive(pid)
    assert not connection_file.exists()


async def test_extra_arguments_reach_the_kernel_command_line() -> None:
    history = "--HistoryManager.hist_file=:memory:"
    async with sidecar.launch("python3", extra_arguments=[history]) as kernel:
        out: list[Message] = []
        code = "print(get_ipython().history_manager.hist_file)"
        await kernel.execute(code, handlers=[out.append])
    assert _stdout(out).strip() == ":memory:"


async def test_first_output_of_fresh_kernels_is_never_lost() -> None:
    """Right after start-up, iopub and stdin are live: the first print and the
    first input() of every fresh kernel arrive (slow joiners, issue 3)."""

    async def answer(prompt: str, password: bool) -> str:
        return f"answer to {prompt}"

    for _ in range(10):
        async with sidecar.launch("python3", heartbeat_interval=None) as kernel:
            seen: list[Message] = []
            reply = await kernel.execute(
                "print('first'); print(input('q?'))", handlers=[seen.append], stdin=answer
            )
            assert isinstance(reply, ExecuteReply)
            assert _stdout(seen) == "first\nanswer to q?\n"


@asynccontextmanager
async def _kernel_started_by_jupyter_client(
    tmp_path: Path, kernel_name: str = "python3"
) -> AsyncIterator[KernelManager]:
    """A kernel that jupyter_client's (blocking) KernelManager owns, not us."""
    manager = KernelManager(kernel_name=kernel_name)
    manager.connection_file = str(tmp_path / "kernel.json")
    await in_thread(manager.start_kernel)
    try:
        yield manager
    finally:
        with anyio.CancelScope(shield=True):
            await in_thread(lambda: manager.shutdown_kernel(now=True))


async def test_connect_to_a_kernel_started_by_someone_else(tmp_path: Path) -> None:
    async with _kernel_started_by_jupyter_client(tmp_path) as manager:
        async with sidecar.connect(manager.connection_file) as kernel:
            assert kernel.process is None
            seen: list[Message] = []
            reply = await kernel.execute("print(6 * 7)", handlers=[seen.append])
            assert isinstance(reply, ExecuteReply)
            assert _stdout(seen) == "42\n"
            pid = manager.provisioner.pid  # type: ignore[union-attr]
            await kernel.shutdown()
        with anyio.fail_after(10):
            while _alive(pid):
                await anyio.sleep(0.05)


@pytest.mark.parametrize("transport", ["ipc", "tcp"])
async def test_jupyter_client_can_drive_a_kernel_we_launched(transport: str) -> None:
    async with sidecar.launch("python3", transport=transport) as kernel:  # type: ignore[arg-type]
        files = kernel._files
        assert files is not None

        def drive() -> dict[str, object]:
            client = BlockingKernelClient(connection_file=str(files.connection_file))
            client.load_connection_file()
            client.start_channels()
            try:
                client.wait_for_ready(timeout=30)
                reply = client.execute_interactive("x = 'from jupyter_client'", timeout=30)
                return reply["content"]  # type: ignore[no-any-return]
            finally:
                client.stop_channels()

        content = await in_thread(drive)
        assert content["status"] == "ok"
        seen: list[Message] = []
        await kernel.execute("print(x)", handlers=[seen.append])
        assert _stdout(seen) == "from jupyter_client\n"


async def test_tcp_with_curve_encryption() -> None:
    async with sidecar.launch("python3", transport="tcp", encrypt=True) as kernel:
        assert kernel.connection_info.curve_publickey
        seen: list[Message] = []
        reply = await kernel.execute("print('secret')", handlers=[seen.append])
        assert isinstance(reply, ExecuteReply)
        assert _stdout(seen) == "secret\n"


async def test_kill_9_fails_the_waiting_request_with_kernel_died() -> None:
    async with sidecar.launch("python3") as kernel:
        assert kernel.process is not None
        pid = kernel.process.pid

        async def kill_soon() -> None:
            await anyio.sleep(0.5)
            os.kill(pid, signal.SIGKILL)

        with anyio.fail_after(10):
            async with anyio.create_task_group() as tg:
                tg.start_soon(kill_soon)
                with pytest.raises(sidecar.KernelDied) as info:
                    await kernel.execute("import time; time.sleep(60)")
        assert info.value.exit_code == -signal.SIGKILL
        # Later requests fail at once.
        with anyio.fail_after(1), pytest.raises(sidecar.KernelDied):
            await kernel.kernel_info()
    assert not _alive(pid)


async def test_heartbeat_notices_death_of_a_kernel_we_do_not_own(tmp_path: Path) -> None:
    async with _kernel_started_by_jupyter_client(tmp_path) as manager:
        async with sidecar.connect(manager.connection_file, heartbeat_interval=0.5) as kernel:
            assert manager.provisioner is not None
            pid = manager.provisioner.pid  # type: ignore[attr-defined]
            os.kill(pid, signal.SIGKILL)
            started = anyio.current_time()
            with anyio.fail_after(10), pytest.raises(sidecar.KernelDied):
                await kernel.execute("import time; time.sleep(60)")
            # Two heartbeat intervals, plus slack for a loaded machine.
            assert anyio.current_time() - started < 3


async def test_cancelling_mid_execute_leaves_no_process_and_no_file() -> None:
    pid = None
    connection_file = None
    with anyio.CancelScope() as scope:
        async with sidecar.launch("python3") as kernel:
            assert kernel.process is not None
            pid = kernel.process.pid
            assert kernel._files is not None
            connection_file = kernel._files.connection_file
            # Cancelled mid-execute, however long the kernel took to start.
            scope.deadline = anyio.current_time() + 0.5
            await kernel.execute("import time; time.sleep(60)")
    assert scope.cancelled_caught
    assert pid is not None
    assert connection_file is not None
    assert not _alive(pid)
    assert not connection_file.exists()


async def test_cancelling_while_the_kernel_starts_is_quick_and_leaves_nothing() -> None:
    """A kernel cancelled while starting was never asked to shut down: it is
    terminated at once (it used to get 2.5 s to leave by itself)."""
    for delay in (0.05, 0.2):  # ipykernel needs longer than this to start
        with anyio.CancelScope() as scope:
            scope.deadline = anyio.current_time() + delay
            async with sidecar.launch("python3"):
                await anyio.sleep_forever()
        assert scope.cancelled_caught
        assert anyio.current_time() - scope.deadline < 1.0
    assert not kernel_processes_of(os.getpid())


async def test_error_in_the_body_propagates_unwrapped_and_stops_the_kernel() -> None:
    pid = None
    with pytest.raises(KeyError, match="boom"):
        async with sidecar.launch("python3") as kernel:
            assert kernel.process is not None
            pid = kernel.process.pid
            raise KeyError("boom")
    assert pid is not None
    assert not _alive(pid)


async def test_interrupt_a_long_sleep() -> None:
    async with sidecar.launch("python3") as kernel:
        assert kernel.interrupt_mode == "signal"
        started = anyio.current_time()
        await _interrupted_sleep(kernel)
        assert anyio.current_time() - started < 2.5
        after = await kernel.execute("1")
        assert isinstance(after, ExecuteReply)


async def test_interrupt_by_message() -> None:
    async with sidecar.launch("python3") as kernel:
        kernel.interrupt_mode = "message"
        await _interrupted_sleep(kernel)


async def test_restart_fails_waiting_requests_and_then_works() -> None:
    async with sidecar.launch("python3") as kernel:
        assert kernel.process is not None
        old_pid = kernel.process.pid
        await kernel.execute("x = 1")
        await _waiting_request_fails_on(kernel, kernel.restart)
        assert kernel.process.pid != old_pid
        assert not _alive(old_pid)
        seen: list[Message] = []

        async def answer(prompt: str, password: bool) -> str:
            return "typed"

        # The fresh process's stdin is proven live too: input() right away works.
        reply = await kernel.execute(
            "print('x' in dir(), input())", handlers=[seen.append], stdin=answer
        )
        assert isinstance(reply, ExecuteReply)
        assert _stdout(seen) == "False typed\n"


async def test_missing_kernelspec_is_named() -> None:
    with pytest.raises(sidecar.NoSuchKernel) as info:
        async with sidecar.launch("no-such-kernel-anywhere"):
            pass
    assert "python3" in info.value.available
    assert "no-such-kernel-anywhere" in str(info.value)


def _write_spec(root: Path, name: str, argv: list[str]) -> None:
    spec_dir = root / "kernels" / name
    spec_dir.mkdir(parents=True)
    (spec_dir / "kernel.json").write_text(
        json.dumps({"argv": argv, "display_name": name, "language": "python"})
    )


async def test_kernel_that_exits_at_start(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    code = "import sys; sys.stderr.write('cannot start: no luck\\n'); sys.exit(3)"
    _write_spec(tmp_path, "broken", [sys.executable, "-c", code, "{connection_file}"])
    monkeypatch.setenv("JUPYTER_PATH", str(tmp_path))
    with anyio.fail_after(20), pytest.raises(sidecar.KernelStartError) as info:
        async with sidecar.launch("broken"):
            pass
    assert info.value.exit_code == 3
    assert "cannot start: no luck" in str(info.value)


async def test_kernel_whose_program_does_not_exist(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _write_spec(tmp_path, "ghost", ["/no/such/program", "{connection_file}"])
    monkeypatch.setenv("JUPYTER_PATH", str(tmp_path))
    with anyio.fail_after(10), pytest.raises(sidecar.KernelStartError, match="no/such/program"):
        async with sidecar.launch("ghost"):
            pass


async def test_kernel_that_never_answers(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _write_spec(tmp_path, "mute", [sys.executable, "-c", "import time; time.sleep(60)"])
    monkeypatch.setenv("JUPYTER_PATH", str(tmp_path))
    with anyio.fail_after(20), pytest.raises(sidecar.KernelStartError, match="did not answer"):
        async with sidecar.launch("mute", startup_timeout=1, shutdown_timeout=1):
            pass


async def test_bad_connection_file(tmp_path: Path) -> None:
    path = tmp_path / "bad.json"
    path.write_text(json.dumps({"shell_port": 1, "ip": "127.0.0.1"}))
    with pytest.raises(sidecar.ConnectionFileError, match="iopub_port"):
        async with sidecar.connect(path):
            pass
    with pytest.raises(sidecar.ConnectionFileError, match="cannot read"):
        async with sidecar.connect(tmp_path / "missing.json"):
            pass


async def test_connect_to_nothing_times_out(tmp_path: Path) -> None:
    info = sidecar.wire.ConnectionInfo(
        transport="ipc",
        ip=str(tmp_path / "nobody"),
        shell_port=1,
        iopub_port=2,
        stdin_port=3,
        control_port=4,
        hb_port=5,
    )
    with anyio.fail_after(10), pytest.raises(TimeoutError):
        async with sidecar.connect(info, ready_timeout=0.5, heartbeat_interval=None):
            pass


async def test_two_hundred_connections_leak_no_file_descriptors(
    kernel: sidecar.Kernel,
) -> None:
    info = kernel.connection_info

    async def once() -> None:
        async with sidecar.connect(info) as other:
            assert other.info is not None

    await once()  # warm up lazily created resources
    before = len(os.listdir("/proc/self/fd"))
    for _ in range(200):
        await once()
    after = len(os.listdir("/proc/self/fd"))
    assert after <= before


async def test_restart_by_someone_else_fails_waiting_requests(tmp_path: Path) -> None:
    """jupyter_client restarts the kernel under us: the new kernel session is
    noticed, the waiting request fails with KernelRestarted, and the
    connection works with the new kernel afterwards."""
    async with _kernel_started_by_jupyter_client(tmp_path) as manager:
        async with sidecar.connect(manager.connection_file) as kernel:
            old_session = kernel.kernel_session
            await _waiting_request_fails_on(
                kernel, lambda: in_thread(lambda: manager.restart_kernel(now=True))
            )
            with anyio.fail_after(30):
                while True:  # the new kernel may take a moment to bind
                    with anyio.move_on_after(1):
                        reply = await kernel.execute("'alive'")
                        break
            assert isinstance(reply, ExecuteReply)
            assert kernel.kernel_session != old_session


def _slow_starting_kernelspec(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """A kernelspec whose kernel sleeps $SIDECAR_TEST_SLOW_START seconds before it binds."""
    spec_dir = tmp_path / "kernels" / "slowpy"
    spec_dir.mkdir(parents=True)
    code = (
        "import os, sys, time; time.sleep(float(os.environ.get('SIDECAR_TEST_SLOW_START', 0)));"
        " from ipykernel.kernelapp import launch_new_instance; launch_new_instance()"
    )
    argv = [sys.executable, "-c", code, "-f", "{connection_file}"]
    (spec_dir / "kernel.json").write_text(json.dumps({"argv": argv, "display_name": "slow"}))
    monkeypatch.setenv("JUPYTER_PATH", str(tmp_path))
    return "slowpy"


async def test_a_restart_by_someone_else_slower_than_the_heartbeat_is_survived(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Another manager restarts the kernel, and the new one binds 3 s later:
    the heartbeat is lost meanwhile.  Not final for a kernel we do not own:
    the waiting request fails, new ones fail at once while it is lost, and
    the new kernel is served once it answers."""
    name = _slow_starting_kernelspec(tmp_path, monkeypatch)
    async with _kernel_started_by_jupyter_client(tmp_path, name) as manager:
        async with sidecar.connect(manager.connection_file, heartbeat_interval=0.5) as kernel:
            await kernel.execute("marker = 1")
            env = {**os.environ, "SIDECAR_TEST_SLOW_START": "3"}

            def restart() -> None:
                manager.restart_kernel(now=True, env=env)

            failures: list[BaseException] = []

            async def waiting() -> None:
                try:
                    await kernel.execute("import time; time.sleep(60)")
                except (sidecar.KernelDied, sidecar.KernelRestarted) as e:
                    failures.append(e)

            async with anyio.create_task_group() as tg:
                tg.start_soon(waiting)
                await anyio.sleep(0.3)
                await in_thread(restart)
            assert failures, "the waiting request did not fail"
            with anyio.fail_after(5):
                while kernel.state != "lost":
                    await anyio.sleep(0.05)
            started = anyio.current_time()
            with pytest.raises(sidecar.KernelDied):
                await kernel.execute("1")
            assert anyio.current_time() - started < 0.5
            with anyio.fail_after(30):
                while kernel.state != "ready":
                    await anyio.sleep(0.05)
            outputs = sidecar.Outputs()
            reply = await kernel.execute("'marker' in globals()", handlers=[outputs])
            assert isinstance(reply, ExecuteReply)
            assert outputs.outputs[-1]["data"]["text/plain"] == "False"


async def test_a_wrong_key_is_named_within_seconds(tmp_path: Path) -> None:
    async with _kernel_started_by_jupyter_client(tmp_path) as manager:
        fields = json.loads(Path(manager.connection_file).read_text())
        fields["key"] = "not-the-kernels-key"
        wrong = tmp_path / "wrong-key.json"
        wrong.write_text(json.dumps(fields))
        started = anyio.current_time()
        with anyio.fail_after(15), pytest.raises(sidecar.AuthenticationError) as failed:
            async with sidecar.connect(wrong):
                pass
        assert str(wrong) in str(failed.value)
        assert "key" in str(failed.value)
        assert anyio.current_time() - started < 10


async def test_connecting_to_nothing_says_nothing_answers(tmp_path: Path) -> None:
    info = sidecar.wire.ConnectionInfo(
        transport="tcp",
        ip="127.0.0.1",
        shell_port=_free_port(),
        iopub_port=_free_port(),
        stdin_port=_free_port(),
        control_port=_free_port(),
        hb_port=_free_port(),
    )
    path = tmp_path / "nobody.json"
    sidecar.wire.write_connection_file(info, path)
    with anyio.fail_after(10), pytest.raises(TimeoutError, match="is the kernel running"):
        async with sidecar.connect(path, ready_timeout=1):
            pass


async def test_kernel_that_cannot_bind_is_retried_on_fresh_ports(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Another process takes a port between our pick and the kernel's bind."""
    import socket

    from sidecar.kernel import _process

    squatter = socket.socket()
    squatter.bind(("127.0.0.1", 0))
    squatter.listen()
    taken = squatter.getsockname()[1]
    real = _process._free_ports
    picks: list[list[int]] = []

    def first_pick_is_taken(ip: str, count: int = 5) -> list[int]:
        ports = real(ip, count)
        if not picks:
            ports[0] = taken
        picks.append(ports)
        return ports

    monkeypatch.setattr(_process, "_free_ports", first_pick_is_taken)
    try:
        async with sidecar.launch("python3", transport="tcp") as kernel:
            assert kernel.connection_info.shell_port != taken
            reply = await kernel.execute("1")
            assert isinstance(reply, ExecuteReply)
    finally:
        squatter.close()
    assert len(picks) == 2
