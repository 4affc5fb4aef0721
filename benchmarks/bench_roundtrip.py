"""Execute round trip: sequential ``pass`` executes against a live ipykernel.

Run ``python -m benchmarks.bench_roundtrip`` (``--json``, ``--n``, ``--repeat``,
``--warmup``, ``--transport``).

One execute is done when **both** its ``execute_reply`` (shell) and the iopub
``status: idle`` whose parent is that request have arrived, which is what
``await kernel.execute(...)`` waits for.  Executes are strictly sequential: the
next is sent only when the previous one is done.  Implementations:

sidecar (asyncio), sidecar (trio)
    ``await kernel.execute("pass")`` in ``anyio.run(..., backend=...)`` on a
    kernel from ``sidecar.launch("python3")``.
jupyter_client async
    ``AsyncKernelManager`` + its ``AsyncKernelClient``; per execute
    ``msg_id = kc.execute("pass")``, then ``await kc.get_shell_msg()`` until
    the reply to ``msg_id`` and ``await kc.get_iopub_msg()`` until its idle:
    the hand-written efficient loop, not ``execute_interactive``.  No
    ``timeout=`` (it costs ~100 µs of CPU per execute on the async client);
    the parent's watchdog bounds a hung worker instead.
jupyter_client blocking
    ``KernelManager`` + ``BlockingKernelClient``, the same loop, blocking.
kernel-sidecar 1.0
    ``await client.execute_request("pass")`` on kernel-sidecar's
    ``KernelSidecarClient``, run from its own virtualenv (made on first use
    under ``~/.cache/sidecar-bench``; see ``benchmarks/_peers.py``), its
    kernel started by hand (the package has no launcher).  If it cannot be
    installed or run, the table says so; ``--no-kernel-sidecar`` skips it.
floor
    what any client must do, and nothing more: a raw pyzmq DEALER (shell) and
    SUB (iopub), ``zmq.Poller`` over both, execute_request built from dicts
    with ``json`` and signed with a prepared HMAC-SHA256; every incoming
    message verified (HMAC) and its header and parent header decoded (content
    only where it matters: the reply's status, ``execution_state``).  No
    replay check, no heartbeat, no typed content.  Its kernel is started by
    jupyter_client's ``KernelManager``; the floor reads the connection file
    and sends ``kernel_info_request`` until something arrives on iopub (the
    subscription is live) before any timing.

How it is run, and why
    Each implementation runs in its **own worker process**, started once and
    kept for the whole run: it launches its own kernel, does ``--warmup``
    untimed executes, then takes orders on stdin.  Processes rather than
    threads of one interpreter: each client gets its own GIL, garbage, imports
    and event loop (asyncio, trio, jupyter_client's zmq.asyncio), nothing of
    one can slow another, and the kernels stay alive from rep to rep, so no
    rep pays for a kernel start.  The workers start and warm up concurrently;
    the timing is strictly serial: one worker runs at a time, so no two
    clients or kernels compete for the cores.

    A rep is ``--n`` timed executes per implementation, done in turns of 50:
    the parent tells each worker in turn (round-robin, the first worker
    rotating from turn to turn) to do 2 untimed executes and then 50 timed
    ones, and adds up what the workers report.  Turns this short (about 0.2 s)
    matter on a shared machine: its speed drifts by 10-20 % over seconds, and
    interleaving finely makes every implementation see the same drift, so
    their ratios hold even when the reps disagree.  The garbage collector is
    collected at the start of every turn and left on: it is part of a
    client's cost.

Every kernel is the same ``python3`` kernelspec on the same transport
(``--transport``, default ``ipc``, sidecar's default on POSIX; jupyter_client
is given the same), each with its own ``IPYTHONDIR`` in a temporary directory
so that no kernel shares a history database (and the user's is untouched).

Reported per implementation: executes/s (median over reps), the median and
99th percentile of the latency of every timed execute, the CPU time per
execute of the client process (every thread, libzmq's included) and of the
kernel (from ``/proc``, Linux only), and throughput ratios vs the floor and
vs jupyter_client async (> 1 means faster than that one).  The kernel does the
same work for every client and dominates the round trip, so the client CPU
column is the most direct measure of a client's own cost; with two cores, only
the part of it on the critical path (from the last message of one execute to
the next request on the wire) shows up in executes/s.
At exit every worker and every kernel is gone: workers shut their kernels down;
the parent then kills, by pid, any process still carrying a worker's pid as
``JPY_PARENT_PID``.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import hashlib
import hmac
import json
import os
import select
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import IO, Any, Literal

from benchmarks._harness import (
    Table,
    Timing,
    emit,
    environment,
    fmt_rate,
    fmt_ratio,
    fmt_us,
    noise_note,
    parse_args,
)

DEFAULT_N = 500
DEFAULT_WARMUP = 50
DEFAULT_REPEAT = 5
CHUNK = 50  # timed executes per turn: a rep is n / CHUNK turns, interleaved
REWARM = 2  # untimed executes at the start of every turn
TARGET = 0.95  # sidecar's throughput / the floor's
TIMEOUT = 10.0  # seconds one floor execute may take before it gives up
TURN_TIMEOUT = 60.0  # seconds the parent waits for a turn (normally ~0.2 s)
START_TIMEOUT = 90.0  # seconds for a worker to launch its kernel and warm up

SIDECAR_ASYNCIO = "sidecar (asyncio)"
SIDECAR_TRIO = "sidecar (trio)"
JC_ASYNC = "jupyter_client async"
JC_BLOCKING = "jupyter_client blocking"
FLOOR = "floor: pyzmq + hmac + json"
KERNEL_SIDECAR = "kernel-sidecar 1.0"
IMPLEMENTATIONS = (SIDECAR_ASYNCIO, SIDECAR_TRIO, JC_ASYNC, JC_BLOCKING, FLOOR)
TARGETED = (SIDECAR_ASYNCIO, SIDECAR_TRIO)

KERNEL = "python3"
CODE = "pass"


# -- workers: one implementation each, in its own process ----------------------------
#
# Protocol: the worker writes one JSON line on its protocol pipe when ready
# ({"kernel_pid": ...}), then for every "run K" line on stdin one JSON line
# ({"elapsed": s, "cpu": s, "kernel_cpu": s, "latencies": [s, ...]} for K
# timed executes); "quit" or end of input shuts its kernel down and exits.
# Anything else the worker or its kernel prints goes to the worker's stderr.


@dataclass(frozen=True)
class WorkerConfig:
    impl: str
    warmup: int
    transport: str
    ipc_dir: str  # where jupyter_client puts IPC sockets
    kernel_python: str = sys.executable  # the interpreter of kernels started by hand

    def jc_options(self, name: str) -> dict[str, Any]:
        if self.transport == "ipc":
            return {"transport": "ipc", "ip": os.path.join(self.ipc_dir, name)}
        return {"transport": "tcp", "ip": "127.0.0.1"}


class Protocol:
    """The worker's side of the pipe to the parent."""

    def __init__(self) -> None:
        # Keep the real stdout for results; point fd 1 at stderr so whatever
        # the kernel (which inherits it) or a library prints cannot corrupt them.
        self._out = os.fdopen(os.dup(1), "w", buffering=1)
        os.dup2(2, 1)

    def send(self, **data: Any) -> None:
        self._out.write(json.dumps(data) + "\n")
        self._out.flush()

    @staticmethod
    def command() -> int:
        """How many timed executes the parent asks for next; 0 means quit."""
        words = sys.stdin.readline().split()
        return int(words[1]) if len(words) == 2 and words[0] == "run" else 0


