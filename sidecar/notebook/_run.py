"""Running notebooks: the code cells in order on one kernel, outputs into the document.

A run is a :class:`~sidecar.NotebookDocument` executed cell by cell, so
outputs are applied the way Jupyter frontends apply them, with one display map
for the whole notebook (a display or ``update_display_data`` in a later cell
updates an earlier cell's output), ipywidgets state in ``metadata.widgets``
and timings in each cell's ``metadata.execution``, as nbclient saves them.

Before running, every code cell's outputs and execution count are cleared,
as papermill does (``clear_outputs=False`` keeps them, as nbclient does), so
a cell that does not run shows nothing stale.

Tags honoured, as in nbclient and papermill: ``skip-execution`` (not run; the
set is ``skip_tags``), ``raises-exception`` (an error is expected and does
not stop the run), ``parameters`` (injected parameters go in a new cell right
after it, tagged ``injected-parameters``, replacing one from an earlier run,
written as papermill's Python translator writes them).
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Awaitable, Callable, Collection, Mapping
from typing import Any, Final, final

import msgspec

from .._exceptions import ExecutionError
from ..client._kernel import Kernel
from ..client._outputs import INVALID_OUTPUT
from ..wire import ErrorReply, Message
from ._document import NotebookDocument, _CellRecord
from ._model import CodeCell, Notebook, new_code_cell, upgrade_notebook

__all__ = ["CellError", "CellProgress", "parameters_source", "run_notebook"]

log = logging.getLogger("sidecar.run")

_PARAMETERS_TAG: Final = "parameters"
_INJECTED_TAG: Final = "injected-parameters"
_RAISES_TAG: Final = "raises-exception"
_OUTPUT_TYPES: Final = frozenset(
    {"stream", "display_data", "update_display_data", "execute_result", "error", "clear_output"}
)


class CellError(ExecutionError):
    """A cell raised and errors were not allowed for it.

    Also raised for a cell whose output nbformat would reject (``ename``
    ``"InvalidOutput"``): the output is replaced by an error output, and the
    run stops there as nbclient and papermill stop.

    Attributes:
        cell_index: the index of the cell in ``notebook.cells``.
        cell_number: the cell's 1-based number among the code cells the run
            runs (the ``number`` of its :class:`CellProgress`).
        source: the cell's code.
    """

    def __init__(
        self, cell_index: int, source: str, reply: ErrorReply, *, cell_number: int
    ) -> None:
        super().__init__(reply.ename, reply.evalue, reply.traceback)
        self.cell_index = cell_index
        self.cell_number = cell_number
        self.source = source

    def __str__(self) -> str:
        return f"cell {self.cell_index} raised {self.ename}: {self.evalue}"


@final
class CellProgress(msgspec.Struct, frozen=True, kw_only=True):
    """What :func:`run_notebook` tells its callbacks about a code cell."""

    index: int
    """Position of the cell in ``notebook.cells``."""
    number: int
    """1-based count among the code cells that will run."""
    total: int
    """How many code cells will run."""


def _tags(cell: Any) -> list[str]:
    tags = cell.metadata.get("tags", [])
    return [t for t in tags if isinstance(t, str)] if isinstance(tags, list) else []


# -- parameters, as papermill's PythonTranslator writes them ---------------------------


def _string(text: str) -> str:
    """A double-quoted string literal: papermill's ``translate_escaped_str``."""
    escaped = text.encode("unicode_escape").decode("utf-8").replace('"', r"\"")
    return f'"{escaped}"'


def _float(value: float) -> str:
    if math.isfinite(value):
        return f"{value}"
    if math.isnan(value):
        return "float('nan')"
    return "float('-inf')" if value < 0 else "float('inf')"


def _literal(value: Any) -> str:
    """``value`` as Python source, for the injected parameters cell.

    The same text as papermill's ``PythonTranslator.translate``, type by type
    in its order.  A value of any other type becomes the string of
    ``str(value)``, as papermill's does, but escaped (papermill writes it
    between quotes unescaped, which breaks on a quote or a backslash); so
    does a dict key that is not a string.
    """
    if value is None:
        return "None"
    if isinstance(value, str):
        return _string(value)
    if isinstance(value, bool):
        return repr(value)
    if isinstance(value, int):
        return f"{value}"
    if isinstance(value, float):
        return _float(value)
    if isinstance(value, dict):
        items = ", ".join(f"{_string(str(k))}: {_literal(v)}" for k, v in value.items())
        return f"{{{items}}}"
    if isinstance(value, list):
        return f"[{', '.join(_literal(v) for v in value)}]"
    return _string(str(value))


