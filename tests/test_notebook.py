"""The notebook document model against nbformat, the reference implementation.

The oracle for every round trip is what nbformat puts in a file:
``nbformat.writes(nbformat.reads(text, as_version=4)) + "\\n"``.  Where cell ids
are generated, both sides draw them from the same deterministic sequence.
"""

from __future__ import annotations

import contextlib
import copy
import glob
import itertools
import json
import os
import stat
import sys
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import msgspec
import nbformat
import nbformat.validator
import pytest
from hypothesis import given, settings, strategies as st

import sidecar.notebook._model as notebook_module
from sidecar import Outputs, SidecarError
from sidecar.notebook._model import (
    CodeCell,
    DisplayDataOutput,
    ErrorOutput,
    ExecuteResultOutput,
    MarkdownCell,
    Notebook,
    NotebookError,
    Output,
    RawCell,
    StreamOutput,
    new_code_cell,
    new_markdown_cell,
    new_notebook,
    new_raw_cell,
    outputs_from_dicts,
    outputs_to_dicts,
    read_notebook,
    save_notebook,
    write_notebook,
)
from sidecar.wire import (
    ClearOutput,
    DisplayData,
    ErrorOutput as WireErrorOutput,
    ExecuteResult,
    Stream,
)

JSON = dict[str, Any]

PNG = (  # a 1x1 PNG
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk"
    "+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg=="
)
# Text with every line break str.splitlines knows: nbformat splits on all of them.
ODD_BREAKS = "a\r\nb\rc\x0bd\x0ce\x1cf\x1dg\x1eh\x85i\u2028j\u2029k\n"
UNICODE = "Grüße, 日本語, עברית, e\u0301, 🐍🎉 👩‍👩‍👧\n\tend"


# -- the oracle ---------------------------------------------------------------------


def _id_sequence() -> Callable[[], str]:
    counter = itertools.count()
    return lambda: f"gen{next(counter):05d}"


@contextlib.contextmanager
def same_ids() -> Iterator[None]:
    """nbformat and sidecar draw generated cell ids from one deterministic sequence each."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(nbformat.validator, "generate_corpus_id", _id_sequence())
        mp.setattr(notebook_module, "_random_cell_id", _id_sequence())
        yield


def nbformat_file(text: str | bytes) -> bytes:
    """What nbformat.write puts in a file for this notebook text."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # MissingIDFieldWarning, DuplicateCellId
        nb = nbformat.reads(text, as_version=4)
        return (nbformat.writes(nb) + "\n").encode("utf-8")


def assert_same_as_nbformat(text: str | bytes) -> Notebook:
    with same_ids():
        expected = nbformat_file(text)
    with same_ids():
        nb = read_notebook(text)
        got = write_notebook(nb)
    assert got.decode() == expected.decode()
    assert got == expected
    # Reading our own output gives the same notebook and the same bytes again.
    again = read_notebook(got)
    assert again == nb
    assert write_notebook(again) == got
    return nb


# -- the corpus -------------------------------------------------------------------------


def lines(text: str) -> list[str]:
    return text.splitlines(True)


def nb_dict(cells: list[JSON], minor: int = 5, **metadata: Any) -> JSON:
    return {"nbformat": 4, "nbformat_minor": minor, "metadata": metadata, "cells": cells}


def code(
    source: Any, outputs: list[JSON] | None = None, count: int | None = None, **extra: Any
) -> JSON:
    return {
        "cell_type": "code",
        "execution_count": count,
        "metadata": {},
        "outputs": outputs or [],
        "source": source,
        **extra,
    }


def markdown(source: Any, **extra: Any) -> JSON:
    return {"cell_type": "markdown", "metadata": {}, "source": source, **extra}


def raw(source: Any, **extra: Any) -> JSON:
    return {"cell_type": "raw", "metadata": {}, "source": source, **extra}


def stream(text: Any, name: str = "stdout") -> JSON:
    return {"output_type": "stream", "name": name, "text": text}


def display(data: JSON, **metadata: Any) -> JSON:
    return {"output_type": "display_data", "data": data, "metadata": metadata}


def result(data: JSON, count: int | None = 1) -> JSON:
    return {"output_type": "execute_result", "execution_count": count, "data": data, "metadata": {}}


def error(ename: str = "ZeroDivisionError", evalue: str = "division by zero") -> JSON:
    tb = [
        "\x1b[0;31m---------------------------------\x1b[0m",
        f"\x1b[0;31m{ename}\x1b[0m: {evalue}",
    ]
    return {"output_type": "error", "ename": ename, "evalue": evalue, "traceback": tb}


