"""The shared kernel: what ``sidecar serve`` adds between a frontend and the kernel.

Run ``python -m benchmarks.bench_serve`` (``--json``, ``--repeat``, ``--n``,
``--displays``, ``--big``, ``--quick``, ``--no-kernel-proxy``).

One ipykernel (TCP, as every frontend of ``sidecar serve`` talks TCP) is
started for the whole run, and every case reaches **that same kernel**, so no
ratio carries the difference between two kernels.  The frontend is always
bench_roundtrip's floor client (raw pyzmq, HMAC, ``json``): the least a
frontend can cost, so what separates the cases is the path to the kernel.

Round trip
    sequential ``pass`` executes, each done on its reply and its idle, from
    the floor: straight to the kernel (**direct**, the baseline); through
    ``sidecar.serve`` on asyncio and on trio, its document in memory and with
    ``notebook=`` writing the ``.ipynb`` after executes (``--notebook``); and
    through jupyter-kernel-proxy, the peer that speaks the protocol to
    frontends without a document (installed on first use into
    ``~/.cache/sidecar-bench/kernel-proxy-venv``; see ``benchmarks/_peers.py``;
    if it cannot be installed or run, its row says why).  Target: the sidecar
    adds at most 10 % to the direct round trip, with its document on.
The document at 10 and at 10,000 cells
    the same sidecar cases with the document holding 10 cells, or 10,000
    cells (three source lines and one stream output each) put in before the
    turn, untimed.  Reported: the round trip, the sidecar process's CPU per
    execute, and with ``--notebook`` how many times the file was written per
    execute and how long one write took.  Target: the cost per execute at
    10,000 cells is within 10 % of the cost at 10.
iopub fan-out
    one cell that publishes ``--displays`` displays
    (``IPython.display.publish_display_data``, one ``display_data`` message
    each), read by 1, 4 and 16 frontends (SUB sockets, all in the frontend
    process), directly on the kernel (the baseline) and through the sidecar
    (document in memory) and the proxy.  The readers count the messages of
    that request and look for its idle without verifying or decoding them, so
    16 of them cost the reading process little.  Reported per frontend: the
    messages delivered per second (from the request sent to that frontend's
    idle, median frontend), the messages lost (each must get every display,
    busy, execute_input and idle), and the server process's CPU per message
    per frontend.

How it is run, and why
    Each sidecar case is a **worker process running** ``sidecar.connect`` +
    ``sidecar.serve`` **in-process** (what ``sidecar serve --existing`` runs,
    without the argument parsing), not a ``sidecar serve`` subprocess.  Only
    one server may be attached to the kernel at a time: every attached one
    takes in the kernel's whole iopub, so idle servers would burn the two
    cores during other cases' turns.  A server is therefore attached for its
    turn and detached after it, and a worker that stays up does that with a
    connect and a bind (tens of milliseconds, untimed), where a subprocess
    would pay an interpreter start and imports per turn.  In-process, the
    worker also measures exactly the server: its own CPU time
    (``time.process_time``, every thread, to the nanosecond: ``/proc``'s
    10 ms ticks are too coarse for a turn), taken when the parent says the
    timed executes start and end, and it can check the document (every
    execute a cell, every output there) and count the notebook writes, by
    wrapping ``SharedKernel._save``; nothing of sidecar is changed.  The proxy is
    a process of its own (its venv), started for its turn and stopped after;
    its CPU comes from ``/proc``.

    Turns are interleaved as in bench_roundtrip: a rep is ``--n`` timed
    executes per case in turns of 50, the cases round-robin with the first
    rotating; a turn is: attach the server, connect the floor and wait until
    its iopub is live, 2 untimed executes, the timed ones, detach.  A fan-out
    rep is one cell per case and frontend count, round-robin likewise.

At exit the kernel, the workers and any proxy are gone; the parent kills, by
pid, any process still carrying its or a worker's pid as ``JPY_PARENT_PID``.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import statistics
import sys
import tempfile
import time
import uuid
from contextlib import AsyncExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

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
from benchmarks._peers import (
    KERNEL_PROXY,
    start_ipykernel,
    stop_process,
)
from benchmarks.bench_roundtrip import (
    TIMEOUT,
    FloorClient,
    Protocol,
    Worker,
    _cpu_of,
    _percentile,
    kernels_of,
    reap_kernels,
    recv_frames,
)

DEFAULT_REPEAT = 5
DEFAULT_N = 250  # timed executes per case per rep
DEFAULT_DISPLAYS = 2000  # messages of the fan-out cell
DEFAULT_BIG = 10_000  # cells of the big document
SMALL = 10  # cells of the small document
CHUNK = 50  # timed executes per turn
REWARM = 2  # untimed executes at the start of every turn
FANOUT = (1, 4, 16)
FAN_REPEAT = 3  # fan-out reps at most (a rep is 12 cells of 2,000 displays)
TARGET_OVERHEAD = 1.10  # sidecar's round trip / the direct one, at most
TARGET_FLAT = 1.10  # cost per execute at the big document / at the small one, at most
START_TIMEOUT = 60.0
TURN_TIMEOUT = 120.0

CODE = "pass"
MODULE = "benchmarks.bench_serve"
DIRECT = "direct: floor on the kernel"
BACKENDS = ("asyncio", "trio")


def sidecar_case(backend: str, notebook: bool, cells: int = SMALL) -> str:
    doc = "--notebook" if notebook else "document in memory"
    size = "" if cells == SMALL else f", {cells:,} cells"
    return f"sidecar ({backend}), {doc}{size}"


def fanout_code(displays: int) -> str:
    return (
        "from IPython.display import publish_display_data as _p\n"
        f"for _i in range({displays}):\n"
        "    _p({'text/plain': str(_i)})"
    )


@dataclass(frozen=True)
class Role:
    """A worker: the frontend (``role="frontend"``) or one sidecar server case."""

    impl: str
    role: str
    backend: str = "asyncio"
    notebook: bool = False
    cells: int = SMALL
    kernel_file: str = ""
    scratch: str = ""


# -- the sidecar server worker ---------------------------------------------------------


def run_server(config: Role, proto: Protocol) -> None:
    import anyio
    import anyio.to_thread
    import msgspec

    import sidecar
    from sidecar.notebook._model import StreamOutput, read_notebook
    from sidecar.server import _shared

    # Count the writes of the document, and time them (made on the loop, written
    # in a thread).
    writes = {"count": 0, "seconds": 0.0}
    save = _shared.SharedKernel._save

    async def counted_save(self: Any, path: Any) -> None:
        started = time.perf_counter()
        await save(self, path)
        writes["count"] += 1
        writes["seconds"] += time.perf_counter() - started

    _shared.SharedKernel._save = counted_save  # type: ignore[method-assign]
    slug = "".join(c if c.isalnum() else "-" for c in config.impl)
    path = Path(config.scratch) / f"{slug}.ipynb"

    async def main() -> None:
        stack: AsyncExitStack | None = None
        shared: Any = None
        base = 0
        while True:
            line = await anyio.to_thread.run_sync(sys.stdin.readline)
            if line.strip() in ("", "quit"):
                break
            op = json.loads(line)["op"]
            if op == "attach":
                stack = AsyncExitStack()
                kernel = await stack.enter_async_context(
                    sidecar.connect(config.kernel_file, ready_timeout=START_TIMEOUT)
                )
                path.unlink(missing_ok=True)
                shared = await stack.enter_async_context(
                    sidecar.serve(kernel, notebook=path if config.notebook else None)
                )
                document = shared.document
                for i in range(config.cells):
                    cell = document.add_code_cell(f"# cell {i}\nx = {i}\nprint(x)")
                    cell.execution_count = i + 1
                    cell.outputs = [StreamOutput(name="stdout", text=f"{i}\n")]
                base = len(document.notebook.cells)
                writes.update(count=0, seconds=0.0)
                proto.send(info=msgspec.to_builtins(shared.connection_info), pid=os.getpid())
            elif op == "mark":
                proto.send(cpu=time.process_time(), writes=dict(writes))
            elif op == "detach":
                assert stack is not None
                cells = shared.document.notebook.cells[base:]
                answer = {
                    "cells": len(cells),
                    "outputs": [len(c.outputs) for c in cells],
                    "dropped": shared.dropped_to_frontends,
                }
                await stack.aclose()
                stack = None
                if config.notebook:
                    answer["written_cells"] = len(read_notebook(path).cells) - config.cells
                proto.send(**answer)
            else:
                raise SystemExit(f"unknown order {op!r}")
        if stack is not None:
            await stack.aclose()

    anyio.run(main, backend=config.backend)


# -- the frontend worker: the floor, one execute after another, or many SUBs -----------


def _execute_content(code: str) -> dict[str, Any]:
    return {
        "code": code,
        "silent": False,
        "store_history": True,
        "user_expressions": {},
        "allow_stdin": False,
        "stop_on_error": True,
    }


class Frontends:
    """The floor client (a DEALER and a SUB) and ``subs - 1`` more SUBs, all live."""

    def __init__(self, info: dict[str, Any], subs: int, context: Any) -> None:
        import zmq

        self.client = FloorClient(info, context)
        self.subs = [self.client.iopub]
        for _ in range(subs - 1):
            sub = context.socket(zmq.SUB)
            sub.linger = 0
            sub.setsockopt(zmq.SUBSCRIBE, b"")
            sub.connect(f"tcp://{info['ip']}:{info['iopub_port']}")
            self.subs.append(sub)
        self.poller = zmq.Poller()
        for sock in [self.client.shell, *self.subs]:
            self.poller.register(sock, zmq.POLLIN)
        self._wait_live()

    def _wait_live(self) -> None:
        """kernel_info until every SUB got something (subscribed); then drain."""
        deadline = time.monotonic() + START_TIMEOUT
        live: set[Any] = set()
        while len(live) < len(self.subs):
            if time.monotonic() > deadline:
                raise TimeoutError(f"{len(live)} of {len(self.subs)} SUBs live")
            self.client.send("kernel_info_request", {})
            asked = time.monotonic()
            while (left := 0.2 - (time.monotonic() - asked)) > 0:
                for sock, _ in self.poller.poll(int(left * 1000) + 1):
                    recv_frames(sock)
                    if sock is not self.client.shell:
                        live.add(sock)
        while self.poller.poll(200):
            for sock, _ in self.poller.poll(0):
                recv_frames(sock)

    def close(self) -> None:
        for sock in self.subs[1:]:
            sock.close()
        self.client.close()

    def fan(self, code: str) -> tuple[float, list[int], list[float]]:
        """One execute of ``code``; when it was sent, each SUB's count and idle time."""
        import zmq

        EVENTS, POLLIN = int(zmq.EVENTS), int(zmq.POLLIN)
        delim = FloorClient.DELIM
        index = {sock: i for i, sock in enumerate(self.subs)}
        counts = [0] * len(self.subs)
        done_at = [0.0] * len(self.subs)
        left = len(self.subs)
        replied = False
        shell = self.client.shell
        clock = time.perf_counter
        sent = clock()
        mid = self.client.send("execute_request", _execute_content(code)).encode()
        while left or not replied:
            ready = self.poller.poll(int(TIMEOUT * 1000))
            if not ready:
                raise TimeoutError(f"no idle on {left} SUBs within {TIMEOUT} s")
            for sock, _ in ready:
                if sock is shell:
                    frames = recv_frames(sock)
                    replied = replied or mid in frames[frames.index(delim) + 3]
                    continue
                i = index[sock]
                events = sock.getsockopt
                while events(EVENTS) & POLLIN:
                    frames = recv_frames(sock)
                    at = frames.index(delim)
                    if mid not in frames[at + 3]:
                        continue
                    counts[i] += 1
                    if b'"status"' in frames[at + 2] and b'"idle"' in frames[at + 5]:
                        done_at[i] = clock()
                        left -= 1
                        break
        return sent, counts, done_at


