"""What the kernels and the client used: CPU time and peak memory, read from /proc
and from the kernels' own answers."""

from __future__ import annotations

import os
import sys
import time
from datetime import datetime, timezone
from typing import Final, final

import msgspec

from ..notebook._model import Notebook
from ..wire import Message

__all__ = [
    "OUTPUTS",
    "KernelTimes",
    "client_max_rss",
    "cpu_seconds",
    "max_rss",
    "notebook_kernel_seconds",
    "rss",
]

_CLOCK_TICKS: Final = os.sysconf("SC_CLK_TCK") if sys.platform != "win32" else 100
_PAGE_SIZE: Final = os.sysconf("SC_PAGE_SIZE") if sys.platform != "win32" else 4096

OUTPUTS: Final = frozenset({"stream", "display_data", "execute_result", "error"})
"""The messages that count as a run's output, for its time to first output
(not ``clear_output`` or ``update_display_data``, which change output shown
before)."""


def cpu_seconds(pid: int) -> float | None:
    """utime + stime of a process, from ``/proc`` (None where there is none)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as file:
            data = file.read()
    except OSError:
        return None
    # The command name, in parentheses, may hold spaces; the fields after it
    # start at field 3 (state), so utime (14) and stime (15) are 11 and 12.
    fields = data.rsplit(b")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / _CLOCK_TICKS


def max_rss(pid: int) -> int | None:
    """The peak RSS (``VmHWM``) of a process in bytes, from ``/proc``."""
    try:
        with open(f"/proc/{pid}/status", "rb") as file:
            for line in file:
                if line.startswith(b"VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def rss(pid: int) -> int | None:
    """The resident memory (``VmRSS``) of a process in bytes, from ``/proc/PID/statm``."""
    try:
        with open(f"/proc/{pid}/statm", "rb") as file:
            data = file.read()
    except OSError:
        return None
    return int(data.split()[1]) * _PAGE_SIZE


def client_max_rss() -> int | None:
    if sys.platform == "win32":
        return None
    import resource

    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss if sys.platform == "darwin" else rss * 1024


@final
class KernelTimes:
    """A collector of what a run needs: the two kernel timestamps, and when
    its first output arrived; nothing else.

    Being a collector (``on_<msg_type>`` methods), it is held only weakly
    once its request is done, so past runs' messages are not kept.
    """

    __slots__ = ("__weakref__", "end", "first_output", "replied", "started")

    def __init__(self) -> None:
        self.started: datetime | None = None
        self.replied: datetime | None = None
        self.end: datetime | None = None
        self.first_output: float | None = None
        """:func:`time.perf_counter` when the first output arrived."""

    def __call__(self, message: Message) -> None:
        """Every other message: only the first output's arrival is kept."""
        if self.first_output is None and message.msg_type in OUTPUTS:
            self.first_output = time.perf_counter()

    def on_execute_reply(self, message: Message) -> None:
        value = message.metadata.get("started")
        if isinstance(value, str):
            self.started = _parse_date(value)
        self.replied = _aware(message.header.datetime())

    def on_status(self, message: Message) -> None:
        if message.content.execution_state == "idle":
            self.end = _aware(message.header.datetime())

    def seconds(self) -> float | None:
        """``metadata.started`` of the reply to the date of idle (or of the reply)."""
        end = self.end or self.replied
        if self.started is None or end is None:
            return None
        return max(0.0, (end - self.started).total_seconds())


def notebook_kernel_seconds(notebook: Notebook) -> float | None:
    """The sum of the kernel times of the cells that ran, from their timings
    (None if none has them)."""
    total, timed = 0.0, False
    for cell in notebook.code_cells():
        timing = cell.metadata.get("execution")
        if not timing:
            continue
        timed = True
        started = timing.get("shell.execute_reply.started")
        end = timing.get("iopub.status.idle", timing.get("shell.execute_reply"))
        if not isinstance(started, str) or not isinstance(end, str):
            return None
        begin, finish = _parse_date(started), _parse_date(end)
        if begin is None or finish is None:
            return None
        total += max(0.0, (finish - begin).total_seconds())
    return total if timed else None


def _parse_date(value: str) -> datetime | None:
    try:
        return _aware(msgspec.convert(value, datetime))
    except msgspec.ValidationError:
        return None


def _aware(value: datetime | None) -> datetime | None:
    """A kernel's date without a timezone is taken as UTC, as the spec asks
    dates to be; aware and naive dates cannot be subtracted."""
    if value is None or value.tzinfo is not None:
        return value
    return value.replace(tzinfo=timezone.utc)
