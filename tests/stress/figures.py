"""Print the figures a stress run recorded, one table per case, backends side by side.

Usage: ``python tests/stress/figures.py build/stress.json`` (what ``nox -s
stress`` runs at its end).  Nested figures are flattened to dotted names;
a list of samples is shown as its count, first, last, minimum and maximum.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

BACKENDS = ("asyncio", "trio")


def _flatten(figures: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for name, value in figures.items():
        key = f"{prefix}{name}"
        if isinstance(value, dict):
            flat.update(_flatten(value, f"{key}."))
        else:
            flat[key] = value
    return flat


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, list):
        if not value:
            return "[]"
        return (
            f"{len(value)} samples: {value[0]} .. {value[-1]} (min {min(value)}, max {max(value)})"
        )
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, int) and abs(value) >= 10_000:
        return f"{value:,}"
    return str(value)


def render(data: dict[str, Any]) -> str:
    run = data.get("run", {})
    lines = [
        f"stress run: {run.get('size')} size, seed {run.get('seed')}, {run.get('date')}, "
        f"{run.get('cores')} cores, {run.get('platform')}",
        "versions: " + ", ".join(f"{k} {v}" for k, v in run.get("versions", {}).items()),
    ]
    for case, by_backend in sorted(data.get("cases", {}).items()):
        flat = {b: _flatten(by_backend.get(b, {})) for b in BACKENDS}
        names = sorted({name for figures in flat.values() for name in figures})
        lines += ["", f"### {case}", "", "| figure | " + " | ".join(BACKENDS) + " |"]
        lines.append("|---|" + "---:|" * len(BACKENDS))
        for name in names:
            cells = " | ".join(_cell(flat[b].get(name)) for b in BACKENDS)
            lines.append(f"| {name} | {cells} |")
    return "\n".join(lines)


if __name__ == "__main__":
    print(render(json.loads(Path(sys.argv[1]).read_text())))
