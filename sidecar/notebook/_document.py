"""A notebook kept up to date while its cells run, one execute at a time.

:class:`NotebookDocument` holds a :class:`~sidecar.Notebook` and what a
frontend keeps beside one: the display map (``display_id`` -> every output
showing it, in any cell), the live outputs of each cell it executed, and the
kernel whose widgets the notebook shows.  Every execute of a cell gets a
recorder, a handler that applies the execute's messages to that cell as they
arrive, so callers that run cells one at a time (an editor, a server keeping
one document for many frontends, :func:`~sidecar.run_notebook`) all keep one
notebook, with display updates carried across executes.

Theory of operation
-------------------

While a cell runs, its outputs live as nbformat dicts in an
:class:`~sidecar.Outputs` collector, the same code every collector uses, so a
document, :func:`~sidecar.run_notebook` and a bare ``Outputs`` agree on what
a cell shows.  The cell's ``outputs`` holds structs built from those dicts
("materialised"):

- A message that changes a cell's own outputs or execution count marks the
  cell's record dirty.  :attr:`NotebookDocument.notebook` rebuilds the
  outputs of the dirty cells only: the cost is that of the cells that
  changed, never of the notebook's length.
- A display update also changes outputs of *other* cells.  Those change in
  place: each output struct shares its ``data`` and ``metadata`` dicts with
  its output dict, and ``Outputs`` updates those dicts in place (invariant 1
  of ``_outputs``), so no other cell needs rebuilding.

So one execute costs what its own outputs cost, whether the notebook holds 10
cells or 10,000.  Between snapshots every cell holds valid structs (a dirty
cell its previous state), so the notebook can be written at any moment.

Every change goes through :meth:`_CellRecord.__call__` and
:meth:`NotebookDocument._touch`: the one place to announce changes from,
once someone needs to listen.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Final, final

import msgspec

from ..client._outputs import Outputs
from ..wire import AbortedReply, ErrorReply, ExecuteReply, Message
from ._model import (
    Cell,
    CodeCell,
    DisplayDataOutput,
    ErrorOutput,
    ExecuteResultOutput,
    Notebook,
    Output,
    StreamOutput,
    assemble_notebook,
    cell_text,
    new_code_cell,
    new_notebook,
    normalize_ids,
    upgrade_notebook,
)

if TYPE_CHECKING:
    from ..client._handlers import Handler
    from ..client._kernel import Kernel, StdinCallback

__all__ = ["NotebookDocument"]

_TIMED_STATES: Final = frozenset({"busy", "idle"})
_DISPLAYS: Final = frozenset({"display_data", "update_display_data"})


def _display_id(message: Message) -> str | None:
    transient = getattr(message.content, "transient", None)
    display_id = transient.get("display_id") if isinstance(transient, dict) else None
    return display_id if isinstance(display_id, str) else None


def _timestamp(message: Message) -> str:
    """The message's date as nbclient records it (microseconds, ``Z``)."""
    when = message.header.datetime()
    if when is None:
        return message.header.date
    return when.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _output_struct(output: dict[str, Any]) -> Output:
    """The struct of an output dict that :class:`Outputs` made (so known valid).

    ``data`` and ``metadata`` are shared, not copied: display updates change
    them in place, and the struct must see that.
    """
    kind = output["output_type"]
    if kind == "stream":
        return StreamOutput(name=output["name"], text=output["text"])
    if kind == "display_data":
        return DisplayDataOutput(data=output["data"], metadata=output["metadata"])
    if kind == "execute_result":
        return ExecuteResultOutput(
            execution_count=output["execution_count"],
            data=output["data"],
            metadata=output["metadata"],
        )
    return ErrorOutput(
        ename=output["ename"], evalue=output["evalue"], traceback=output["traceback"]
    )


