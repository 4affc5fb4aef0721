"""Every client behind one interface, and the worker process that drives one.

The kernel-facing benchmarks (flood, ingest, kernels, memory, startup) run each
implementation in its own worker process, as ``bench_roundtrip`` does (see its
docstring: own GIL, own garbage, own event loop; kernels kept from rep to rep;
timing strictly serial, one worker at a time): the parent starts one
:class:`benchmarks.bench_roundtrip.Worker` per implementation with
``module="benchmarks._clients"``, and sends it one JSON order per line.

A worker opens its kernels first (untimed): ``target`` ``"ipykernel"`` launches
``kernels`` ipykernels the implementation's own way; ``"flood"`` starts one
:mod:`benchmarks._flood_kernel` per kernel and connects to it by its
connection file; ``"none"`` opens nothing (start-up benchmark).  It does
``warmup`` untimed ``pass`` executes per kernel, then says ``{"ready": ...}``.

Orders (one JSON object per line; one JSON line answers each):

``{"op": "execute", "code": C}``
    one execute of ``C`` with every output collected the implementation's way
    (``sidecar.Outputs`` for sidecar); answers ``elapsed`` (send to done),
    ``done_at`` (``perf_counter`` at done), ``cpu`` (process CPU seconds, all
    threads), the outputs' summary (count of display_data, first and last
    ``text/plain``, stdout length and SHA-1, checked by the parent), RSS now
    and peak, and for a flood kernel its send times (``gen``);
``{"op": "loop", "n": N, "checkpoints": [...]}``
    ``N`` sequential ``pass`` executes (no collector), with RSS at each
    checkpoint;
``{"op": "many", "n": N}``
    ``N`` sequential executes on every kernel, all kernels at once;
``{"op": "startup"}``
    launch a fresh kernel, time until its first kernel_info reply (for
    sidecar: until ``launch`` yields), then shut it down (untimed).

Standard library only at import time: kernel-sidecar's workers run from their
own virtualenv, where only ``kernel_sidecar`` (and its jupyter_client) exist.
"""

from __future__ import annotations

import asyncio
import gc
import hashlib
import json
import os
import sys
import time
from collections.abc import Callable
from contextlib import AsyncExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmarks._peers import (
    KERNEL_SIDECAR,
    START_TIMEOUT,
    FloodProcess,
    start_ipykernel,
    stop_process,
    write_connection_file,
)
from benchmarks.bench_roundtrip import FloorClient, Protocol, recv_frames

SIDECAR_ASYNCIO = "sidecar (asyncio)"
SIDECAR_TRIO = "sidecar (trio)"
JC_ASYNC = "jupyter_client async"
JC_BLOCKING = "jupyter_client blocking"
FLOOR = "floor: pyzmq + hmac + json"
KERNEL = "python3"
TIMEOUT = 120.0  # seconds any one execute may take in a worker


@dataclass(frozen=True)
class ClientConfig:
    impl: str
    target: str = "ipykernel"  # "ipykernel" | "flood" | "none"
    kernels: int = 1
    warmup: int = 20
    scratch: str = ""
    python: str = sys.executable  # runs kernels and flood kernels
    flood_n: int = 50_000
    shared_context: bool = False  # sidecar: one zmq.Context for all its kernels

    def slug(self, i: int) -> str:
        name = "".join(c if c.isalnum() else "-" for c in self.impl)
        return f"{name}-{i}"

    def kernel_env(self, i: int) -> dict[str, str]:
        """Per kernel: its own IPython directory (history database), nothing shared."""
        return {"IPYTHONDIR": str(Path(self.scratch) / f"ipython-{self.slug(i)}")}


# -- measuring ---------------------------------------------------------------------