def _cpus(pids: list[int]) -> list[float | None]:
    return [_cpu_of(pid) for pid in pids]


def _cpu_deltas(before: list[float | None], after: list[float | None]) -> list[float | None]:
    return [None if a is None or b is None else b - a for a, b in zip(before, after, strict=True)]


def run_frontend(proto: Protocol) -> None:
    import zmq

    context = zmq.Context()
    fronts: Frontends | None = None
    proto.send(ready=True)
    while True:
        line = sys.stdin.readline()
        if line.strip() in ("", "quit"):
            break
        order = json.loads(line)
        try:
            answer = _frontend_order(order, fronts, context)
        except (TimeoutError, RuntimeError, ValueError) as e:
            answer = {"error": f"{type(e).__name__}: {e}"}
        if order["op"] in ("open", "close") or "error" in answer:
            if fronts is not None:
                fronts.close()
            fronts = answer.pop("fronts", None)
        proto.send(**answer)
    if fronts is not None:
        fronts.close()
    context.term()


def _frontend_order(
    order: dict[str, Any], fronts: Frontends | None, context: Any
) -> dict[str, Any]:
    """One order of the parent to the frontend worker; its answer."""
    op = order["op"]
    if op == "open":
        fronts = Frontends(order["info"], order.get("subs", 1), context)
        try:
            for _ in range(order.get("rewarm", 0)):
                fronts.client.execute(CODE)
        except BaseException:
            fronts.close()
            raise
        return {"ok": True, "fronts": fronts}
    if op == "run":
        assert fronts is not None
        n, execute, clock = order["n"], fronts.client.execute, time.perf_counter
        latencies = [0.0] * n
        gc.collect()
        before, cpu, start = _cpus(order["pids"]), time.process_time(), clock()
        for i in range(n):
            t = clock()
            execute(CODE)
            latencies[i] = clock() - t
        elapsed = clock() - start
        cpu = time.process_time() - cpu
        pids_cpu = _cpu_deltas(before, _cpus(order["pids"]))
        return {"elapsed": elapsed, "cpu": cpu, "pids_cpu": pids_cpu, "latencies": latencies}
    if op == "fan":
        assert fronts is not None
        gc.collect()
        before, cpu = _cpus(order["pids"]), time.process_time()
        sent, counts, done_at = fronts.fan(order["code"])
        cpu = time.process_time() - cpu
        pids_cpu = _cpu_deltas(before, _cpus(order["pids"]))
        took = [d - sent for d in done_at]
        return {"counts": counts, "took": took, "cpu": cpu, "pids_cpu": pids_cpu}
    if op == "close":
        return {"ok": True}
    raise SystemExit(f"unknown order {op!r}")


