"""What a benchmark run gives: variants, samples, statistics, and their tables."""

from __future__ import annotations

import os
import statistics
from collections.abc import Mapping, Sequence
from typing import Final, TypeAlias, final

import msgspec

__all__ = [
    "BenchResult",
    "BenchSample",
    "BenchStats",
    "BenchVariant",
    "BenchVariantResult",
    "VariantLike",
]

_NAME_WIDTH: Final = 32


@final
class BenchVariant(msgspec.Struct, frozen=True):
    """One thing to measure: ``code``, or the code cells of the ``notebook`` file.

    A notebook's kernels start in the notebook's directory, as with
    ``sidecar run``.
    """

    name: str
    code: str | None = None
    notebook: str | None = None
    """The path of an ``.ipynb`` file."""

    def __post_init__(self) -> None:
        if (self.code is None) == (self.notebook is None):
            raise ValueError(f"variant {self.name!r}: give code or a notebook, exactly one")


VariantLike: TypeAlias = (
    str | os.PathLike[str] | BenchVariant | Mapping[str, str | os.PathLike[str]]
)
"""What :func:`run` takes as a variant: code (a ``str``), a notebook (a path
object, never a ``str``), a :class:`BenchVariant`, or a mapping of names to
either (in order)."""


@final
class BenchStats(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    """Summary statistics of one measure, in seconds (``spread`` is a ratio)."""

    count: int
    mean: float
    median: float
    """The 50th percentile (p50)."""
    p95: float
    p99: float
    min: float
    max: float
    stdev: float
    """Sample standard deviation; 0 for a single value."""
    spread: float
    """Interquartile range / median: how far the middle half strays (0 for one value)."""

    @classmethod
    def of(cls, values: Sequence[float]) -> BenchStats:
        """The statistics of ``values`` (at least one)."""
        if not values:
            raise ValueError("no values")
        median = statistics.median(values)
        if len(values) < 2:
            p95 = p99 = values[0]
            stdev, iqr = 0.0, 0.0
        else:
            percentiles = statistics.quantiles(values, n=100, method="inclusive")
            p95, p99 = percentiles[94], percentiles[98]
            q1, _, q3 = statistics.quantiles(values, n=4, method="inclusive")
            stdev, iqr = statistics.stdev(values), q3 - q1
        return cls(
            count=len(values),
            mean=statistics.fmean(values),
            median=median,
            p95=p95,
            p99=p99,
            min=min(values),
            max=max(values),
            stdev=stdev,
            spread=iqr / median if median > 0 else 0.0,
        )


@final
class BenchSample(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    """One measured run (times in seconds)."""

    variant: str
    seq: int
    """Order in which the run started among all runs of the benchmark, from 0."""
    index: int
    """The run's number within its variant, from 0."""
    lane: int
    """Which of the variant's kernel slots ran it (``index % kernels``)."""
    pid: int
    """The kernel process that ran it."""
    wall: float
    kernel: float | None
    """None if the kernel sent no ``metadata.started`` or dates."""
    overhead: float | None
    launch: float | None = None
    """With ``fresh``: how long the run's kernel took to launch (not in ``wall``)."""


@final
class BenchVariantResult(msgspec.Struct, frozen=True, kw_only=True):
    """What one variant measured."""

    name: str
    code: str | None
    notebook: str | None
    runs: int
    pids: list[int]
    """The kernel processes that ran it, in launch order."""
    wall: BenchStats
    kernel: BenchStats | None
    overhead: BenchStats | None
    launch: BenchStats | None
    """Launch times of its kernels, with ``fresh`` only."""
    elapsed: float
    """Seconds of wall-clock time its turns took, all lanes together."""
    throughput: float
    """Runs per second over ``elapsed``."""
    client_cpu: float
    """Seconds of client CPU during its turns."""
    kernel_cpu: float | None
    """Seconds of CPU of its kernels while measured (Linux only)."""
    kernel_max_rss: int | None
    """Bytes: the highest peak RSS among its kernels (Linux only)."""
    samples: list[BenchSample]


@final
class BenchResult(msgspec.Struct, frozen=True, kw_only=True):
    """What :func:`run` measured.  ``msgspec.json.decode(data, type=BenchResult)``
    reads back what :meth:`to_json` wrote."""

    variants: list[BenchVariantResult]
    n: int
    """Measured runs per variant."""
    kernels: int
    """Kernels per variant at once (at most ``n``)."""
    warmup: int
    fresh: bool
    interleave: bool
    kernel_name: str
    backend: str
    elapsed: float
    """Seconds the whole benchmark took, launches and shutdowns included."""
    client_max_rss: int | None
    """Bytes: this process's peak RSS at the end (None where unknown)."""

    def to_json(self, *, samples: bool = True) -> bytes:
        """The result as JSON; without ``samples``, the statistics only."""
        result = self
        if not samples:
            variants = [msgspec.structs.replace(v, samples=[]) for v in self.variants]
            result = msgspec.structs.replace(self, variants=variants)
        return msgspec.json.encode(result)

    def render(self) -> str:
        """The result as text tables: times per variant, then throughput and resources."""
        mode = "fresh kernel per run" if self.fresh else "reused kernels"
        order = "interleaved" if self.interleave else "one variant after another"
        kernels = f"{self.kernels} {self.kernel_name} kernel{'s' if self.kernels > 1 else ''}"
        header = (
            f"{self.n} runs per variant on {kernels}, {mode}, warm-up {self.warmup}, "
            f"{order} ({self.backend}); client peak RSS {_fmt_bytes(self.client_max_rss)}"
        )
        times: list[tuple[str, ...]] = [
            ("variant", "time", "median", "p95", "p99", "min", "max", "mean", "stdev", "spread")
        ]
        for v in self.variants:
            measures = [("wall", v.wall), ("kernel", v.kernel), ("overhead", v.overhead)]
            measures.append(("launch", v.launch))
            first = True
            for label, stats in measures:
                if stats is None:
                    continue
                values = (
                    stats.median,
                    stats.p95,
                    stats.p99,
                    stats.min,
                    stats.max,
                    stats.mean,
                    stats.stdev,
                )
                times.append(
                    (
                        _short(v.name) if first else "",
                        label,
                        *(_fmt_seconds(x) for x in values),
                        f"{stats.spread:.1%}",
                    )
                )
                first = False
        usage: list[tuple[str, ...]] = [
            (
                "variant",
                "runs",
                "runs/s",
                "client CPU/run",
                "kernel CPU/run",
                "kernel peak RSS",
                "kernels",
            )
        ]
        for v in self.variants:
            kernel_cpu = None if v.kernel_cpu is None else v.kernel_cpu / v.runs
            usage.append(
                (
                    _short(v.name),
                    str(v.runs),
                    f"{v.throughput:,.1f}",
                    _fmt_seconds(v.client_cpu / v.runs),
                    _fmt_seconds(kernel_cpu),
                    _fmt_bytes(v.kernel_max_rss),
                    str(len(v.pids)),
                )
            )
        return "\n\n".join([header, _table(times, left=2), _table(usage, left=1)])

    def compare(self, previous: BenchResult, *, threshold: float = 0.10) -> tuple[str, list[str]]:
        """Each variant's median wall time against ``previous`` (variants matched
        by name), as a text table, and the names of the variants slower than
        before by more than ``threshold`` (0.10: 10 %), for a CI check.

        A variant of only one of the two results is listed, never a regression.
        """
        before = {v.name: v for v in previous.variants}
        rows: list[tuple[str, ...]] = [("variant", "before", "now", "change", "")]
        slower: list[str] = []
        for v in self.variants:
            old = before.pop(v.name, None)
            if old is None:
                rows.append((_short(v.name), "-", _fmt_seconds(v.wall.median), "new", ""))
                continue
            change = v.wall.median / old.wall.median - 1 if old.wall.median > 0 else 0.0
            regressed = change > threshold
            if regressed:
                slower.append(v.name)
            rows.append(
                (
                    _short(v.name),
                    _fmt_seconds(old.wall.median),
                    _fmt_seconds(v.wall.median),
                    f"{change:+.1%}",
                    "REGRESSION" if regressed else "",
                )
            )
        for name, old in before.items():
            rows.append((_short(name), _fmt_seconds(old.wall.median), "-", "gone", ""))
        header = f"median wall time against the previous result (threshold +{threshold:.0%})"
        return header + "\n\n" + _table(rows, left=1), slower


def _table(rows: Sequence[Sequence[str]], *, left: int) -> str:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = []
    for n, row in enumerate(rows):
        pairs = enumerate(zip(row, widths, strict=True))
        cells = [c.ljust(w) if i < left else c.rjust(w) for i, (c, w) in pairs]
        lines.append("  ".join(cells).rstrip())
        if n == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def _fmt_seconds(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    for unit, scale in (("s", 1.0), ("ms", 1e-3), ("us", 1e-6)):
        if abs(seconds) >= scale or unit == "us":
            value = seconds / scale
            digits = 0 if abs(value) >= 100 else 1 if abs(value) >= 10 else 2
            return f"{value:.{digits}f} {unit}"
    raise AssertionError("unreachable")


def _fmt_bytes(size: int | None) -> str:
    return "-" if size is None else f"{size / 2**20:.1f} MiB"


def _short(name: str) -> str:
    line = name.strip().splitlines()[0] if name.strip() else name
    return line if len(line) <= _NAME_WIDTH else line[: _NAME_WIDTH - 3] + "..."
