"""Time code and notebooks on kernels: what ``sidecar bench`` does, in code.

A namespace of its own, loaded by ``import sidecar.bench``, not by ``import
sidecar``: the harness (statistics, tables, process probes) costs nothing to
those who only run kernels.
"""

from ._harness import run as run
from ._results import (
    BenchResult as BenchResult,
    BenchSample as BenchSample,
    BenchStats as BenchStats,
    BenchVariant as BenchVariant,
    BenchVariantResult as BenchVariantResult,
    ResourceSample as ResourceSample,
    VariantLike as VariantLike,
)

__all__ = [
    "BenchResult",
    "BenchSample",
    "BenchStats",
    "BenchVariant",
    "BenchVariantResult",
    "ResourceSample",
    "VariantLike",
    "run",
]
