"""The variants of a benchmark: named, checked, and their notebooks read."""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import anyio

from ..notebook._model import NotebookError, read_notebook
from ._results import BenchVariant, VariantLike

__all__ = ["check_rate", "name_variants", "read_source"]


def name_variants(given: Sequence[VariantLike]) -> list[BenchVariant]:
    """Every variant named: given names must be unique; made-up ones are made so."""
    items: list[tuple[str | None, str | os.PathLike[str] | BenchVariant]] = []
    for item in given:
        if isinstance(item, Mapping):
            items.extend(item.items())
        else:
            items.append((None, item))
    named = [name if not isinstance(item, BenchVariant) else item.name for name, item in items]
    taken = [name for name in named if name is not None]
    duplicates = sorted({name for name in taken if taken.count(name) > 1})
    if duplicates:
        raise ValueError(f"variant names must differ: {', '.join(map(repr, duplicates))}")
    used = set(taken)
    variants = []
    for name, item in items:
        if isinstance(item, BenchVariant):
            variants.append(item)
            continue
        if name is None:
            name = _unique(_made_up_name(item), used)
            used.add(name)
        if isinstance(item, str):
            variants.append(BenchVariant(name, code=item))
        else:
            variants.append(BenchVariant(name, notebook=os.fspath(item)))
    return variants


def _made_up_name(item: str | os.PathLike[str]) -> str:
    if not isinstance(item, str):
        return Path(item).name
    lines = item.strip().splitlines()
    if not lines:
        return "(empty)"
    return lines[0] + (" ..." if len(lines) > 1 else "")


def _unique(name: str, used: set[str]) -> str:
    candidate, k = name, 1
    while candidate in used:
        k += 1
        candidate = f"{name} #{k}"
    return candidate


async def read_source(path: str) -> bytes:
    """The file's bytes, checked to be a notebook."""
    source = await anyio.Path(path).read_bytes()
    try:
        read_notebook(source)
    except NotebookError as e:
        raise NotebookError(e.reason, where=e.where, filename=path) from e.__cause__
    return source


def check_rate(rate: float, chosen: Sequence[BenchVariant], *, fresh: bool, pooled: bool) -> None:
    if not (math.isfinite(rate) and rate > 0):
        raise ValueError(f"rate must be a number of runs per second > 0, not {rate!r}")
    if fresh or pooled:
        raise ValueError("an open loop (rate) runs on kernels of its own: not with fresh or a pool")
    notebooks = [v.name for v in chosen if v.notebook is not None]
    if notebooks:
        raise ValueError(f"an open loop (rate) sends code, not notebooks: {notebooks[0]!r}")