def worker_main(raw: str) -> None:
    config = Role(**json.loads(raw))
    proto = Protocol()
    if config.role == "frontend":
        run_frontend(proto)
    else:
        run_server(config, proto)


# -- the parent: the kernel, the workers, the proxy, the turns ----------------------------


def _free_ports(n: int) -> list[int]:
    import socket

    socks = []
    try:
        for _ in range(n):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def _tcp_connection_file(path: Path, name: str) -> dict[str, Any]:
    shell, iopub, stdin, control, hb = _free_ports(5)
    info = {
        "transport": "tcp",
        "ip": "127.0.0.1",
        "shell_port": shell,
        "iopub_port": iopub,
        "stdin_port": stdin,
        "control_port": control,
        "hb_port": hb,
        "key": uuid.uuid4().hex,
        "signature_scheme": "hmac-sha256",
        "kernel_name": name,
    }
    path.write_text(json.dumps(info))
    return info


class Proxy:
    """jupyter-kernel-proxy in front of the kernel: a process per turn.

    It attaches to the newest ``kernel-*.json`` of its Jupyter runtime
    directory: it gets one of its own holding only the kernel's file.
    """

    def __init__(self, python: str, scratch: Path, kernel_file: Path) -> None:
        self.python = python
        self.scratch = scratch
        self.runtime = scratch / "proxy-runtime"
        self.runtime.mkdir(exist_ok=True)
        (self.runtime / "kernel-shared.json").write_text(kernel_file.read_text())
        self.proc: Any = None

    def attach(self) -> dict[str, Any]:
        import subprocess

        path = self.scratch / "proxy.json"
        info = _tcp_connection_file(path, "proxy")
        env = dict(
            os.environ, JUPYTER_RUNTIME_DIR=str(self.runtime), JPY_PARENT_PID=str(os.getpid())
        )
        self.proc = subprocess.Popen(
            [self.python, "-m", "jupyter_kernel_proxy", "start", str(path)],
            stdin=subprocess.DEVNULL,
            stdout=sys.stderr,
            env=env,
        )
        return {"info": info, "pid": self.proc.pid}

    def detach(self) -> dict[str, Any]:
        if self.proc is not None:
            status = self.proc.poll()
            stop_process(self.proc)
            self.proc = None
            if status is not None:
                raise RuntimeError(f"jupyter-kernel-proxy exited (status {status})")
        return {}


