"""Capture real Jupyter messages from an ipykernel into ``data/samples.json``.

Run by hand when the sample set should be refreshed::

    python tests/wire/capture_samples.py

It starts an ipykernel with jupyter_client (``KernelManager`` and a
``BlockingKernelClient``), runs a handful of requests and records every raw
multipart message, exactly as ZeroMQ delivered it: what the client received on
shell and iopub, and what it sent on shell.  The frames are stored base64
encoded, with the key and signature scheme needed to verify them, so
``test_samples.py`` can replay them through sidecar's ``Session`` with no kernel.

Nothing here imports sidecar: the samples must not depend on the code under test.
"""

from __future__ import annotations

import base64
import json
import os
import sys
import tempfile
from importlib.metadata import version
from pathlib import Path
from typing import Any

from jupyter_client.blocking.client import BlockingKernelClient
from jupyter_client.channels import ZMQSocketChannel
from jupyter_client.manager import KernelManager

OUT = Path(__file__).parent / "data" / "samples.json"
TIMEOUT = 30.0

# (channel, direction, frames) in the order they crossed the sockets.
RECORDED: list[tuple[str, str, list[bytes]]] = []


class _RecordingChannel(ZMQSocketChannel):
    """A channel that records the frames of every message it sends or receives."""

    channel_name = "?"

    def _recv(self, **kwargs: Any) -> dict[str, Any]:
        assert self.socket is not None
        frames = self.socket.recv_multipart(**kwargs)
        RECORDED.append((self.channel_name, "received", list(frames)))
        _idents, rest = self.session.feed_identities(frames)
        return self.session.deserialize(rest)

    def send(self, msg: dict[str, Any]) -> None:
        assert self.socket is not None
        frames = self.session.serialize(msg)
        self.socket.send_multipart(frames)
        RECORDED.append((self.channel_name, "sent", list(frames)))


class _RecordingShell(_RecordingChannel):
    channel_name = "shell"


class _RecordingIOPub(_RecordingChannel):
    channel_name = "iopub"


class RecordingClient(BlockingKernelClient):
    shell_channel_class = _RecordingShell
    iopub_channel_class = _RecordingIOPub


def _wait_idle(kc: RecordingClient, msg_id: str) -> list[dict[str, Any]]:
    """Read iopub until the kernel is idle again after request ``msg_id``."""
    seen = []
    while True:
        msg = kc.get_iopub_msg(timeout=TIMEOUT)
        seen.append(msg)
        if (
            msg["msg_type"] == "status"
            and msg["parent_header"].get("msg_id") == msg_id
            and msg["content"]["execution_state"] == "idle"
        ):
            return seen


def _reply(kc: RecordingClient, msg_id: str) -> dict[str, Any]:
    while True:
        msg = kc.get_shell_msg(timeout=TIMEOUT)
        if msg["parent_header"].get("msg_id") == msg_id:
            return msg


def _request(kc: RecordingClient, msg_id: str) -> dict[str, Any]:
    reply = _reply(kc, msg_id)
    _wait_idle(kc, msg_id)
    print(f"  {reply['msg_type']}: {reply['content'].get('status')}", file=sys.stderr)
    return reply


def run_requests(kc: RecordingClient) -> None:
    _request(kc, kc.kernel_info())
    _request(kc, kc.execute("print('hello, sidecar')"))
    _request(kc, kc.execute("import sys; print('to stderr', file=sys.stderr)"))
    _request(kc, kc.execute("6 * 7"))
    _request(
        kc,
        kc.execute(
            "from IPython.display import display, clear_output\n"
            "handle = display({'text/plain': 'first', 'text/html': '<b>first</b>'},"
            " raw=True, display_id=True)"
        ),
    )
    _request(
        kc,
        kc.execute(
            "handle.update({'text/plain': 'second', 'text/html': '<i>second</i>'}, raw=True)"
        ),
    )
    _request(kc, kc.execute("clear_output(wait=True)"))
    # A comm opened by the kernel: comm_open, comm_msg and comm_close on iopub,
    # with binary buffers.
    _request(
        kc,
        kc.execute(
            "import comm\n"
            "c = comm.create_comm(target_name='sidecar.sample', data={'x': 1},"
            " buffers=[b'\\x00\\x01\\xffbinary'])\n"
            "c.send({'y': 2}, buffers=[memoryview(b'abc'), b'\\xde\\xad\\xbe\\xef'])\n"
            "c.close()"
        ),
    )
    # An error, and a request queued behind it that the kernel aborts.
    failing = kc.execute("1 / 0")
    queued = kc.execute("print('never runs')")
    _request(kc, failing)
    _request(kc, queued)
    _request(kc, kc.is_complete("for i in range(3):"))
    _request(kc, kc.is_complete("x = 1"))
    _request(kc, kc.complete("import o", 8))
    _request(kc, kc.inspect("print", 5, detail_level=0))
    _request(kc, kc.history(hist_access_type="tail", n=5, output=False, raw=True))
    _request(kc, kc.history(hist_access_type="tail", n=5, output=True, raw=False))
    _request(kc, kc.comm_info())
    # Drain anything left on iopub (e.g. late stream flushes).
    while kc.iopub_channel.msg_ready():
        kc.get_iopub_msg(timeout=TIMEOUT)


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        env = dict(os.environ, IPYTHONDIR=os.path.join(tmp, "ipython"))
        km = KernelManager(kernel_name="python3")
        km.connection_file = os.path.join(tmp, "kernel.json")
        km.start_kernel(env=env)
        try:
            kc = RecordingClient(
                **km.get_connection_info(session=True), connection_file=km.connection_file
            )
            kc.start_channels()
            try:
                kc.wait_for_ready(timeout=60)
                run_requests(kc)
            finally:
                kc.stop_channels()
        finally:
            km.shutdown_kernel(now=True)
        key = km.session.key.decode("ascii")
        scheme = km.session.signature_scheme

    samples = []
    for channel, direction, frames in RECORDED:
        delim = frames.index(b"<IDS|MSG>")
        header = json.loads(frames[delim + 2])
        samples.append(
            {
                "channel": channel,
                "direction": direction,
                "msg_type": header["msg_type"],
                "frames": [base64.b64encode(f).decode("ascii") for f in frames],
            }
        )
    data = {
        "about": "Raw frames captured by tests/wire/capture_samples.py; do not edit by hand.",
        "ipykernel": version("ipykernel"),
        "jupyter_client": version("jupyter_client"),
        "python": sys.version.split()[0],
        "key": key,
        "signature_scheme": scheme,
        "samples": samples,
    }
    OUT.parent.mkdir(exist_ok=True)
    OUT.write_text(json.dumps(data, indent=1) + "\n")
    types = sorted({s["msg_type"] for s in samples})
    print(f"wrote {len(samples)} messages to {OUT}: {', '.join(types)}", file=sys.stderr)


if __name__ == "__main__":
    main()
