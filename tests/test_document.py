"""The incremental document against real ipykernels, nbclient as the oracle for what
cells show and nbformat for what a notebook may hold."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import nbformat
import pytest
from nbclient import NotebookClient

import sidecar
from sidecar.notebook._document import _CellRecord
from sidecar.wire import DisplayData, ExecuteInput, Message, Session, Status, Stream

pytestmark = [pytest.mark.kernel, pytest.mark.anyio]

# Displays with one id in several cells, ending with a display (not an update)
# so only a display that updates earlier outputs gives what nbclient gives.
DISPLAY_IDS = [
    "from IPython.display import clear_output, display, update_display\n"
    "h = display('foo', display_id='the-id')",
    "h.update('updated')",
    "display('bar', display_id='the-id')",
    "display('baz', display_id='the-id');",
    "h2 = display('one', display_id='other')\nprint('between')",
    "h2.update('two')",
    "h2.display('three')",
    "display('gone', display_id='cleared')\nclear_output(wait=True)\nprint('after the clear')",
    "update_display('not shown anywhere', display_id='cleared')\n"
    "display('new', display_id='cleared')",
]


def _cell_outputs(nb: dict[str, Any]) -> list[list[dict[str, Any]]]:
    """Outputs per code cell, consecutive streams merged, counts left out."""
    cells = []
    for cell in nb["cells"]:
        if cell["cell_type"] != "code":
            continue
        merged: list[dict[str, Any]] = []
        for output in cell["outputs"]:
            output = {k: v for k, v in output.items() if k != "execution_count"}
            if isinstance(output.get("text"), list):
                output["text"] = "".join(output["text"])
            if isinstance(output.get("data"), dict):
                output["data"] = {
                    k: "".join(v) if isinstance(v, list) else v for k, v in output["data"].items()
                }
            last = merged[-1] if merged else None
            if (
                last is not None
                and output["output_type"] == "stream"
                and last["output_type"] == "stream"
                and last["name"] == output["name"]
            ):
                last["text"] += output["text"]
            else:
                merged.append(output)
        cells.append(merged)
    return cells


def _validated(notebook: sidecar.Notebook) -> dict[str, Any]:
    """The notebook as nbformat reads our file of it, after nbformat validated it."""
    nb = nbformat.reads(sidecar.write_notebook(notebook).decode(), as_version=4)
    nbformat.validate(nb)
    return json.loads(nbformat.writes(nb))  # type: ignore[no-any-return]


@pytest.fixture(scope="module")
def nbclient_display_ids() -> list[list[dict[str, Any]]]:
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(c) for c in DISPLAY_IDS])
    client = NotebookClient(nb, kernel_name="python3", timeout=60)
    loop = asyncio.new_event_loop()
    try:
        loop.run_until_complete(client.async_execute())
    finally:
        loop.close()
    return _cell_outputs(json.loads(nbformat.writes(nb)))


async def test_display_ids_across_cells_as_nbclient(
    kernel: sidecar.Kernel, nbclient_display_ids: list[list[dict[str, Any]]]
) -> None:
    first = nbclient_display_ids[0][0]["data"]["text/plain"]
    assert first == "'baz'"  # the oracle itself: a later display updated the first cell
    notebook = sidecar.new_notebook(cells=[sidecar.new_code_cell(c) for c in DISPLAY_IDS])
    await sidecar.run_notebook(notebook, kernel)
    assert _cell_outputs(_validated(notebook)) == nbclient_display_ids
    # The same, one execute at a time into a document, as an editor would.
    document = sidecar.NotebookDocument(kernel)
    for code in DISPLAY_IDS:
        await document.execute(document.add_code_cell(code))
    assert _cell_outputs(_validated(document.notebook)) == nbclient_display_ids


async def test_cells_run_one_at_a_time_and_again(kernel: sidecar.Kernel) -> None:
    document = sidecar.NotebookDocument(kernel)
    a = document.add_code_cell(
        "from IPython.display import display\nh = display('first', display_id='x')"
    )
    await document.execute(a)
    b = document.add_code_cell("h.update('second')\n40 + 2")
    reply = await document.execute(1)
    assert reply.status == "ok"
    notebook = document.notebook
    assert notebook.cells == [a, b]
    assert sidecar.outputs_to_dicts(a.outputs) == [
        {"output_type": "display_data", "data": {"text/plain": "'second'"}, "metadata": {}}
    ]
    assert isinstance(b.outputs[0], sidecar.ExecuteResultOutput)
    assert b.outputs[0].data == {"text/plain": "42"}
    assert a.execution_count is not None
    assert b.execution_count == b.outputs[0].execution_count == a.execution_count + 1
    assert set(b.metadata["execution"]) >= {
        "iopub.status.busy",
        "iopub.execute_input",
        "shell.execute_reply",
        "iopub.status.idle",
    }
    assert notebook.metadata["language_info"]["name"] == "python"

    # Running a cell again replaces its outputs; the old ones leave the display map.
    a.source = "print('again')"
    await document.execute(a)
    await document.execute(document.add_code_cell("h.update('third')"))
    assert sidecar.outputs_to_dicts(document.notebook.cells[0].outputs) == [  # type: ignore[union-attr]
        {"output_type": "stream", "name": "stdout", "text": "again\n"}
    ]
    a.source = "h = display('fourth', display_id='x')"
    await document.execute(a)
    await document.execute(document.add_code_cell("h.update('fifth')"))
    assert a.outputs[0].data == {"text/plain": "'fifth'"}  # type: ignore[union-attr]
    document.clear_outputs(a)
    assert a.outputs == []
    assert a.execution_count is None
    _validated(document.notebook)


async def test_the_notebook_is_valid_at_every_message(kernel: sidecar.Kernel) -> None:
    """Read and written at any moment of an execute, the notebook is one nbformat accepts,
    and never holds an update_display_data "output" (as kernel-sidecar's builder writes)."""
    document = sidecar.NotebookDocument(kernel)
    await document.execute(
        document.add_code_cell(
            "from IPython.display import display\nh = display(1, display_id='d')"
        )
    )
    seen: list[str] = []

    def check(message: Message) -> None:
        seen.append(message.msg_type)
        nb = _validated(document.notebook)
        kinds = {o["output_type"] for cell in nb["cells"] for o in cell.get("outputs", [])}
        assert kinds <= {"stream", "display_data", "execute_result", "error"}

    cell = document.add_code_cell(
        "import sys\n"
        "from IPython.display import clear_output, update_display\n"
        "print('a', end='\\r'); print('b')\n"
        "print('err', file=sys.stderr)\n"
        "h.update({'text/plain': 'two'}, raw=True)\n"
        "display({'a': 1}, raw=True)\n"
        "update_display({'text/html': {'x': 1}}, display_id='d', raw=True)\n"
        "clear_output(wait=True)\n"
        "h.display(3)\n"
        "1 / 0"
    )
    reply = await document.execute(cell, handlers=[check])
    assert reply.status == "error"
    assert {"stream", "update_display_data", "display_data", "clear_output", "error"} <= set(seen)
    nb = _validated(document.notebook)
    assert [o["output_type"] for o in nb["cells"][1]["outputs"]] == ["display_data", "error"]
    assert nb["cells"][0]["outputs"][0]["data"] == {"text/plain": ["3"]}


async def test_outputs_nbformat_rejects_stop_the_run_and_the_file_validates(
    kernel: sidecar.Kernel,
) -> None:
    """nbclient and papermill stop with a validation error and write nothing; we put an
    error output in the cell, stop there unless errors are allowed, and stay valid."""
    cells = [
        sidecar.new_markdown_cell("# before the code"),
        sidecar.new_code_cell("print('before')"),
        sidecar.new_code_cell("display({'a': 1}, raw=True)\nprint('after the display')"),
        sidecar.new_code_cell(
            # What a kernel may send that ipykernel's display API would not.
            "k = get_ipython().kernel\n"
            "def send(kind, content):\n"
            "    k.session.send(k.iopub_socket, kind, content, parent=k.get_parent())\n"
            "send('execute_result', {'execution_count': -1, 'data': {'text/plain': 'r'},"
            " 'metadata': {}, 'transient': {'display_id': 'r'}})\n"
            "send('update_display_data', {'data': {'text/plain': 5}, 'metadata': {},"
            " 'transient': {'display_id': 'r'}})"
        ),
    ]
    notebook = sidecar.new_notebook(cells=cells)
    done: list[int] = []
    with pytest.raises(sidecar.CellError) as info:
        await sidecar.run_notebook(
            notebook, kernel, on_cell_done=lambda progress: done.append(progress.index)
        )
    assert (info.value.cell_index, info.value.cell_number) == (2, 2)
    assert info.value.ename == "InvalidOutput"
    assert "data['a'] is a number" in info.value.evalue
    assert done == [1, 2]
    nb = _validated(notebook)
    assert [o["output_type"] for o in nb["cells"][2]["outputs"]] == ["error", "stream"]
    assert nb["cells"][3]["outputs"] == []

    notebook = sidecar.new_notebook(cells=cells)
    await sidecar.run_notebook(notebook, kernel, allow_errors=True)
    nb = _validated(notebook)
    outputs = nb["cells"][3]["outputs"]
    assert outputs[0]["output_type"] == "execute_result"
    assert outputs[0]["execution_count"] is None
    assert outputs[0]["data"] == {"text/plain": ["r"]}  # the bad update did not reach it
    assert outputs[1]["ename"] == "InvalidOutput"
    assert "update_display_data message" in outputs[1]["evalue"]


async def test_output_widgets_are_hydrated(kernel: sidecar.Kernel) -> None:
    pytest.importorskip("ipywidgets")
    document = sidecar.NotebookDocument(kernel)
    cell = document.add_code_cell(
        "import ipywidgets\nout = ipywidgets.Output()\ndisplay(out)\n"
        "with out:\n    print('captured')\n"
        "print('in the cell')"
    )
    await document.execute(cell)
    notebook = document.notebook
    view = cell.outputs[0]
    assert isinstance(view, sidecar.DisplayDataOutput)
    model_id = view.data["application/vnd.jupyter.widget-view+json"]["model_id"]
    state = notebook.metadata["widgets"]["application/vnd.jupyter.widget-state+json"]["state"]
    assert state[model_id]["model_name"] == "OutputModel"
    assert state[model_id]["state"]["outputs"] == [
        {"output_type": "stream", "name": "stdout", "text": "captured\n"}
    ]
    assert sidecar.outputs_to_dicts(cell.outputs[1:]) == [
        {"output_type": "stream", "name": "stdout", "text": "in the cell\n"}
    ]
    _validated(notebook)


async def test_a_recorder_fed_by_hand_and_one_taken_over(kernel: sidecar.Kernel) -> None:
    """``record`` is for executes the document does not send (a server forwarding a
    frontend's): any handler place works, and a newer record wins."""
    document = sidecar.NotebookDocument(kernel)
    cell = document.add_code_cell("print('x')")
    old = document.record(cell)
    new = document.record(0)
    await kernel.execute("print('to the new one')", handlers=[old, new])
    assert sidecar.outputs_to_dicts(document.notebook.code_cells()[0].outputs) == [
        {"output_type": "stream", "name": "stdout", "text": "to the new one\n"}
    ]
    document.notebook.cells.append(sidecar.new_markdown_cell("text"))
    with pytest.raises(TypeError, match="markdown"):
        await document.execute(1)


async def test_adding_a_cell_to_an_old_notebook_upgrades_it(
    kernel: sidecar.Kernel, tmp_path: Path
) -> None:
    old = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("1")])
    old.nbformat_minor = 4
    del old.cells[0]["id"]
    path = tmp_path / "old.ipynb"
    nbformat.write(old, path)
    document = sidecar.NotebookDocument(kernel, sidecar.read_notebook(path))
    await document.execute(document.add_code_cell("2"))
    nb = _validated(document.notebook)
    assert nb["nbformat_minor"] == 5
    assert all(len(cell["id"]) == 8 for cell in nb["cells"])