class Bench:
    """The kernel, the frontend, the servers; one turn at a time."""

    def __init__(self, scratch: Path, servers: list[Role], proxy_python: str | None) -> None:
        self.scratch = scratch
        self.kernel_file = scratch / "kernel.json"
        self.kernel_info = _tcp_connection_file(self.kernel_file, "python3")
        (scratch / "ipython-kernel").mkdir()
        self.kernel = start_ipykernel(
            sys.executable, self.kernel_file, {"IPYTHONDIR": str(scratch / "ipython-kernel")}
        )
        self.workers: dict[str, Worker] = {}
        self.failed: dict[str, str] = {}
        self.frontend = Worker(Role("frontend", "frontend"), scratch, module=MODULE)
        self.frontend.read(START_TIMEOUT)
        for config in servers:
            self.workers[config.impl] = Worker(config, scratch, module=MODULE)
        self.proxy = (
            None if proxy_python is None else Proxy(proxy_python, scratch, self.kernel_file)
        )

    def _ask(
        self, worker: Worker, order: dict[str, Any], timeout: float = TURN_TIMEOUT
    ) -> dict[str, Any]:
        worker.command(json.dumps(order))
        answer = worker.read(timeout)
        if "error" in answer:
            raise RuntimeError(answer["error"])
        return answer

    def turn(self, case: str, front: dict[str, Any], timed: dict[str, Any]) -> dict[str, Any]:
        """Attach ``case``, open the frontends (``front``), do ``timed``, detach; the figures."""
        server = self.workers.get(case)
        if case == DIRECT:
            info, pid = self.kernel_info, None
        elif case == KERNEL_PROXY:
            assert self.proxy is not None
            attached = self.proxy.attach()
            info, pid = attached["info"], attached["pid"]
        else:
            assert server is not None
            attached = self._ask(server, {"op": "attach"}, START_TIMEOUT)
            info, pid = attached["info"], attached["pid"]
        try:
            self._ask(self.frontend, {"op": "open", "info": info, **front}, START_TIMEOUT)
            pids = [self.kernel.pid] + ([pid] if pid is not None else [])
            before = None if server is None else self._ask(server, {"op": "mark"})
            answer = self._ask(self.frontend, {**timed, "pids": pids})
            after = None if server is None else self._ask(server, {"op": "mark"})
            self._ask(self.frontend, {"op": "close"})
        finally:
            if case == KERNEL_PROXY:
                assert self.proxy is not None
                self.proxy.detach()
            elif server is not None:
                answer_detach = self._ask(server, {"op": "detach"}, START_TIMEOUT)
        answer["kernel_cpu"] = answer["pids_cpu"][0]
        if before is not None and after is not None:
            answer["server_cpu"] = after["cpu"] - before["cpu"]
            answer["writes"] = after["writes"]["count"] - before["writes"]["count"]
            answer["write_s"] = after["writes"]["seconds"] - before["writes"]["seconds"]
            answer["document"] = answer_detach
        elif case == KERNEL_PROXY:
            answer["server_cpu"] = answer["pids_cpu"][1]
        else:
            answer["server_cpu"] = None
        return answer

    def close(self) -> list[int]:
        workers = [self.frontend, *self.workers.values()]
        for worker in workers:
            worker.stop()
        if self.proxy is not None:
            self.proxy.detach()
        stop_process(self.kernel)
        self.kernel_file.unlink(missing_ok=True)
        killed = reap_kernels(workers)
        left = kernels_of({os.getpid()})
        for pid in left:
            _kill(pid)
        return sorted(set(killed) | set(left))


def _kill(pid: int) -> None:
    import contextlib
    import signal

    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)


# -- the rounds ----------------------------------------------------------------------------