WIDGET_STATE = {
    "application/vnd.jupyter.widget-state+json": {
        "state": {
            "5a1b": {
                "model_module": "@jupyter-widgets/controls",
                "model_module_version": "2.0.0",
                "model_name": "IntSliderModel",
                "state": {"value": 7, "max": 100, "step": 0.5, "description": "n"},
            }
        },
        "version_major": 2,
        "version_minor": 0,
    }
}
KERNELSPEC = {"display_name": "Python 3 (ipykernel)", "language": "python", "name": "python3"}
LANGUAGE_INFO = {
    "codemirror_mode": {"name": "ipython", "version": 3},
    "file_extension": ".py",
    "mimetype": "text/x-python",
    "name": "python",
    "nbconvert_exporter": "python",
    "pygments_lexer": "ipython3",
    "version": "3.11.7",
}


def everything(minor: int = 5, ids: bool = True) -> JSON:
    """A notebook with one of everything."""
    cells = [
        markdown(lines(f"# Title\n\n{UNICODE}\n![img](attachment:dot.png)")),
        markdown(
            "![dot](attachment:dot.png)",
            attachments={
                "dot.png": {"image/png": PNG},
                "split.png": {"image/png": [PNG[:40] + "\n", PNG[40:]]},
                "notes.txt": {"text/plain": ["one\n", "two"]},
                "pic.svg": {"image/svg+xml": "<svg>\n<rect/>\n</svg>\n"},
            },
        ),
        raw(lines("raw\ntext"), attachments={"a.txt": {"text/plain": "x\ny"}}),
        raw("", metadata={"format": "text/restructuredtext"}),
        code(""),
        code([]),
        code("x = 1"),
        code("print('a')\nprint('b')\n", [stream("a\nb\n")], 2),
        code(
            "import sys; print('e', file=sys.stderr)",
            [stream(["e\n", "f\n"], "stderr"), stream("", "stdout")],
            3,
        ),
        code(
            "show()",
            [
                display(
                    {
                        "text/plain": ["<Figure>\n", "size 1x1"],
                        "text/html": "<b>bold</b>\n<i>it</i>\n",
                        "text/latex": "$$\n\\alpha\n$$",
                        "text/markdown": f"**{UNICODE}**",
                        "image/png": PNG,
                        "image/jpeg": [PNG[:20] + "\n", PNG[20:] + "\n"],
                        "image/svg+xml": ["<svg>\n", "</svg>"],
                        "application/javascript": "console.log(1);\nconsole.log(2);",
                        "application/json": {"a": [1, 2.5, None, True], "b": "x\ny"},
                        "application/vnd.custom+json": ["keep\n", "as list"],
                        "application/vnd.jupyter.widget-view+json": {
                            "model_id": "5a1b",
                            "version_major": 2,
                            "version_minor": 0,
                        },
                        "application/pdf": "JVBERi0xLjQK",
                        "text/x-empty": "",
                    },
                    width=640,
                    **{"image/png": {"width": 1, "height": 1}},
                ),
            ],
            4,
        ),
        code(
            "6 * 7",
            [result({"text/plain": "42"}, 5), result({"text/plain": ["a\n", "b"]}, None)],
            5,
        ),
        code("1/0", [error()], 6, metadata={"tags": ["raises-exception"], "collapsed": False}),
        code(ODD_BREAKS, [stream(ODD_BREAKS), display({"text/plain": ODD_BREAKS})], 7),
        code(
            "no trailing newline\n\n",
            metadata={"jupyter": {"source_hidden": True}, "scrolled": "auto"},
        ),
    ]
    if ids:
        for i, cell in enumerate(cells):
            cell["id"] = f"cell-{i:02d}_x"
    return nb_dict(
        cells,
        minor,
        kernelspec=KERNELSPEC,
        language_info=LANGUAGE_INFO,
        widgets=WIDGET_STATE,
        title=f"notes {UNICODE}",
        authors=[{"name": "Ada"}],
        numbers=[0, -0.0, 0.1, 1e-05, 1e16, 1e22, 123456789012345678901234567890, 2.5],
    )


def with_unknown_keys() -> JSON:
    nb = everything()
    nb["custom_top"] = {"x": [1, 2]}
    nb["cells"][0]["custom_cell_key"] = "kept"
    nb["cells"][4]["attachments"] = {"c.txt": {"text/plain": ["code\n", "cell"]}}
    nb["cells"][7]["outputs"][0]["custom_output_key"] = [1, {"y": None}]
    nb["cells"][11]["outputs"][0]["text"] = ["stray\n", "text"]  # on an error output
    nb["cells"][12]["outputs"][1]["transient"] = {"display_id": "abc"}
    return nb


def with_transient_keys() -> JSON:
    nb = everything()
    nb["metadata"].update(orig_nbformat=3, orig_nbformat_minor=0, signature="sha256:00")
    nb["cells"][5]["metadata"]["trusted"] = True
    return nb


def without_ids(minor: int) -> JSON:
    return everything(minor=minor, ids=False)


