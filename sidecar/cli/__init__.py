"""The ``sidecar`` command line: ``main`` is its entry point.

Internal: the public API is what :mod:`sidecar` re-exports.
"""

from ._main import main as main

__all__ = ["main"]