def _cpu_of(pid: int | None) -> float | None:
    """CPU seconds (user + system, all threads) of process ``pid`` so far, if readable."""
    if pid is None:
        return None
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class Meter:
    """Wall time, this process's CPU time and the kernel's CPU time over one turn."""

    def __init__(self, n: int, kernel_pid: int | None) -> None:
        self.kernel_pid = kernel_pid
        self.latencies = [0.0] * n

    def start(self) -> None:
        gc.collect()
        self._kernel = _cpu_of(self.kernel_pid)
        self._cpu = time.process_time()
        self._start = time.perf_counter()

    def stop(self) -> dict[str, Any]:
        elapsed = time.perf_counter() - self._start
        cpu = time.process_time() - self._cpu
        kernel_end = _cpu_of(self.kernel_pid)
        kernel = None if kernel_end is None or self._kernel is None else kernel_end - self._kernel
        return {"elapsed": elapsed, "cpu": cpu, "kernel_cpu": kernel, "latencies": self.latencies}


def _timed(n: int, once: Callable[[], object], kernel_pid: int | None) -> dict[str, Any]:
    """Run ``once`` REWARM times untimed, then ``n`` times timed (sync clients)."""
    for _ in range(REWARM):
        once()
    meter = Meter(n, kernel_pid)
    latencies, clock = meter.latencies, time.perf_counter
    meter.start()
    for i in range(n):
        t = clock()
        once()
        latencies[i] = clock() - t
    return meter.stop()


