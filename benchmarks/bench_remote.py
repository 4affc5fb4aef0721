"""Execute round trip through a Jupyter Server's websocket: sidecar vs a bare client.

Run ``python -m benchmarks.bench_remote`` (``--json``, ``--n``, ``--repeat``).

A ``jupyter server`` is started on loopback with a token; each client gets a
kernel of its own on it (so neither sees the other's iopub) and does
sequential ``pass`` executes, each done when both its ``execute_reply`` and
its ``status: idle`` are in.

sidecar
    ``await kernel.execute("pass")`` on ``sidecar.connect_server(...)``: the
    websocket transport, routing, the lifecycle, the action machinery.
bare websocket (the floor)
    what any websocket client must do and nothing more, written here: wsproto
    on an anyio TCP stream, the v1 framing by hand with ``struct``, the
    request built from dicts with ``json``, every incoming message's channel,
    header and parent header decoded (content only for ``status``).  No
    routing table, no lifecycle, no ping.  It sets ``TCP_QUICKACK`` after
    each read as sidecar does: without it both are held to ~20 round trips/s
    by the server's Nagle and our delayed ACK, which says nothing of either.

Both run in one process on one backend at a time, in interleaved turns of 50
executes (the machine's speed drifts over seconds; interleaving makes both
see the same drift), asyncio then trio.  Reported: executes/s (median over
reps) and the ratio sidecar / floor (1.0 = as fast as the floor).
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import anyio
import anyio.abc
import httpx
from wsproto import ConnectionType, WSConnection
from wsproto.events import AcceptConnection, BytesMessage, Ping, Request

import sidecar

TOKEN = "bench-token"
TURN = 50


def _start_server(root: str) -> tuple[subprocess.Popen[bytes], str]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = dict(os.environ, JUPYTER_CONFIG_DIR=os.path.join(root, "config"))
    env["JUPYTER_RUNTIME_DIR"] = os.path.join(root, "runtime")
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "jupyter_server",
            f"--ServerApp.token={TOKEN}",
            f"--ServerApp.port={port}",
            "--ServerApp.port_retries=0",
            "--ServerApp.allow_root=True",
            "--ServerApp.open_browser=False",
            f"--ServerApp.root_dir={root}",
            "--ServerApp.jpserver_extensions={}",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=env,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{url}/api/status", timeout=1).status_code in (200, 403):
                return process, url
        except httpx.HTTPError:
            time.sleep(0.1)
    process.kill()
    raise RuntimeError("jupyter server did not start")


class BareClient:
    """The floor: a websocket client that does only what it must."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.session = uuid.uuid4().hex
        self.count = 0
        self.stream: anyio.abc.SocketStream
        self.ws = WSConnection(ConnectionType.CLIENT)
        self.kernel_id = ""
        self.sock: Any = None

    async def open(self) -> None:
        headers = {"Authorization": f"token {TOKEN}"}
        async with httpx.AsyncClient(headers=headers) as client:
            self.kernel_id = (await client.post(f"{self.url}/api/kernels", json={})).json()["id"]
        host, port = self.url.removeprefix("http://").split(":")
        self.stream = await anyio.connect_tcp(host, int(port))
        self.sock = self.stream.extra(anyio.abc.SocketAttribute.raw_socket)
        target = f"/api/kernels/{self.kernel_id}/channels?session_id={self.session}"
        await self.stream.send(
            self.ws.send(
                Request(
                    host=f"{host}:{port}",
                    target=target,
                    subprotocols=["v1.kernel.websocket.jupyter.org"],
                    extra_headers=[(b"authorization", f"token {TOKEN}".encode())],
                )
            )
        )
        while not any(isinstance(e, AcceptConnection) for e in await self._events()):
            pass
        # Until iopub is live: kernel_info until anything arrives on iopub.
        while True:
            msg_id = await self._send("kernel_info_request")
            with anyio.move_on_after(0.5):
                if await self._wait(msg_id, need_iopub=True):
                    return

    async def close(self) -> None:
        await self.stream.aclose()
        headers = {"Authorization": f"token {TOKEN}"}
        async with httpx.AsyncClient(headers=headers) as client:
            await client.delete(f"{self.url}/api/kernels/{self.kernel_id}")

    async def _events(self) -> list[Any]:
        data = await self.stream.receive(65536)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_QUICKACK, 1)
        self.ws.receive_data(data)
        return list(self.ws.events())

    async def _send(self, msg_type: str, content: dict[str, Any] | None = None) -> str:
        self.count += 1
        msg_id = f"{self.session}_{self.count}"
        header = {
            "msg_id": msg_id,
            "msg_type": msg_type,
            "session": self.session,
            "username": "bench",
            "date": "2026-01-01T00:00:00.000000Z",
            "version": "5.4",
        }
        parts = [json.dumps(p).encode() for p in (header, {}, {}, content or {})]
        channel = b"shell"
        offsets = [8 * 7, 8 * 7 + len(channel)]
        for part in parts:
            offsets.append(offsets[-1] + len(part))
        data = struct.pack("<7Q", 6, *offsets) + channel + b"".join(parts)
        await self.stream.send(self.ws.send(BytesMessage(data=data)))
        return msg_id

    async def _wait(self, msg_id: str, *, need_iopub: bool = False) -> bool:
        reply = idle = False
        while not (reply and idle):
            for event in await self._events():
                if isinstance(event, Ping):
                    await self.stream.send(self.ws.send(event.response()))
                if not isinstance(event, BytesMessage):
                    continue
                data = event.data
                (n,) = struct.unpack_from("<Q", data)
                offsets = struct.unpack_from(f"<{n}Q", data, 8)
                channel = data[offsets[0] : offsets[1]]
                parent = json.loads(data[offsets[2] : offsets[3]])
                json.loads(data[offsets[1] : offsets[2]])  # the header, as any client must
                if need_iopub and channel == b"iopub":
                    return True
                if parent.get("msg_id") != msg_id:
                    continue
                if channel == b"shell":
                    reply = True
                elif channel == b"iopub":
                    header = json.loads(data[offsets[1] : offsets[2]])
                    if header["msg_type"] == "status":
                        content = json.loads(data[offsets[4] : offsets[5]])
                        idle = content["execution_state"] == "idle"
        return True

    async def execute(self) -> None:
        msg_id = await self._send(
            "execute_request",
            {
                "code": "pass",
                "silent": False,
                "store_history": True,
                "user_expressions": {},
                "allow_stdin": False,
                "stop_on_error": True,
            },
        )
        await self._wait(msg_id)


