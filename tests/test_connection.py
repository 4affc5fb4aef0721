"""The connection's receive loops and actions against a *misbehaving* peer.

A real ipykernel never sends garbage, bad signatures, or a reply without its
idle, so these tests bind raw ZeroMQ sockets where a kernel would be and send
exactly the bytes under test, signed with the wire layer.  Everything a real
kernel does is tested against real kernels elsewhere.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import pytest
import zmq

import sidecar
from sidecar.client._kernel import Kernel
from sidecar.kernel._channels import Connection, Inbox, open_connection
from sidecar.kernel._kernelspec import find_kernelspecs, get_kernelspec
from sidecar.kernel._lifecycle import Event
from sidecar.transport._socket import AsyncSocket
from sidecar.wire import ConnectionInfo, ExecuteReply, Session, Status, Stream

pytestmark = pytest.mark.anyio

KEY = "a-test-key"


class Peer:
    """Raw sockets bound where a kernel's would be, signing as a kernel."""

    def __init__(self, tmp_path: Path) -> None:
        self.info = ConnectionInfo(
            transport="ipc",
            ip=str(tmp_path / "peer"),
            shell_port=1,
            iopub_port=2,
            stdin_port=3,
            control_port=4,
            hb_port=5,
            key=KEY,
        )
        self.session = Session(KEY)
        self.context: zmq.Context[Any] = zmq.Context()
        self.shell = self._bind(zmq.ROUTER, "shell")
        self.iopub = self._bind(zmq.XPUB, "iopub")
        self.others = [self._bind(zmq.ROUTER, c) for c in ("control", "stdin")]

    def _bind(self, kind: int, channel: str) -> AsyncSocket:
        sock = self.context.socket(kind)
        sock.linger = 0
        sock.bind(self.info.endpoint(channel))
        return AsyncSocket(sock)

    async def wait_subscribed(self) -> None:
        """XPUB tells us when the client's subscription arrived (no slow joiner)."""
        frames = await self.iopub.recv_multipart()
        assert frames[0][:1] == b"\x01"

    def close(self) -> None:
        for sock in (self.shell, self.iopub, *self.others):
            sock.close()
        self.context.term()


@asynccontextmanager
async def peer_and_connection(tmp_path: Path) -> AsyncIterator[tuple[Peer, Connection]]:
    peer = Peer(tmp_path)
    try:
        async with open_connection(peer.info, heartbeat_interval=None) as conn:
            with anyio.fail_after(5):
                await peer.wait_subscribed()
            yield peer, conn
    finally:
        peer.close()