def rss_kb() -> int:
    """Resident set size of this process now, in KiB (Linux)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def peak_rss_kb() -> int:
    import resource

    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)


def summarize(outputs: list[dict[str, Any]]) -> dict[str, Any]:
    """What the parent checks: how many displays, their ends, the stdout text."""
    displays = [o for o in outputs if o["output_type"] == "display_data"]
    stdout = "".join(
        o["text"] for o in outputs if o["output_type"] == "stream" and o["name"] == "stdout"
    ).encode()

    def plain(o: dict[str, Any] | None) -> str | None:
        return None if o is None else o["data"].get("text/plain")

    return {
        "displays": len(displays),
        "first": plain(displays[0] if displays else None),
        "last": plain(displays[-1] if displays else None),
        "stdout_len": len(stdout),
        "stdout_sha1": hashlib.sha1(stdout).hexdigest(),
    }


# -- the clients -----------------------------------------------------------------------


class Client:
    """One implementation: opens kernels, executes, collects."""

    kernel_pids: list[int | None]
    floods: list[FloodProcess]

    def __init__(self, config: ClientConfig) -> None:
        self.config = config
        self.kernel_pids = []
        self.floods = []

    def flood_process(self, i: int) -> FloodProcess:
        path = Path(self.config.scratch) / f"flood-{self.config.slug(i)}.json"
        process = FloodProcess(self.config.python, path, self.config.flood_n)
        self.floods.append(process)
        self.kernel_pids.append(process.pid)
        return process

    async def open(self, stack: AsyncExitStack) -> None:
        raise NotImplementedError

    async def execute(self, code: str) -> list[dict[str, Any]]:
        """Execute on the first kernel; the outputs, nbformat-shaped."""
        raise NotImplementedError

    async def execute_plain(self, code: str, kernel: int = 0) -> None:
        raise NotImplementedError

    async def many(self, n: int) -> None:
        raise NotImplementedError

    async def startup(self) -> float:
        raise NotImplementedError

    async def readline(self) -> str:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(None, sys.stdin.readline)

    def normalize(self, collected: Any) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = collected
        return result


class SidecarClient(Client):
    """``sidecar.launch`` / ``sidecar.connect``; ``kernel.execute(code, handlers=[Outputs()])``."""

    async def open(self, stack: AsyncExitStack) -> None:
        import zmq

        import sidecar

        config = self.config
        context = zmq.Context() if config.shared_context else None
        if context is not None:
            stack.callback(context.term)
        self.kernels: list[sidecar.Kernel] = []
        for i in range(config.kernels):
            if config.target == "flood":
                flood = self.flood_process(i)
                stack.callback(flood.stop)
                kernel = await stack.enter_async_context(
                    sidecar.connect(flood.connection_file, context=context)
                )
            else:
                kernel = await stack.enter_async_context(
                    sidecar.launch(KERNEL, env=config.kernel_env(i), context=context)
                )
                self.kernel_pids.append(kernel.process.pid if kernel.process else None)
            self.kernels.append(kernel)

    async def execute(self, code: str) -> list[dict[str, Any]]:
        import sidecar

        outputs = sidecar.Outputs()
        reply = await self.kernels[0].execute(code, handlers=[outputs])
        assert reply.status == "ok", reply
        return outputs.outputs

    async def execute_plain(self, code: str, kernel: int = 0) -> None:
        await self.kernels[kernel].execute(code)

    async def many(self, n: int) -> None:
        import anyio

        async def run(kernel: Any) -> None:
            execute = kernel.execute
            for _ in range(n):
                await execute("pass")

        async with anyio.create_task_group() as tg:
            for kernel in self.kernels:
                tg.start_soon(run, kernel)

    async def startup(self) -> float:
        import sidecar

        started = time.perf_counter()
        async with sidecar.launch(KERNEL, env=self.config.kernel_env(0)):
            return time.perf_counter() - started

    async def readline(self) -> str:
        import anyio.to_thread

        return await anyio.to_thread.run_sync(sys.stdin.readline)


def _is_idle_of(msg: dict[str, Any], msg_id: str) -> bool:
    return (
        msg["msg_type"] == "status"
        and msg["parent_header"].get("msg_id") == msg_id
        and msg["content"]["execution_state"] == "idle"
    )


class JupyterClientAsync(Client):
    """``AsyncKernelManager`` + ``AsyncKernelClient``; the hand-written loop of bench_roundtrip.

    Outputs are collected from iopub as nbformat dicts while waiting for idle.
    """

    async def open(self, stack: AsyncExitStack) -> None:
        from jupyter_client.asynchronous import AsyncKernelClient
        from jupyter_client.manager import AsyncKernelManager

        self.clients: list[Any] = []
        for i in range(self.config.kernels):
            if self.config.target == "flood":
                flood = self.flood_process(i)
                stack.callback(flood.stop)
                kc = AsyncKernelClient()
                kc.load_connection_file(str(flood.connection_file))
            else:
                km = AsyncKernelManager(kernel_name=KERNEL)
                await km.start_kernel(env=dict(os.environ, **self.config.kernel_env(i)))
                stack.push_async_callback(km.shutdown_kernel)
                kc = km.client()
                self.kernel_pids.append(_jc_pid(km))
            kc.start_channels()
            stack.callback(kc.stop_channels)
            await kc.wait_for_ready(timeout=START_TIMEOUT)
            self.clients.append(kc)

    async def _execute(self, kc: Any, code: str, outputs: list[dict[str, Any]] | None) -> None:
        msg_id = kc.execute(code)
        get_shell, get_iopub = kc.get_shell_msg, kc.get_iopub_msg
        while True:
            reply = await get_shell()
            if reply["parent_header"].get("msg_id") == msg_id:
                assert reply["content"]["status"] == "ok", reply["content"]
                break
        while True:
            msg = await get_iopub()
            if msg["parent_header"].get("msg_id") != msg_id:
                continue
            msg_type = msg["msg_type"]
            if msg_type == "status":
                if msg["content"]["execution_state"] == "idle":
                    return
            elif outputs is None:
                continue
            elif msg_type == "stream":
                content = msg["content"]
                outputs.append(
                    {"output_type": "stream", "name": content["name"], "text": content["text"]}
                )
            elif msg_type == "display_data":
                content = msg["content"]
                outputs.append(
                    {
                        "output_type": "display_data",
                        "data": content["data"],
                        "metadata": content["metadata"],
                    }
                )

    async def execute(self, code: str) -> list[dict[str, Any]]:
        outputs: list[dict[str, Any]] = []
        await self._execute(self.clients[0], code, outputs)
        return outputs

    async def execute_plain(self, code: str, kernel: int = 0) -> None:
        await self._execute(self.clients[kernel], code, None)

    async def many(self, n: int) -> None:
        async def run(kc: Any) -> None:
            for _ in range(n):
                await self._execute(kc, "pass", None)

        await asyncio.gather(*(run(kc) for kc in self.clients))

    async def startup(self) -> float:
        from jupyter_client.manager import AsyncKernelManager

        started = time.perf_counter()
        km = AsyncKernelManager(kernel_name=KERNEL)
        await km.start_kernel(env=dict(os.environ, **self.config.kernel_env(0)))
        kc = km.client()
        try:
            kc.start_channels()
            await kc.wait_for_ready(timeout=START_TIMEOUT)
            return time.perf_counter() - started
        finally:
            kc.stop_channels()
            await km.shutdown_kernel()


class JupyterClientBlocking(Client):
    """``KernelManager`` + ``BlockingKernelClient`` (start-up only)."""

    async def open(self, stack: AsyncExitStack) -> None:
        if self.config.target != "none":
            raise NotImplementedError("jupyter_client blocking is only timed at start-up")

    async def startup(self) -> float:
        from jupyter_client.manager import KernelManager

        started = time.perf_counter()
        km = KernelManager(kernel_name=KERNEL)
        km.start_kernel(env=dict(os.environ, **self.config.kernel_env(0)))
        kc = km.client()
        try:
            kc.start_channels()
            kc.wait_for_ready(timeout=START_TIMEOUT)
            return time.perf_counter() - started
        finally:
            kc.stop_channels()
            km.shutdown_kernel()


def _jc_pid(km: Any) -> int | None:
    process = getattr(getattr(km, "provisioner", None), "process", None)
    return getattr(process, "pid", None)


class Floor(Client):
    """bench_roundtrip's blocking floor, collecting outputs; one poller for many kernels.

    Kernels come from jupyter_client's ``KernelManager`` (start-up: a bare
    ``Popen``).  Every client shares one ``zmq.Context`` (one I/O thread).
    Output content is ``json.loads``-ed and put in nbformat dicts.
    """

    async def open(self, stack: AsyncExitStack) -> None:
        import zmq

        self.ctx = zmq.Context()
        stack.callback(self.ctx.term)
        self.clients: list[FloorClient] = []
        for i in range(self.config.kernels):
            if self.config.target == "flood":
                flood = self.flood_process(i)
                stack.callback(flood.stop)
                info = json.loads(flood.connection_file.read_text())
            else:
                from jupyter_client.manager import KernelManager

                km = KernelManager(kernel_name=KERNEL)
                km.start_kernel(env=dict(os.environ, **self.config.kernel_env(i)))
                stack.callback(km.shutdown_kernel)
                self.kernel_pids.append(_jc_pid(km))
                info = json.loads(Path(km.connection_file).read_text())  # noqa: ASYNC240
            client = FloorClient(info, self.ctx)
            stack.callback(client.close)
            client.wait_iopub_live(START_TIMEOUT)
            self.clients.append(client)

    def _collect(self, client: FloorClient, code: str, outputs: list[dict[str, Any]]) -> None:
        import zmq

        EVENTS, POLLIN = int(zmq.EVENTS), int(zmq.POLLIN)
        msg_id = client.send("execute_request", _execute_content(code))
        shell, poll, decode, loads = client.shell, client.poller.poll, client.decode, json.loads
        append = outputs.append
        replied = idle = False
        while not (replied and idle):
            ready = poll(TIMEOUT * 1000)
            if not ready:
                raise TimeoutError(f"no reply and idle within {TIMEOUT} s")
            for sock, _ in ready:
                # Drain what is there (a flood arrives faster than one per poll),
                # asking EVENTS rather than paying for an Again exception.
                events = sock.getsockopt
                while events(EVENTS) & POLLIN:
                    header, parent, content = decode(recv_frames(sock))
                    if parent.get("msg_id") != msg_id:
                        continue
                    if sock is shell:
                        status = loads(content)["status"]
                        if status != "ok":
                            raise RuntimeError(f"execute failed: {status}")
                        replied = True
                        break
                    msg_type = header["msg_type"]
                    if msg_type == "status":
                        if loads(content)["execution_state"] == "idle":
                            idle = True
                            break
                    elif msg_type == "stream":
                        c = loads(content)
                        append({"output_type": "stream", "name": c["name"], "text": c["text"]})
                    elif msg_type == "display_data":
                        c = loads(content)
                        append(
                            {
                                "output_type": "display_data",
                                "data": c["data"],
                                "metadata": c["metadata"],
                            }
                        )

    async def execute(self, code: str) -> list[dict[str, Any]]:
        outputs: list[dict[str, Any]] = []
        self._collect(self.clients[0], code, outputs)
        return outputs

    async def execute_plain(self, code: str, kernel: int = 0) -> None:
        self.clients[kernel].execute(code)

    async def many(self, n: int) -> None:
        """One ``zmq.Poller`` over every kernel's shell and iopub: a state machine each."""
        import zmq

        poller = zmq.Poller()
        owner: dict[Any, tuple[int, bool]] = {}
        for i, client in enumerate(self.clients):
            for sock, is_shell in ((client.shell, True), (client.iopub, False)):
                poller.register(sock, zmq.POLLIN)
                owner[sock] = (i, is_shell)
        content = _execute_content("pass")
        left = [n] * len(self.clients)
        msg_ids = [c.send("execute_request", content) for c in self.clients]
        replied = [False] * len(self.clients)
        idle = [False] * len(self.clients)
        running = len(self.clients)
        loads = json.loads
        while running:
            ready = poller.poll(TIMEOUT * 1000)
            if not ready:
                raise TimeoutError(f"no reply and idle within {TIMEOUT} s")
            for sock, _ in ready:
                i, is_shell = owner[sock]
                client = self.clients[i]
                header, parent, raw = client.decode(recv_frames(sock))
                if parent.get("msg_id") != msg_ids[i]:
                    continue
                if is_shell:
                    if loads(raw)["status"] != "ok":
                        raise RuntimeError("execute failed")
                    replied[i] = True
                elif header["msg_type"] == "status":
                    idle[i] = idle[i] or loads(raw)["execution_state"] == "idle"
                if replied[i] and idle[i]:
                    left[i] -= 1
                    replied[i] = idle[i] = False
                    if left[i]:
                        msg_ids[i] = client.send("execute_request", content)
                    else:
                        msg_ids[i] = ""
                        running -= 1

    async def startup(self) -> float:
        """Popen ipykernel on a hand-written connection file; one raw kernel_info."""
        import zmq

        path = Path(self.config.scratch) / "floor-startup.json"
        started = time.perf_counter()
        info = write_connection_file(path)
        proc = start_ipykernel(self.config.python, path, self.config.kernel_env(0))
        client = None
        try:
            client = FloorClient(info)
            client.shell.setsockopt(zmq.RECONNECT_IVL, 10)
            msg_id = client.send("kernel_info_request", {})
            while True:
                if not client.shell.poll(START_TIMEOUT * 1000):
                    raise TimeoutError("no kernel_info reply")
                _, parent, _ = client.decode(client.shell.recv_multipart())
                if parent.get("msg_id") == msg_id:
                    return time.perf_counter() - started
        finally:
            if client is not None:
                client.close()
            stop_process(proc)
            path.unlink(missing_ok=True)