@final
class _IdentitySet:
    """A set of cells by identity (cells are structs that compare by value)."""

    __slots__ = ("_cells",)

    def __init__(self) -> None:
        self._cells: dict[int, Cell] = {}

    def add(self, cell: Cell) -> None:
        self._cells[id(cell)] = cell  # held, so the id is not reused

    def __contains__(self, cell: Cell) -> bool:
        return self._cells.get(id(cell)) is cell

    def clear(self) -> None:
        self._cells.clear()


@final
class _CellText:
    """A cell's file text, and the very objects it was made from."""

    __slots__ = ("cell", "execution_count", "id", "metadata", "outputs", "source", "text")

    def __init__(self, cell: Cell, text: str) -> None:
        self.cell = cell
        self.source = cell.source
        self.id = cell.id
        self.metadata = cell.metadata
        self.execution_count = getattr(cell, "execution_count", None)
        self.outputs = getattr(cell, "outputs", None)
        self.text = text

    def still(self, cell: Cell) -> bool:
        """Whether ``cell`` is still what the text was made from (as far as
        replacing its fields goes; executes mark what they change in place)."""
        return (
            self.cell is cell
            and self.source is cell.source
            and self.id == cell.id
            and self.metadata is cell.metadata
            and self.execution_count == getattr(cell, "execution_count", None)
            and self.outputs is getattr(cell, "outputs", None)
        )


@final
class _CellRecord:
    """The recorder of one execute of one cell: a handler for its messages."""

    __slots__ = ("cell", "closed", "displays", "document", "outputs", "timing")

    def __init__(self, document: NotebookDocument, cell: CodeCell) -> None:
        self.document = document
        self.cell = cell
        self.outputs = Outputs(document._displays)
        self.timing: dict[str, str] | None = {} if document.record_timing else None
        self.closed = False
        self.displays: set[str] = set()
        """The display ids this execute showed (see NotebookDocument._displayed)."""

    def __call__(self, message: Message) -> None:
        if self.closed:
            # The cell was executed again: this execute's late output is gone
            # from the document, as in a frontend.
            return
        kind = message.msg_type
        timing = self.timing
        if timing is not None:
            if kind == "status":
                state = message.content.execution_state
                if state in _TIMED_STATES:
                    timing[f"iopub.status.{state}"] = _timestamp(message)
            elif kind == "execute_input":
                timing["iopub.execute_input"] = _timestamp(message)
            elif kind == "execute_reply":
                timing["shell.execute_reply"] = _timestamp(message)
                started = message.metadata.get("started")
                if isinstance(started, str):
                    timing["shell.execute_reply.started"] = started
        self.document._stale.add(self.cell)  # timings too are part of the cell
        method = getattr(self.outputs, f"on_{kind}", None)
        if method is not None:
            method(message)
            self.document._touch(self)
            if kind in _DISPLAYS:
                display_id = _display_id(message)
                if display_id is not None:
                    self.document._displayed(display_id, self, kind == "display_data")

    def materialize(self) -> None:
        """Put the live outputs and execution count into the cell."""
        cell = self.cell
        cell.outputs = [_output_struct(output) for output in self.outputs.outputs]
        cell.execution_count = self.outputs.execution_count