def _rotated(cases: list[str], turn: int) -> list[str]:
    shift = turn % max(1, len(cases))
    return cases[shift:] + cases[:shift]


def _drop(cases: list[str], case: str, error: Exception, failed: dict[str, str]) -> None:
    failed[case] = str(error).splitlines()[0]
    print(f"{case}: dropped: {error}", file=sys.stderr)
    cases.remove(case)


def round_trips(
    bench: Bench, cases: list[str], big: list[str], n: int, repeat: int, problems: list[str]
) -> dict[str, list[dict[str, Any]]]:
    """``repeat`` reps of ``n`` timed executes per case, in turns of CHUNK, round-robin.

    The ``big`` cases (executes slow enough to make a rep last minutes) take
    part in the first turn of each rep only.
    """
    sizes = [min(CHUNK, n - start) for start in range(0, n, CHUNK)]
    reps: dict[str, list[dict[str, Any]]] = {case: [] for case in cases}
    turn = 0
    for rep in range(1 + repeat):  # the first rep is one untimed turn per case
        for case in cases:
            reps[case].append(
                {
                    "elapsed": 0.0,
                    "latencies": [],
                    "server_cpu": 0.0,
                    "kernel_cpu": 0.0,
                    "writes": 0,
                    "write_s": 0.0,
                    "executes": 0,
                }
            )
        for i, size in enumerate(sizes[:1] if rep == 0 else sizes):
            for case in _rotated(cases, turn):
                if i and case in big:
                    continue
                try:
                    answer = bench.turn(case, {"rewarm": REWARM}, {"op": "run", "n": size})
                except (RuntimeError, OSError, TimeoutError) as e:
                    _drop(cases, case, e, bench.failed)
                    continue
                _check_document(case, answer.get("document"), size + REWARM, problems)
                acc = reps[case][-1]
                acc["elapsed"] += answer["elapsed"]
                acc["latencies"] += answer["latencies"]
                acc["executes"] += size
                for key in ("server_cpu", "kernel_cpu"):
                    value = answer[key]
                    acc[key] = None if value is None or acc[key] is None else acc[key] + value
                acc["writes"] += answer.get("writes", 0)
                acc["write_s"] += answer.get("write_s", 0.0)
            turn += 1
    return {case: r[1:] for case, r in reps.items() if case in cases}


def _check_document(
    case: str, document: dict[str, Any] | None, executes: int, problems: list[str]
) -> None:
    """Every execute of the turn is a cell of the document (and of the file written)."""
    if document is None:
        return
    if document["cells"] != executes:
        problems.append(f"{case}: {document['cells']} cells for {executes} executes")
    written = document.get("written_cells")
    if written is not None and written != executes:
        problems.append(f"{case}: the file written at exit holds {written} of {executes} cells")
    if document["dropped"]:
        problems.append(f"{case}: {document['dropped']} messages dropped to frontends")


def fan_outs(
    bench: Bench, cases: list[str], displays: int, repeat: int, problems: list[str]
) -> dict[tuple[str, int], list[dict[str, Any]]]:
    """One cell of ``displays`` displays per case and frontend count, round-robin."""
    code = fanout_code(displays)
    found: dict[tuple[str, int], list[dict[str, Any]]] = {}
    turn = 0
    for rep in range(1 + repeat):  # the first rep is untimed, with one frontend
        for subs in FANOUT[:1] if rep == 0 else FANOUT:
            for case in _rotated(cases, turn):
                try:
                    answer = bench.turn(case, {"subs": subs}, {"op": "fan", "code": code})
                except (RuntimeError, OSError, TimeoutError) as e:
                    _drop(cases, case, e, bench.failed)
                    continue
                document = answer.get("document")
                if document is not None:
                    if document["outputs"][-1:] != [displays]:
                        problems.append(
                            f"{case}, {subs} frontends: the cell holds "
                            f"{document['outputs'][-1:]} outputs of {displays}"
                        )
                    if document["dropped"]:
                        problems.append(
                            f"{case}, {subs} frontends: {document['dropped']} messages dropped"
                        )
                if rep:
                    found.setdefault((case, subs), []).append(answer)
            turn += 1
    return {k: v for k, v in found.items() if k[0] in cases}


# -- the tables ------------------------------------------------------------------------------


@dataclass(frozen=True)
class RoundTrip:
    case: str
    timing: Timing  # elapsed per rep, for n executes
    latencies: tuple[float, ...]
    server_cpu_us: float | None  # per execute, median rep
    kernel_cpu_us: float | None
    writes: float  # per execute
    write_ms: float | None  # per write

    @staticmethod
    def of(case: str, reps: list[dict[str, Any]]) -> RoundTrip:
        n = reps[0]["executes"]

        def per_execute(key: str) -> float | None:
            values: list[float] = [r[key] for r in reps]
            if None in values:
                return None
            return float(statistics.median(v / n for v in values)) * 1e6

        writes = sum(r["writes"] for r in reps)
        return RoundTrip(
            case,
            Timing(n, tuple(r["elapsed"] for r in reps)),
            tuple(x for r in reps for x in r["latencies"]),
            per_execute("server_cpu"),
            per_execute("kernel_cpu"),
            writes / (n * len(reps)),
            sum(r["write_s"] for r in reps) / writes * 1e3 if writes else None,
        )


