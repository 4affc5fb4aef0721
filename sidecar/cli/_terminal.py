"""What the command line shows: outputs as a terminal prints them, and the
progress, reports and summary of ``sidecar run``.

Progress is a tqdm bar per running notebook when stderr is a terminal, and
plain lines otherwise (a log file or CI has no use for redrawn lines).  tqdm
is imported only to draw bars: the library and piped runs never load it.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, TextIO, final

import msgspec

from ..client._outputs import apply_stream_controls
from ..notebook._files import NotebookResult, RunEvents
from ..notebook._model import CodeCell, outputs_to_dicts, read_notebook
from ..notebook._run import CellProgress
from ..wire import Message

if TYPE_CHECKING:
    from tqdm.std import tqdm

__all__ = ["TerminalRun", "labels", "print_message", "print_output", "show_notebook"]

ANSI: Final = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
_OUTPUT_TYPES: Final = frozenset({"stream", "execute_result", "display_data", "error"})


def strip_ansi(text: str) -> str:
    return ANSI.sub("", text)


def _text_of(output: dict[str, Any]) -> tuple[str, str]:
    """Which stream ("out" or "err") an output goes to, and its text as a terminal shows it."""
    kind = output["output_type"]
    if kind == "stream":
        return ("err" if output["name"] == "stderr" else "out"), output["text"]
    if kind == "error":
        return "err", strip_ansi("\n".join(output["traceback"])) + "\n"
    data = output.get("data", {})
    # A terminal shows text: markdown where the object offers it (its
    # text/plain is then usually just a repr), else the plain text.
    text = data.get("text/markdown", data.get("text/plain"))
    if text is None:
        text = f"<{', '.join(sorted(data))}>"
    return "out", text if text.endswith("\n") else text + "\n"


def print_output(output: dict[str, Any], out: TextIO, err: TextIO) -> None:
    """Print one nbformat output dict as a terminal would."""
    where, text = _text_of(output)
    (err if where == "err" else out).write(text)
    out.flush()


def print_message(message: Message, out: TextIO, err: TextIO) -> None:
    """Print one iopub output message as a terminal would."""
    if message.msg_type in _OUTPUT_TYPES:
        output = {"output_type": message.msg_type, **msgspec.to_builtins(message.content)}
        print_output(output, out, err)


def show_notebook(path: Path, out: TextIO) -> None:
    """Print a notebook's outputs as a terminal shows them, each cell's under ``[N]``."""
    notebook = read_notebook(path)
    for cell in notebook.cells:
        if not isinstance(cell, CodeCell) or not cell.outputs:
            continue
        out.write(f"[{cell.execution_count}]\n")
        for output in outputs_to_dicts(cell.outputs):
            print_output(output, out, out)


def _terminal_size(stream: TextIO) -> tuple[int, int]:
    try:
        size = os.get_terminal_size(stream.fileno())
    except (OSError, ValueError):
        return (0, 0)
    return (size.columns, size.lines)


def labels(paths: Sequence[Path]) -> list[str]:
    """Short names for notebooks: the file name, or as much of the path as
    tells two notebooks of the same name apart."""
    found = []
    for path in paths:
        depth = 1
        while depth < len(path.parts) and any(
            other != path and other.parts[-depth:] == path.parts[-depth:] for other in paths
        ):
            depth += 1
        found.append(str(Path(*path.parts[-depth:])))
    return found


@final
class _Lines:
    """Text cut into whole lines, each with a prefix: for several notebooks'
    outputs in one stream, where a line half from one and half from another
    would be unreadable."""

    def __init__(self, prefix: str) -> None:
        self._prefix = prefix
        self._pending = ""

    def feed(self, text: str) -> str:
        *lines, self._pending = (self._pending + text).split("\n")
        return "".join(f"{self._prefix}{apply_stream_controls(line)}\n" for line in lines)

    def flush(self) -> str:
        rest, self._pending = self._pending, ""
        return f"{self._prefix}{apply_stream_controls(rest)}\n" if rest else ""


@final
class TerminalRun(RunEvents):
    """Shows a ``sidecar run`` as it goes.

    - Progress on ``err``: a bar per running notebook on a terminal, one line
      per cell otherwise, nothing with ``quiet``.
    - With ``log_output``, each output as it arrives (streams to their
      stream, rich outputs as text on ``out``, errors on ``err``); the
      ``stdout``/``stderr`` files get the cells' stdout and stderr streams.
      With several notebooks every line of these carries the notebook's name.
    - Once a notebook and all those given before it are done, its report: its
      outputs with ``show``, its error, its kernel's log.  Reports keep the
      given order however the runs finish.
    - :meth:`finish`: the reports still due and, for several notebooks, the
      summary table.
    """

    def __init__(
        self,
        results: Sequence[NotebookResult],
        *,
        out: TextIO,
        err: TextIO,
        quiet: bool = False,
        show: bool = False,
        kernel_log: bool = False,
        log_output: bool = False,
        stdout_file: TextIO | None = None,
        stderr_file: TextIO | None = None,
    ) -> None:
        self._results = list(results)
        paths = [r.path for r in results]
        self._labels = dict(zip(paths, labels(paths), strict=True))
        self._out, self._err = out, err
        self._quiet, self._show, self._kernel_log = quiet, show, kernel_log
        self._log_output = log_output
        self._files = {"stdout": stdout_file, "stderr": stderr_file}
        self.wants_outputs = log_output or stdout_file is not None or stderr_file is not None
        self._many = len(self._results) > 1
        self._colour = err.isatty()
        self._bars_on = not quiet and err.isatty()
        self._bars: dict[Path, tqdm[Any]] = {}
        self._started: dict[Path, float] = {}
        self._finished: set[Path] = set()
        self._reported = 0
        self._lines: dict[tuple[Path, str], _Lines] = {}

    # -- writing around the bars -----------------------------------------------------

    @contextmanager
    def _writing(self) -> Iterator[None]:
        """Bars cleared while something else is written, then drawn again."""
        if not self._bars:
            yield
            return
        from tqdm.std import tqdm

        with tqdm.external_write_mode(file=self._err):
            yield

    def _write(self, stream: TextIO, text: str) -> None:
        if not text:
            return
        with self._writing():
            stream.write(text)
            stream.flush()

    def _label(self, result: NotebookResult) -> str:
        return self._labels.get(result.path, str(result.path))

    # -- RunEvents -------------------------------------------------------------------

    def started(self, result: NotebookResult) -> None:
        self._started[result.path] = time.monotonic()

    def cell(self, result: NotebookResult, progress: CellProgress) -> None:
        if self._quiet:
            return
        label = self._label(result)
        if not self._bars_on:
            elapsed = time.monotonic() - self._started.get(result.path, time.monotonic())
            self._write(
                self._err,
                f"{label}: cell {progress.index} running "
                f"(code cell {progress.number}/{progress.total}, {elapsed:.1f} s)\n",
            )
            return
        bar = self._bars.get(result.path)
        if bar is None:
            bar = self._bars[result.path] = self._new_bar(label, progress.total)
        bar.total = progress.total
        bar.n = progress.number - 1
        bar.set_postfix_str(f"cell {progress.index}", refresh=False)
        # Drawn on every cell, not throttled: a cell is worth a redraw.
        bar.refresh()

    def _new_bar(self, label: str, total: int) -> tqdm[Any]:
        from tqdm.std import tqdm

        # tqdm's monitor thread only matters for bars that are not updated.
        tqdm.monitor_interval = 0
        taken = {bar.pos for bar in self._bars.values()}
        position = next(p for p in range(len(self._bars) + 1) if p not in taken)
        sized = _terminal_size(self._err) != (0, 0)
        bar = tqdm(
            total=total,
            desc=label,
            position=position,
            leave=False,
            file=self._err,
            # A terminal that does not know its size (0 x 0) would get no bar at all.
            ncols=None if sized else 80,
            nrows=None if sized else 24,
            dynamic_ncols=sized,
            bar_format="{desc} {n_fmt}/{total_fmt} |{bar:24}| {elapsed}{postfix}",
        )
        return bar

    def output(self, result: NotebookResult, progress: CellProgress, message: Message) -> None:
        if message.msg_type not in _OUTPUT_TYPES:
            return
        output = {"output_type": message.msg_type, **msgspec.to_builtins(message.content)}
        if output["output_type"] == "stream":
            file = self._files.get(output["name"])
            if file is not None:
                file.write(self._prefixed(result, f"file:{output['name']}", output["text"]))
                file.flush()
        if self._log_output:
            where, text = _text_of(output)
            stream = self._err if where == "err" else self._out
            self._write(stream, self._prefixed(result, where, text))

    def _prefixed(self, result: NotebookResult, stream: str, text: str) -> str:
        if not self._many:
            return text
        key = (result.path, stream)
        lines = self._lines.get(key)
        if lines is None:
            lines = self._lines[key] = _Lines(f"{self._label(result)}| ")
        return lines.feed(text)

    def warning(self, result: NotebookResult, text: str) -> None:
        self._write(self._err, f"sidecar: warning: {self._label(result)}: {text}\n")

    def done(self, result: NotebookResult) -> None:
        bar = self._bars.pop(result.path, None)
        if bar is not None:
            bar.close()
        self._flush_lines(result)
        self._finished.add(result.path)
        if not self._quiet and result.status != "not started":
            cells = f"{result.cells}/{result.total} cells, " if result.total is not None else ""
            self._write(
                self._err,
                f"{self._label(result)}: {result.status} ({cells}{result.seconds:.1f} s)\n",
            )
        while self._reported < len(self._results):
            ready = self._results[self._reported]
            if ready.path not in self._finished:
                break
            self._report(ready)
            self._reported += 1

    def _flush_lines(self, result: NotebookResult) -> None:
        for (path, stream), lines in list(self._lines.items()):
            if path != result.path:
                continue
            rest = lines.flush()
            if stream.startswith("file:"):
                file = self._files[stream.removeprefix("file:")]
                if file is not None:
                    file.write(rest)
            else:
                self._write(self._err if stream == "err" else self._out, rest)
            del self._lines[(path, stream)]

    def _report(self, result: NotebookResult) -> None:
        if self._show and result.written:
            header = f"==> {result.path} <==\n" if self._many else ""
            with self._writing():
                self._out.write(header)
                show_notebook(result.output, self._out)
                self._out.flush()
        # An interrupted run has no error to show: the summary and the exit
        # status say it.
        if result.status not in ("ok", "not started", "interrupted"):
            error = result.error if self._colour else strip_ansi(result.error)
            text = f"\n{result.path}: {result.status}\n{error}\n"
            if result.kernel_log and result.status == "kernel" and not self._kernel_log:
                text += f"--- kernel log ---\n{result.kernel_log}\n"
            self._write(self._err, text)
        if self._kernel_log and result.kernel_log:
            self._write(self._err, f"--- kernel log of {result.path} ---\n{result.kernel_log}\n")

    def finish(self) -> None:
        """After the runs (or an interrupt): the reports still due, and the summary."""
        for bar in self._bars.values():
            bar.close()
        self._bars.clear()
        for result in self._results[self._reported :]:
            if result.path in self._finished:
                self._report(result)
        self._reported = len(self._results)
        if self._many:
            self._write(self._err, summary_table(self._results) + "\n")


def summary_table(results: Sequence[NotebookResult]) -> str:
    """The end-of-run table: notebook, status, cells run of those to run, seconds."""
    rows = [("notebook", "status", "cells", "seconds")]
    rows += [
        (
            str(r.path),
            r.status,
            "-" if r.total is None else f"{r.cells}/{r.total}",
            f"{r.seconds:.2f}" if r.status != "not started" else "-",
        )
        for r in results
    ]
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