def duplicate_ids() -> JSON:
    nb = everything()
    nb["cells"][3]["id"] = nb["cells"][1]["id"]
    nb["cells"][5]["id"] = nb["cells"][1]["id"]
    del nb["cells"][2]["id"]
    return nb


def some_without_ids() -> JSON:
    nb = everything()
    for cell in nb["cells"][::3]:
        del cell["id"]
    return nb


CORPUS: dict[str, JSON] = {
    "empty-4.5": nb_dict([]),
    "empty-4.0": nb_dict([], 0),
    "everything-4.5": everything(),
    **{f"everything-4.{m}-no-ids": without_ids(m) for m in range(5)},
    "4.4-with-ids": everything(minor=4, ids=True),
    "4.5-no-ids": without_ids(5),
    "4.5-some-ids": some_without_ids(),
    "4.5-duplicate-ids": duplicate_ids(),
    "4.6-future-minor": everything(minor=6),
    "unknown-keys": with_unknown_keys(),
    "transient-keys": with_transient_keys(),
    "special-floats": nb_dict([], 5, nan=float("nan"), inf=float("inf"), neg=-float("inf")),
}


def stringly(nb: JSON) -> JSON:
    """The same notebook with every list of lines stored as one string (also valid)."""
    nb = copy.deepcopy(nb)
    for cell in nb["cells"]:
        if isinstance(cell["source"], list):
            cell["source"] = "".join(cell["source"])
        for output in cell.get("outputs", []):
            if isinstance(output.get("text"), list):
                output["text"] = "".join(output["text"])
    return nb


def encodings(nb: JSON) -> dict[str, str]:
    """The notebook as text, in the ways files are found: nbformat's own layout,
    compact, ASCII-escaped, strings instead of line lists, keys unsorted."""
    return {
        "nbformat": json.dumps(nb, indent=1, sort_keys=True, ensure_ascii=False),
        "compact": json.dumps(nb, separators=(",", ":"), ensure_ascii=False),
        "ascii": json.dumps(nb, indent=2),
        "strings": json.dumps(stringly(nb), indent=4, ensure_ascii=False),
    }


CASES = [
    pytest.param(text, id=f"{name}-{style}")
    for name, nb in CORPUS.items()
    for style, text in encodings(nb).items()
]


# -- round trips against nbformat ----------------------------------------------------------


@pytest.mark.parametrize("text", CASES)
def test_round_trip_matches_nbformat(text: str) -> None:
    assert_same_as_nbformat(text)


@pytest.mark.parametrize("text", CASES[:8])
def test_bytes_input_and_bom(text: str) -> None:
    assert_same_as_nbformat(text.encode("utf-8"))
    with same_ids():
        nb = read_notebook(b"\xef\xbb\xbf" + text.encode("utf-8"))
    with same_ids():
        assert write_notebook(nb) == write_notebook(read_notebook(text))


def installed_notebooks() -> list[str]:
    found = sorted(glob.glob(f"{sys.prefix}/lib/python3*/site-packages/**/*.ipynb", recursive=True))
    return found[:50]


REPO = Path(__file__).resolve().parent.parent
# tests/notebooks/executed.ipynb: a notebook run by nbclient on ipykernel (streams,
# markdown/html/latex/svg/json displays, an execute_result, a PNG, an ipywidgets
# slider with its stored widget state, an error) and written by nbformat.write.
FILES = [
    *installed_notebooks(),
    *sorted(str(p) for p in (REPO / "examples").glob("*.ipynb")),
    *sorted(str(p) for p in (REPO / "tests" / "notebooks").glob("*.ipynb")),
]


@pytest.mark.skipif(not FILES, reason="no .ipynb files installed")
@pytest.mark.parametrize("path", FILES)
def test_files_round_trip_like_nbformat(path: str) -> None:
    content = Path(path).read_bytes()
    with same_ids():
        expected = nbformat_file(content)
    with same_ids():
        got = write_notebook(read_notebook(Path(path)))
    assert got == expected


def test_executed_notebook_keeps_widgets_and_timings() -> None:
    nb = read_notebook(REPO / "tests" / "notebooks" / "executed.ipynb")
    assert "state" in nb.metadata["widgets"]["application/vnd.jupyter.widget-state+json"]
    cells = nb.code_cells()
    assert "execution" in cells[0].metadata
    assert cells[0].outputs[0] == StreamOutput(name="stdout", text="line one\nline two\n")
    kinds = [type(o).__name__ for c in cells for o in c.outputs]
    assert set(kinds) == {"StreamOutput", "DisplayDataOutput", "ExecuteResultOutput", "ErrorOutput"}
    views = [
        o.data["application/vnd.jupyter.widget-view+json"]
        for c in cells
        for o in c.outputs
        if isinstance(o, ExecuteResultOutput | DisplayDataOutput)
        and "application/vnd.jupyter.widget-view+json" in o.data
    ]
    assert len(views) == 1