@final
class NotebookDocument:
    """A notebook that executes on a kernel write into as they run, cell by cell.

    Build one on a kernel (and a notebook, or a new empty one), then run
    cells one at a time with :meth:`execute`: each execute's outputs go into
    its cell as they arrive, applied as a frontend applies them; a display
    update reaches every output showing the ``display_id``, in any cell, as
    do later displays with the same id; ipywidgets state goes into
    ``metadata.widgets`` and timings into each cell's ``metadata.execution``,
    as nbclient saves them.  Executing a cell again replaces its outputs, and
    those leave the display map.

    Read :attr:`notebook` to get the notebook with everything up to date; it
    is always valid nbformat, ready for :func:`~sidecar.save_notebook`.

    Args:
        kernel: runs the cells, and holds the widget state.
        notebook: the notebook to keep (changed in place); a new empty one
            if None.
        record_timing: record each executed cell's timings in its
            ``metadata.execution``.

    Attributes:
        kernel: the kernel.
        record_timing: whether timings are recorded.
    """

    def __init__(
        self, kernel: Kernel, notebook: Notebook | None = None, *, record_timing: bool = True
    ) -> None:
        self.kernel = kernel
        self.record_timing = record_timing
        self._notebook = new_notebook() if notebook is None else notebook
        self._displays: dict[str, list[dict[str, Any]]] = {}
        # id(cell) -> the record of its last execute; a record holds its
        # cell, so the id is not reused while it is a key.
        self._records: dict[int, _CellRecord] = {}
        self._dirty: set[_CellRecord] = set()
        # display_id -> the records whose outputs showed it: a display update
        # changes their cells in place, so their file text must be redone.
        self._display_owners: dict[str, set[_CellRecord]] = {}
        # Cells changed since the last ipynb(): their file text must be redone.
        self._stale: _IdentitySet = _IdentitySet()
        # id(cell) -> what its file text was made from (the objects themselves,
        # held so that their ids are not reused), and the text.
        self._texts: dict[int, _CellText] = {}
        if kernel.info is not None:
            language_info = msgspec.to_builtins(kernel.info.language_info)
            self._notebook.metadata["language_info"] = language_info

    @property
    def notebook(self) -> Notebook:
        """The notebook, every cell's outputs and the widget state brought up to date.

        Costs what changed since the last read, not the notebook's length.
        """
        for record in self._dirty:
            record.materialize()
        self._dirty.clear()
        widgets = self.kernel.widgets.metadata()
        if widgets is not None:
            self._notebook.metadata["widgets"] = widgets
        return self._notebook

    def add_code_cell(
        self, source: str = "", *, metadata: Mapping[str, Any] | None = None, id: str | None = None
    ) -> CodeCell:
        """Append a new code cell (not run yet) and return it.

        A notebook older than nbformat 4.5 is upgraded to 4.5 first, as
        nbformat's ``upgrade`` does (every cell gets an id), since new cells
        have ids.
        """
        upgrade_notebook(self._notebook)
        cell = new_code_cell(source, metadata=metadata, id=id)
        self._notebook.cells.append(cell)
        return cell

    def _code_cell(self, cell: CodeCell | int) -> CodeCell:
        if isinstance(cell, int):
            found = self._notebook.cells[cell]
            if not isinstance(found, CodeCell):
                raise TypeError(f"cell {cell} is a {found.cell_type} cell, not a code cell")
            return found
        return cell

    def _touch(self, record: _CellRecord) -> None:
        self._dirty.add(record)

    def _displayed(self, display_id: str, record: _CellRecord, shown: bool) -> None:
        owners = self._display_owners.setdefault(display_id, set())
        if shown:
            owners.add(record)
            record.displays.add(display_id)
        for owner in owners:
            self._stale.add(owner.cell)

    def _forget_displays(self, record: _CellRecord) -> None:
        """``record``'s outputs left the display map: it owns no display any more."""
        for display_id in record.displays:
            owners = self._display_owners.get(display_id)
            if owners is not None:
                owners.discard(record)
                if not owners:
                    del self._display_owners[display_id]
        record.displays.clear()

    def ipynb(self) -> bytes:
        """:attr:`notebook` as ``.ipynb`` file content, byte for byte what
        :func:`~sidecar.write_notebook` gives.

        Costs what changed since the last call, not the notebook's length:
        each cell's text is kept and made again only once an execute (or
        :meth:`clear_outputs`) changed the cell, its outputs or a display it
        shows, or once its source, execution count, id, outputs or metadata
        object is another.  A cell changed
        in place some other way (its metadata dict edited, say) is not
        seen: use :func:`~sidecar.write_notebook` after such edits.

        Raises:
            NotebookError: as :func:`~sidecar.write_notebook`.
        """
        notebook = self.notebook
        normalize_ids(notebook)
        old, stale = self._texts, self._stale
        texts: dict[int, _CellText] = {}
        pieces = []
        for cell in notebook.cells:
            kept = old.get(id(cell))
            if kept is None or cell in stale or not kept.still(cell):
                kept = _CellText(cell, cell_text(cell))
            texts[id(cell)] = kept
            pieces.append(kept.text)
        self._texts = texts
        stale.clear()
        return assemble_notebook(notebook, pieces)

    def _start(self, cell: CodeCell | int) -> _CellRecord:
        cell = self._code_cell(cell)
        previous = self._records.get(id(cell))
        if previous is not None:
            previous.closed = True
            previous.outputs.clear()  # its outputs leave the display map
            self._forget_displays(previous)
            self._dirty.discard(previous)
        record = _CellRecord(self, cell)
        self._records[id(cell)] = record
        cell.outputs = []
        cell.execution_count = None
        if record.timing is not None:
            cell.metadata["execution"] = record.timing
        return record

    def record(self, cell: CodeCell | int) -> Callable[[Message], None]:
        """Start an execute of ``cell``: its outputs are cleared, and the
        handler returned applies the execute's messages to it.

        For executes that :meth:`execute` does not send: pass the handler to
        :meth:`Kernel.execute <sidecar.Kernel.execute>` (or feed it each
        message of the request yourself).  A later :meth:`record` or
        :meth:`execute` of the same cell makes this handler ignore what it
        still gets.

        Args:
            cell: a code cell of the notebook, or its index in
                ``notebook.cells``.

        Raises:
            TypeError: the index is that of a markdown or raw cell.
            IndexError: no cell at that index.
        """
        return self._start(cell)

    async def execute(
        self,
        cell: CodeCell | int,
        *,
        handlers: Sequence[Handler] = (),
        timeout: float | None = None,
        stop_on_error: bool = True,
        stdin: StdinCallback | None = None,
    ) -> ExecuteReply | ErrorReply | AbortedReply:
        """Run ``cell``'s source on the kernel, its outputs going into the cell.

        The cell's earlier outputs are replaced.  Returns the reply, as
        :meth:`Kernel.execute <sidecar.Kernel.execute>` does, once the cell
        holds its outputs and execution count (output the kernel sends after
        that, from a background thread say, is in :attr:`notebook`).

        Args:
            cell: a code cell of the notebook, or its index in
                ``notebook.cells``.
            handlers: more handlers for the execute's messages, called after
                the document applied each one.
            timeout: seconds before the kernel is interrupted and
                ``TimeoutError`` raised.
            stop_on_error: ask the kernel to abort queued executes if this
                one raises.
            stdin: answers ``input()`` (see :meth:`Kernel.execute
                <sidecar.Kernel.execute>`).

        Raises:
            TypeError: the index is that of a markdown or raw cell.
            IndexError: no cell at that index.
            TimeoutError: ``timeout`` expired (the kernel was interrupted).
            HandlerError: one of ``handlers`` raised.
            KernelDied: the kernel died meanwhile.
        """
        record = self._start(cell)
        try:
            return await self.kernel.execute(
                record.cell.source,
                handlers=[record, *handlers],
                timeout=timeout,
                stop_on_error=stop_on_error,
                stdin=stdin,
            )
        finally:
            self._bring_up_to_date(record)

    def _bring_up_to_date(self, record: _CellRecord) -> None:
        if record in self._dirty:
            record.materialize()
            self._dirty.discard(record)

    def clear_outputs(self, cell: CodeCell | int) -> None:
        """Empty ``cell``'s outputs and execution count; they leave the display map.

        Outputs of an execute of the cell still running go on arriving.

        Raises:
            TypeError: the index is that of a markdown or raw cell.
            IndexError: no cell at that index.
        """
        cell = self._code_cell(cell)
        record = self._records.get(id(cell))
        if record is not None:
            record.outputs.clear()
            record.outputs.execution_count = None
            self._forget_displays(record)
            self._touch(record)
        self._stale.add(cell)
        cell.outputs = []
        cell.execution_count = None
