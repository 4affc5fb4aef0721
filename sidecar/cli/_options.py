"""What every command of the command line shares: exit statuses, usage errors, option types.

One rule for the exit status of every command (``docs/cli.md`` has the
table): 0 done; 1 the work failed (code raised, a notebook failed, no such
kernel, a kernel did not start or died); 2 bad usage, found before any
kernel starts; 3 a ``--timeout`` expired; 128 + the signal number when
interrupted (130 SIGINT, 143 SIGTERM).
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Final, NoReturn
from urllib.parse import urlsplit

from ..notebook._files import RunRefused, check_inputs

__all__ = [
    "FAILED",
    "OK",
    "TIMED_OUT",
    "USAGE",
    "Parser",
    "UsageError",
    "add_server_options",
    "check_readable",
    "check_server",
    "count",
    "seconds",
]

OK: Final = 0
FAILED: Final = 1
USAGE: Final = 2
TIMED_OUT: Final = 3


class UsageError(Exception):
    """Bad usage: printed as one line, exit status 2."""


class Parser(argparse.ArgumentParser):
    """argparse, with a usage error as one line (``sidecar: ...``, exit 2)."""

    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{message} (see '{self.prog} --help')")


def seconds(text: str, *, zero: bool = False) -> float:
    """A number of seconds > 0 (>= 0 with ``zero``)."""
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and (value > 0 or (zero and value == 0))):
        least = ">= 0" if zero else "> 0"
        raise argparse.ArgumentTypeError(f"expected a number of seconds {least}, got {text!r}")
    return value


def count(least: int) -> Callable[[str], int]:
    """A whole number >= ``least``."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            value = least - 1
        if value < least:
            raise argparse.ArgumentTypeError(f"expected a whole number >= {least}, got {text!r}")
        return value

    return parse


def check_readable(paths: Sequence[Path]) -> None:
    """Every input file exists, is a file and can be read: else a usage error, before
    any kernel starts."""
    try:
        check_inputs(paths)
    except RunRefused as e:
        raise UsageError(str(e)) from None


def add_server_options(group: Any) -> None:
    """``--server URL`` and ``--token TOKEN``: kernels on a Jupyter Server (or gateway)."""
    group.add_argument(
        "--server",
        metavar="URL",
        help="start kernels on this Jupyter Server, Kernel Gateway or Enterprise Gateway "
        "(http(s)://host:port[/base/]) instead of locally",
    )
    group.add_argument(
        "--token", metavar="TOKEN", help="the server's token (default: $JUPYTER_TOKEN)"
    )


def check_server(url: str | None) -> None:
    """A ``--server`` that is not an http(s) URL is a usage error."""
    if url is None:
        return
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise UsageError(f"--server {url}: expected http(s)://host[:port][/base/]")
