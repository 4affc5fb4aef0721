"""A flood kernel: a load generator that speaks the kernel side of the protocol.

Run ``python -m benchmarks._flood_kernel --connection-file PATH [--n N]``.  It
is not a kernel (it runs no code); it binds like one (ROUTER shell, control and
stdin, XPUB iopub, REP heartbeat, on IPC endpoints next to the connection file),
writes the connection file, prints one JSON line ``{"ready": PATH}`` on stdout,
and then answers, with messages signed by :class:`sidecar.wire.Session`:

``kernel_info_request``
    busy, ``kernel_info_reply``, idle (so a client's readiness check works);
``execute_request`` whose code is ``flood``
    busy, ``execute_input``, ``--n`` ``display_data`` messages (``text/plain``
    ``"0"``, ``"1"``, ...), ``execute_reply``, idle, every one with the request
    as parent.  All of them are built and signed *before* busy is sent (fresh
    ``msg_id``\\s and signatures for every flood: a client's replay guard must
    never see one twice), then sent in a tight loop, so the generator sends far
    faster than any client takes in.  After the flood it prints one JSON line:
    ``{"busy_sent": t, "last_sent": t, "prepared_s": s, "n": n}``, the times on
    ``time.perf_counter`` (CLOCK_MONOTONIC, the same in every process here), so
    the client's ingest time is measured from ``busy_sent`` to its own done;
any other ``execute_request``
    busy, ``execute_input``, ``execute_reply``, idle: a kernel that runs
    ``pass`` in no time, for request-rate and memory benchmarks;
``shutdown_request``
    the reply, then exit.

Before a flood it waits (up to 10 s) until a subscriber is known on iopub (the
XPUB sees the subscription), so nothing is published into the void.  Iopub's
send high-water mark is 0 (unlimited): a slow subscriber makes the generator
buffer, never drop.  It exits when its parent (``JPY_PARENT_PID``) is gone.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import zmq

from sidecar.wire import Header, Message, Session

DELIM = b"<IDS|MSG>"
KERNEL_INFO = {
    "status": "ok",
    "protocol_version": "5.4",
    "implementation": "flood",
    "implementation_version": "1.0",
    "language_info": {
        "name": "python",
        "version": ".".join(map(str, sys.version_info[:3])),
        "mimetype": "text/x-python",
        "file_extension": ".py",
    },
    "banner": "flood: a load generator",
    "help_links": [],
    "debugger": False,
}
SUBSCRIBER_WAIT = 10.0


class FloodKernel:
    def __init__(self, connection_file: Path, n: int) -> None:
        self.n = n
        self.connection_file = connection_file
        key = uuid.uuid4().hex
        self.session = Session(key.encode(), username="flood")
        self.ctx = zmq.Context()
        base = str(connection_file.with_suffix(""))
        self.info: dict[str, Any] = {
            "transport": "ipc",
            "ip": base,
            "shell_port": 1,
            "iopub_port": 2,
            "stdin_port": 3,
            "control_port": 4,
            "hb_port": 5,
            "key": key,
            "signature_scheme": "hmac-sha256",
            "kernel_name": "flood",
        }

        def bind(kind: int, port: int) -> zmq.Socket[Any]:
            sock: zmq.Socket[Any] = self.ctx.socket(kind)
            sock.linger = 0
            sock.bind(f"ipc://{base}-{port}")
            return sock

        self.shell = bind(zmq.ROUTER, 1)
        self.iopub = self.ctx.socket(zmq.XPUB)
        self.iopub.linger = 0
        self.iopub.sndhwm = 0  # buffer for a slow subscriber, never drop
        self.iopub.setsockopt(zmq.XPUB_VERBOSE, 1)
        self.iopub.bind(f"ipc://{base}-2")
        self.stdin = bind(zmq.ROUTER, 3)
        self.control = bind(zmq.ROUTER, 4)
        self.hb = bind(zmq.REP, 5)
        self.subscribers = 0
        self.execution_count = 0
        self.floods = 0
        # The content of every display_data, encoded once (Message caches it).
        self.outputs = [
            Message(
                self.session.header("display_data"),
                {"data": {"text/plain": str(i)}, "metadata": {}, "transient": {}},
            )
            for i in range(n)
        ]
        tmp = connection_file.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.info))
        tmp.rename(connection_file)

    def publish(self, msg_type: str, content: Any, parent: Header) -> None:
        message = self.session.message(msg_type, content, parent=parent)
        self.iopub.send_multipart(
            [f"kernel.flood.{msg_type}".encode(), *self.session.serialize(message)]
        )

    def reply(self, sock: zmq.Socket[Any], request: Message, msg_type: str, content: Any) -> None:
        message = self.session.message(msg_type, content, parent=request)
        sock.send_multipart(self.session.serialize(message, request.identities))

    def on_xpub(self) -> None:
        event = self.iopub.recv()
        if event[:1] == b"\x01":
            self.subscribers += 1
        elif event[:1] == b"\x00":
            self.subscribers = max(0, self.subscribers - 1)

    def wait_subscriber(self) -> None:
        deadline = time.monotonic() + SUBSCRIBER_WAIT
        while self.subscribers == 0 and time.monotonic() < deadline:
            if self.iopub.poll(100):
                self.on_xpub()

    def on_request(self, sock: zmq.Socket[Any], frames: list[bytes]) -> bool:
        """Answer one request; False when asked to shut down."""
        request = self.session.deserialize(frames)
        parent = request.header
        msg_type = request.msg_type
        if msg_type == "shutdown_request":
            self.reply(sock, request, "shutdown_reply", {"status": "ok", "restart": False})
            return False
        if msg_type == "kernel_info_request":
            self.publish("status", {"execution_state": "busy"}, parent)
            self.reply(sock, request, "kernel_info_reply", KERNEL_INFO)
            self.publish("status", {"execution_state": "idle"}, parent)
            return True
        if msg_type != "execute_request":
            self.publish("status", {"execution_state": "busy"}, parent)
            self.reply(sock, request, msg_type.replace("_request", "_reply"), {"status": "ok"})
            self.publish("status", {"execution_state": "idle"}, parent)
            return True
        code = request.content.code
        self.execution_count += 1
        count = self.execution_count
        if code.strip() == "flood":
            self.flood(sock, request, count)
            return True
        self.publish("status", {"execution_state": "busy"}, parent)
        self.publish("execute_input", {"code": code, "execution_count": count}, parent)
        content = {"status": "ok", "execution_count": count, "payload": [], "user_expressions": {}}
        self.reply(sock, request, "execute_reply", content)
        self.publish("status", {"execution_state": "idle"}, parent)
        return True

    def flood(self, sock: zmq.Socket[Any], request: Message, count: int) -> None:
        parent = request.header
        session = self.session
        serialize, header = session.serialize, session.header
        started = time.perf_counter()
        self.wait_subscriber()
        topic = b"kernel.flood.display_data"
        frames = []
        for message in self.outputs:
            message.header = header("display_data")
            message.parent_header = parent
            frames.append([topic, *serialize(message)])

        def signed(msg_type: str, content: Any) -> list[Any]:
            message = session.message(msg_type, content, parent=parent)
            return [f"kernel.flood.{msg_type}".encode(), *serialize(message)]

        busy = signed("status", {"execution_state": "busy"})
        execute_input = signed("execute_input", {"code": "flood", "execution_count": count})
        idle = signed("status", {"execution_state": "idle"})
        reply = session.message(
            "execute_reply",
            {"status": "ok", "execution_count": count, "payload": [], "user_expressions": {}},
            parent=request,
        )
        reply_frames = serialize(reply, request.identities)
        prepared = time.perf_counter() - started

        # Frame by frame: pyzmq's send_multipart costs twice as much per message.
        send, more = self.iopub.send, zmq.SNDMORE
        busy_sent = time.perf_counter()
        self.iopub.send_multipart(busy)
        self.iopub.send_multipart(execute_input)
        for message_frames in frames:
            for frame in message_frames[:-1]:
                send(frame, more)
            send(message_frames[-1])
        sock.send_multipart(reply_frames)
        self.iopub.send_multipart(idle)
        last_sent = time.perf_counter()
        self.floods += 1
        print(
            json.dumps(
                {
                    "busy_sent": busy_sent,
                    "last_sent": last_sent,
                    "prepared_s": prepared,
                    "n": self.n,
                }
            ),
            flush=True,
        )

    def serve(self) -> None:
        poller = zmq.Poller()
        for sock in (self.shell, self.control, self.stdin, self.iopub, self.hb):
            poller.register(sock, zmq.POLLIN)
        parent_pid = int(os.environ.get("JPY_PARENT_PID", "0") or 0)
        print(json.dumps({"ready": str(self.connection_file)}), flush=True)
        while True:
            ready = dict(poller.poll(1000))
            if not ready and parent_pid and not _alive(parent_pid):
                return
            if self.iopub in ready:
                self.on_xpub()
            if self.hb in ready:
                self.hb.send_multipart(self.hb.recv_multipart())
            for sock in (self.control, self.shell):
                if sock in ready and not self.on_request(sock, sock.recv_multipart()):
                    return
            if self.stdin in ready:
                self.stdin.recv_multipart()  # nothing asks for input here

    def close(self) -> None:
        for sock in (self.shell, self.iopub, self.stdin, self.control, self.hb):
            sock.close(linger=0)
        self.ctx.term()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--connection-file", required=True, type=Path)
    parser.add_argument("--n", type=int, default=50_000, help="display_data per flood")
    args = parser.parse_args()
    kernel = FloodKernel(args.connection_file, args.n)
    try:
        kernel.serve()
    finally:
        kernel.close()
        args.connection_file.unlink(missing_ok=True)


if __name__ == "__main__":
    main()