async def test_bad_frames_and_signatures_are_dropped_and_the_loop_goes_on(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    async with peer_and_connection(tmp_path) as (peer, conn):
        request = conn.session.message("execute_request")
        inbox = conn.register(request.msg_id)
        good = peer.session.message("stream", Stream(name="stdout", text="ok"), parent=request)
        forged = peer.session.serialize(
            peer.session.message("stream", Stream(name="stdout", text="forged"), parent=request)
        )
        forged[1] = b"0" * 64  # a wrong signature
        unsigned = [*forged]
        unsigned[1] = b""
        with caplog.at_level(logging.WARNING, logger="sidecar.connection"):
            await peer.iopub.send([b"junk"])
            await peer.iopub.send(forged)
            await peer.iopub.send(unsigned)
            await peer.iopub.send(peer.session.serialize(good))
            await peer.iopub.send(peer.session.serialize(good))  # a replay
            with anyio.fail_after(5):
                channel, message = await inbox.get()
                while conn.statistics().received < 5:
                    await anyio.sleep(0.01)
        assert channel == "iopub"
        assert message.content == Stream(name="stdout", text="ok")
        assert inbox.empty()
        stats = conn.statistics()
        assert stats.dropped_invalid == 4
        assert stats.routed == 1
        dropped = [r.getMessage() for r in caplog.records]
        assert any("delimiter" in text for text in dropped)
        assert any("signature does not match" in text for text in dropped)
        assert any("unsigned" in text for text in dropped)
        assert any("seen before" in text for text in dropped)


async def test_unsolicited_messages_reach_observers(tmp_path: Path) -> None:
    async with peer_and_connection(tmp_path) as (peer, conn):
        with conn.observe() as observed:
            status = peer.session.message("status", Status(execution_state="idle"))
            await peer.iopub.send(peer.session.serialize(status))
            with anyio.fail_after(5):
                channel, message = await observed.receive()
        assert channel == "iopub"
        assert message.content == Status(execution_state="idle")
        assert conn.statistics().unsolicited == 1


async def _answer_one_request(peer: Peer, *, reply: bool, idle: bool) -> None:
    frames = await peer.shell.recv_multipart()
    identity = frames[0]
    request = peer.session.deserialize(frames)
    if reply:
        answer = peer.session.message(
            "execute_reply", ExecuteReply(execution_count=1), parent=request
        )
        await peer.shell.send(peer.session.serialize(answer, [identity]))
    if idle:
        status = peer.session.message("status", Status(execution_state="idle"), parent=request)
        await peer.iopub.send(peer.session.serialize(status))


async def test_reply_without_idle_completes_after_the_grace_period(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    async with peer_and_connection(tmp_path) as (peer, conn), anyio.create_task_group() as tg:
        kernel = Kernel(conn, tg)
        kernel.grace = 0.3
        tg.start_soon(lambda: _answer_one_request(peer, reply=True, idle=False))
        started = anyio.current_time()
        with caplog.at_level(logging.WARNING, logger="sidecar"), anyio.fail_after(5):
            reply = await kernel.execute("x")
        assert isinstance(reply, ExecuteReply)
        assert 0.3 <= anyio.current_time() - started < 3
        assert any("no idle" in r.getMessage() for r in caplog.records)
        tg.cancel_scope.cancel()


async def test_idle_without_reply_fails_after_the_grace_period(tmp_path: Path) -> None:
    async with peer_and_connection(tmp_path) as (peer, conn), anyio.create_task_group() as tg:
        kernel = Kernel(conn, tg)
        kernel.grace = 0.3
        tg.start_soon(lambda: _answer_one_request(peer, reply=False, idle=True))
        with anyio.fail_after(5), pytest.raises(sidecar.NoReply):
            await kernel.execute("x")
        tg.cancel_scope.cancel()


async def test_a_failed_connection_fails_waiting_and_later_requests(tmp_path: Path) -> None:
    async with peer_and_connection(tmp_path) as (_peer, conn):
        inbox = conn.register("waiting")
        conn.handle(Event.PROCESS_EXITED, "gone", exit_code=9)
        with anyio.fail_after(1), pytest.raises(sidecar.KernelDied, match="exit code 9"):
            await inbox.get()
        with pytest.raises(sidecar.KernelDied):
            conn.register("later")
        with pytest.raises(sidecar.KernelDied):
            await conn.send("shell", conn.session.message("kernel_info_request"))


def test_python3_falls_back_to_this_interpreters_ipykernel(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from sidecar.kernel import _kernelspec

    monkeypatch.setattr(_kernelspec, "kernel_dirs", lambda: [])
    assert "python3" in find_kernelspecs()
    spec = get_kernelspec("python3")
    assert spec.argv[1:3] == ["-m", "ipykernel_launcher"]
    assert spec.command("/c.json")[-1] == "/c.json"


def test_jupyter_path_comes_first(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    spec_dir = tmp_path / "kernels" / "python3"
    spec_dir.mkdir(parents=True)
    (spec_dir / "kernel.json").write_text(
        '{"argv": ["python3", "-c", "{connection_file}"], "display_name": "Mine",'
        ' "interrupt_mode": "message", "env": {"A": "1"}}'
    )
    monkeypatch.setenv("JUPYTER_PATH", str(tmp_path))
    spec = get_kernelspec("python3")
    assert spec.display_name == "Mine"
    assert spec.interrupt_mode == "message"
    assert spec.env == {"A": "1"}
    assert spec.resource_dir == str(spec_dir)


def test_invalid_kernel_json_is_a_start_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    spec_dir = tmp_path / "kernels" / "broken"
    spec_dir.mkdir(parents=True)
    (spec_dir / "kernel.json").write_text('{"display_name": "no argv"}')
    monkeypatch.setenv("JUPYTER_PATH", str(tmp_path))
    with pytest.raises(sidecar.KernelStartError, match="argv"):
        get_kernelspec("broken")


async def test_a_cancelled_inbox_get_takes_nothing() -> None:
    """Cancellation is checked before a message is taken, so the request's
    cleanup still finds every message (losing the reply would make it wait)."""
    session = Session(key=b"k")
    inbox = Inbox("parent")
    inbox.put("shell", session.message("status", Status(execution_state="idle")))
    with anyio.CancelScope() as scope:
        scope.cancel()
        await inbox.get()
    assert scope.cancelled_caught
    assert not inbox.empty()
    channel, message = await inbox.get()
    assert (channel, message.msg_type) == ("shell", "status")


async def test_an_inbox_flood_yields_to_other_tasks() -> None:
    """Queued messages are handed out in batches (not one scheduler pass per
    message), but a long queue still lets other tasks run between batches."""
    session = Session(key=b"k")
    inbox = Inbox("parent")
    for _ in range(1000):
        inbox.put("iopub", session.message("status", Status(execution_state="busy")))
    ticks = 0
    taken = 0

    async def other() -> None:
        nonlocal ticks
        while taken < 1000:
            ticks += 1
            await anyio.lowlevel.checkpoint()

    async with anyio.create_task_group() as tg:
        tg.start_soon(other)
        while taken < 1000:
            await inbox.get()
            taken += 1
    # One tick per batch of 64, give or take the first and the last.
    assert 1000 // 64 - 1 <= ticks <= 1000 // 64 + 2