def _us(value: float | None) -> str:
    return "n/a" if value is None else fmt_us(value)


def _paired(case: RoundTrip, reference: RoundTrip) -> list[float]:
    """Round-trip time per execute / the reference's, rep by rep."""
    pairs = zip(case.timing.reps_s, reference.timing.reps_s, strict=True)
    return [a / case.timing.n / (b / reference.timing.n) for a, b in pairs]


def _add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--n", type=int, default=DEFAULT_N, help=f"timed executes per case per rep ({DEFAULT_N})"
    )
    parser.add_argument(
        "--displays",
        type=int,
        default=DEFAULT_DISPLAYS,
        help=f"displays of the fan-out cell ({DEFAULT_DISPLAYS})",
    )
    parser.add_argument(
        "--big", type=int, default=DEFAULT_BIG, help=f"cells of the big document ({DEFAULT_BIG:,})"
    )
    parser.add_argument(
        "--no-kernel-proxy", action="store_true", help="do not install or run jupyter-kernel-proxy"
    )
    parser.add_argument("--worker", help=argparse.SUPPRESS)


def main() -> None:
    if len(sys.argv) == 3 and sys.argv[1] == "--worker":
        worker_main(sys.argv[2])
        return
    args = parse_args(
        __doc__.split("\n")[0], default_repeat=DEFAULT_REPEAT, add_arguments=_add_arguments
    )
    n, displays, repeat = args.n, args.displays, args.repeat
    if args.quick:
        n, displays, repeat = min(n, CHUNK), min(displays, 300), min(repeat, 2)
    if n < 1 or displays < 1 or args.big <= SMALL:
        raise SystemExit(f"--n and --displays must be at least 1, --big more than {SMALL}")
    fan_repeat = min(repeat, FAN_REPEAT)
    started = time.perf_counter()

    proxy_python, proxy_version = None, None
    failed: dict[str, str] = {}
    if args.no_kernel_proxy:
        failed[KERNEL_PROXY] = "skipped (--no-kernel-proxy)"
    else:
        from benchmarks._peers import kernel_proxy_python

        proxy_python, note = kernel_proxy_python()
        if proxy_python is None:
            failed[KERNEL_PROXY] = note
        else:
            proxy_version = note

    small = [sidecar_case(b, nb) for b in BACKENDS for nb in (False, True)]
    big = [sidecar_case(b, nb, args.big) for b in BACKENDS for nb in (False, True)]
    problems: list[str] = []
    with tempfile.TemporaryDirectory(prefix="bench-serve-") as tmp:
        scratch = Path(tmp)
        servers = [
            Role(
                sidecar_case(b, nb, cells),
                "server",
                b,
                nb,
                cells,
                str(scratch / "kernel.json"),
                tmp,
            )
            for cells in (SMALL, args.big)
            for b in BACKENDS
            for nb in (False, True)
        ]
        bench = Bench(scratch, servers, proxy_python)
        try:
            cases = [DIRECT, *([KERNEL_PROXY] if proxy_python else []), *small, *big]
            timed = round_trips(bench, cases, big, n, repeat, problems)
            fan_cases = [DIRECT, sidecar_case("asyncio", False), sidecar_case("trio", False)]
            if proxy_python and KERNEL_PROXY not in bench.failed:
                fan_cases.insert(1, KERNEL_PROXY)
            fans = fan_outs(bench, fan_cases, displays, fan_repeat, problems)
        finally:
            killed = bench.close()
        failed |= bench.failed
    took = time.perf_counter() - started
    if DIRECT not in timed:
        raise SystemExit(f"the direct case failed: {failed.get(DIRECT)}")

    results = {case: RoundTrip.of(case, reps) for case, reps in timed.items()}
    direct = results[DIRECT]
    tables = [
        _round_trip_table(results, direct, small, failed, n, repeat, problems, killed),
        _document_table(results, small, big, args.big, failed),
        _fanout_table(fans, fan_cases, displays, fan_repeat, failed),
    ]
    targets = _targets(results, direct, small, big, args.big)
    tables[0].notes = [*_target_notes(targets["overhead"]), *tables[0].notes]
    tables[1].notes = [*_target_notes(targets["flat"]), *tables[1].notes]
    emit(
        "serve",
        tables,
        {
            "environment": environment(
                "sidecar", "pyzmq", "jupyter_client", "ipykernel", "anyio", "trio", "msgspec"
            )
            | {"jupyter-kernel-proxy": proxy_version},
            "config": {
                "n": n,
                "repeat": repeat,
                "executes_per_turn": CHUNK,
                "untimed_executes_per_turn": REWARM,
                "small_cells": SMALL,
                "big_cells": args.big,
                "displays": displays,
                "frontends": list(FANOUT),
                "transport": "tcp",
                "seconds": round(took, 1),
            },
            "round_trip": [
                {
                    "case": r.case,
                    "executes_per_s": round(r.timing.per_s, 1),
                    "median_latency_us": round(statistics.median(r.latencies) * 1e6, 1),
                    "p99_latency_us": round(_percentile(r.latencies, 99) * 1e6, 1),
                    "vs_direct": round(r.timing.us / direct.timing.us, 3),
                    "server_cpu_us": _rounded(r.server_cpu_us),
                    "kernel_cpu_us": _rounded(r.kernel_cpu_us),
                    "writes_per_execute": round(r.writes, 3),
                    "ms_per_write": _rounded(r.write_ms, 2),
                    **r.timing.as_json(),
                }
                for r in results.values()
            ],
            "fanout": [
                {"case": case, "frontends": subs, **_fan_figures(answers, displays)}
                for (case, subs), answers in fans.items()
            ],
            "targets": targets["overhead"] + targets["flat"],
            "problems": problems,
            "not_measured": failed,
            "processes_killed_at_exit": killed,
        },
        as_json=args.json,
    )


