"""Many kernels: 8 ipykernels driven at once from one client process, 500 ``pass`` executes each.

Run ``python -m benchmarks.bench_kernels`` (``--json``, ``--repeat``,
``--kernels``, ``--n``, ``--quick``).

Every implementation's worker process opens ``--kernels`` ipykernels (each
with its own IPython directory) and then, per rep, runs ``--n`` sequential
``pass`` executes on every kernel, all kernels at once: eight concurrent
request loops in one process.  Implementations:

floor
    **one** ``zmq.Poller`` over all 16 sockets (a DEALER for shell and a SUB
    for iopub per kernel, one ``zmq.Context``), a small state machine per
    kernel (bench_roundtrip's floor: HMAC-checked, ``json``-decoded headers,
    no replay check, no heartbeat); kernels from jupyter_client's
    ``KernelManager``.  One poller is the floor, not eight blocking clients
    in threads: threads would add GIL hand-offs the floor should not pay.
sidecar (asyncio), sidecar (trio)
    eight ``sidecar.launch`` kernels (the default: a zmq context, its I/O
    thread and a heartbeat each) and a task per kernel awaiting
    ``kernel.execute("pass")`` in a loop.
jupyter_client async
    eight ``AsyncKernelManager`` kernels, a task per kernel running
    bench_roundtrip's hand-written loop, ``asyncio.gather``-ed.

One rep runs the implementations one after another (round-robin, the first
rotating), so the kernels of one implementation never compete with another's;
one untimed rep first.  Reported: executes/s over all kernels, and the
client's CPU seconds (the process, every thread) per 1,000 messages: each
execute is 5 messages through the client (the request out; busy,
execute_input, the reply and idle in).  With 8 kernels on 2 cores the kernels
saturate the CPU, so executes/s mostly measures the kernels; the CPU column is
the client's own cost, and the target is on it.
"""

from __future__ import annotations

import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks._clients import (
    FLOOR,
    JC_ASYNC,
    SIDECAR_ASYNCIO,
    SIDECAR_TRIO,
    ClientConfig,
    Fleet,
)
from benchmarks._harness import Table, emit, environment, fmt_rate, fmt_ratio, parse_args

DEFAULT_REPEAT = 3
DEFAULT_KERNELS = 8
DEFAULT_N = 500
MESSAGES_PER_EXECUTE = 5
TARGET = 1.3  # sidecar's client CPU per message / the floor's, at most
IMPLS = (FLOOR, SIDECAR_ASYNCIO, SIDECAR_TRIO, JC_ASYNC)
OURS = (SIDECAR_ASYNCIO, SIDECAR_TRIO)


def _add_arguments(parser: Any) -> None:
    parser.add_argument("--kernels", type=int, default=DEFAULT_KERNELS, help="kernels at once")
    parser.add_argument("--n", type=int, default=DEFAULT_N, help="executes per kernel per rep")


def main() -> None:
    args = parse_args(
        __doc__.split("\n")[0], default_repeat=DEFAULT_REPEAT, add_arguments=_add_arguments
    )
    kernels, n, repeat = args.kernels, args.n, args.repeat
    if args.quick:
        kernels, n, repeat = min(kernels, 4), min(n, 100), min(repeat, 2)
    executes = kernels * n
    messages = executes * MESSAGES_PER_EXECUTE

    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="bench-kernels-") as tmp:
        configs = [
            ClientConfig(impl, target="ipykernel", kernels=kernels, warmup=10, scratch=tmp)
            for impl in IMPLS
        ]
        fleet = Fleet(configs, Path(tmp), start_timeout=60.0 * kernels)
        try:
            timed = fleet.rounds({"op": "many", "n": n}, repeat, warmup=1, timeout=600.0)
        finally:
            killed = fleet.close()
        failed = dict(fleet.failed)
    took = time.perf_counter() - started
    if FLOOR not in timed:
        raise SystemExit(f"the floor failed: {failed.get(FLOOR)}")

    rate = {
        impl: executes / statistics.median(a["elapsed"] for a in r) for impl, r in timed.items()
    }
    cpu_k = {
        impl: statistics.median(a["cpu"] for a in r) / messages * 1000 for impl, r in timed.items()
    }
    floor_cpu, floor_rate = cpu_k[FLOOR], rate[FLOOR]
    jc_cpu = cpu_k.get(JC_ASYNC)
    rows = []
    for impl in IMPLS:
        if impl not in rate:
            rows.append([impl, "not measured", "", "", "", failed.get(impl, "")])
            continue
        rows.append(
            [
                impl,
                fmt_rate(rate[impl]),
                f"{cpu_k[impl] * 1000:.1f}",
                fmt_ratio(rate[impl] / floor_rate),
                fmt_ratio(floor_cpu / cpu_k[impl]),
                "n/a" if jc_cpu is None else fmt_ratio(jc_cpu / cpu_k[impl]),
            ]
        )
    targets, notes = [], []
    for impl in OURS:
        if impl not in cpu_k:
            continue
        value = cpu_k[impl] / floor_cpu
        ok = value <= TARGET
        targets.append(
            {
                "implementation": impl,
                "vs": FLOOR,
                "target": f"client CPU per message <= {TARGET}x the floor's",
                "value": round(value, 3),
                "pass": ok,
            }
        )
        notes.append(
            f"target: {impl}: client CPU per 1,000 messages {value:.2f}x the floor's "
            f"(<= {TARGET:g}x) {'PASS' if ok else 'MISS'}"
        )
    notes.append(
        f"client CPU ms / 1k msgs: the client process (all threads: libzmq I/O and, for sidecar "
        f"and jupyter_client, heartbeat threads), median rep, per 1,000 messages "
        f"({MESSAGES_PER_EXECUTE} per execute)."
    )
    if killed:
        notes.append(f"warning: killed kernels the workers left behind: {killed}")
    table = Table(
        f"Many kernels: {kernels} ipykernels at once, {n} sequential `pass` executes each "
        f"({repeat} reps + 1 warm-up, round-robin; ratios >1 = better than the column's)",
        [
            "implementation",
            "executes/s",
            "client CPU ms / 1k msgs",
            "throughput vs floor",
            "CPU vs floor",
            "CPU vs jc async",
        ],
        "<>>>>>",
        rows,
        notes=notes,
    )
    emit(
        "kernels",
        [table],
        {
            "environment": environment(
                "sidecar", "pyzmq", "jupyter_client", "ipykernel", "anyio", "trio", "msgspec"
            ),
            "config": {
                "kernels": kernels,
                "executes_per_kernel": n,
                "repeat": repeat,
                "messages_per_execute": MESSAGES_PER_EXECUTE,
                "seconds": round(took, 1),
            },
            "results": [
                {
                    "implementation": impl,
                    "executes_per_s": round(rate[impl], 1),
                    "client_cpu_ms_per_1000_messages": round(cpu_k[impl] * 1000, 3),
                    "reps_s": [round(a["elapsed"], 3) for a in timed[impl]],
                    "reps_cpu_s": [round(a["cpu"], 3) for a in timed[impl]],
                    "throughput_vs_floor": round(rate[impl] / floor_rate, 3),
                    "cpu_vs_floor": round(floor_cpu / cpu_k[impl], 3),
                    "cpu_vs_jupyter_client_async": None
                    if jc_cpu is None
                    else round(jc_cpu / cpu_k[impl], 3),
                }
                for impl in rate
            ],
            "not_measured": failed,
            "targets": targets,
            "kernels_killed_at_exit": killed,
        },
        as_json=args.json,
    )


if __name__ == "__main__":
    main()