def parameters_source(parameters: Mapping[str, Any]) -> str:
    """The code of an injected parameters cell (what papermill writes for Python)."""
    lines = ["# Parameters"]
    lines += [f"{name} = {_literal(value)}" for name, value in parameters.items()]
    return "\n".join(lines) + "\n"


def inject_parameters(notebook: Notebook, parameters: Mapping[str, Any]) -> int:
    """Insert the parameters cell as papermill does; returns its index.

    It replaces the first cell tagged ``injected-parameters`` (from an earlier
    run; any others go too), else goes right after the first cell tagged
    ``parameters``, else first.  A notebook older than nbformat 4.5 is
    upgraded to 4.5 first, as papermill does, since the new cell has an id.
    """
    upgrade_notebook(notebook)
    cells = notebook.cells
    injected = next((i for i, c in enumerate(cells) if _INJECTED_TAG in _tags(c)), None)
    cells[:] = [c for c in cells if _INJECTED_TAG not in _tags(c)]
    if injected is not None:
        at = injected
    else:
        at = next((i + 1 for i, c in enumerate(cells) if _PARAMETERS_TAG in _tags(c)), 0)
    cell = new_code_cell(parameters_source(parameters), metadata={"tags": [_INJECTED_TAG]})
    cells.insert(at, cell)
    return at


# -- running ------------------------------------------------------------------------------


async def _call(callback: Callable[..., Awaitable[None] | None], *args: Any) -> None:
    result = callback(*args)
    if result is not None:
        await result


@final
class _RunOptions(msgspec.Struct, frozen=True, kw_only=True):
    timeout: float | None
    allow_errors: bool
    on_output: Callable[[CellProgress, Message], Awaitable[None] | None] | None
    on_cell_done: Callable[[CellProgress], Awaitable[None] | None] | None
    cell_timeout: Callable[[CodeCell], float | None] | None