async def _atimed(n: int, once: Callable[[], Any], kernel_pid: int | None) -> dict[str, Any]:
    """:func:`_timed` for coroutine functions."""
    for _ in range(REWARM):
        await once()
    meter = Meter(n, kernel_pid)
    latencies, clock = meter.latencies, time.perf_counter
    meter.start()
    for i in range(n):
        t = clock()
        await once()
        latencies[i] = clock() - t
    return meter.stop()


def _serve_sync(
    config: WorkerConfig, proto: Protocol, once: Callable[[], object], pid: int | None
) -> None:
    for _ in range(config.warmup):
        once()
    proto.send(kernel_pid=pid)
    while n := proto.command():
        proto.send(**_timed(n, once, pid))


def run_sidecar(config: WorkerConfig, proto: Protocol, backend: str) -> None:
    import anyio
    import anyio.to_thread

    import sidecar

    async def main() -> None:
        transport: Literal["ipc", "tcp"] = "tcp" if config.transport == "tcp" else "ipc"
        async with sidecar.launch(KERNEL, transport=transport) as kernel:
            execute = kernel.execute

            async def once() -> None:
                await execute(CODE)

            reply = await execute(CODE)
            assert reply.status == "ok", reply
            for _ in range(config.warmup):
                await once()
            pid = kernel.process.pid if kernel.process else None
            proto.send(kernel_pid=pid)
            while n := await anyio.to_thread.run_sync(proto.command):
                proto.send(**await _atimed(n, once, pid))

    anyio.run(main, backend=backend)


def _jc_pid(km: Any) -> int | None:
    process = getattr(getattr(km, "provisioner", None), "process", None)
    return getattr(process, "pid", None)


def _is_idle_of(msg: dict[str, Any], msg_id: str) -> bool:
    return (
        msg["msg_type"] == "status"
        and msg["parent_header"].get("msg_id") == msg_id
        and msg["content"]["execution_state"] == "idle"
    )


def run_jc_async(config: WorkerConfig, proto: Protocol) -> None:
    import asyncio

    from jupyter_client.manager import AsyncKernelManager

    async def main() -> None:
        km = AsyncKernelManager(kernel_name=KERNEL, **config.jc_options("jc-async"))
        await km.start_kernel()
        kc = km.client()
        try:
            kc.start_channels()
            await kc.wait_for_ready(timeout=START_TIMEOUT)
            execute, get_shell, get_iopub = kc.execute, kc.get_shell_msg, kc.get_iopub_msg

            async def once() -> None:
                msg_id = execute(CODE)
                while True:
                    reply = await get_shell()
                    if reply["parent_header"].get("msg_id") == msg_id:
                        break
                while True:
                    if _is_idle_of(await get_iopub(), msg_id):
                        break

            for _ in range(config.warmup):
                await once()
            pid = _jc_pid(km)
            proto.send(kernel_pid=pid)
            loop = asyncio.get_running_loop()
            while n := await loop.run_in_executor(None, proto.command):
                proto.send(**await _atimed(n, once, pid))
        finally:
            kc.stop_channels()
            await km.shutdown_kernel()

    asyncio.run(main())


def run_jc_blocking(config: WorkerConfig, proto: Protocol) -> None:
    from jupyter_client.manager import KernelManager

    km = KernelManager(kernel_name=KERNEL, **config.jc_options("jc-blocking"))
    km.start_kernel()
    kc = km.client()
    try:
        kc.start_channels()
        kc.wait_for_ready(timeout=START_TIMEOUT)
        execute, get_shell, get_iopub = kc.execute, kc.get_shell_msg, kc.get_iopub_msg

        def once() -> None:
            msg_id = execute(CODE)
            while True:
                reply = get_shell()
                if reply["parent_header"].get("msg_id") == msg_id:
                    break
            while True:
                if _is_idle_of(get_iopub(), msg_id):
                    break

        _serve_sync(config, proto, once, _jc_pid(km))
    finally:
        kc.stop_channels()
        km.shutdown_kernel()


