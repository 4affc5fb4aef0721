"""Memory: the client's RSS over 100,000 ``pass`` executes, and over repeated ingest floods.

Run ``python -m benchmarks.bench_memory`` (``--json``, ``--n``, ``--seconds``,
``--floods``, ``--flood-n``, ``--quick``).

A client that keeps something per request (a routing entry, a handler, a
signature) grows with the number of requests; one that bounds what it keeps
levels off.  Each implementation runs in its own worker process against its
own :mod:`benchmarks._flood_kernel`, which answers an execute with busy,
``execute_input``, the reply and idle in microseconds: a real ipykernel
spends ~1.5 ms per ``pass``, so 100,000 of them would take minutes, and the
client's memory depends on the messages, not on who sends them.

Executes
    ``--n`` sequential ``kernel.execute("pass")`` (no output collector; the
    other implementations their equivalent, as in bench_roundtrip), all
    workers at once (memory does not mind sharing the CPU), each stopping
    early after ``--seconds``.  RSS (``VmRSS``) at checkpoints; the peak
    (``ru_maxrss``) at the end.  Replay guards fill up first (sidecar's and
    jupyter_client's remember the last 65,536 signatures: about 16,000
    executes of 4 messages), so "flat" compares the RSS after the last
    execute with the RSS at 25,000: at most 5% more.
Floods
    then ``--floods`` executes answered by ``--flood-n`` display_data each,
    collected as outputs (as in bench_ingest) and dropped, one worker at a
    time; the RSS after each.  "Flat": the RSS after the last flood within
    10% of the RSS after the first.
"""

from __future__ import annotations

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
from benchmarks._harness import Table, emit, environment, parse_args

DEFAULT_N = 100_000
DEFAULT_SECONDS = 75.0
DEFAULT_FLOODS = 4
DEFAULT_FLOOD_N = 50_000
CHECKPOINTS = (1_000, 10_000, 25_000, 50_000, 75_000, 100_000)
SETTLED = 25_000
FLAT_EXECUTES = 1.05
FLAT_FLOODS = 1.10
IMPLS = (FLOOR, SIDECAR_ASYNCIO, SIDECAR_TRIO, JC_ASYNC)
OURS = (SIDECAR_ASYNCIO, SIDECAR_TRIO)


def _add_arguments(parser: Any) -> None:
    parser.add_argument("--n", type=int, default=DEFAULT_N, help="pass executes per client")
    parser.add_argument(
        "--seconds", type=float, default=DEFAULT_SECONDS, help="stop the executes after this"
    )
    parser.add_argument("--floods", type=int, default=DEFAULT_FLOODS, help="floods per client")
    parser.add_argument("--flood-n", type=int, default=DEFAULT_FLOOD_N, help="displays per flood")


def _mb(kb: float) -> str:
    return f"{kb / 1024:.1f}"


