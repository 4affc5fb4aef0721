"""What the notebook benchmarks run: small notebooks, and kernels that keep quiet."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import nbformat
from nbformat.v4 import new_code_cell, new_notebook

__all__ = ["kernels_quiet", "write_notebook"]


def _cell(i: int) -> Any:
    kind = i % 4
    if kind == 0:
        return new_code_cell(f"x{i} = {i}\nprint('cell', x{i})")
    if kind == 1:
        return new_code_cell(f"from IPython.display import display\ndisplay({{'cell': {i}}})")
    if kind == 2:
        return new_code_cell(f"[k * k for k in range({i % 17})]")
    return new_code_cell(f"import sys\nsys.stdout.write('{i}\\n')")


def write_notebook(path: Path, cells: int) -> Path:
    """A notebook of ``cells`` small cells at ``path`` (its directory made)."""
    nb = new_notebook(
        cells=[_cell(i) for i in range(cells)],
        metadata={
            "kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}
        },
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, path)
    return path


@contextlib.contextmanager
def kernels_quiet() -> Iterator[None]:
    """Point fd 2 at /dev/null while kernels start, so they inherit it.

    nbclient and papermill start their kernels on TCP, and ipykernel then
    warns on stderr about unencrypted TCP, once per kernel: hundreds of lines
    around the tables.  Every implementation runs under this alike.
    """
    saved = os.dup(2)
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)
