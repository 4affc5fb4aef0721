"""Draw the ratios of one ``python -m benchmarks --json`` run as one PNG.

Usage::

    python -m benchmarks --json > results.json
    python -m benchmarks.chart results.json            # docs/images/benchmarks.png
    python -m benchmarks.chart results.json -o out.png

Every bar is sidecar against one peer, oriented so that **> 1 means sidecar
is better** (faster, less CPU, less memory), on a log scale: for rates it is
ours / theirs, for times, CPU and memory theirs / ours.  sidecar on asyncio
and on trio get a bar each where a benchmark runs both.  Needs matplotlib (the
``bench`` extra); not a benchmark itself (``python -m benchmarks`` runs only
``bench_*`` modules).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
DEFAULT_OUT = HERE.parent / "docs" / "images" / "benchmarks.png"
ASYNCIO, TRIO = "sidecar (asyncio)", "sidecar (trio)"
OURS = (ASYNCIO, TRIO)
SHORT = {
    "floor: pyzmq + hmac + json": "floor",
    "jupyter_client async": "jc async",
    "jupyter_client blocking": "jc blocking",
    "kernel-sidecar 1.0": "kernel-sidecar",
    "floor: Popen + raw kernel_info": "floor",
    "jupyter_client KernelManager": "jc KernelManager",
    "jupyter_client AsyncKernelManager": "jc AsyncKernelManager",
}

DEFAULT_TITLE = "sidecar vs its peers, one run of python -m benchmarks"

Bar = tuple[str, str, dict[str, float]]  # group, label, {variant: ratio}


def _by_impl(rows: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {r["implementation"]: r for r in rows}


def _vs_peers(
    group: str, what: str, rows: dict[str, dict[str, Any]], key: str, higher_is_better: bool
) -> Iterator[Bar]:
    for peer, row in rows.items():
        if peer in OURS or row.get(key) in (None, 0):
            continue
        ratios = {}
        for ours in OURS:
            if ours in rows and rows[ours].get(key):
                a, b = rows[ours][key], row[key]
                ratios[ours] = a / b if higher_is_better else b / a
        if ratios:
            yield group, f"{what} vs {SHORT.get(peer, peer)}", ratios


def bars(results: dict[str, Any]) -> list[Bar]:
    """Every finite ratio the chart shows, benchmark by benchmark."""
    return [b for b in _bars(results) if all(math.isfinite(v) for v in b[2].values())]


def _bars(results: dict[str, Any]) -> list[Bar]:
    out: list[Bar] = []
    if "bench_roundtrip" in results:
        rows = _by_impl(results["bench_roundtrip"]["results"])
        out += _vs_peers("round trip", "executes/s", rows, "executes_per_s", True)
    if "bench_flood" in results:
        for cell, cell_rows in results["bench_flood"]["results"].items():
            out += _vs_peers("iopub flood", cell, _by_impl(cell_rows), "seconds", False)
    if "bench_ingest" in results:
        rows = _by_impl(results["bench_ingest"]["results"])
        out += _vs_peers("ingest", "messages/s", rows, "messages_per_s", True)
        out += _vs_peers("ingest", "peak RSS", rows, "peak_rss_kb", False)
    if "bench_kernels" in results:
        rows = _by_impl(results["bench_kernels"]["results"])
        out += _vs_peers("8 kernels", "client CPU", rows, "client_cpu_ms_per_1000_messages", False)
    if "bench_startup" in results:
        rows = _by_impl(results["bench_startup"]["results"])
        out += _vs_peers("start-up", "time", rows, "seconds", False)
    if "bench_memory" in results:
        rows = _by_impl(results["bench_memory"]["results"])
        out += _vs_peers("memory", "peak RSS, executes", rows, "peak_rss_kb", False)
    if "bench_wire" in results:
        for r in results["bench_wire"]["results"]:
            if r["implementation"] == "jupyter_client":
                label = f"{r['operation']} {r['message']} vs jupyter_client"
                out.append(("wire codec", label, {"sidecar": r["ratio_vs_reference"]}))
    if "bench_notebooks" in results:
        data = results["bench_notebooks"]
        for title, per_impl in data.items():
            if not isinstance(per_impl, dict) or "nbclient" not in per_impl:
                continue
            for peer in ("nbclient", "papermill"):
                if peer not in per_impl:
                    continue
                ratios = {
                    ours: per_impl[peer]["median_s"] / per_impl[ours]["median_s"]
                    for ours in OURS
                    if ours in per_impl
                }
                out.append(("notebooks", f"{title} vs {peer}", ratios))
    return out


def draw(all_bars: list[Bar], out: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    colors = {ASYNCIO: "#1f77b4", TRIO: "#ff7f0e", "sidecar": "#2ca02c"}
    rows: list[tuple[str, str, dict[str, float]]] = []
    group_starts: list[tuple[int, str]] = []
    last_group = None
    for group, label, ratios in all_bars:
        if group != last_group:
            group_starts.append((len(rows), group))
            last_group = group
        rows.append((group, label, ratios))
    height = 0.38
    fig, ax = plt.subplots(figsize=(11, 0.36 * len(rows) + 1.6))
    values = [v for _, _, r in rows for v in r.values()]
    for i, (_, _, ratios) in enumerate(rows):
        keys = list(ratios)
        for j, key in enumerate(keys):
            offset = (j - (len(keys) - 1) / 2) * height
            value = ratios[key]
            ax.barh(i + offset, value, height=height, color=colors[key], left=0)
            ax.text(
                value * 1.02,
                i + offset,
                f"{value:.2f}x",
                va="center",
                fontsize=7,
            )
    ax.set_xscale("log")
    low = min([*values, 1.0]) / 1.3
    high = max([*values, 1.0]) * 1.6
    ax.set_xlim(low, high)
    ax.axvline(1.0, color="black", linewidth=0.8)
    ax.set_yticks(range(len(rows)))
    ax.set_yticklabels([label for _, label, _ in rows], fontsize=8)
    ax.invert_yaxis()
    for start, group in group_starts:
        if start:
            ax.axhline(start - 0.5, color="#bbbbbb", linewidth=0.6)
        ax.text(
            high,
            start - 0.45,
            group,
            ha="right",
            va="top",
            fontsize=8,
            fontweight="bold",
            color="#444444",
        )
    ticks = [t for t in (0.5, 1, 2, 5, 10, 20, 50, 100) if low <= t <= high]
    ax.set_xticks(ticks)
    ax.set_xticklabels([f"{t:g}x" for t in ticks])
    ax.set_xlabel("sidecar vs peer: > 1 means sidecar is better (log scale)")
    ax.set_title(title, fontsize=10)
    handles = [
        plt.Rectangle((0, 0), 1, 1, color=colors[k])
        for k in colors
        if any(k in r for _, _, r in rows)
    ]
    labels = [k for k in colors if any(k in r for _, _, r in rows)]
    ax.legend(handles, labels, loc="lower right", fontsize=8)
    ax.grid(axis="x", which="major", color="#eeeeee")
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("results", help="the JSON of python -m benchmarks --json ('-' = stdin)")
    parser.add_argument("-o", "--out", type=Path, default=DEFAULT_OUT, help="the PNG to write")
    parser.add_argument("--title", default=DEFAULT_TITLE)
    args = parser.parse_args(argv)
    text = sys.stdin.read() if args.results == "-" else Path(args.results).read_text()
    document = json.loads(text)
    results = document.get("results", document)
    found = bars(results)
    if not found:
        print("no ratios found in that JSON", file=sys.stderr)
        return 1
    draw(found, args.out, args.title)
    print(f"wrote {args.out} ({len(found)} ratios)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
