"""Iopub flood from a real ipykernel: 100,000 prints, and 5,000 display() calls, in one cell each.

Run ``python -m benchmarks.bench_flood`` (``--json``, ``--repeat``, ``--quick``).

Two cells, each one execute, timed from the request sent to the execute done
(reply and idle in), with every output collected the implementation's way and
checked by the parent:

- ``for i in range(100_000): print(i)``: ipykernel batches stdout, so this is a
  few large ``stream`` messages; the stdout text must be exactly
  ``"0\\n1\\n...99999\\n"`` (length and SHA-1);
- ``for i in range(5_000): display(i)``: 5,000 ``display_data`` messages; the
  count and the first and last ``text/plain`` must match.

Implementations (one worker process and one ipykernel each, bench_roundtrip's
design): the floor (raw pyzmq, HMAC, ``json``; a ``KernelManager`` kernel),
sidecar on asyncio and on trio (``kernel.execute(code, handlers=[Outputs()])``
on ``sidecar.launch``), and jupyter_client's ``AsyncKernelClient`` (the
hand-written loop, outputs built as nbformat dicts from iopub).  A round is one
execute of one cell per worker, the first worker rotating; the two cells
alternate; one untimed round of each first.

Both cells are bound by the kernel: ipykernel spends ~5 µs per print and
~0.5 ms per display, the client far less, so every client should take the same
time; the client CPU column shows what each one paid for the same outputs.
"""

from __future__ import annotations

import hashlib
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
from benchmarks._harness import Table, emit, environment, fmt_ratio, parse_args

DEFAULT_REPEAT = 5
PRINTS = 100_000
DISPLAYS = 5_000
QUICK_PRINTS = 20_000
QUICK_DISPLAYS = 1_000
TARGET = 1.05  # sidecar's seconds / the floor's, at most
IMPLS = (FLOOR, SIDECAR_ASYNCIO, SIDECAR_TRIO, JC_ASYNC)
OURS = (SIDECAR_ASYNCIO, SIDECAR_TRIO)


def main() -> None:
    args = parse_args(__doc__.split("\n")[0], default_repeat=DEFAULT_REPEAT)
    prints = QUICK_PRINTS if args.quick else PRINTS
    displays = QUICK_DISPLAYS if args.quick else DISPLAYS
    repeat = args.repeat
    text = "".join(f"{i}\n" for i in range(prints)).encode()
    cells = {
        f"{prints:,} print()": (
            f"for i in range({prints}): print(i)",
            {"displays": 0, "stdout_len": len(text), "stdout_sha1": hashlib.sha1(text).hexdigest()},
        ),
        f"{displays:,} display()": (
            f"from IPython.display import display\nfor i in range({displays}): display(i)",
            {"displays": displays, "first": "0", "last": str(displays - 1), "stdout_len": 0},
        ),
    }

    def checker(expected: dict[str, Any]) -> Any:
        def check(impl: str, answer: dict[str, Any]) -> None:
            wrong = {k: answer[k] for k, v in expected.items() if answer[k] != v}
            if wrong:
                raise SystemExit(f"{impl}: collected {wrong}, expected {expected}")

        return check

    started = time.perf_counter()
    answers: dict[str, dict[str, list[dict[str, Any]]]] = {title: {} for title in cells}
    with tempfile.TemporaryDirectory(prefix="bench-flood-") as tmp:
        configs = [ClientConfig(impl, target="ipykernel", warmup=20, scratch=tmp) for impl in IMPLS]
        fleet = Fleet(configs, Path(tmp))
        try:
            for i in range(1 + repeat):
                for title, (code, expected) in cells.items():
                    got = fleet.round({"op": "execute", "code": code}, 300.0)
                    check = checker(expected)
                    for impl, answer in got.items():
                        check(impl, answer)
                        if i:
                            answers[title].setdefault(impl, []).append(answer)
        finally:
            killed = fleet.close()
        failed = dict(fleet.failed)
    took = time.perf_counter() - started
    if FLOOR in failed:
        raise SystemExit(f"the floor failed: {failed[FLOOR]}")

    tables = []
    results: dict[str, Any] = {}
    targets = []
    for title, per_impl in answers.items():
        seconds = {impl: statistics.median(a["elapsed"] for a in r) for impl, r in per_impl.items()}
        cpu = {impl: statistics.median(a["cpu"] for a in r) for impl, r in per_impl.items()}
        floor, jc = seconds[FLOOR], seconds.get(JC_ASYNC)
        rows = []
        for impl in IMPLS:
            if impl not in seconds:
                rows.append([impl, "not measured", "", "", failed.get(impl, "")])
                continue
            rows.append(
                [
                    impl,
                    f"{seconds[impl]:.3f}",
                    f"{cpu[impl]:.3f}",
                    fmt_ratio(floor / seconds[impl]),
                    "n/a" if jc is None else fmt_ratio(jc / seconds[impl]),
                ]
            )
        notes = []
        for impl in OURS:
            if impl not in seconds:
                continue
            value = seconds[impl] / floor
            ok = value <= TARGET
            targets.append(
                {
                    "cell": title,
                    "implementation": impl,
                    "vs": FLOOR,
                    "target": f"seconds <= {TARGET}x the floor's",
                    "value": round(value, 3),
                    "pass": ok,
                }
            )
            notes.append(
                f"target: {impl}: {value:.3f}x the floor's seconds (<= {TARGET:g}x) "
                f"{'PASS' if ok else 'MISS'}"
            )
        notes.append(
            "seconds: request sent to reply and idle in, outputs collected (median); client CPU: "
            "the client process, all threads."
        )
        if killed:
            notes.append(f"warning: killed kernels the workers left behind: {killed}")
        tables.append(
            Table(
                f"Iopub flood, {title} in one cell, from ipykernel ({repeat} reps + 1 warm-up, "
                "round-robin; ratio = the column's seconds / this row's, >1 = faster)",
                ["implementation", "seconds", "client CPU s", "vs floor", "vs jc async"],
                "<>>>>",
                rows,
                notes=notes,
            )
        )
        results[title] = [
            {
                "implementation": impl,
                "seconds": round(seconds[impl], 4),
                "client_cpu_s": round(cpu[impl], 4),
                "reps_s": [round(a["elapsed"], 4) for a in per_impl[impl]],
                "vs_floor": round(floor / seconds[impl], 3),
                "vs_jupyter_client_async": None if jc is None else round(jc / seconds[impl], 3),
            }
            for impl in seconds
        ]
    emit(
        "flood",
        tables,
        {
            "environment": environment(
                "sidecar", "pyzmq", "jupyter_client", "ipykernel", "anyio", "trio", "msgspec"
            ),
            "config": {
                "prints": prints,
                "displays": displays,
                "repeat": repeat,
                "seconds": round(took, 1),
            },
            "results": results,
            "not_measured": failed,
            "targets": targets,
            "kernels_killed_at_exit": killed,
        },
        as_json=args.json,
    )


if __name__ == "__main__":
    main()