ZMQ_SNDMORE = 2  # zmq.SNDMORE: libzmq's ABI constant (zmq is imported lazily here)


def send_frames(sock: Any, frames: list[bytes]) -> None:
    """One multipart message, sent as sidecar sends it: frame by frame, int flags.

    pyzmq's ``send_multipart`` ORs enum flags and type-checks every frame.
    """
    for frame in frames[:-1]:
        sock.send(frame, ZMQ_SNDMORE, copy=False)
    sock.send(frames[-1], 0, copy=False)


def recv_frames(sock: Any) -> list[bytes]:
    """One multipart message, as sidecar receives it (the floor must be no slower).

    pyzmq's ``recv_multipart`` asks ``RCVMORE`` through ``getsockopt`` after
    each frame, an enum lookup each time; an uncopied frame carries ``more``.
    """
    frame = sock.recv(copy=False)
    frames = [frame.bytes]
    while frame.more:
        frame = sock.recv(copy=False)
        frames.append(frame.bytes)
    return frames


class FloorClient:
    """The least a correct client does per execute, blocking, on raw pyzmq."""

    DELIM = b"<IDS|MSG>"

    def __init__(self, info: dict[str, Any], context: Any = None) -> None:
        import zmq

        self._own_context = context is None
        self.ctx = zmq.Context() if context is None else context
        self.session = uuid.uuid4().hex
        self._prefix = f"{self.session}_"
        self._count = 0
        self._mac = hmac.new(info["key"].encode(), digestmod=hashlib.sha256)

        def endpoint(port: int) -> str:
            if info["transport"] == "ipc":
                return f"ipc://{info['ip']}-{port}"
            return f"tcp://{info['ip']}:{port}"

        self.shell = self.ctx.socket(zmq.DEALER)
        self.shell.linger = 0
        self.shell.identity = self.session.encode()
        self.shell.connect(endpoint(info["shell_port"]))
        self.iopub = self.ctx.socket(zmq.SUB)
        self.iopub.linger = 0
        self.iopub.setsockopt(zmq.SUBSCRIBE, b"")
        self.iopub.connect(endpoint(info["iopub_port"]))
        self.poller = zmq.Poller()
        self.poller.register(self.shell, zmq.POLLIN)
        self.poller.register(self.iopub, zmq.POLLIN)

    def close(self) -> None:
        self.shell.close()
        self.iopub.close()
        if self._own_context:
            self.ctx.term()

    def send(self, msg_type: str, content: dict[str, Any]) -> str:
        self._count += 1
        msg_id = f"{self._prefix}{self._count}"
        header = {
            "msg_id": msg_id,
            "msg_type": msg_type,
            "username": "floor",
            "session": self.session,
            "date": datetime.now(timezone.utc).isoformat(),
            "version": "5.4",
        }
        parts = [json.dumps(header).encode(), b"{}", b"{}", json.dumps(content).encode()]
        mac = self._mac.copy()
        for part in parts:
            mac.update(part)
        send_frames(self.shell, [self.DELIM, mac.hexdigest().encode(), *parts])
        return msg_id

    def decode(self, frames: list[bytes]) -> tuple[dict[str, Any], dict[str, Any], bytes]:
        """Verify; the header, the parent header and the still-encoded content."""
        at = frames.index(self.DELIM)
        signature, header, parent, metadata, content = frames[at + 1 : at + 6]
        mac = self._mac.copy()
        mac.update(header)
        mac.update(parent)
        mac.update(metadata)
        mac.update(content)
        if not hmac.compare_digest(mac.hexdigest().encode(), signature):
            raise ValueError("invalid signature")
        return json.loads(header), json.loads(parent), content

    def wait_iopub_live(self, timeout: float) -> None:
        """Send kernel_info until a message arrives on iopub: the SUB is subscribed."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.send("kernel_info_request", {})
            for sock, _ in self.poller.poll(200):
                self.decode(sock.recv_multipart())
                if sock is self.iopub:
                    # Let the rest of that request's traffic arrive, then drop it.
                    while self.poller.poll(200):
                        for s, _ in self.poller.poll(0):
                            s.recv_multipart()
                    return
        raise TimeoutError("iopub never became live")

    def execute(self, code: str) -> None:
        msg_id = self.send(
            "execute_request",
            {
                "code": code,
                "silent": False,
                "store_history": True,
                "user_expressions": {},
                "allow_stdin": False,
                "stop_on_error": True,
            },
        )
        shell, poll, decode = self.shell, self.poller.poll, self.decode
        replied = idle = False
        while not (replied and idle):
            ready = poll(TIMEOUT * 1000)
            if not ready:
                raise TimeoutError(f"no reply and idle within {TIMEOUT} s")
            # One message per ready socket per poll: measured cheaper here than
            # draining each socket with NOBLOCK until Again (an exception each).
            for sock, _ in ready:
                header, parent, content = decode(recv_frames(sock))
                if parent.get("msg_id") != msg_id:
                    continue
                if sock is shell:
                    status = json.loads(content)["status"]
                    if status != "ok":
                        raise RuntimeError(f"execute failed: {status}")
                    replied = True
                elif header["msg_type"] == "status":
                    idle = idle or json.loads(content)["execution_state"] == "idle"


def run_floor(config: WorkerConfig, proto: Protocol) -> None:
    from jupyter_client.manager import KernelManager

    km = KernelManager(kernel_name=KERNEL, **config.jc_options("floor"))
    km.start_kernel()
    client: FloorClient | None = None
    try:
        info = json.loads(Path(km.connection_file).read_text())
        client = FloorClient(info)
        client.wait_iopub_live(START_TIMEOUT)
        _serve_sync(config, proto, lambda: client.execute(CODE), _jc_pid(km))
    finally:
        if client is not None:
            client.close()
        km.shutdown_kernel()


def run_kernel_sidecar(config: WorkerConfig, proto: Protocol) -> None:
    """kernel-sidecar's client, in its own virtualenv, on a kernel started by hand."""
    import asyncio

    from jupyter_client.connect import write_connection_file
    from kernel_sidecar.client import KernelSidecarClient

    from benchmarks._peers import start_ipykernel, stop_process

    ip = os.path.join(config.ipc_dir, "ks") if config.transport == "ipc" else "127.0.0.1"
    path, info = write_connection_file(
        os.path.join(config.ipc_dir, "ks-kernel.json"),
        transport=config.transport,
        ip=ip,
        key=uuid.uuid4().hex.encode(),
    )
    kernel = start_ipykernel(config.kernel_python, Path(path))

    async def main() -> None:
        async with KernelSidecarClient(info) as client:
            deadline = time.monotonic() + START_TIMEOUT
            while True:  # kernel_info until one completes: iopub is subscribed
                action = client.kernel_info_request()
                try:
                    await asyncio.wait_for(asyncio.ensure_future(_awaited(action)), 0.5)
                    break
                except asyncio.TimeoutError:
                    if time.monotonic() > deadline:
                        raise
            execute = client.execute_request

            async def once() -> None:
                await execute(CODE)

            for _ in range(config.warmup):
                await once()
            proto.send(kernel_pid=kernel.pid)
            loop = asyncio.get_running_loop()
            while n := await loop.run_in_executor(None, proto.command):
                proto.send(**await _atimed(n, once, kernel.pid))

    try:
        asyncio.run(main())
    finally:
        stop_process(kernel)
        Path(path).unlink(missing_ok=True)