def _execute_content(code: str) -> dict[str, Any]:
    return {
        "code": code,
        "silent": False,
        "store_history": True,
        "user_expressions": {},
        "allow_stdin": False,
        "stop_on_error": True,
    }


class KernelSidecar(Client):
    """kernel-sidecar 1.0's ``KernelSidecarClient``; outputs via its ``OutputHandler``.

    Runs from kernel-sidecar's own virtualenv.  Kernels are started by hand
    (``python -m ipykernel_launcher -f``, with sidecar's interpreter): the
    package has no launcher.
    """

    async def open(self, stack: AsyncExitStack) -> None:
        from kernel_sidecar.client import KernelSidecarClient
        from kernel_sidecar.handlers.output import OutputHandler

        class Collector(OutputHandler):  # type: ignore[misc]
            def __init__(self, client: Any) -> None:
                super().__init__(client, "cell")
                self.contents: list[Any] = []

            async def add_cell_content(self, content: Any) -> None:
                self.contents.append(content)

        self.collector_class = Collector
        self.clients: list[Any] = []
        for i in range(self.config.kernels):
            if self.config.target == "flood":
                flood = self.flood_process(i)
                stack.callback(flood.stop)
                path = flood.connection_file
            else:
                path = Path(self.config.scratch) / f"{self.config.slug(i)}.json"
                write_connection_file(path)
                proc = start_ipykernel(self.config.python, path, self.config.kernel_env(i))
                stack.callback(path.unlink, missing_ok=True)
                stack.callback(stop_process, proc)
                self.kernel_pids.append(proc.pid)
            info = json.loads(path.read_text())
            client = KernelSidecarClient(info)
            await stack.enter_async_context(client)
            await self._wait_ready(client)
            self.clients.append(client)

    @staticmethod
    async def _wait_ready(client: Any) -> None:
        """kernel_info until one completes (its idle came on iopub: subscribed)."""
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            action = client.kernel_info_request()

            async def done(action: Any = action) -> None:
                await action

            try:
                await asyncio.wait_for(done(), 0.5)
                return
            except asyncio.TimeoutError:
                continue
        raise TimeoutError("kernel-sidecar: no kernel_info reply")

    async def execute(self, code: str) -> Any:
        client = self.clients[0]
        collector = self.collector_class(client)
        await client.execute_request(code, handlers=[collector])
        return collector.contents

    def normalize(self, collected: Any) -> list[dict[str, Any]]:
        outputs = []
        for content in collected:
            if content.output_type == "stream":
                outputs.append(
                    {"output_type": "stream", "name": content.name, "text": content.text}
                )
            elif content.output_type == "display_data":
                outputs.append({"output_type": "display_data", "data": content.data})
        return outputs

    async def execute_plain(self, code: str, kernel: int = 0) -> None:
        await self.clients[kernel].execute_request(code)