def _rounded(value: float | None, digits: int = 1) -> float | None:
    return None if value is None else round(value, digits)


def _fan_figures(answers: list[dict[str, Any]], displays: int) -> dict[str, Any]:
    expected = displays + 3  # busy, execute_input, the displays, idle
    rates = [
        statistics.median(c / t for c, t in zip(a["counts"], a["took"], strict=True))
        for a in answers
    ]
    lost = [sum(expected - c for c in a["counts"]) for a in answers]

    def per_message(key: str, frontends: bool) -> float | None:
        values: list[float] = [a[key] for a in answers]
        if None in values:
            return None
        return (
            statistics.median(
                v / (sum(a["counts"]) if frontends else expected)
                for v, a in zip(values, answers, strict=True)
            )
            * 1e6
        )

    return {
        "messages_per_s_per_frontend": round(statistics.median(rates), 1),
        "seconds": round(statistics.median(max(a["took"]) for a in answers), 3),
        "lost_messages": max(lost),
        "server_cpu_us_per_message_per_frontend": _rounded(per_message("server_cpu", True), 2),
        "kernel_cpu_us_per_message": _rounded(per_message("kernel_cpu", False), 1),
    }


def _targets(
    results: dict[str, RoundTrip], direct: RoundTrip, small: list[str], big: list[str], cells: int
) -> dict[str, list[dict[str, Any]]]:
    overhead = []
    for case in small:
        if case not in results:
            continue
        ratio = results[case].timing.us / direct.timing.us
        paired = _paired(results[case], direct)
        overhead.append(
            {
                "case": case,
                "what": "round trip vs direct",
                "value": round(ratio, 3),
                "per_rep": [round(p, 3) for p in paired],
                "target": TARGET_OVERHEAD,
                "pass": ratio <= TARGET_OVERHEAD,
            }
        )
    flat = []
    for at_small, at_big in zip(small, big, strict=True):
        if at_small not in results or at_big not in results:
            continue
        s, b = results[at_small], results[at_big]
        ratio = b.timing.us / s.timing.us
        cpu = None
        if s.server_cpu_us and b.server_cpu_us is not None:
            cpu = b.server_cpu_us / s.server_cpu_us
        flat.append(
            {
                "case": at_small,
                "what": "per execute at the big document vs the small one",
                "value": round(ratio, 3),
                "per_rep": [round(p, 3) for p in _paired(b, s)],
                "server_cpu": None if cpu is None else round(cpu, 3),
                "cells": cells,
                "target": TARGET_FLAT,
                "pass": ratio <= TARGET_FLAT and (cpu is None or cpu <= TARGET_FLAT),
            }
        )
    return {"overhead": overhead, "flat": flat}


def _target_notes(targets: list[dict[str, Any]]) -> list[str]:
    notes = []
    for t in targets:
        rep = f"rep by rep: {min(t['per_rep']):.2f}x-{max(t['per_rep']):.2f}x"
        verdict = "PASS" if t["pass"] else "MISS"
        if "server_cpu" in t:
            cpu = "n/a" if t["server_cpu"] is None else f"{t['server_cpu']:.2f}x"
            notes.append(
                f"target: {t['case']}: at {t['cells']:,} cells the round trip is "
                f"{t['value']:.3f}x and the sidecar's CPU per execute {cpu} those at "
                f"{SMALL} cells (<= {t['target']:g}x) {verdict} ({rep})"
            )
        else:
            notes.append(
                f"target: {t['case']}: round trip {t['value']:.3f}x the direct one "
                f"(<= {t['target']:g}x) {verdict} ({rep})"
            )
    return notes