# -- cost per execute --------------------------------------------------------------------------

SESSION = Session()


def _execute_messages(n: int) -> list[Message]:
    """What an execute of ``display(n, display_id='shared'); print(n)`` sends."""
    return [
        SESSION.message("status", Status(execution_state="busy")),
        SESSION.message("execute_input", ExecuteInput(code="", execution_count=n)),
        SESSION.message(
            "display_data",
            DisplayData(data={"text/plain": str(n)}, transient={"display_id": "shared"}),
        ),
        SESSION.message("stream", Stream(name="stdout", text=f"{n}\n")),
        SESSION.message("status", Status(execution_state="idle")),
    ]


async def test_an_execute_rebuilds_only_what_it_changed(
    kernel: sidecar.Kernel, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Reading the notebook after an execute rebuilds that cell alone, though its display
    changed the output of every earlier cell: the cost does not grow with the notebook."""
    document = sidecar.NotebookDocument(kernel)
    for n in range(2000):
        handler = document.record(document.add_code_cell(f"{n}"))
        for message in _execute_messages(n):
            handler(message)
    notebook = document.notebook
    rebuilt: list[sidecar.CodeCell] = []
    materialize = _CellRecord.materialize

    def counting(record: _CellRecord) -> None:
        rebuilt.append(record.cell)
        materialize(record)

    monkeypatch.setattr(_CellRecord, "materialize", counting)
    last = document.add_code_cell("last")
    handler = document.record(last)
    for message in _execute_messages(2000):
        handler(message)
    assert document.notebook is notebook
    assert rebuilt == [last]
    first = notebook.cells[0]
    assert isinstance(first, sidecar.CodeCell)
    assert first.outputs[0].data == {"text/plain": "2000"}  # type: ignore[union-attr]
    assert last.execution_count == 2000


async def test_ipynb_is_write_notebook_and_redoes_only_what_changed(
    kernel: sidecar.Kernel, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The file content a server writes after every execute: what write_notebook
    gives, at the cost of the cells that changed (display updates reach back)."""
    from sidecar.notebook import _document

    made: list[str] = []
    real = _document.cell_text

    def counted(cell: sidecar.Cell) -> str:
        made.append(cell.source)
        return real(cell)

    monkeypatch.setattr(_document, "cell_text", counted)
    document = sidecar.NotebookDocument(kernel)
    for i in range(50):
        document.notebook.cells.append(sidecar.new_markdown_cell(f"note {i}"))
    assert document.ipynb() == sidecar.write_notebook(document.notebook)
    assert len(made) == 50
    for code in DISPLAY_IDS:
        made.clear()
        await document.execute(document.add_code_cell(code))
        assert document.ipynb() == sidecar.write_notebook(document.notebook), code
        # The new cell, and the earlier cells showing a display it updated.
        assert code in made
        assert len(made) <= 4, made
    made.clear()
    assert document.ipynb() == sidecar.write_notebook(document.notebook)
    assert made == []
    # Running the first cell again changes it (and what showed its display).
    await document.execute(50)
    assert document.ipynb() == sidecar.write_notebook(document.notebook)
    assert DISPLAY_IDS[0] in made
    # Cleared outputs, and the same cell run again to the same count of messages.
    document.clear_outputs(51)
    assert document.ipynb() == sidecar.write_notebook(document.notebook)
    await document.execute(51)
    assert document.ipynb() == sidecar.write_notebook(document.notebook)
    nbformat.validate(json.loads(document.ipynb()))
    # What re-executed cells showed no longer holds them.
    owners = document._display_owners
    live = {id(r) for r in document._records.values()}
    assert all(id(r) in live for records in owners.values() for r in records)