def test_a_file_nbformat_wrote_is_unchanged() -> None:
    nb = everything()
    written = nbformat_file(json.dumps(nb))
    assert write_notebook(read_notebook(written)) == written


# -- what reading gives ---------------------------------------------------------------------


def test_structs_of_a_read_notebook() -> None:
    nb = read_notebook(json.dumps(with_unknown_keys()))
    assert nb.nbformat == 4
    assert nb.nbformat_minor == 5
    assert nb.metadata["kernelspec"] == KERNELSPEC
    assert nb.metadata["widgets"] == WIDGET_STATE
    assert nb.extra == {"custom_top": {"x": [1, 2]}}

    first, attached, rawcell = nb.cells[:3]
    assert isinstance(first, MarkdownCell)
    assert first.cell_type == "markdown"
    assert first.id == "cell-00_x"
    assert first.source.startswith("# Title\n\nGrüße")
    assert first.extra == {"custom_cell_key": "kept"}
    assert isinstance(attached, MarkdownCell)
    assert attached.attachments != msgspec.UNSET
    assert isinstance(attached.attachments, dict)
    split = {"image/png": PNG[:40] + "\n" + PNG[40:]}
    assert attached.attachments["split.png"] == split  # lists are joined
    assert attached.attachments["notes.txt"] == {"text/plain": "one\ntwo"}
    assert isinstance(rawcell, RawCell)
    assert rawcell.cell_type == "raw"

    code_cells = nb.code_cells()
    assert all(isinstance(c, CodeCell) and c.cell_type == "code" for c in code_cells)
    assert code_cells[0].source == code_cells[1].source == ""
    assert code_cells[0].extra == {"attachments": {"c.txt": {"text/plain": "code\ncell"}}}
    printed = code_cells[3]
    assert printed.execution_count == 2
    assert printed.outputs == [
        StreamOutput(name="stdout", text="a\nb\n", extra={"custom_output_key": [1, {"y": None}]})
    ]
    stderr, empty = code_cells[4].outputs
    assert stderr == StreamOutput(name="stderr", text="e\nf\n")
    assert stderr.output_type == "stream"
    assert empty == StreamOutput(name="stdout", text="")
    (shown,) = code_cells[5].outputs
    assert isinstance(shown, DisplayDataOutput)
    assert shown.output_type == "display_data"
    assert shown.data["text/plain"] == "<Figure>\nsize 1x1"
    assert shown.data["image/png"] == PNG
    assert shown.data["application/json"] == {"a": [1, 2.5, None, True], "b": "x\ny"}
    assert shown.data["application/vnd.custom+json"] == ["keep\n", "as list"]
    assert shown.metadata == {"width": 640, "image/png": {"width": 1, "height": 1}}
    first_result, second_result = code_cells[6].outputs
    assert first_result == ExecuteResultOutput(execution_count=5, data={"text/plain": "42"})
    assert first_result.output_type == "execute_result"
    assert second_result == ExecuteResultOutput(execution_count=None, data={"text/plain": "a\nb"})
    (raised,) = code_cells[7].outputs
    assert isinstance(raised, ErrorOutput)
    assert raised.output_type == "error"
    assert (raised.ename, raised.evalue) == ("ZeroDivisionError", "division by zero")
    assert raised.traceback[1].endswith("division by zero")
    assert raised.extra == {"text": "stray\ntext"}
    assert code_cells[7].metadata == {"tags": ["raises-exception"], "collapsed": False}
    assert code_cells[8].source == ODD_BREAKS


def test_transient_keys_are_dropped() -> None:
    nb = read_notebook(json.dumps(with_transient_keys()))
    assert not {"orig_nbformat", "orig_nbformat_minor", "signature"} & nb.metadata.keys()
    assert "trusted" not in nb.cells[5].metadata
    # ...and not written when set in memory, as nbformat.writes does.
    nb.metadata["signature"] = "x"
    nb.cells[0].metadata["trusted"] = False
    text = write_notebook(nb).decode()
    assert '"signature"' not in text
    assert '"trusted"' not in text
    assert nb.metadata["signature"] == "x"  # the notebook itself is left alone


def test_ids_are_generated_for_4_5_only() -> None:
    four_five = read_notebook(json.dumps(without_ids(5)))
    ids = [cell.id for cell in four_five.cells]
    assert all(isinstance(i, str) and len(i) == 8 and int(i, 16) >= 0 for i in ids)
    assert len(set(ids)) == len(ids)
    four_four = read_notebook(json.dumps(without_ids(4)))
    assert all(cell.id is msgspec.UNSET for cell in four_four.cells)
    assert b'"id"' not in write_notebook(four_four)


def test_duplicate_ids_are_repaired_after_the_first() -> None:
    nb = read_notebook(json.dumps(duplicate_ids()))
    ids = [cell.id for cell in nb.cells]
    assert ids[1] == "cell-01_x"
    assert len(set(ids)) == len(ids)


