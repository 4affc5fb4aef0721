"""Start-up: from "launch a kernel" to its first kernel_info reply in hand.

Run ``python -m benchmarks.bench_startup`` (``--json``, ``--repeat``, ``--quick``).

Each implementation runs in its own worker process (imports done, untimed);
one rep launches a fresh ``python3`` ipykernel, stops the clock when the
client has the kernel's first kernel_info reply (and whatever else it waits
for before it calls a kernel ready), then shuts the kernel down, untimed.
Reps are round-robin, one worker at a time, the first rotating, after one
untimed rep each.

sidecar (asyncio), sidecar (trio)
    ``async with sidecar.launch("python3")`` until the block is entered:
    kernelspec lookup, connection file, spawn, sockets, the kernel_info reply,
    iopub proven live and stdin/control handshakes done.
jupyter_client KernelManager
    ``KernelManager.start_kernel()`` then ``client()``, ``start_channels()``
    and ``wait_for_ready()``; jupyter_client async is ``AsyncKernelManager``
    and ``AsyncKernelClient`` the same way.  ``wait_for_ready`` also proves
    iopub live, then drains iopub until it has been quiet for 0.2 s.
floor: Popen + raw kernel_info
    a hand-written IPC connection file, ``subprocess.Popen`` of
    ``python -m ipykernel_launcher -f``, one DEALER (10 ms reconnect interval,
    as sidecar's) sending one ``kernel_info_request`` and waiting for the
    reply: no kernelspec, no iopub, no readiness proof.  What the kernel
    itself costs to start.
"""

from __future__ import annotations

import statistics
import tempfile
import time
from pathlib import Path

from benchmarks._clients import (
    FLOOR,
    JC_ASYNC,
    JC_BLOCKING,
    SIDECAR_ASYNCIO,
    SIDECAR_TRIO,
    ClientConfig,
    Fleet,
)
from benchmarks._harness import Table, emit, environment, fmt_ratio, parse_args

DEFAULT_REPEAT = 5
TARGET = 0.7  # sidecar's seconds / jupyter_client KernelManager's, at most
IMPLS = (FLOOR, SIDECAR_ASYNCIO, SIDECAR_TRIO, JC_BLOCKING, JC_ASYNC)
LABELS = {
    FLOOR: "floor: Popen + raw kernel_info",
    JC_BLOCKING: "jupyter_client KernelManager",
    JC_ASYNC: "jupyter_client AsyncKernelManager",
}
OURS = (SIDECAR_ASYNCIO, SIDECAR_TRIO)


def main() -> None:
    args = parse_args(__doc__.split("\n")[0], default_repeat=DEFAULT_REPEAT)
    repeat = args.repeat
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="bench-startup-") as tmp:
        configs = [ClientConfig(impl, target="none", warmup=0, scratch=tmp) for impl in IMPLS]
        fleet = Fleet(configs, Path(tmp))
        try:
            timed = fleet.rounds({"op": "startup"}, repeat, warmup=1, timeout=120.0)
        finally:
            killed = fleet.close()
        failed = dict(fleet.failed)
    took = time.perf_counter() - started
    if JC_BLOCKING not in timed:
        raise SystemExit(f"jupyter_client KernelManager failed: {failed.get(JC_BLOCKING)}")

    seconds = {impl: statistics.median(a["elapsed"] for a in r) for impl, r in timed.items()}
    jc, floor = seconds[JC_BLOCKING], seconds.get(FLOOR)
    rows = []
    for impl in IMPLS:
        label = LABELS.get(impl, impl)
        if impl not in seconds:
            rows.append([label, "not measured", "", "", "", failed.get(impl, "")])
            continue
        reps = [a["elapsed"] for a in timed[impl]]
        rows.append(
            [
                label,
                f"{seconds[impl]:.3f}",
                f"{min(reps):.3f}-{max(reps):.3f}",
                "n/a" if floor is None else f"{seconds[impl] - floor:+.3f}",
                fmt_ratio(jc / seconds[impl]),
                "n/a" if floor is None else fmt_ratio(floor / seconds[impl]),
            ]
        )
    targets, notes = [], []
    for impl in OURS:
        if impl not in seconds:
            continue
        value = seconds[impl] / jc
        ok = value <= TARGET
        targets.append(
            {
                "implementation": impl,
                "vs": JC_BLOCKING,
                "target": f"seconds <= {TARGET}x jupyter_client KernelManager's",
                "value": round(value, 3),
                "pass": ok,
            }
        )
        notes.append(
            f"target: {impl}: {value:.2f}x jupyter_client KernelManager's time (<= {TARGET:g}x) "
            f"{'PASS' if ok else 'MISS'}"
        )
    if killed:
        notes.append(f"warning: killed kernels the workers left behind: {killed}")
    table = Table(
        f"Start-up: launch to first kernel_info reply, python3 ipykernel ({repeat} reps + 1 "
        "warm-up, round-robin; ratio = the column's seconds / this row's, >1 = faster)",
        ["implementation", "seconds", "range", "over floor s", "vs KernelManager", "vs floor"],
        "<>>>>>",
        rows,
        notes=notes,
    )
    emit(
        "startup",
        [table],
        {
            "environment": environment("sidecar", "pyzmq", "jupyter_client", "ipykernel"),
            "config": {"repeat": repeat, "seconds": round(took, 1)},
            "results": [
                {
                    "implementation": LABELS.get(impl, impl),
                    "seconds": round(seconds[impl], 4),
                    "reps_s": [round(a["elapsed"], 4) for a in timed[impl]],
                    "vs_kernel_manager": round(jc / seconds[impl], 3),
                    "vs_floor": None if floor is None else round(floor / seconds[impl], 3),
                }
                for impl in seconds
            ],
            "not_measured": failed,
            "targets": targets,
            "kernels_killed_at_exit": killed,
        },
        as_json=args.json,
    )


if __name__ == "__main__":
    main()
