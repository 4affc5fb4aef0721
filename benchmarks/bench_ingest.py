"""Ingest: how fast a client takes in an iopub flood from a kernel that is never the bottleneck.

Run ``python -m benchmarks.bench_ingest`` (``--json``, ``--n``, ``--repeat``,
``--quick``, ``--no-kernel-sidecar``).

The kernel is :mod:`benchmarks._flood_kernel`, a protocol-speaking load
generator (one per client, in its own process): asked to execute ``flood`` it
signs ``--n`` ``display_data`` messages (parent = the request) before it says
busy, then sends busy, ``execute_input``, the displays, ``execute_reply`` and
idle in a tight loop, about ten times faster than the fastest client here takes
them in.  The time of one flood is from the moment the generator sent busy
(``time.perf_counter`` is CLOCK_MONOTONIC, the same clock in every process) to
the moment the client's execute is done, with every display verified, decoded,
routed to the request and collected as an nbformat output: ``sidecar.Outputs``
for sidecar, nbformat dicts built from the content for the others,
kernel-sidecar's ``OutputHandler`` for kernel-sidecar.  The parent checks every
flood's count and first and last value.

Implementations, one worker process each (``bench_roundtrip``'s design: own
interpreter, interleaved turns, one worker timed at a time): the floor (raw
pyzmq SUB + DEALER, HMAC check, ``json.loads`` of header, parent and content,
draining the socket while ``EVENTS`` says readable), sidecar on asyncio and on
trio (``kernel.execute("flood", handlers=[Outputs()])`` after
``sidecar.connect``), jupyter_client's ``AsyncKernelClient`` (the hand-written
loop: ``get_shell_msg`` for the reply, ``get_iopub_msg`` until idle), and
kernel-sidecar 1.0 from its own virtualenv.  A round is one flood per worker,
the first worker rotating; one untimed round first, then ``--repeat`` timed.

Reported: messages/s (median flood), the client's CPU seconds per flood (all
threads, libzmq's I/O thread included) and per message, and memory: the RSS
when ready, after the first (warm-up) flood and after the last one, and the peak.
"Flat" means the RSS after the last flood is within 10% of the RSS after the
first: a client that keeps something per flood grows with every one.
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
from benchmarks._peers import KERNEL_SIDECAR, kernel_sidecar_python

DEFAULT_N = 50_000
DEFAULT_REPEAT = 3
QUICK_N = 10_000
TARGET_FLOOR = 0.8
TARGET_PEERS = 4.0
FLAT = 1.10
OURS = (SIDECAR_ASYNCIO, SIDECAR_TRIO)


def _add_arguments(parser: Any) -> None:
    parser.add_argument("--n", type=int, default=DEFAULT_N, help="display_data per flood")
    parser.add_argument(
        "--no-kernel-sidecar", action="store_true", help="do not install or run kernel-sidecar"
    )


def _mb(kb: float) -> str:
    return f"{kb / 1024:.0f}"


def main() -> None:
    args = parse_args(
        __doc__.split("\n")[0], default_repeat=DEFAULT_REPEAT, add_arguments=_add_arguments
    )
    n = QUICK_N if args.quick else args.n
    repeat = args.repeat
    ks_python, ks_note = (None, "skipped (--no-kernel-sidecar)")
    if not args.no_kernel_sidecar:
        ks_python, ks_note = kernel_sidecar_python()
    impls = [FLOOR, SIDECAR_ASYNCIO, SIDECAR_TRIO, JC_ASYNC]
    pythons = {}
    if ks_python is not None:
        impls.append(KERNEL_SIDECAR)
        pythons[KERNEL_SIDECAR] = ks_python

    def check(impl: str, answer: dict[str, Any]) -> None:
        got = (answer["displays"], answer["first"], answer["last"])
        if got != (n, "0", str(n - 1)):
            raise SystemExit(f"{impl}: collected {got}, expected {(n, '0', str(n - 1))}")

    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="bench-ingest-") as tmp:
        scratch = Path(tmp)
        configs = [
            ClientConfig(impl, target="flood", flood_n=n, warmup=5, scratch=tmp) for impl in impls
        ]
        fleet = Fleet(configs, scratch, pythons=pythons)
        try:
            first = fleet.rounds({"op": "execute", "code": "flood"}, 1, check=check)
            timed = fleet.rounds({"op": "execute", "code": "flood"}, repeat, check=check)
        finally:
            killed = fleet.close()
        failed = dict(fleet.failed)
        ready = fleet.ready
    took = time.perf_counter() - started
    if KERNEL_SIDECAR not in impls:
        failed[KERNEL_SIDECAR] = ks_note

    results: dict[str, dict[str, Any]] = {}
    for impl, answers in timed.items():
        if not answers or impl not in first:
            continue
        rates = [n / (a["done_at"] - a["gen"]["busy_sent"]) for a in answers]
        gen_rates = [n / (a["gen"]["last_sent"] - a["gen"]["busy_sent"]) for a in answers]
        cpu = statistics.median(a["cpu"] for a in answers)
        results[impl] = {
            "messages_per_s": statistics.median(rates),
            "rates": rates,
            "cpu_s": cpu,
            "cpu_us_per_message": cpu / n * 1e6,
            "rss_ready_kb": ready[impl]["rss_kb"],
            "rss_after_first_kb": first[impl][0]["rss_kb"],
            "rss_after_last_kb": answers[-1]["rss_kb"],
            "peak_rss_kb": max(a["peak_kb"] for a in answers),
            "generator_messages_per_s": statistics.median(gen_rates),
        }
    for r in results.values():
        r["flat"] = r["rss_after_last_kb"] <= FLAT * r["rss_after_first_kb"]

    def rate(impl: str) -> float | None:
        return results[impl]["messages_per_s"] if impl in results else None

    def ratio(impl: str, peer: str) -> str:
        a, b = rate(impl), rate(peer)
        return "n/a" if a is None or b is None else fmt_ratio(a / b)

    rows = []
    for impl in impls + [i for i in failed if i not in impls]:
        if impl in results:
            r = results[impl]
            rows.append(
                [
                    impl,
                    fmt_rate(r["messages_per_s"]),
                    f"{r['cpu_s']:.2f}",
                    f"{r['cpu_us_per_message']:.1f}",
                    _mb(r["rss_ready_kb"]),
                    _mb(r["rss_after_first_kb"]),
                    _mb(r["rss_after_last_kb"]),
                    _mb(r["peak_rss_kb"]),
                    ratio(impl, FLOOR),
                    ratio(impl, JC_ASYNC),
                    ratio(impl, KERNEL_SIDECAR),
                ]
            )
        else:
            reason = failed.get(impl, "no result")
            rows.append([impl, "not measured", "", "", "", "", "", "", "", "", reason])

    targets = []
    notes = []
    for impl in OURS:
        if impl not in results:
            continue
        checks = [("floor", FLOOR, TARGET_FLOOR), ("jc async", JC_ASYNC, TARGET_PEERS)]
        checks.append(("kernel-sidecar", KERNEL_SIDECAR, TARGET_PEERS))
        for label, peer, target in checks:
            got = rate(peer)
            if got is None:
                notes.append(f"target: {impl} >= {target:g}x {label}: not measured")
                continue
            value = results[impl]["messages_per_s"] / got
            targets.append(
                {
                    "implementation": impl,
                    "vs": peer,
                    "target": target,
                    "value": round(value, 3),
                    "pass": value >= target,
                }
            )
            notes.append(
                f"target: {impl}: {value:.2f}x {label}'s messages/s (>= {target:g}x) "
                f"{'PASS' if value >= target else 'MISS'}"
            )
        flat = results[impl]["flat"]
        growth = results[impl]["rss_after_last_kb"] / results[impl]["rss_after_first_kb"]
        targets.append(
            {"implementation": impl, "vs": "memory flat", "value": round(growth, 3), "pass": flat}
        )
        notes.append(
            f"target: {impl}: memory flat (RSS after the last flood / after the first "
            f"= {growth:.2f}, <= {FLAT:g}) {'PASS' if flat else 'MISS'}"
        )
    if results:
        slowest_gen = min(r["generator_messages_per_s"] for r in results.values())
        notes.append(
            f"the flood kernel sent at >= {fmt_rate(slowest_gen)} messages/s (median flood): "
            "faster than any client took them in."
        )
    notes.append(
        "CPU: the client process, all threads (libzmq's I/O thread included), median flood. "
        f"RSS in MB: when ready, after the warm-up flood, after the last of {repeat + 1} floods, "
        "and the peak."
    )
    if killed:
        notes.append(f"warning: killed kernels the workers left behind: {killed}")
    table = Table(
        f"Ingest: one execute answered by {n:,} display_data from a flood kernel, collected as "
        f"outputs ({repeat} reps + 1 warm-up, round-robin; ratio = messages/s over the column's, "
        ">1 = faster)",
        [
            "implementation",
            "messages/s",
            "CPU s",
            "CPU µs/msg",
            "RSS ready",
            "RSS flood 1",
            "RSS last",
            "peak RSS",
            "vs floor",
            "vs jc async",
            "vs kernel-sidecar",
        ],
        "<>>>>>>>>>>",
        rows,
        notes=notes,
    )
    emit(
        "ingest",
        [table],
        {
            "environment": environment(
                "sidecar", "pyzmq", "jupyter_client", "anyio", "trio", "msgspec"
            )
            | {"kernel-sidecar": ks_note if ks_python else None},
            "config": {"n": n, "repeat": repeat, "warmup_floods": 1, "seconds": round(took, 1)},
            "results": [
                {"implementation": impl, **{k: _round(v) for k, v in r.items()}}
                for impl, r in results.items()
            ],
            "not_measured": failed,
            "targets": targets,
            "kernels_killed_at_exit": killed,
        },
        as_json=args.json,
    )


def _round(value: Any) -> Any:
    if isinstance(value, float):
        return round(value, 3)
    if isinstance(value, list):
        return [_round(v) for v in value]
    return value


if __name__ == "__main__":
    main()