# -- building and writing -------------------------------------------------------------------


def test_built_notebook_is_what_nbformat_would_write() -> None:
    nb = new_notebook(
        cells=[
            new_markdown_cell("# Hi\nthere", id="m1"),
            new_code_cell(
                "print('x')\n",
                id="c1",
                execution_count=1,
                outputs=[
                    StreamOutput(name="stdout", text="x\n"),
                    ExecuteResultOutput(execution_count=1, data={"text/plain": "1\n2"}),
                ],
            ),
            new_raw_cell("raw", id="r1", attachments={"a.txt": {"text/plain": "a\nb"}}),
        ],
        metadata={"kernelspec": KERNELSPEC},
    )
    reference = nbformat.v4.new_notebook(
        cells=[
            nbformat.v4.new_markdown_cell("# Hi\nthere", id="m1"),
            nbformat.v4.new_code_cell(
                "print('x')\n",
                id="c1",
                execution_count=1,
                outputs=[
                    nbformat.v4.new_output("stream", name="stdout", text="x\n"),
                    nbformat.v4.new_output(
                        "execute_result", execution_count=1, data={"text/plain": "1\n2"}
                    ),
                ],
            ),
            nbformat.v4.new_raw_cell("raw", id="r1", attachments={"a.txt": {"text/plain": "a\nb"}}),
        ],
        metadata={"kernelspec": KERNELSPEC},
    )
    assert write_notebook(nb) == (nbformat.writes(reference) + "\n").encode()


def test_new_cells_get_random_ids() -> None:
    cells = [new_code_cell(), new_markdown_cell(), new_raw_cell()]
    ids = [cell.id for cell in cells]
    assert all(isinstance(i, str) and len(i) == 8 for i in ids)
    assert len(set(ids)) == 3
    assert cells[0] == CodeCell(id=ids[0])
    assert new_notebook().nbformat_minor == 5


def test_writing_fills_missing_ids_once() -> None:
    nb = Notebook(cells=[CodeCell(source="a"), MarkdownCell(source="b"), RawCell(id="x")])
    first = write_notebook(nb)
    assert isinstance(nb.cells[0].id, str)
    assert isinstance(nb.cells[1].id, str)
    assert nb.cells[2].id == "x"
    assert write_notebook(nb) == first
    old = Notebook(nbformat_minor=4, cells=[CodeCell(source="a")])
    write_notebook(old)
    assert old.cells[0].id is msgspec.UNSET


def test_fields_win_over_extra_keys() -> None:
    cell = CodeCell(id="a", source="real", extra={"source": "shadow", "other": 1})
    text = write_notebook(Notebook(cells=[cell])).decode()
    assert '"real"' in text
    assert "shadow" not in text
    assert '"other": 1' in text


def test_bytes_values_are_written_as_ascii_like_nbformat() -> None:
    nb = Notebook(
        cells=[
            CodeCell(id="a", outputs=[DisplayDataOutput(data={"image/png": PNG.encode()})]),
        ]
    )
    assert read_notebook(write_notebook(nb)).cells[0] == CodeCell(
        id="a", outputs=[DisplayDataOutput(data={"image/png": PNG})]
    )


def test_write_refuses_other_versions_and_lone_surrogates() -> None:
    with pytest.raises(NotebookError, match="cannot write nbformat 3"):
        write_notebook(Notebook(nbformat=3))
    lone = r'{"nbformat": 4, "nbformat_minor": 5, "metadata": {}, "cells": [{"cell_type": "raw",'
    nb = read_notebook(lone + r' "id": "x", "metadata": {}, "source": "\ud800"}]}')
    assert nb.cells[0].source == "\ud800"
    with pytest.raises(NotebookError, match="cannot encode as UTF-8: surrogates not allowed"):
        write_notebook(nb)


def test_clear_outputs() -> None:
    nb = read_notebook(json.dumps(everything()))
    nb.clear_outputs()
    assert all(c.outputs == [] and c.execution_count is None for c in nb.code_cells())


# -- outputs from the Outputs handler ---------------------------------------------------------


def message(content: Any) -> Any:
    return SimpleNamespace(content=content)