async def _turns(clients: dict[str, Callable[[], Awaitable[None]]], n: int) -> dict[str, float]:
    """``n`` timed executes per client, in interleaved turns; executes/s each."""
    spent = dict.fromkeys(clients, 0.0)
    order = list(clients)
    for turn in range(max(1, n // TURN)):
        rotated = order[turn % len(order) :] + order[: turn % len(order)]
        for name in rotated:
            execute = clients[name]
            for _ in range(2):
                await execute()
            started = time.perf_counter()
            for _ in range(TURN):
                await execute()
            spent[name] += time.perf_counter() - started
    done = max(1, n // TURN) * TURN
    return {name: done / seconds for name, seconds in spent.items()}


async def _run(url: str, n: int, repeat: int) -> dict[str, list[float]]:
    rates: dict[str, list[float]] = {"sidecar": [], "bare websocket": []}
    bare = BareClient(url)
    await bare.open()
    try:
        async with sidecar.connect_server(url, token=TOKEN) as kernel:

            async def sidecar_execute() -> None:
                await kernel.execute("pass")

            for _ in range(20):
                await sidecar_execute()
                await bare.execute()
            for _ in range(repeat):
                got = await _turns({"sidecar": sidecar_execute, "bare websocket": bare.execute}, n)
                for name, rate in got.items():
                    rates[name].append(rate)
    finally:
        await bare.close()
    return rates


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=500, help="timed executes per rep and client")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="--n 100 --repeat 1")
    parser.add_argument("--json", action="store_true", help="JSON on stdout, table on stderr")
    args = parser.parse_args()
    if args.quick:
        args.n, args.repeat = 100, 1
    results: dict[str, Any] = {"benchmark": "remote", "n": args.n, "repeat": args.repeat}
    with tempfile.TemporaryDirectory() as root:
        process, url = _start_server(root)
        try:
            for backend in ("asyncio", "trio"):
                rates = anyio.run(_run, url, args.n, args.repeat, backend=backend)
                medians = {name: statistics.median(r) for name, r in rates.items()}
                results[backend] = {
                    "executes_per_s": medians,
                    "sidecar_vs_floor": medians["sidecar"] / medians["bare websocket"],
                }
        finally:
            process.terminate()
            process.wait(10)
    out = sys.stderr if args.json else sys.stdout
    print(f"{'backend':<8} {'client':<16} {'executes/s':>11} {'vs floor':>9}", file=out)
    for backend in ("asyncio", "trio"):
        row = results[backend]
        for name, rate in row["executes_per_s"].items():
            ratio = rate / row["executes_per_s"]["bare websocket"]
            print(f"{backend:<8} {name:<16} {rate:>11.0f} {ratio:>9.2f}", file=out)
    if args.json:
        json.dump(results, sys.stdout, indent=1)
        print()


if __name__ == "__main__":
    main()