def _round_trip_table(
    results: dict[str, RoundTrip],
    direct: RoundTrip,
    small: list[str],
    failed: dict[str, str],
    n: int,
    repeat: int,
    problems: list[str],
    killed: list[int],
) -> Table:
    rows = []
    for case in [DIRECT, KERNEL_PROXY, *small]:
        r = results.get(case)
        if r is None:
            if case in failed:
                rows.append([case, "not measured", *[""] * 6, failed[case]])
            continue
        rows.append(
            [
                case,
                fmt_rate(r.timing.per_s),
                fmt_us(statistics.median(r.latencies) * 1e6),
                fmt_us(_percentile(r.latencies, 99) * 1e6),
                fmt_ratio(r.timing.us / direct.timing.us),
                f"{(r.timing.us - direct.timing.us):+.0f}",
                _us(r.server_cpu_us),
                _us(r.kernel_cpu_us),
                f"{r.writes:.2f}" if r.write_ms is not None else "",
            ]
        )
    notes = [
        "round trip vs direct: the median rep's time per execute over the direct one's "
        "(<1 = faster); µs added: the same, as a difference.",
        "server CPU: the sidecar process (time.process_time, every thread) or the proxy "
        "(/proc), per execute; kernel CPU: the kernel (/proc), per execute; writes: "
        "notebook writes per execute.",
        *noise_note([r.timing for r in results.values()]),
        *(f"warning: {p}" for p in problems),
        *([f"warning: killed processes left behind: {killed}"] if killed else []),
    ]
    return Table(
        f"Shared kernel round trip: sequential `{CODE}` from the floor client, direct or "
        f"through a server, one ipykernel for all (tcp; {repeat} reps x {n} executes per case, "
        f"in turns of {CHUNK}, round-robin; the document holds {SMALL} cells)",
        [
            "path",
            "executes/s",
            "median µs",
            "p99 µs",
            "round trip vs direct",
            "µs added",
            "server CPU µs",
            "kernel CPU µs",
            "writes",
        ],
        "<>>>>>>>>",
        rows,
        notes=notes,
    )


def _document_table(
    results: dict[str, RoundTrip],
    small: list[str],
    big: list[str],
    cells: int,
    failed: dict[str, str],
) -> Table:
    rows = []
    for at_small, at_big in zip(small, big, strict=True):
        s, b = results.get(at_small), results.get(at_big)
        if s is None or b is None:
            why = failed.get(at_small) or failed.get(at_big) or ""
            rows.append([at_small, "not measured", *[""] * 6, why])
            continue
        cpu_ratio = (
            "n/a"
            if not s.server_cpu_us or b.server_cpu_us is None
            else fmt_ratio(b.server_cpu_us / s.server_cpu_us)
        )
        rows.append(
            [
                at_small.removeprefix("sidecar (").replace("),", ","),
                fmt_us(s.timing.us),
                fmt_us(b.timing.us),
                fmt_ratio(b.timing.us / s.timing.us),
                _us(s.server_cpu_us),
                _us(b.server_cpu_us),
                cpu_ratio,
                "" if s.write_ms is None else f"{s.writes:.2f} / {b.writes:.2f}",
                ""
                if s.write_ms is None or b.write_ms is None
                else f"{s.write_ms:.1f} / {b.write_ms:.1f}",
            ]
        )
    return Table(
        f"Shared kernel: the document's cost per execute at {SMALL} and at {cells:,} cells "
        "(the same round-trip turns; ratio = at the big document / at the small one, "
        "1 = flat)",
        [
            "server",
            f"round trip µs, {SMALL}",
            f"{cells:,}",
            "ratio",
            f"server CPU µs, {SMALL}",
            f"{cells:,}",
            "ratio",
            "writes / execute",
            "ms / write",
        ],
        "<>>>>>>>>",
        rows,
        notes=[
            "the cells put in before each turn have three source lines and one stream "
            "output each; every execute adds a cell.",
            "writes / execute and ms / write: the notebook writes during the timed executes "
            f"(one writer coalesces executes that come faster than it writes), at {SMALL} / "
            f"at {cells:,} cells.",
        ],
    )


def _fanout_table(
    fans: dict[tuple[str, int], list[dict[str, Any]]],
    cases: list[str],
    displays: int,
    repeat: int,
    failed: dict[str, str],
) -> Table:
    rows = []
    figures = {key: _fan_figures(answers, displays) for key, answers in fans.items()}
    for subs in FANOUT:
        base = figures.get((DIRECT, subs))
        for case in cases:
            f = figures.get((case, subs))
            if f is None:
                continue
            cpu = f["server_cpu_us_per_message_per_frontend"]
            rows.append(
                [
                    case,
                    str(subs),
                    fmt_rate(f["messages_per_s_per_frontend"]),
                    "n/a"
                    if base is None
                    else fmt_ratio(
                        f["messages_per_s_per_frontend"] / base["messages_per_s_per_frontend"]
                    ),
                    f"{f['seconds']:.2f}",
                    str(f["lost_messages"]),
                    "" if cpu is None else f"{cpu:.1f}",
                    _us(f["kernel_cpu_us_per_message"]),
                ]
            )
    rows += [
        [case, "", "not measured", "", "", "", "", failed[case]]
        for case in (KERNEL_PROXY,)
        if case in failed
    ]
    return Table(
        f"Shared kernel iopub fan-out: one cell of {displays:,} displays read by 1, 4 and 16 "
        f"frontends (SUBs), direct or through a server ({repeat} reps, round-robin; medians)",
        [
            "path",
            "frontends",
            "msgs/s per frontend",
            "vs direct",
            "seconds",
            "lost",
            "server CPU µs / msg / frontend",
            "kernel CPU µs / msg",
        ],
        "<>>>>>>>",
        rows,
        notes=[
            "msgs/s per frontend: messages of the request a frontend got / seconds from the "
            "request sent to its idle, median frontend; seconds: until the last frontend's "
            f"idle; lost: messages missing over all frontends (each must get {displays + 3:,}), "
            "worst rep.",
            "server CPU: the sidecar process (every thread) or the proxy (/proc), per message "
            "per frontend.",
        ],
    )


if __name__ == "__main__":
    main()
