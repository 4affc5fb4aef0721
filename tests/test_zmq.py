"""The anyio pyzmq socket: no lost wakeups, no lost messages, clean close."""

from __future__ import annotations

import threading
import time

import anyio
import pytest
import zmq

from sidecar.transport._socket import AsyncSocket

pytestmark = pytest.mark.anyio


@pytest.fixture
def pair() -> tuple[zmq.Context[zmq.Socket[bytes]], zmq.Socket[bytes], zmq.Socket[bytes]]:
    ctx: zmq.Context[zmq.Socket[bytes]] = zmq.Context()
    router = ctx.socket(zmq.ROUTER)
    router.linger = 0
    router.sndhwm = 0  # a ROUTER drops at the high-water mark; the flood test needs all
    port = router.bind_to_random_port("tcp://127.0.0.1")
    dealer = ctx.socket(zmq.DEALER)
    dealer.linger = 0
    dealer.rcvhwm = 0
    dealer.connect(f"tcp://127.0.0.1:{port}")
    yield ctx, router, dealer
    router.close()
    dealer.close()
    ctx.term()


@pytest.mark.parametrize("mode", ["recv", "pump"])
async def test_no_lost_wakeup_when_a_send_drains_the_fd(pair, mode: str) -> None:  # type: ignore[no-untyped-def]
    """The reader sleeps on the fd; a send from another task processes the
    mailbox (draining the edge) while a reply is already queued.  Without the
    kick after send the reader would never wake (the design notes' repro).
    Both ways of receiving: direct recv_multipart and the pump (which on
    asyncio keeps a persistent loop reader instead of anyio.wait_readable)."""
    _, router, dealer = pair
    sock = AsyncSocket(dealer)
    got: list[list[bytes]] = []
    both = anyio.Event()

    def on_message(frames: list[bytes]) -> None:
        got.append(frames)
        if len(got) == 2:
            both.set()

    async def reader() -> None:
        if mode == "pump":
            await sock.pump(on_message)
        else:
            while len(got) < 2:
                on_message(await sock.recv_multipart())

    def echo_twice() -> None:
        for _ in range(2):
            ident, body = router.recv_multipart()
            router.send_multipart([ident, b"re:" + body])

    echoer = threading.Thread(target=echo_twice)
    echoer.start()
    try:
        with anyio.fail_after(5):
            async with anyio.create_task_group() as tg:
                tg.start_soon(reader)
                await anyio.sleep(0.05)  # the reader is now waiting on the fd
                await sock.send([b"1"])
                time.sleep(0.2)  # block the loop while reply 1 lands in libzmq
                await sock.send([b"2"])  # drains the fd: reply 1 must not be lost
                await both.wait()
                sock.close()
    finally:
        echoer.join(5)
    assert got == [[b"re:1"], [b"re:2"]]


async def test_pump_delivers_a_flood_in_order(pair) -> None:  # type: ignore[no-untyped-def]
    _, router, dealer = pair
    sock = AsyncSocket(dealer)
    await sock.send([b"hello"])
    ident, _ = await anyio.to_thread.run_sync(router.recv_multipart)
    count = 5000
    for i in range(count):
        router.send_multipart([ident, str(i).encode()])
    seen: list[int] = []
    done = anyio.Event()

    def on_message(frames: list[bytes]) -> None:
        seen.append(int(frames[0]))
        if len(seen) == count:
            done.set()

    with anyio.fail_after(10):
        async with anyio.create_task_group() as tg:
            tg.start_soon(sock.pump, on_message)
            await done.wait()
            sock.close()
    assert seen == list(range(count))


async def test_close_wakes_a_waiting_receiver(pair) -> None:  # type: ignore[no-untyped-def]
    _, _, dealer = pair
    sock = AsyncSocket(dealer)
    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            tg.start_soon(sock.pump, lambda frames: None)
            await anyio.sleep(0.05)
            sock.close()  # the pump returns instead of polling a dead fd
    assert sock.closed
    with pytest.raises(anyio.ClosedResourceError):
        sock.send_nowait([b"x"])
    with pytest.raises(anyio.ClosedResourceError):
        await sock.recv_multipart()


async def test_cancelled_receive_loses_nothing(pair) -> None:  # type: ignore[no-untyped-def]
    """Cancelling a receiver between messages never drops one already queued."""
    _, router, dealer = pair
    sock = AsyncSocket(dealer)
    await sock.send([b"hello"])
    ident, _ = await anyio.to_thread.run_sync(router.recv_multipart)
    received: list[bytes] = []
    for i in range(50):
        with anyio.move_on_after(0.001):
            received.append((await sock.recv_multipart())[0])
        router.send_multipart([ident, str(i).encode(), b"second frame"])
    with anyio.fail_after(5):
        while len(received) < 50:
            received.append((await sock.recv_multipart())[0])
    assert received == [str(i).encode() for i in range(50)]