CLIENTS: dict[str, tuple[type[Client], str]] = {
    SIDECAR_ASYNCIO: (SidecarClient, "asyncio"),
    SIDECAR_TRIO: (SidecarClient, "trio"),
    JC_ASYNC: (JupyterClientAsync, "asyncio"),
    JC_BLOCKING: (JupyterClientBlocking, "asyncio"),
    FLOOR: (Floor, "asyncio"),
    KERNEL_SIDECAR: (KernelSidecar, "asyncio"),
}


# -- the worker ------------------------------------------------------------------------


def _meter() -> Callable[[], dict[str, float]]:
    gc.collect()
    cpu, start = time.process_time(), time.perf_counter()

    def stop() -> dict[str, float]:
        done = time.perf_counter()
        return {"elapsed": done - start, "cpu": time.process_time() - cpu, "done_at": done}

    return stop


async def _serve(client: Client, proto: Protocol) -> None:
    config = client.config
    async with AsyncExitStack() as stack:
        await client.open(stack)
        for i in range(config.kernels if config.target != "none" else 0):
            for _ in range(config.warmup):
                await client.execute_plain("pass", i)
        proto.send(ready=True, kernel_pids=client.kernel_pids, rss_kb=rss_kb())
        while True:
            line = await client.readline()
            if line.strip() in ("", "quit"):
                return
            order = json.loads(line)
            op = order["op"]
            if op == "quit":
                return
            if op == "execute":
                stop = _meter()
                collected = await client.execute(order["code"])
                measured = stop()
                summary = summarize(client.normalize(collected))
                del collected
                gen = client.floods[0].read(TIMEOUT) if client.floods else None
                proto.send(**measured, **summary, gen=gen, rss_kb=rss_kb(), peak_kb=peak_rss_kb())
            elif op == "loop":
                checkpoints = set(order["checkpoints"])
                deadline = time.monotonic() + order.get("seconds", 1e9)
                rss: list[list[int]] = []
                execute = client.execute_plain
                stop = _meter()
                done = 0
                for done in range(1, order["n"] + 1):
                    await execute("pass", 0)
                    if done in checkpoints:
                        rss.append([done, rss_kb(), peak_rss_kb()])
                    if time.monotonic() > deadline:
                        break
                measured = stop()
                if not rss or rss[-1][0] != done:
                    rss.append([done, rss_kb(), peak_rss_kb()])
                proto.send(**measured, executes=done, rss=rss)
            elif op == "many":
                stop = _meter()
                await client.many(order["n"])
                proto.send(**stop(), rss_kb=rss_kb())
            elif op == "startup":
                elapsed = await client.startup()
                proto.send(elapsed=elapsed)
            else:
                raise SystemExit(f"unknown order {op!r}")


