"""Running notebooks: the code cells in order on one kernel, outputs into the document.

Outputs are applied the way Jupyter frontends apply them (see ``_outputs``),
with one display map for the whole notebook so ``update_display_data`` in a
later cell updates an earlier cell's output.  ipywidgets state goes into
``metadata.widgets`` as nbclient saves it, and timings into each cell's
``metadata.execution`` as nbclient's ``record_timing`` does.

Tags honoured, as in nbclient and papermill: ``skip-execution`` (not run),
``raises-exception`` (an error is expected and does not stop the run),
``parameters`` (injected parameters go in a new cell right after it, tagged
``injected-parameters``, replacing one from an earlier run).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Final, final

import msgspec

from ._exceptions import ExecutionError
from ._notebook import CodeCell, Notebook, new_code_cell, outputs_from_dicts
from ._outputs import Outputs
from .client._kernel import Kernel
from .wire import ErrorReply, Message

__all__ = ["CellError", "CellProgress", "parameters_source", "run_notebook"]

log = logging.getLogger("sidecar.run")

_PARAMETERS_TAG: Final = "parameters"
_INJECTED_TAG: Final = "injected-parameters"
_SKIP_TAG: Final = "skip-execution"
_RAISES_TAG: Final = "raises-exception"


class CellError(ExecutionError):
    """A cell raised and errors were not allowed for it.

    Attributes:
        cell_index: the index of the cell in ``notebook.cells``.
        source: the cell's code.
    """

    def __init__(self, cell_index: int, source: str, reply: ErrorReply) -> None:
        super().__init__(reply.ename, reply.evalue, reply.traceback)
        self.cell_index = cell_index
        self.source = source

    def __str__(self) -> str:
        return f"cell {self.cell_index} raised {self.ename}: {self.evalue}"


@final
class CellProgress(msgspec.Struct, frozen=True, kw_only=True):
    """What :func:`run_notebook` tells its ``on_cell`` callback before each code cell."""

    index: int
    """Position of the cell in ``notebook.cells``."""
    number: int
    """1-based count among the code cells that will run."""
    total: int
    """How many code cells will run."""


def _tags(cell: Any) -> list[str]:
    tags = cell.metadata.get("tags", [])
    return [t for t in tags if isinstance(t, str)] if isinstance(tags, list) else []


def _literal(value: Any) -> str:
    """``value`` as Python source, for the injected parameters cell."""
    return repr(value)


def parameters_source(parameters: Mapping[str, Any]) -> str:
    """The code of an injected parameters cell (what papermill writes for Python)."""
    lines = ["# Parameters"]
    lines += [f"{name} = {_literal(value)}" for name, value in parameters.items()]
    return "\n".join(lines) + "\n"


def inject_parameters(notebook: Notebook, parameters: Mapping[str, Any]) -> int:
    """Insert the parameters cell after the cell tagged ``parameters`` (or first).

    A cell tagged ``injected-parameters`` from an earlier run is replaced.
    Returns the index of the new cell.
    """
    cells = notebook.cells
    cells[:] = [c for c in cells if _INJECTED_TAG not in _tags(c)]
    at = next((i + 1 for i, c in enumerate(cells) if _PARAMETERS_TAG in _tags(c)), 0)
    cell = new_code_cell(parameters_source(parameters), metadata={"tags": [_INJECTED_TAG]})
    cells.insert(at, cell)
    return at


def _timestamp(message: Message) -> str:
    """The message's date as nbclient records it (microseconds, ``Z``)."""
    when = message.header.datetime()
    if when is None:
        return message.header.date
    return when.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@final
class _CellRecorder:
    """A handler that applies one execute's messages to one code cell."""

    def __init__(self, cell: CodeCell, displays: dict[str, list[dict[str, Any]]]) -> None:
        self.cell = cell
        self.outputs = Outputs(displays)
        self.timing: dict[str, str] = {}

    def __call__(self, message: Message) -> None:
        kind = message.msg_type
        if kind == "status":
            state = message.content.execution_state
            if state in ("busy", "idle"):
                self.timing[f"iopub.status.{state}"] = _timestamp(message)
        elif kind == "execute_input":
            self.timing["iopub.execute_input"] = _timestamp(message)
        elif kind == "execute_reply":
            self.timing["shell.execute_reply"] = _timestamp(message)
            started = message.metadata.get("started")
            if isinstance(started, str):
                self.timing["shell.execute_reply.started"] = started
        method = getattr(self.outputs, f"on_{kind}", None)
        if method is not None:
            method(message)