async def _awaited(awaitable: Any) -> None:
    await awaitable


def worker_main(raw: str) -> None:
    config = WorkerConfig(**json.loads(raw))
    proto = Protocol()
    if config.impl == SIDECAR_ASYNCIO:
        run_sidecar(config, proto, "asyncio")
    elif config.impl == SIDECAR_TRIO:
        run_sidecar(config, proto, "trio")
    elif config.impl == JC_ASYNC:
        run_jc_async(config, proto)
    elif config.impl == JC_BLOCKING:
        run_jc_blocking(config, proto)
    elif config.impl == FLOOR:
        run_floor(config, proto)
    elif config.impl == KERNEL_SIDECAR:
        run_kernel_sidecar(config, proto)
    else:
        raise SystemExit(f"unknown implementation {config.impl!r}")


# -- the parent: start the workers, drive the rounds, clean up -----------------------


class Worker:
    """One worker process, seen from the parent."""

    def __init__(
        self,
        config: Any,
        scratch: Path,
        *,
        module: str = "benchmarks.bench_roundtrip",
        python: str = sys.executable,
    ) -> None:
        """Start ``python -m module --worker CONFIG`` (a dataclass with ``impl``, as JSON)."""
        self.impl: str = config.impl
        slug = "".join(c if c.isalnum() else "-" for c in config.impl)
        self.log_path = scratch / f"{slug}.log"
        self._log: IO[bytes] = open(self.log_path, "wb")  # noqa: SIM115 (closed in stop)
        env = dict(os.environ, IPYTHONDIR=str(scratch / f"ipython-{slug}"))
        self.proc = subprocess.Popen(
            [python, "-m", module, "--worker", json.dumps(vars(config))],
            cwd=Path(__file__).resolve().parent.parent,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._log,
            env=env,
        )
        self._buffer = b""
        self.kernel_pid: int | None = None

    def read(self, timeout: float) -> dict[str, Any]:
        """The worker's next JSON line, or RuntimeError (with its log) if none comes."""
        assert self.proc.stdout is not None
        fd = self.proc.stdout.fileno()
        deadline = time.monotonic() + timeout
        while b"\n" not in self._buffer:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([fd], [], [], left)[0]:
                raise RuntimeError(f"{self.impl}: no answer within {timeout:.0f} s{self.tail()}")
            chunk = os.read(fd, 1 << 16)
            if not chunk:
                raise RuntimeError(f"{self.impl}: the worker exited{self.tail()}")
            self._buffer += chunk
        line, self._buffer = self._buffer.split(b"\n", 1)
        data: dict[str, Any] = json.loads(line)
        return data

    def command(self, word: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(word.encode() + b"\n")
        self.proc.stdin.flush()

    def tail(self, lines: int = 15) -> str:
        self._log.flush()
        text = self.log_path.read_text(errors="replace").strip().splitlines()[-lines:]
        return ("; its log ends:\n  " + "\n  ".join(text)) if text else ""

    def stop(self, timeout: float = 20.0) -> None:
        """Ask the worker to shut its kernel down and exit; kill it if it does not."""
        try:
            if self.proc.poll() is None:
                self.command("quit")
                assert self.proc.stdin is not None
                self.proc.stdin.close()
        except OSError:
            pass
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            print(f"{self.impl}: the worker did not exit; killing it", file=sys.stderr)
            self.proc.kill()
            self.proc.wait()
        finally:
            if self.proc.stdout is not None:
                self.proc.stdout.close()
            self._log.close()


def kernels_of(parent_pids: set[int]) -> list[int]:
    """Live processes whose JPY_PARENT_PID is one of ``parent_pids``: our kernels."""
    proc = Path("/proc")
    if not proc.is_dir():
        return []
    markers = {f"JPY_PARENT_PID={pid}".encode() for pid in parent_pids}
    found = []
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            environ = (entry / "environ").read_bytes().split(b"\0")
            state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if state != "Z" and markers.intersection(environ):
            found.append(int(entry.name))
    return found


def reap_kernels(workers: Sequence[Worker]) -> list[int]:
    """Kill any kernel a worker left behind; the pids killed."""
    parents = {w.proc.pid for w in workers}
    left = set(kernels_of(parents)) | {
        w.kernel_pid for w in workers if w.kernel_pid is not None and _alive(w.kernel_pid)
    }
    for pid in left:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    return sorted(left)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except (ProcessLookupError, PermissionError):
        return False
    stat = Path(f"/proc/{pid}/stat")
    try:
        return stat.read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return True


@dataclass(frozen=True)
class Result:
    impl: str
    timing: Timing  # one entry per rep: elapsed seconds for n executes
    latencies_s: tuple[float, ...]  # every timed execute of every rep
    cpu: Timing  # per rep: CPU seconds of the client process (every thread)
    kernel_cpu: Timing | None  # per rep: CPU seconds of the kernel, if readable

    @property
    def per_s(self) -> float:
        return self.timing.per_s

    @property
    def median_us(self) -> float:
        return statistics.median(self.latencies_s) * 1e6

    @property
    def p99_us(self) -> float:
        return _percentile(self.latencies_s, 99) * 1e6


def rep_ratios(result: Result, reference: Result) -> list[float]:
    """Throughput / the reference's, rep by rep (the same reps saw the same machine)."""
    pairs = zip(result.timing.reps_s, reference.timing.reps_s, strict=True)
    return [ref / own for own, ref in pairs]


def _percentile(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    rank = max(0, min(len(ordered) - 1, round(q / 100 * len(ordered)) - 1))
    return ordered[rank]


def _accumulate(rep: dict[str, Any], turn: dict[str, Any]) -> None:
    for key in ("elapsed", "cpu", "kernel_cpu"):
        rep[key] = None if rep[key] is None or turn[key] is None else rep[key] + turn[key]
    rep["latencies"] += turn["latencies"]


def _result(impl: str, n: int, reps: Sequence[dict[str, Any]]) -> Result:
    kernel = [r["kernel_cpu"] for r in reps]
    return Result(
        impl,
        Timing(n, tuple(r["elapsed"] for r in reps)),
        tuple(x for r in reps for x in r["latencies"]),
        Timing(n, tuple(r["cpu"] for r in reps)),
        None if None in kernel else Timing(n, tuple(kernel)),
    )


def run_all(
    args: argparse.Namespace, scratch: Path, pythons: dict[str, str], failed: dict[str, str]
) -> tuple[dict[str, Result], list[int]]:
    """Every implementation in ``pythons`` (its interpreter); ``failed`` gets who could not run."""
    workers: list[Worker] = []
    try:
        for impl, python in pythons.items():
            config = WorkerConfig(impl, args.warmup, args.transport, str(scratch))
            workers.append(Worker(config, scratch, python=python))
        # Kernels start and warm up concurrently (untimed); the timing is serial.
        for w in list(workers):
            try:
                w.kernel_pid = w.read(START_TIMEOUT)["kernel_pid"]
            except RuntimeError as e:
                if w.impl != KERNEL_SIDECAR:
                    raise
                # A peer from another project that cannot run is reported, not fatal.
                failed[w.impl] = str(e).splitlines()[0]
                workers.remove(w)
                w.stop()
        reps: dict[str, list[dict[str, Any]]] = {w.impl: [] for w in workers}
        sizes = [min(CHUNK, args.n - start) for start in range(0, args.n, CHUNK)]
        turn = 0
        for _ in range(args.repeat):
            for w in workers:
                reps[w.impl].append(
                    {"elapsed": 0.0, "cpu": 0.0, "kernel_cpu": 0.0, "latencies": []}
                )
            for size in sizes:
                shift = turn % len(workers)
                turn += 1
                for w in workers[shift:] + workers[:shift]:
                    w.command(f"run {size}")
                    _accumulate(reps[w.impl][-1], w.read(TURN_TIMEOUT))
        results = {w.impl: _result(w.impl, args.n, reps[w.impl]) for w in workers}
    finally:
        for w in workers:
            w.stop()
        killed = reap_kernels(workers)
        if killed:
            print(f"killed kernels the workers left behind: {killed}", file=sys.stderr)
    return results, killed


def _add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--n", type=int, default=DEFAULT_N, help=f"timed executes per rep (default {DEFAULT_N})"
    )
    parser.add_argument(
        "--warmup",
        type=int,
        default=DEFAULT_WARMUP,
        help=f"untimed executes after each kernel starts (default {DEFAULT_WARMUP})",
    )
    parser.add_argument(
        "--transport",
        choices=("ipc", "tcp"),
        default="ipc",
        help="ZeroMQ transport of every kernel (default ipc)",
    )
    parser.add_argument(
        "--no-kernel-sidecar", action="store_true", help="do not install or run kernel-sidecar"
    )
    parser.add_argument("--worker", help=argparse.SUPPRESS)


def main() -> None:
    if len(sys.argv) == 3 and sys.argv[1] == "--worker":
        worker_main(sys.argv[2])
        return
    args = parse_args(
        __doc__.split("\n")[0], default_repeat=DEFAULT_REPEAT, add_arguments=_add_arguments
    )
    if args.n < 1 or args.warmup < 0:
        raise SystemExit("--n must be at least 1 and --warmup at least 0")
    started = time.perf_counter()
    pythons = dict.fromkeys(IMPLEMENTATIONS, sys.executable)
    failed: dict[str, str] = {}
    ks_version = None
    if args.no_kernel_sidecar:
        failed[KERNEL_SIDECAR] = "skipped (--no-kernel-sidecar)"
    else:
        from benchmarks._peers import kernel_sidecar_python

        ks_python, ks_note = kernel_sidecar_python()
        if ks_python is None:
            failed[KERNEL_SIDECAR] = ks_note
        else:
            pythons[KERNEL_SIDECAR] = ks_python
            ks_version = ks_note
    with tempfile.TemporaryDirectory(prefix="bench-rt-") as scratch:
        results, killed = run_all(args, Path(scratch), pythons, failed)
    took = time.perf_counter() - started

    floor, jc_async = results[FLOOR].per_s, results[JC_ASYNC].per_s
    ks = results[KERNEL_SIDECAR].per_s if KERNEL_SIDECAR in results else None
    rows = [
        [
            r.impl,
            fmt_rate(r.per_s),
            fmt_us(r.median_us),
            fmt_us(r.p99_us),
            fmt_us(r.cpu.us),
            "n/a" if r.kernel_cpu is None else fmt_us(r.kernel_cpu.us),
            fmt_ratio(r.per_s / floor),
            fmt_ratio(r.per_s / jc_async),
            "n/a" if ks is None else fmt_ratio(r.per_s / ks),
        ]
        for r in results.values()
    ]
    rows += [[impl, "not measured", *[""] * 6, why] for impl, why in failed.items()]
    found = []
    for impl in TARGETED:
        paired = rep_ratios(results[impl], results[FLOOR])
        found.append(
            {
                "implementation": impl,
                "target": TARGET,
                "vs_floor": round(results[impl].per_s / floor, 3),
                "vs_floor_per_rep": [round(r, 3) for r in paired],
                "pass": results[impl].per_s / floor >= TARGET,
            }
        )
    notes = [
        *(
            f"target: {t['implementation']}: "
            f"{results[t['implementation']].per_s / floor:.3f}x the floor's executes/s "
            f"(>= {TARGET:g}x) {'PASS' if t['pass'] else 'MISS'}"
            f" (rep by rep: {min(t['vs_floor_per_rep']):.2f}x-{max(t['vs_floor_per_rep']):.2f}x)"
            for t in found
        ),
        "client CPU / kernel CPU: CPU time per execute of the client process (all threads, "
        "libzmq's included) and of its kernel, median rep.",
        *noise_note([r.timing for r in results.values()]),
        *([f"warning: killed kernels the workers left behind: {killed}"] if killed else []),
    ]
    table = Table(
        f"Execute round trip: sequential `{CODE}`, one ipykernel per implementation "
        f"({args.transport}; {args.repeat} reps x {args.n} executes, round-robin; executes/s = "
        "median rep; latency over every execute; ratio = executes/s over the column's, "
        ">1 = faster)",
        [
            "implementation",
            "executes/s",
            "median µs",
            "p99 µs",
            "client CPU µs",
            "kernel CPU µs",
            "vs floor",
            "vs jc async",
            "vs kernel-sidecar",
        ],
        "<>>>>>>>>",
        rows,
        notes=notes,
    )
    emit(
        "roundtrip",
        [table],
        {
            "environment": environment(
                "sidecar", "pyzmq", "jupyter_client", "ipykernel", "anyio", "trio", "msgspec"
            )
            | {"kernel-sidecar": ks_version},
            "config": {
                "n": args.n,
                "repeat": args.repeat,
                "warmup": args.warmup,
                "executes_per_turn": CHUNK,
                "untimed_executes_per_turn": REWARM,
                "transport": args.transport,
                "code": CODE,
                "seconds": round(took, 1),
            },
            "results": [
                {
                    "implementation": r.impl,
                    "executes_per_s": round(r.per_s, 1),
                    "median_latency_us": round(r.median_us, 1),
                    "p99_latency_us": round(r.p99_us, 1),
                    "client_cpu_us": round(r.cpu.us, 1),
                    "kernel_cpu_us": None if r.kernel_cpu is None else round(r.kernel_cpu.us, 1),
                    "vs_floor": round(r.per_s / floor, 3),
                    "vs_jupyter_client_async": round(r.per_s / jc_async, 3),
                    "vs_kernel_sidecar": None if ks is None else round(r.per_s / ks, 3),
                    **r.timing.as_json(),
                }
                for r in results.values()
            ],
            "targets": found,
            "not_measured": failed,
            "kernels_killed_at_exit": killed,
        },
        as_json=args.json,
    )


if __name__ == "__main__":
    main()