def worker_main(raw: str) -> None:
    config = ClientConfig(**json.loads(raw))
    proto = Protocol()
    cls, backend = CLIENTS[config.impl]
    client = cls(config)
    if config.impl in (SIDECAR_ASYNCIO, SIDECAR_TRIO):
        import anyio

        anyio.run(_serve, client, proto, backend=backend)
    else:
        asyncio.run(_serve(client, proto))


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--worker":
        worker_main(sys.argv[2])
    else:
        raise SystemExit("usage: python -m benchmarks._clients --worker CONFIG_JSON")


# -- the parent's side ---------------------------------------------------------------


class Fleet:
    """Worker processes, one per implementation, driven in turns; failures are kept, not raised.

    A worker that cannot start (kernel-sidecar not installable, a kernel that
    does not come up) or fails mid-run is dropped and its reason kept in
    :attr:`failed`, so a table can say so instead of the whole module crashing.
    """

    def __init__(
        self,
        configs: list[ClientConfig],
        scratch: Path,
        *,
        pythons: dict[str, str] | None = None,
        start_timeout: float = 120.0,
    ) -> None:
        from benchmarks.bench_roundtrip import Worker

        self.scratch = scratch
        self.workers: list[Worker] = []
        self.stopped: list[Worker] = []
        self.failed: dict[str, str] = {}
        self.ready: dict[str, dict[str, Any]] = {}
        self._turn = 0
        for config in configs:
            python = (pythons or {}).get(config.impl, sys.executable)
            self.workers.append(Worker(config, scratch, module=__name__, python=python))
        # Kernels start and warm up concurrently (untimed); the timing is serial.
        for worker in list(self.workers):
            try:
                self.ready[worker.impl] = worker.read(start_timeout)
                worker.kernel_pid = (self.ready[worker.impl].get("kernel_pids") or [None])[0]
            except RuntimeError as e:
                self._drop(worker, e)

    def _drop(self, worker: Any, error: BaseException) -> None:
        self.failed[worker.impl] = str(error).splitlines()[0]
        print(f"{worker.impl}: dropped: {error}", file=sys.stderr)
        self.workers.remove(worker)
        worker.stop()
        self.stopped.append(worker)

    @property
    def impls(self) -> list[str]:
        return [w.impl for w in self.workers]

    def round(self, order: dict[str, Any], timeout: float) -> dict[str, dict[str, Any]]:
        """Give ``order`` to every worker in turn (the first rotating); their answers."""
        workers = self.workers
        shift = self._turn % max(1, len(workers))
        self._turn += 1
        answers = {}
        for worker in workers[shift:] + workers[:shift]:
            try:
                worker.command(json.dumps(order))
                answers[worker.impl] = worker.read(timeout)
            except (RuntimeError, OSError) as e:
                self._drop(worker, e)
        return answers

    def broadcast(self, order: dict[str, Any], timeout: float) -> dict[str, dict[str, Any]]:
        """Give ``order`` to every worker at once (for untimed figures such as memory)."""
        sent = []
        for worker in list(self.workers):
            try:
                worker.command(json.dumps(order))
                sent.append(worker)
            except OSError as e:
                self._drop(worker, e)
        answers = {}
        for worker in sent:
            try:
                answers[worker.impl] = worker.read(timeout)
            except RuntimeError as e:
                self._drop(worker, e)
        return answers

    def rounds(
        self,
        order: dict[str, Any],
        repeat: int,
        *,
        warmup: int = 0,
        timeout: float = 300.0,
        check: Callable[[str, dict[str, Any]], None] | None = None,
    ) -> dict[str, list[dict[str, Any]]]:
        """``warmup`` untimed then ``repeat`` timed rounds; each impl's timed answers."""
        results: dict[str, list[dict[str, Any]]] = {impl: [] for impl in self.impls}
        for i in range(warmup + repeat):
            for impl, answer in self.round(order, timeout).items():
                if check is not None:
                    check(impl, answer)
                if i >= warmup:
                    results[impl].append(answer)
        return {impl: r for impl, r in results.items() if impl in self.impls}

    def close(self) -> list[int]:
        """Stop every worker; kill (by pid) any kernel one left behind; those pids."""
        from benchmarks.bench_roundtrip import reap_kernels

        for worker in self.workers:
            worker.stop()
        everyone = self.workers + self.stopped
        killed = reap_kernels(everyone)
        if killed:
            print(f"killed kernels the workers left behind: {killed}", file=sys.stderr)
        return killed