async def run_notebook(
    notebook: Notebook,
    kernel: Kernel,
    *,
    timeout: float | None = None,
    allow_errors: bool = False,
    parameters: Mapping[str, Any] | None = None,
    record_timing: bool = True,
    on_cell: Callable[[CellProgress], Awaitable[None] | None] | None = None,
) -> Notebook:
    """Run the code cells of ``notebook`` in order on ``kernel``, filling in outputs.

    The notebook is changed in place and returned.  Each cell's outputs,
    ``execution_count`` and (with ``record_timing``) ``metadata.execution`` are
    replaced; ``metadata.widgets`` gets the widget state, and
    ``metadata.language_info`` the kernel's.

    Args:
        timeout: seconds each cell may run; a cell that takes longer is
            interrupted and ``TimeoutError`` raised.
        allow_errors: record errors and go on, instead of stopping at the
            first cell that raises (a cell tagged ``raises-exception`` is
            always allowed to).
        parameters: injected as a new cell after the one tagged ``parameters``.
        on_cell: called before each code cell runs.

    Raises:
        CellError: a cell raised and errors were not allowed; the notebook
            holds everything run so far, the failing cell's error included.
        TimeoutError: a cell ran longer than ``timeout``.
        KernelDied: the kernel died.
    """
    if parameters:
        inject_parameters(notebook, parameters)
    if kernel.info is not None:
        notebook.metadata["language_info"] = msgspec.to_builtins(kernel.info.language_info)
    # One display map for the notebook: an update_display_data in a later
    # cell updates the earlier cells' outputs, so outputs stay dicts (shared
    # with the map) until the run ends and are written into the cells then.
    displays: dict[str, list[dict[str, Any]]] = {}
    recorders: list[_CellRecorder] = []
    runnable = [
        (i, cell)
        for i, cell in enumerate(notebook.cells)
        if isinstance(cell, CodeCell) and cell.source.strip() and _SKIP_TAG not in _tags(cell)
    ]
    try:
        for number, (index, cell) in enumerate(runnable, start=1):
            if on_cell is not None:
                result = on_cell(CellProgress(index=index, number=number, total=len(runnable)))
                if result is not None:
                    await result
            recorder = _CellRecorder(cell, displays)
            recorders.append(recorder)
            await _run_cell(kernel, recorder, index, timeout, allow_errors, record_timing)
    finally:
        for recorder in recorders:
            recorder.cell.outputs = outputs_from_dicts(recorder.outputs.outputs)
        widgets = kernel.widgets.metadata()
        if widgets is not None:
            notebook.metadata["widgets"] = widgets
    return notebook


async def _run_cell(
    kernel: Kernel,
    recorder: _CellRecorder,
    index: int,
    timeout: float | None,
    allow_errors: bool,
    record_timing: bool,
) -> None:
    cell = recorder.cell
    errors_allowed = allow_errors or _RAISES_TAG in _tags(cell)
    cell.outputs = []
    cell.execution_count = None
    if record_timing:
        cell.metadata["execution"] = {}
    started = time.monotonic()
    try:
        reply = await kernel.execute(
            cell.source,
            handlers=[recorder],
            timeout=timeout,
            stop_on_error=not errors_allowed,
        )
    finally:
        # Whatever happened (error, timeout, Ctrl-C), the cell shows what ran.
        cell.execution_count = recorder.outputs.execution_count
        if record_timing:
            cell.metadata["execution"] = recorder.timing
        log.debug("cell %d ran in %.3f s", index, time.monotonic() - started)
    if isinstance(reply, ErrorReply) and not errors_allowed:
        raise CellError(index, cell.source, reply)