def test_outputs_from_the_handler() -> None:
    collector = Outputs()
    collector.on_stream(message(Stream(name="stdout", text="a\n")))
    collector.on_stream(message(Stream(name="stdout", text="b\n")))
    collector.on_display_data(
        message(DisplayData(data={"text/plain": "d"}, metadata={"k": 1}, transient={"x": 1}))
    )
    collector.on_execute_result(
        message(ExecuteResult(execution_count=3, data={"text/plain": "3"}, metadata={}))
    )
    collector.on_error(message(WireErrorOutput(ename="E", evalue="v", traceback=["t1", "t2"])))
    before = copy.deepcopy(collector.outputs)
    structs = outputs_from_dicts(collector.outputs)
    assert collector.outputs == before  # not changed
    assert structs == [
        StreamOutput(name="stdout", text="a\nb\n"),
        DisplayDataOutput(data={"text/plain": "d"}, metadata={"k": 1}),
        ExecuteResultOutput(execution_count=3, data={"text/plain": "3"}),
        ErrorOutput(ename="E", evalue="v", traceback=["t1", "t2"]),
    ]
    assert outputs_to_dicts(structs) == collector.outputs
    collector.on_clear_output(message(ClearOutput(wait=False)))
    assert outputs_from_dicts(collector.outputs) == []


def test_outputs_to_dicts_match_nbformat_output_from_msg() -> None:
    structs: list[Output] = [
        StreamOutput(name="stderr", text="x"),
        DisplayDataOutput(data={"text/html": "<p/>"}, metadata={"a": 1}),
        ExecuteResultOutput(execution_count=None),
        ErrorOutput(ename="E", evalue="v"),
    ]
    expected = [
        nbformat.v4.new_output("stream", name="stderr", text="x"),
        nbformat.v4.new_output("display_data", data={"text/html": "<p/>"}, metadata={"a": 1}),
        nbformat.v4.new_output("execute_result", execution_count=None),
        nbformat.v4.new_output("error", ename="E", evalue="v", traceback=[]),
    ]
    assert outputs_to_dicts(structs) == expected
    assert outputs_from_dicts(expected) == structs


def test_outputs_from_dicts_names_the_place() -> None:
    with pytest.raises(NotebookError) as info:
        outputs_from_dicts([stream("x"), {"output_type": "stream", "text": "t"}])
    assert str(info.value) == "outputs[1]: missing field `name`"
    assert info.value.where == "outputs[1]"


# -- errors --------------------------------------------------------------------------------------


def doc(cells: Any, **top: Any) -> str:
    return json.dumps({**nb_dict(cells), **top})


