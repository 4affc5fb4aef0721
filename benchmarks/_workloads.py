"""The notebooks the notebook benchmarks run: small cells of four kinds."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import nbformat
from nbformat.v4 import new_code_cell, new_notebook

__all__ = ["write_notebook"]


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