def main() -> None:
    args = parse_args(__doc__.split("\n")[0], default_repeat=1, add_arguments=_add_arguments)
    n, seconds, floods, flood_n = args.n, args.seconds, args.floods, args.flood_n
    if args.quick:
        n, seconds, floods, flood_n = min(n, 30_000), min(seconds, 30.0), 2, 10_000
    checkpoints = [c for c in CHECKPOINTS if c < n] + [n]

    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="bench-memory-") as tmp:
        configs = [
            ClientConfig(impl, target="flood", flood_n=flood_n, warmup=5, scratch=tmp)
            for impl in IMPLS
        ]
        fleet = Fleet(configs, Path(tmp))
        try:
            ready = dict(fleet.ready)
            loops = fleet.broadcast(
                {"op": "loop", "n": n, "checkpoints": checkpoints, "seconds": seconds},
                timeout=seconds + 120.0,
            )
            flood_rss: dict[str, list[int]] = {impl: [] for impl in fleet.impls}
            flood_peak: dict[str, int] = {}
            for _ in range(floods):
                for impl, answer in fleet.round({"op": "execute", "code": "flood"}, 300.0).items():
                    if answer["displays"] != flood_n:
                        raise SystemExit(f"{impl}: {answer['displays']} displays of {flood_n}")
                    flood_rss[impl].append(answer["rss_kb"])
                    flood_peak[impl] = answer["peak_kb"]
        finally:
            killed = fleet.close()
        failed = dict(fleet.failed)
    took = time.perf_counter() - started

    shown = [c for c in (1_000, 10_000, SETTLED, 50_000) if c < n]
    rows, notes, targets, results = [], [], [], []
    for impl in IMPLS:
        if impl not in loops:
            rows.append([impl, "not measured", *[""] * (len(shown) + 4), failed.get(impl, "")])
            continue
        loop = loops[impl]
        at = {c: kb for c, kb, _ in loop["rss"]}
        done = loop["executes"]
        last = loop["rss"][-1][1]
        peak = max(max(kb, top) for _, kb, top in loop["rss"])
        base = at.get(SETTLED)
        growth = None if base is None or done <= SETTLED else last / base
        rows.append(
            [
                impl,
                f"{done:,}",
                _mb(ready[impl]["rss_kb"]),
                *[_mb(at[c]) if c in at else "-" for c in shown],
                _mb(last),
                _mb(peak),
                "n/a" if growth is None else f"{(growth - 1) * 100:+.1f}%",
            ]
        )
        results.append(
            {
                "implementation": impl,
                "executes": done,
                "executes_per_s": round(done / loop["elapsed"], 1),
                "rss_ready_kb": ready[impl]["rss_kb"],
                "rss_kb_at": {str(c): kb for c, kb, _ in loop["rss"]},
                "peak_rss_kb": peak,
                "growth_after_settled": None if growth is None else round(growth, 4),
                "rss_after_floods_kb": flood_rss.get(impl, []),
                "peak_rss_after_floods_kb": flood_peak.get(impl),
            }
        )
        if impl in OURS:
            if growth is None:
                notes.append(f"target: {impl}: flat over executes: not enough executes to tell")
            else:
                ok = growth <= FLAT_EXECUTES
                targets.append(
                    {
                        "implementation": impl,
                        "what": f"RSS after {done:,} executes / at {SETTLED:,}",
                        "value": round(growth, 4),
                        "pass": ok,
                    }
                )
                notes.append(
                    f"target: {impl}: RSS after {done:,} executes {growth:.3f}x the RSS at "
                    f"{SETTLED:,} (<= {FLAT_EXECUTES:g}x) {'PASS' if ok else 'MISS'}"
                )
    stopped = [r["implementation"] for r in results if r["executes"] < n]
    if stopped:
        notes.append(f"stopped after {seconds:g} s before {n:,} executes: {', '.join(stopped)}")
    notes.append(
        "RSS in MB (VmRSS) when ready, after that many executes and after the last; "
        "peak = ru_maxrss; "
        f"growth = RSS after the last execute vs at {SETTLED:,}."
    )
    tables = [
        Table(
            f"Memory over sequential `pass` executes (against a flood kernel; up to {n:,} "
            f"executes or {seconds:g} s per client, all clients at once)",
            [
                "implementation",
                "executes",
                "ready",
                *[f"{c // 1000}k" for c in shown],
                "last",
                "peak",
                f"growth after {SETTLED // 1000}k",
            ],
            "<" + ">" * (len(shown) + 5),
            rows,
            notes=notes,
        )
    ]

    rows, notes = [], []
    for impl in IMPLS:
        rss = flood_rss.get(impl) if impl in loops else None
        if not rss:
            rows.append([impl, "not measured", *[""] * floods, failed.get(impl, "")])
            continue
        growth = rss[-1] / rss[0]
        peak = max(flood_peak[impl], *rss)
        rows.append([impl, *[_mb(kb) for kb in rss], _mb(peak), f"{(growth - 1) * 100:+.1f}%"])
        if impl in OURS:
            ok = growth <= FLAT_FLOODS
            targets.append(
                {
                    "implementation": impl,
                    "what": f"RSS after flood {floods} / after flood 1",
                    "value": round(growth, 4),
                    "pass": ok,
                }
            )
            notes.append(
                f"target: {impl}: RSS after flood {floods} {growth:.2f}x the RSS after flood 1 "
                f"(<= {FLAT_FLOODS:g}x) {'PASS' if ok else 'MISS'}"
            )
    notes.append(
        "RSS in MB after each flood (outputs collected, then dropped by the benchmark); "
        "peak = ru_maxrss over the whole run."
    )
    if killed:
        notes.append(f"warning: killed kernels the workers left behind: {killed}")
    tables.append(
        Table(
            f"Memory over ingest floods ({floods} floods of {flood_n:,} display_data, one "
            "client at a time)",
            ["implementation", *[f"flood {i + 1}" for i in range(floods)], "peak", "growth"],
            "<" + ">" * (floods + 2),
            rows,
            notes=notes,
        )
    )
    emit(
        "memory",
        tables,
        {
            "environment": environment("sidecar", "pyzmq", "jupyter_client", "anyio", "trio"),
            "config": {
                "n": n,
                "seconds_limit": seconds,
                "floods": floods,
                "flood_n": flood_n,
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