GOOD_OUTPUTS = [stream("x"), display({}), result({})]
INVALID = [
    pytest.param(
        "not json",
        "not valid JSON: Expecting value: line 1 column 1 (char 0)"
        " (to read a file, pass a pathlib.Path)",
        id="not-json",
    ),
    pytest.param('{"nbformat": 4,', None, id="truncated"),
    pytest.param("[1, 2]", "expected `object`, got `array`", id="array"),
    pytest.param('"nb"', "expected `object`, got `str`", id="string"),
    pytest.param("{}", "missing field `nbformat`", id="no-version"),
    pytest.param(
        json.dumps({"nbformat": 3, "nbformat_minor": 0, "worksheets": [], "metadata": {}}),
        "nbformat 3 notebooks are not supported; "
        "convert with `jupyter nbconvert --to notebook --nbformat 4`",
        id="v3",
    ),
    pytest.param(
        json.dumps({"nbformat": 2, "worksheets": []}),
        "nbformat 2 notebooks are not supported; "
        "convert with `jupyter nbconvert --to notebook --nbformat 4`",
        id="v2",
    ),
    pytest.param(
        doc([], nbformat=5), "nbformat 5 notebooks are not supported (only nbformat 4)", id="v5"
    ),
    pytest.param(doc([], nbformat="4"), "nbformat: expected `int`, got `str`", id="version-str"),
    pytest.param(
        doc([], nbformat_minor=None), "nbformat_minor: expected `int`, got `null`", id="minor-null"
    ),
    pytest.param(
        json.dumps({"nbformat": 4, "metadata": {}, "cells": []}),
        "missing field `nbformat_minor`",
        id="no-minor",
    ),
    pytest.param(
        json.dumps({"nbformat": 4, "nbformat_minor": 5, "cells": []}),
        "missing field `metadata`",
        id="no-metadata",
    ),
    pytest.param(doc({}), "cells: expected `array`, got `object`", id="cells-object"),
    pytest.param(doc([], metadata=[]), "metadata: expected `object`, got `array`", id="md-array"),
    pytest.param(doc([markdown(""), 7]), "cells[1]: expected `object`, got `int`", id="cell-int"),
    pytest.param(
        doc([{"metadata": {}, "source": ""}]), "cells[0]: missing field `cell_type`", id="no-type"
    ),
    pytest.param(
        doc([markdown(""), markdown("", cell_type="heading")]),
        "cells[1].cell_type: unknown cell type 'heading'"
        " (expected one of 'code', 'markdown', 'raw')",
        id="heading",
    ),
    pytest.param(
        doc([{"cell_type": "markdown", "source": ""}]),
        "cells[0]: missing field `metadata`",
        id="cell-no-metadata",
    ),
    pytest.param(
        doc([{"cell_type": "code", "metadata": {}, "source": "", "execution_count": None}]),
        "cells[0]: missing field `outputs`",
        id="no-outputs",
    ),
    pytest.param(
        doc([{"cell_type": "code", "metadata": {}, "source": "", "outputs": []}]),
        "cells[0]: missing field `execution_count`",
        id="no-execution-count",
    ),
    pytest.param(
        doc([markdown(""), markdown(""), markdown(""), code("", [{"output_type": "stream"}])]),
        "cells[3].outputs[0]: missing field `name`",
        id="stream-no-name",
    ),
    pytest.param(
        doc([code("", [*GOOD_OUTPUTS, {"name": "stdout", "text": ""}])]),
        "cells[0].outputs[3]: missing field `output_type`",
        id="no-output-type",
    ),
    pytest.param(
        doc([code("", [{"output_type": "pyout"}])]),
        "cells[0].outputs[0].output_type: unknown output type 'pyout'"
        " (expected one of 'stream', 'display_data', 'execute_result', 'error')",
        id="pyout",
    ),
    pytest.param(
        doc([code("", [stream("x", name=1)])]),  # type: ignore[arg-type]
        "cells[0].outputs[0].name: expected `str`, got `int`",
        id="name-int",
    ),
    pytest.param(
        doc([code("", [stream(["a", 1])])]),
        "cells[0].outputs[0].text: expected `str` or an array of `str`",
        id="text-mixed-list",
    ),
    pytest.param(
        doc([code("", [result({}, "1")])]),  # type: ignore[arg-type]
        "cells[0].outputs[0].execution_count: expected `int | null`, got `str`",
        id="result-count-str",
    ),
    pytest.param(
        doc([code("", [{**error(), "traceback": "tb"}])]),
        "cells[0].outputs[0].traceback: expected `array`, got `str`",
        id="traceback-str",
    ),
    pytest.param(
        doc([code("", [{**display({}), "data": []}])]),
        "cells[0].outputs[0].data: expected `object`, got `array`",
        id="data-array",
    ),
    pytest.param(
        doc([code("", [], count=True)]),
        "cells[0].execution_count: expected `int | null`, got `bool`",
        id="count-bool",
    ),
    pytest.param(
        doc([code(None)]), "cells[0].source: expected `str`, got `null`", id="source-null"
    ),
    pytest.param(
        doc([markdown(["a", None])]),
        "cells[0].source: expected `str` or an array of `str`",
        id="source-mixed-list",
    ),
    pytest.param(
        doc([markdown("", id=None)]), "cells[0].id: expected `str`, got `null`", id="id-null"
    ),
    pytest.param(
        doc([markdown("", attachments={"a.png": "iVBOR"})]),
        "cells[0].attachments['a.png']: expected `object`, got `str`",
        id="attachment-str",
    ),
    pytest.param(
        doc([raw("", attachments=[])]),
        "cells[0].attachments: expected `object`, got `array`",
        id="attachments-array",
    ),
    pytest.param(
        doc([raw("", metadata=None)]),
        "cells[0].metadata: expected `object`, got `null`",
        id="cell-metadata-null",
    ),
]


@pytest.mark.parametrize(("text", "message"), INVALID)
def test_invalid_notebooks_name_the_place(text: str, message: str | None) -> None:
    with pytest.raises(NotebookError) as info:
        read_notebook(text)
    error = info.value
    assert isinstance(error, SidecarError)
    assert isinstance(error, ValueError)
    if message is not None:
        assert str(error) == message
    assert str(error).endswith(error.reason)
    assert str(error) == (f"{error.where}: {error.reason}" if error.where else error.reason)
    # The same, read as bytes.
    with pytest.raises(NotebookError):
        read_notebook(text.encode())


def test_not_utf8() -> None:
    with pytest.raises(NotebookError, match="not valid JSON"):
        read_notebook(b'{"nbformat": 4, "x": "\xff"}')


def test_errors_from_a_file_name_it(tmp_path: Path) -> None:
    path = tmp_path / "bad.ipynb"
    path.write_text(doc([code("", [{"output_type": "stream", "text": ""}])]))
    with pytest.raises(NotebookError) as info:
        read_notebook(path)
    assert str(info.value) == f"{path}: cells[0].outputs[0]: missing field `name`"
    assert info.value.filename == str(path)
    assert info.value.where == "cells[0].outputs[0]"
    with pytest.raises(FileNotFoundError):
        read_notebook(tmp_path / "missing.ipynb")


def test_a_path_as_str_gets_a_hint() -> None:
    with pytest.raises(NotebookError, match=r"pass a pathlib\.Path"):
        read_notebook("examples/tour.ipynb")


# -- files ---------------------------------------------------------------------------------------