async def run_notebook(
    notebook: Notebook,
    kernel: Kernel,
    *,
    timeout: float | None = None,
    allow_errors: bool = False,
    parameters: Mapping[str, Any] | None = None,
    record_timing: bool = True,
    on_cell: Callable[[CellProgress], Awaitable[None] | None] | None = None,
    skip_tags: Collection[str] = ("skip-execution",),
    on_output: Callable[[CellProgress, Message], Awaitable[None] | None] | None = None,
    on_cell_done: Callable[[CellProgress], Awaitable[None] | None] | None = None,
    cell_timeout: Callable[[CodeCell], float | None] | None = None,
    clear_outputs: bool = True,
) -> Notebook:
    """Run the code cells of ``notebook`` in order on ``kernel``, filling in outputs.

    The notebook is changed in place and returned.  Each cell's outputs,
    ``execution_count`` and (with ``record_timing``) ``metadata.execution`` are
    replaced; ``metadata.widgets`` gets the widget state, and
    ``metadata.language_info`` the kernel's.  A kernel output that nbformat
    would reject (``display({"a": 1}, raw=True)``) is replaced by an error
    output naming the problem, and counts as the cell raising, so the
    notebook is always one nbformat accepts.

    Callbacks may be sync or async.

    Args:
        timeout: seconds each cell may run; a cell that takes longer is
            interrupted and ``TimeoutError`` raised.
        allow_errors: record errors and go on, instead of stopping at the
            first cell that raises (a cell tagged ``raises-exception`` is
            always allowed to).
        parameters: injected as a new cell after the one tagged
            ``parameters``, as papermill does.
        record_timing: record timings in each cell's ``metadata.execution``.
        on_cell: called before each code cell runs.
        skip_tags: cells with any of these tags are not run.
        on_output: called with every output message (``stream``,
            ``display_data``, ``update_display_data``, ``execute_result``,
            ``error``, ``clear_output``) of every cell as it arrives (the
            cell's outputs in ``notebook.cells`` catch up when the cell is
            done).  Output an ipywidgets ``Output`` widget captures is the
            widget's, and does not come here.
        on_cell_done: called after each code cell finished, also one that
            raised or timed out (before the error propagates), with the
            cell's outputs, execution count and timings already in
            ``notebook.cells`` (and the widget state in its metadata): the
            place to save the notebook as it goes.
        cell_timeout: the timeout of a cell, overriding ``timeout`` unless it
            returns None.
        clear_outputs: first empty the outputs and execution count of every
            code cell, as papermill does; False leaves those of cells that do
            not run (skipped, or after an error) as they were, as nbclient
            does.

    Raises:
        CellError: a cell raised and errors were not allowed; the notebook
            holds everything run so far, the failing cell's error included.
        TimeoutError: a cell ran longer than its timeout.
        HandlerError: ``on_output`` raised (the cell had run to its end).
        KernelDied: the kernel died.
    """
    if parameters:
        inject_parameters(notebook, parameters)
    if clear_outputs:
        notebook.clear_outputs()
    document = NotebookDocument(kernel, notebook, record_timing=record_timing)
    skipped = {skip_tags} if isinstance(skip_tags, str) else set(skip_tags)
    runnable = [
        (i, cell)
        for i, cell in enumerate(notebook.cells)
        if isinstance(cell, CodeCell) and cell.source.strip() and skipped.isdisjoint(_tags(cell))
    ]
    options = _RunOptions(
        timeout=timeout,
        allow_errors=allow_errors,
        on_output=on_output,
        on_cell_done=on_cell_done,
        cell_timeout=cell_timeout,
    )
    try:
        for number, (index, cell) in enumerate(runnable, start=1):
            progress = CellProgress(index=index, number=number, total=len(runnable))
            if on_cell is not None:
                await _call(on_cell, progress)
            await _run_cell(document, cell, progress, options)
    finally:
        # Whatever happened (error, timeout, Ctrl-C), the cells show what ran.
        notebook = document.notebook
    return notebook


def _output_handler(
    on_output: Callable[[CellProgress, Message], Awaitable[None] | None], progress: CellProgress
) -> Callable[[Message], Awaitable[None] | None]:
    def handler(message: Message) -> Awaitable[None] | None:
        if message.msg_type in _OUTPUT_TYPES:
            return on_output(progress, message)
        return None

    return handler


def _failure(record: _CellRecord, reply: object) -> ErrorReply | None:
    """What makes the cell count as raising: an error reply, or a rejected output."""
    if isinstance(reply, ErrorReply):
        return reply
    rejected = record.outputs.rejected
    if rejected:
        return ErrorReply(
            ename=INVALID_OUTPUT,
            evalue=rejected[0],
            traceback=[f"{INVALID_OUTPUT}: {rejected[0]}"],
        )
    return None


async def _cell_done(
    document: NotebookDocument, progress: CellProgress, options: _RunOptions
) -> None:
    if options.on_cell_done is None:
        return
    # Reading the document brings the cell's outputs into notebook.cells.
    _ = document.notebook
    await _call(options.on_cell_done, progress)


async def _run_cell(
    document: NotebookDocument, cell: CodeCell, progress: CellProgress, options: _RunOptions
) -> None:
    errors_allowed = options.allow_errors or _RAISES_TAG in _tags(cell)
    seconds = options.cell_timeout(cell) if options.cell_timeout is not None else None
    if seconds is None:
        seconds = options.timeout
    record = document._start(cell)
    handlers: list[Any] = [record]
    if options.on_output is not None:
        handlers.append(_output_handler(options.on_output, progress))
    started = time.monotonic()
    try:
        reply = await document.kernel.execute(
            cell.source,
            handlers=handlers,
            timeout=seconds,
            stop_on_error=not errors_allowed,
        )
    except TimeoutError:
        # The kernel was interrupted and the cell has finished: it is done.
        await _cell_done(document, progress, options)
        raise
    finally:
        log.debug("cell %d ran in %.3f s", progress.index, time.monotonic() - started)
    failure = _failure(record, reply)
    await _cell_done(document, progress, options)
    if failure is not None and not errors_allowed:
        raise CellError(progress.index, cell.source, failure, cell_number=progress.number)
