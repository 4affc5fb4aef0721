"""What a benchmark run gives: variants, samples, statistics, and their tables."""

from __future__ import annotations

import math
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
    "ResourceSample",
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
    wait: float | None = None
    """With a pool: how long the run waited for its kernel to be handed out
    (not in ``wall``)."""
    first_output: float | None = None
    """Seconds from the start of the run (as for ``wall``) to its first output
    message (``stream``, ``display_data``, ``execute_result``, ``error``);
    None if it had none."""
    late: float | None = None
    """With ``rate``: how late the run was sent after its scheduled time
    (included in ``wall``, which counts from the scheduled time)."""


@final
class ResourceSample(msgspec.Struct, frozen=True, gc=False):
    """What one process used at one moment of the run: the timeline of
    :attr:`BenchResult.timeline`, read from ``/proc`` (Linux only)."""

    t: float
    """Seconds since the benchmark started."""
    variant: str | None
    """The variant whose kernel this is; None for the client (this process)."""
    pid: int
    cpu: float
    """CPU seconds (user + system) the process used since it started, in
    clock ticks of usually 10 ms: the CPU share between two samples of one
    ``pid`` is the difference of ``cpu`` over the difference of ``t``."""
    rss: int
    """Bytes of resident memory (``VmRSS``) at ``t``."""


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
    first_output: BenchStats | None = None
    """Time to first output, when every run had output."""
    wait: BenchStats | None = None
    """With a pool: how long runs waited for a kernel to be handed out."""
    messages: int | None = None
    """Messages received from its kernels during its measured runs."""
    bytes: int | None = None
    """Bytes of those messages, as received (0 where the transport does not
    count them)."""
    kernel_mean_rss: int | None = None
    """Bytes: the mean of its kernels' sampled RSS while they were up, not
    starting (Linux, with sampling)."""
    kernel_peak_rss: int | None = None
    """Bytes: the highest sampled RSS of its kernels (Linux, with sampling)."""
    achieved_rate: float | None = None
    """With ``rate``: the runs per second actually sent (first to last send)."""
    max_late: float | None = None
    """With ``rate``: how late the dispatcher sent a run, at worst."""


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
    pool_size: int | None = None
    """Kernels each variant's pool kept, when runs took kernels from a pool."""
    reuse: bool = False
    """Whether the pools reset and reused their kernels."""
    rate: float | None = None
    """Open loop: runs per second each variant was sent at."""
    sample_interval: float | None = None
    """Seconds between resource samples (None: not sampled)."""
    client_mean_rss: int | None = None
    """Bytes: the mean of this process's sampled RSS."""
    client_peak_rss: int | None = None
    """Bytes: the highest sampled RSS of this process."""
    timeline: list[ResourceSample] = msgspec.field(default_factory=list)
    """The resource samples of the client and of every live kernel, in time
    order, for plotting."""

    @property
    def behind(self) -> bool:
        """With ``rate``: whether the client fell behind its own schedule (a run
        sent more than one interval late), so that it, not the kernel, limited
        the rate."""
        if self.rate is None:
            return False
        return any(v.max_late is not None and v.max_late > 1 / self.rate for v in self.variants)

    def to_json(self, *, samples: bool = True) -> bytes:
        """The result as JSON; without ``samples``, the statistics only (no
        samples, no timeline)."""
        result = self
        if not samples:
            variants = [msgspec.structs.replace(v, samples=[]) for v in self.variants]
            result = msgspec.structs.replace(self, variants=variants, timeline=[])
        return msgspec.json.encode(result)

    def render(self) -> str:
        """The result as text tables: times per variant, then throughput and resources."""
        return "\n\n".join([self._header(), self._times(), *self._usage()])

    def _header(self) -> str:
        plural = "s" if self.kernels > 1 else ""
        if self.pool_size is not None:
            again = "reset and reused" if self.reuse else "each used once"
            where = (
                f", {self.kernels} at a time, on {self.kernel_name} kernels "
                f"from a pool of {self.pool_size} per variant, {again}"
            )
        else:
            mode = "fresh kernel per run" if self.fresh else "reused kernels"
            where = f" on {self.kernels} {self.kernel_name} kernel{plural}, {mode}"
        if self.rate is not None:
            order = f"open loop at {self.rate:g} runs/s per variant, one variant after another"
        elif self.interleave:
            order = "interleaved"
        else:
            order = "one variant after another"
        rss = f"client peak RSS {_fmt_bytes(self.client_max_rss)}"
        if self.client_mean_rss is not None:
            rss += f" (sampled: mean {_fmt_bytes(self.client_mean_rss)})"
        return (
            f"{self.n} runs per variant{where}, warm-up {self.warmup}, "
            f"{order} ({self.backend}); {rss}"
        )

    def _times(self) -> str:
        times: list[tuple[str, ...]] = [
            ("variant", "time", "median", "p95", "p99", "min", "max", "mean", "stdev", "spread")
        ]
        for v in self.variants:
            measures = [
                ("wall", v.wall),
                ("first output", v.first_output),
                ("kernel", v.kernel),
                ("overhead", v.overhead),
                ("launch", v.launch),
                ("wait", v.wait),
            ]
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
        return _table(times, left=2)

    def _usage(self) -> list[str]:
        """The usage table, and the lines that explain it."""
        ab = len(self.variants) > 1
        head = ["variant", "runs", "runs/s"]
        if ab:
            head.append("vs first")
        head += ["msgs/run", "KiB/run", "client CPU/run", "kernel CPU/run"]
        head += ["kernel RSS mean/peak", "kernel VmHWM", "kernels"]
        usage: list[tuple[str, ...]] = [tuple(head)]
        baseline = self.variants[0].wall.median
        for v in self.variants:
            kernel_cpu = None if v.kernel_cpu is None else v.kernel_cpu / v.runs
            row = [_short(v.name), str(v.runs), f"{v.throughput:,.1f}"]
            if ab:
                ratio = baseline / v.wall.median if v.wall.median > 0 else math.inf
                row.append(f"{ratio:.2f}x")
            row += [
                "-" if v.messages is None else f"{v.messages / v.runs:,.1f}",
                "-" if v.bytes is None else f"{v.bytes / v.runs / 1024:,.1f}",
                _fmt_seconds(v.client_cpu / v.runs),
                _fmt_seconds(kernel_cpu),
                _fmt_mean_peak(v.kernel_mean_rss, v.kernel_peak_rss),
                _fmt_bytes(v.kernel_max_rss),
                str(len(v.pids)),
            ]
            usage.append(tuple(row))
        notes = []
        if ab:
            notes.append(
                "vs first: the first variant's median wall time / this one's (>1 = faster)"
            )
        if self.rate is not None:
            for v in self.variants:
                achieved = "-" if v.achieved_rate is None else f"{v.achieved_rate:,.2f}"
                notes.append(
                    f"{_short(v.name)}: sent at {achieved} runs/s (asked {self.rate:g}), "
                    f"at worst {_fmt_seconds(v.max_late)} late"
                )
            if self.behind:
                notes.append(
                    "the client fell behind its schedule (a run sent more than one interval "
                    "late): the rate was the client's limit, not only the kernel's"
                )
        table = _table(usage, left=1)
        return [table + "\n" + "\n".join(notes)] if notes else [table]

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


def _fmt_mean_peak(mean: int | None, peak: int | None) -> str:
    if mean is None or peak is None:
        return "-"
    return f"{mean / 2**20:.1f}/{peak / 2**20:.1f} MiB"


def _short(name: str) -> str:
    line = name.strip().splitlines()[0] if name.strip() else name
    return line if len(line) <= _NAME_WIDTH else line[: _NAME_WIDTH - 3] + "..."