def test_save_and_read_a_file(tmp_path: Path) -> None:
    nb = read_notebook(json.dumps(everything()))
    path = tmp_path / "nb.ipynb"
    save_notebook(nb, path)
    assert path.read_bytes() == write_notebook(nb)
    assert read_notebook(path) == nb
    assert os.listdir(tmp_path) == ["nb.ipynb"]


@pytest.mark.skipif(os.name != "posix", reason="POSIX permissions and symlinks")
def test_save_keeps_mode_and_writes_through_symlinks(tmp_path: Path) -> None:
    target = tmp_path / "real.ipynb"
    target.write_text("old")
    target.chmod(0o640)
    link = tmp_path / "link.ipynb"
    link.symlink_to(target)
    save_notebook(new_notebook(), str(link))
    assert link.is_symlink()
    assert stat.S_IMODE(target.stat().st_mode) == 0o640
    assert read_notebook(target) == new_notebook()
    assert sorted(os.listdir(tmp_path)) == ["link.ipynb", "real.ipynb"]


def test_failed_save_leaves_the_old_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "nb.ipynb"
    path.write_bytes(b"old")

    def broken_replace(src: str, dst: str) -> None:
        raise OSError("disk on fire")

    monkeypatch.setattr(os, "replace", broken_replace)
    with pytest.raises(OSError, match="disk on fire"):
        save_notebook(new_notebook(), path)
    assert path.read_bytes() == b"old"
    assert os.listdir(tmp_path) == ["nb.ipynb"]
    with pytest.raises(NotebookError):
        save_notebook(Notebook(nbformat=3), path)
    assert os.listdir(tmp_path) == ["nb.ipynb"]


# -- property test ------------------------------------------------------------------------------

# Text rich in what matters here: every line break splitlines knows, and non-ASCII.
texts = st.text(
    alphabet=st.one_of(
        st.sampled_from(list("ab \n\r\t\x0b\x0c\x1c\x85\u2028\u2029é日🐍")),
        st.characters(codec="utf-8"),
    ),
    max_size=30,
)
keys = st.text(alphabet=st.characters(codec="utf-8"), max_size=8)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | texts,
    lambda children: st.lists(children, max_size=3) | st.dictionaries(keys, children, max_size=3),
    max_leaves=8,
)
mimes = st.sampled_from(
    [
        "text/plain",
        "text/html",
        "text/markdown",
        "image/png",
        "image/svg+xml",
        "application/javascript",
        "application/json",
        "application/vnd.x+json",
        "application/pdf",
    ]
)


@st.composite
def multiline(draw: st.DrawFn) -> Any:
    text = draw(texts)
    return lines(text) if draw(st.booleans()) else text


@st.composite
def bundles(draw: st.DrawFn) -> JSON:
    bundle: JSON = {}
    for mime in draw(st.lists(mimes, max_size=4, unique=True)):
        bundle[mime] = draw(json_values) if mime.endswith("json") else draw(multiline())
    return bundle


@st.composite
def outputs(draw: st.DrawFn) -> JSON:
    kind = draw(st.sampled_from(["stream", "display_data", "execute_result", "error"]))
    if kind == "stream":
        out = stream(draw(multiline()), draw(st.sampled_from(["stdout", "stderr"])))
    elif kind == "display_data":
        out = display(draw(bundles()), **draw(st.dictionaries(keys, json_values, max_size=2)))
    elif kind == "execute_result":
        out = result(draw(bundles()), draw(st.none() | st.integers(0, 99)))
    else:
        out = error(draw(texts), draw(texts))
    if draw(st.booleans()):
        out["extra_key"] = draw(json_values)
    return out


@st.composite
def cells(draw: st.DrawFn) -> JSON:
    kind = draw(st.sampled_from(["code", "markdown", "raw"]))
    source = draw(multiline())
    if kind == "code":
        cell = code(
            source, draw(st.lists(outputs(), max_size=3)), draw(st.none() | st.integers(0, 9))
        )
    else:
        cell = markdown(source) if kind == "markdown" else raw(source)
        if draw(st.booleans()):
            cell["attachments"] = draw(st.dictionaries(keys, bundles(), max_size=2))
    cell["metadata"] = draw(st.dictionaries(keys, json_values, max_size=3))
    if draw(st.booleans()):
        cell["id"] = draw(st.sampled_from(["a", "b", "c-1", "d_2"]))
    return cell


@st.composite
def notebooks(draw: st.DrawFn) -> JSON:
    nb = nb_dict(draw(st.lists(cells(), max_size=4)), draw(st.integers(0, 5)))
    nb["metadata"] = draw(st.dictionaries(keys, json_values, max_size=3))
    return nb


@settings(max_examples=150)
@given(nb=notebooks(), indent=st.sampled_from([None, 1, 2]))
def test_random_notebooks_round_trip_like_nbformat(nb: JSON, indent: int | None) -> None:
    assert_same_as_nbformat(json.dumps(nb, indent=indent, ensure_ascii=indent is None))
