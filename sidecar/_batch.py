"""Running notebook files, one or many at once, as ``sidecar run`` does.

Each notebook gets its own kernel (started in the notebook's directory unless
told otherwise).  With ``jobs > 1`` up to that many run at once; a kernel is
launched for the next notebook while the current ones still run, so start-up
overlaps with execution.  One failing notebook does not stop the others, and
each output notebook is written whatever happened, with everything run so far.
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, Final, Literal, TextIO, final

import anyio
import msgspec

from ._exceptions import KernelError, SidecarError
from ._notebook import NotebookError, read_notebook, save_notebook
from ._run import CellError, CellProgress, run_notebook
from .client._launch import launch

__all__ = ["NotebookResult", "Progress", "run_files"]

log = logging.getLogger("sidecar.run")

Status = Literal["ok", "error", "timeout", "kernel", "invalid", "interrupted"]


@final
class NotebookResult(msgspec.Struct, kw_only=True):
    """How one notebook run ended."""

    path: Path
    output: Path | None = None
    status: Status = "ok"
    cells: int = 0
    """Code cells that ran (the failing one included)."""
    total: int = 0
    seconds: float = 0.0
    error: str = ""
    """For a failed run: what went wrong, traceback included."""
    kernel_log: str = ""


@final
class Progress:
    """Shows progress on a stream: one rewritten line on a terminal, plain lines otherwise."""

    def __init__(self, stream: TextIO, *, enabled: bool = True) -> None:
        self._stream = stream
        self._enabled = enabled
        self._tty = enabled and stream.isatty()
        self._state: dict[Path, tuple[int, int, float]] = {}
        self._width = 0

    def cell(self, path: Path, progress: CellProgress, started: float) -> None:
        self._state[path] = (progress.number, progress.total, started)
        if not self._enabled:
            return
        if self._tty:
            self._redraw()
        else:
            elapsed = time.monotonic() - started
            print(
                f"{path.name}: cell {progress.number}/{progress.total} "
                f"(index {progress.index}, {elapsed:.1f} s)",
                file=self._stream,
                flush=True,
            )

    def done(self, result: NotebookResult) -> None:
        self._state.pop(result.path, None)
        if not self._enabled:
            return
        self._clear()
        print(
            f"{result.path.name}: {result.status} ({result.cells}/{result.total} cells, "
            f"{result.seconds:.1f} s)",
            file=self._stream,
            flush=True,
        )
        if self._tty:
            self._redraw()

    def _redraw(self) -> None:
        now = time.monotonic()
        parts = [
            f"{path.name} {number}/{total} {now - started:.1f}s"
            for path, (number, total, started) in self._state.items()
        ]
        line = " | ".join(parts)
        self._clear()
        self._stream.write(line)
        self._stream.flush()
        self._width = len(line)

    def _clear(self) -> None:
        if self._tty and self._width:
            self._stream.write("\r" + " " * self._width + "\r")
            self._width = 0


def output_path(path: Path, *, output: Path | None, inplace: bool, many: bool) -> Path:
    """Where the executed copy of ``path`` goes."""
    if inplace:
        return path
    if output is not None:
        return output / path.name if many or output.is_dir() else output
    return path.with_name(f"{path.stem}.out{path.suffix}")


_STATUS_OF: Final[dict[type[BaseException], Status]] = {
    CellError: "error",
    TimeoutError: "timeout",
    KernelError: "kernel",
    NotebookError: "invalid",
}


async def run_file(
    path: Path,
    out: Path,
    *,
    kernel_name: str | None,
    timeout: float | None,
    allow_errors: bool,
    parameters: Mapping[str, Any] | None,
    cwd: Path | None,
    progress: Progress,
    run_slot: anyio.CapacityLimiter | None = None,
    startup_timeout: float = 60.0,
) -> NotebookResult:
    """Run one notebook file and write the result, whatever happens."""
    result = NotebookResult(path=path)
    started = time.monotonic()
    try:
        notebook = await anyio.to_thread.run_sync(read_notebook, path)
    except NotebookError as e:
        result.status = "invalid"
        result.error = str(e)
        progress.done(result)
        return result
    name = kernel_name or notebook.metadata.get("kernelspec", {}).get("name") or "python3"
    process = None

    def on_cell(cell: CellProgress) -> None:
        result.cells = cell.number
        result.total = cell.total
        progress.cell(path, cell, started)

    try:
        async with launch(
            name, cwd=cwd or path.parent.resolve(), startup_timeout=startup_timeout
        ) as kernel:
            process = kernel.process
            try:
                async with run_slot or _no_limit():
                    await run_notebook(
                        notebook,
                        kernel,
                        timeout=timeout,
                        allow_errors=allow_errors,
                        parameters=parameters,
                        on_cell=on_cell,
                    )
            finally:
                with anyio.CancelScope(shield=True):
                    await anyio.to_thread.run_sync(save_notebook, notebook, out)
                    result.output = out
    except anyio.get_cancelled_exc_class():
        result.status = "interrupted"
        raise
    except (SidecarError, TimeoutError) as e:
        result.status = next((s for t, s in _STATUS_OF.items() if isinstance(e, t)), "error")
        result.error = _describe(e)
    finally:
        result.seconds = time.monotonic() - started
        if process is not None:
            result.kernel_log = process.log_tail(200)
        progress.done(result)
    return result


@asynccontextmanager
async def _no_limit() -> AsyncIterator[None]:
    yield


def _describe(error: BaseException) -> str:
    if isinstance(error, CellError):
        source = "\n".join(f"    {line}" for line in error.source.splitlines())
        return (
            f"cell {error.cell_index} raised {error.ename}: {error.evalue}\n"
            f"{source}\n" + "\n".join(error.traceback)
        )
    if isinstance(error, TimeoutError):
        return "a cell ran longer than the timeout and was interrupted"
    return str(error)


async def run_files(
    paths: Sequence[Path],
    *,
    output: Path | None = None,
    inplace: bool = False,
    kernel_name: str | None = None,
    timeout: float | None = None,
    allow_errors: bool = False,
    parameters: Mapping[str, Any] | None = None,
    cwd: Path | None = None,
    jobs: int = 1,
    progress: Progress | None = None,
) -> list[NotebookResult]:
    """Run notebook files, up to ``jobs`` at once; one result per file, in order."""
    progress = progress or Progress(sys.stderr, enabled=False)
    many = len(paths) > 1
    if output is not None and many:
        await anyio.Path(output).mkdir(parents=True, exist_ok=True)
    results: list[NotebookResult | None] = [None] * len(paths)
    jobs = max(1, jobs)
    # One kernel more than the runs at once: the next notebook's kernel starts
    # while the current ones run, so start-up overlaps with execution.
    kernels = anyio.CapacityLimiter(jobs + 1 if len(paths) > jobs else jobs)
    runs = anyio.CapacityLimiter(jobs)

    async def one(i: int, path: Path) -> None:
        async with kernels:
            results[i] = await run_file(
                path,
                output_path(path, output=output, inplace=inplace, many=many),
                kernel_name=kernel_name,
                timeout=timeout,
                allow_errors=allow_errors,
                parameters=parameters,
                cwd=cwd,
                progress=progress,
                run_slot=runs,
            )

    async with anyio.create_task_group() as tg:
        for i, path in enumerate(paths):
            tg.start_soon(one, i, path)
    return [r for r in results if r is not None]


def summary_table(results: Sequence[NotebookResult]) -> str:
    """The end-of-run table: notebook, status, cells, seconds."""
    rows = [("notebook", "status", "cells", "seconds")]
    rows += [(str(r.path), r.status, f"{r.cells}/{r.total}", f"{r.seconds:.2f}") for r in results]
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    lines = []
    for n, row in enumerate(rows):
        lines.append(
            "  ".join(
                cell.ljust(w) if i < 2 else cell.rjust(w)
                for i, (cell, w) in enumerate(zip(row, widths, strict=True))
            ).rstrip()
        )
        if n == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def parse_parameter(value: str) -> Any:
    """A ``-p NAME VALUE`` value: int, float, bool or None when it reads as one, else text."""
    lowered = value.lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    if lowered in ("none", "null"):
        return None
    for kind in (int, float):
        try:
            return kind(value)
        except ValueError:
            pass
    return value
