"""Running notebook files as ``sidecar run`` does: checks before any kernel, order, options."""

from __future__ import annotations

import inspect
import json
import sys
from pathlib import Path
from typing import Any

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

import sidecar
from sidecar import KernelSpec
from sidecar.cli._terminal import _Lines, labels, summary_table
from sidecar.notebook._files import (
    NotebookResult,
    RunEvents,
    RunOptions,
    RunRefused,
    kernel_arguments,
    plan_runs,
    run_files,
    run_planned,
)
from sidecar.notebook._run import CellProgress
from sidecar.wire import Message


def needs_hook(name: str) -> pytest.MarkDecorator:
    """For a test of an option built on a run_notebook keyword that may not exist yet."""
    missing = name not in inspect.signature(sidecar.run_notebook).parameters
    return pytest.mark.skipif(missing, reason=f"run_notebook has no {name}= yet")


def write(path: Path, *cells: Any, **metadata: Any) -> Path:
    nbformat.write(new_notebook(cells=list(cells), metadata=metadata), path)
    return path


# -- before any kernel ------------------------------------------------------------


def test_plan_keeps_the_given_order_and_names_outputs(tmp_path: Path) -> None:
    paths = [write(tmp_path / f"{name}.ipynb") for name in ("b", "a", "c")]
    planned = plan_runs(paths)
    assert [r.path for r in planned] == paths
    assert [r.output.name for r in planned] == ["b.out.ipynb", "a.out.ipynb", "c.out.ipynb"]
    assert all(r.status == "not started" and r.total is None for r in planned)
    out = tmp_path / "new" / "dir"
    assert [r.output for r in plan_runs(paths, output=out)] == [out / p.name for p in paths]
    assert out.is_dir()
    assert [r.output for r in plan_runs(paths, inplace=True)] == paths


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda d: [d / "missing.ipynb"], "no such notebook: "),
        (lambda d: [d], "is a directory, not a notebook"),
    ],
)
def test_plan_refuses_what_is_not_a_notebook_file(tmp_path: Path, make: Any, message: str) -> None:
    ok = write(tmp_path / "ok.ipynb")
    with pytest.raises(RunRefused, match=message):
        plan_runs([ok, *make(tmp_path)])


def test_plan_refuses_same_named_outputs(tmp_path: Path) -> None:
    (tmp_path / "d1").mkdir()
    (tmp_path / "d2").mkdir()
    first = write(tmp_path / "d1" / "x.ipynb")
    second = write(tmp_path / "d2" / "x.ipynb")
    with pytest.raises(RunRefused) as info:
        plan_runs([first, second], output=tmp_path / "out")
    assert str(info.value) == (
        f"{first} and {second} would both be written to {tmp_path / 'out' / 'x.ipynb'}; "
        "run them separately or give them different names"
    )
    # Beside each, the outputs differ: nothing to refuse.
    assert len(plan_runs([first, second])) == 2


def test_plan_refuses_a_notebook_given_twice_and_an_output_over_an_input(tmp_path: Path) -> None:
    path = write(tmp_path / "a.ipynb")
    with pytest.raises(RunRefused, match="is given twice"):
        plan_runs([path, tmp_path / "." / "a.ipynb"])
    other = write(tmp_path / "a.out.ipynb")
    with pytest.raises(RunRefused, match="would overwrite"):
        plan_runs([path, other])


def test_plan_checks_the_output(tmp_path: Path) -> None:
    path = write(tmp_path / "a.ipynb")
    with pytest.raises(RunRefused, match="no such directory"):
        plan_runs([path], output=tmp_path / "nowhere" / "out.ipynb")
    other = write(tmp_path / "b.ipynb")
    with pytest.raises(RunRefused, match="-o names a directory"):
        plan_runs([path, other], output=path)


def _spec(name: str, argv: list[str]) -> KernelSpec:
    return KernelSpec(name=name, argv=argv)


@pytest.mark.parametrize(
    ("spec", "ipython"),
    [
        (_spec("python3", ["python", "-m", "ipykernel_launcher", "-f", "{connection_file}"]), True),
        (_spec("myenv", [sys.executable, "-m", "ipykernel", "-f", "{connection_file}"]), True),
        (_spec("venv", ["/opt/venv/bin/ipykernel_launcher", "-f", "{connection_file}"]), True),
        (_spec("ir", ["R", "--slave", "-e", "IRkernel::main()", "--args", "{c}"]), False),
        (_spec("python3", ["python", "-m", "ipykernel", "--HistoryManager.hist_file=/x"]), False),
    ],
)
def test_history_in_memory_for_ipython_kernels_only(spec: KernelSpec, ipython: bool) -> None:
    expected = ["--HistoryManager.hist_file=:memory:"] if ipython else []
    assert kernel_arguments(spec) == expected
    assert kernel_arguments(spec, history_in_memory=False) == []


def test_labels_tell_same_named_notebooks_apart() -> None:
    paths = [Path("a/x.ipynb"), Path("b/x.ipynb"), Path("a/y.ipynb"), Path("/t/c/d/x.ipynb")]
    assert labels(paths) == ["a/x.ipynb", "b/x.ipynb", "y.ipynb", "d/x.ipynb"]


def test_lines_prefix_whole_lines_only() -> None:
    lines = _Lines("nb| ")
    assert lines.feed("par") == ""
    assert lines.feed("tial\nnext\nlast") == "nb| partial\nnb| next\n"
    # A carriage return rewrites the line, as a notebook frontend shows it.
    assert lines.feed(" 10%\rdone\n") == "nb| done\n"
    assert lines.flush() == ""
    lines.feed("end")
    assert lines.flush() == "nb| end\n"


def test_summary_counts_cells_only_once_known() -> None:
    results = [
        NotebookResult(path=Path("a.ipynb"), output=Path("a"), status="ok", cells=3, total=3),
        NotebookResult(path=Path("b.ipynb"), output=Path("b"), status="kernel", total=4),
        NotebookResult(path=Path("c.ipynb"), output=Path("c"), status="invalid", seconds=0.01),
        NotebookResult(path=Path("d.ipynb"), output=Path("d")),
    ]
    rows = summary_table(results).splitlines()
    assert rows[0].split() == ["notebook", "status", "cells", "seconds"]
    assert rows[2].split() == ["a.ipynb", "ok", "3/3", "0.00"]
    assert rows[3].split() == ["b.ipynb", "kernel", "0/4", "0.00"]
    assert rows[4].split() == ["c.ipynb", "invalid", "-", "0.01"]
    assert rows[5].split() == ["d.ipynb", "not", "started", "-", "-"]


# -- runs on kernels --------------------------------------------------------------


class Recorded(RunEvents):
    def __init__(self, wants_outputs: bool = False) -> None:
        self.events: list[tuple[str, str]] = []
        self.warnings: list[str] = []
        self.outputs: list[tuple[int, str]] = []
        self.wants_outputs = wants_outputs

    def started(self, result: NotebookResult) -> None:
        self.events.append(("started", result.path.name))

    def cell(self, result: NotebookResult, progress: CellProgress) -> None:
        self.events.append(("cell", result.path.name))

    def output(self, result: NotebookResult, progress: CellProgress, message: Message) -> None:
        self.outputs.append((progress.index, message.msg_type))

    def warning(self, result: NotebookResult, text: str) -> None:
        self.warnings.append(text)

    def done(self, result: NotebookResult) -> None:
        self.events.append(("done", result.path.name))


@pytest.mark.kernel
@pytest.mark.anyio
@pytest.mark.parametrize("jobs", [1, 2])
async def test_notebooks_start_in_the_given_order(tmp_path: Path, jobs: int) -> None:
    names = ["step4", "step2", "step5", "step1", "step3"]
    paths = [write(tmp_path / f"{n}.ipynb", new_code_cell(f"print('{n}')")) for n in names]
    events = Recorded()
    results = await run_files(paths, jobs=jobs, events=events)
    started = [name for kind, name in events.events if kind == "started"]
    assert started == [f"{n}.ipynb" for n in names]
    assert [r.path for r in results] == paths
    assert all(r.status == "ok" for r in results), results
    if jobs == 1:
        # One at a time: no notebook's cells between another's.
        cells = [name for kind, name in events.events if kind == "cell"]
        assert cells == [f"{n}.ipynb" for n in names]


@pytest.mark.kernel
@pytest.mark.anyio
async def test_seconds_leave_out_the_wait_for_a_slot(tmp_path: Path) -> None:
    """The second notebook's kernel starts while the first runs; the time it
    then waits for the one slot is not its own."""
    slow = write(tmp_path / "slow.ipynb", new_code_cell("import time; time.sleep(3)"))
    quick = write(tmp_path / "quick.ipynb", new_code_cell("1"))
    first, second = await run_files([slow, quick], jobs=1)
    assert (first.status, second.status) == ("ok", "ok")
    assert first.seconds > 3
    assert second.seconds < first.seconds - 1.5


@pytest.mark.kernel
@pytest.mark.anyio
async def test_ipython_history_stays_in_memory(tmp_path: Path) -> None:
    """nbclient's "Check History in Memory" notebook, as a notebook run by sidecar."""
    path = write(
        tmp_path / "history.ipynb",
        new_code_cell(
            "from IPython import get_ipython\n"
            "assert str(get_ipython().history_manager.hist_file) == ':memory:'"
        ),
    )
    [result] = await run_files([path])
    assert result.status == "ok", result.error


@pytest.mark.kernel
@pytest.mark.anyio
async def test_report_mode_hides_every_input_and_parameters_warn(tmp_path: Path) -> None:
    path = write(
        tmp_path / "report.ipynb",
        new_markdown_cell("# title"),
        new_code_cell("a = 1", metadata={"tags": ["parameters"], "jupyter": {"foo": 1}}),
        new_code_cell("print(a + b)"),
    )
    [result] = plan_runs([path])
    events = Recorded()
    options = RunOptions(parameters={"a": 2, "b": 3}, report_mode=True)
    await run_planned([result], options, events=events)
    assert result.status == "ok", result.error
    assert (result.cells, result.total) == (3, 3)
    written = json.loads(result.output.read_text())
    code = [c for c in written["cells"] if c["cell_type"] == "code"]
    assert [c["metadata"]["jupyter"].get("source_hidden") for c in code] == [True] * 3
    assert code[0]["metadata"]["jupyter"]["foo"] == 1
    assert "jupyter" not in written["cells"][0]["metadata"]
    assert events.warnings == [
        "parameter 'b' not assigned in the parameters cell (cell 1, which assigns a)"
    ]


@pytest.mark.anyio
async def test_warnings_and_failures_need_no_kernel(tmp_path: Path) -> None:
    plain = write(tmp_path / "plain.ipynb", new_code_cell("1"), new_code_cell("   "))
    bad_timeout = write(tmp_path / "t.ipynb", new_code_cell("1", metadata={"timeout": "soon"}))
    broken = tmp_path / "broken.ipynb"
    broken.write_text("{not json")
    results = plan_runs([plain, bad_timeout, broken])
    events = Recorded()
    options = RunOptions(kernel_name="no-such-kernel", parameters={"x": 1})
    await run_planned(results, options, jobs=2, events=events)
    assert [r.status for r in results] == ["kernel", "invalid", "invalid"]
    assert "no kernelspec named 'no-such-kernel'" in results[0].error
    assert (results[0].cells, results[0].total) == (0, 2)
    assert results[1].error.endswith(
        "cells[0]: metadata.timeout must be a number of seconds > 0, not 'soon'"
    )
    assert "not valid JSON" in results[2].error
    assert events.warnings == [
        "no cell is tagged 'parameters': the parameters go into a new cell at the top"
    ]
    assert not any(r.written for r in results)


@pytest.mark.kernel
@pytest.mark.anyio
@needs_hook("cell_timeout")
async def test_a_cells_own_timeout(tmp_path: Path) -> None:
    path = write(
        tmp_path / "slow.ipynb",
        new_code_cell("import time; time.sleep(0.5)"),
        new_code_cell("time.sleep(30)", metadata={"timeout": 0.5}),
    )
    [result] = plan_runs([path])
    await run_planned([result], RunOptions(timeout=5))
    assert result.status == "timeout"
    assert result.error == "cell 1 ran longer than its timeout (0.5 s) and was interrupted"
    assert result.seconds < 10


@pytest.mark.kernel
@pytest.mark.anyio
@needs_hook("skip_tags")
async def test_skip_tags(tmp_path: Path) -> None:
    path = write(
        tmp_path / "tags.ipynb",
        new_code_cell("print('ran')"),
        new_code_cell("print('slow')", metadata={"tags": ["slow"]}),
        new_code_cell("print('skipped')", metadata={"tags": ["skip-execution"]}),
    )
    [result] = plan_runs([path])
    await run_planned([result], RunOptions(skip_tags=("skip-execution", "slow")))
    assert (result.status, result.cells, result.total) == ("ok", 1, 1)
    written = json.loads(result.output.read_text())
    assert [len(c["outputs"]) for c in written["cells"]] == [1, 0, 0]


@pytest.mark.kernel
@pytest.mark.anyio
@needs_hook("on_cell_done")
async def test_save_every_writes_between_cells(tmp_path: Path) -> None:
    out = tmp_path / "autosave.out.ipynb"
    path = write(
        tmp_path / "autosave.ipynb",
        new_code_cell("print('first')"),
        new_code_cell(
            "import json\n"
            f"saved = json.load(open({str(out)!r}))\n"
            "print(saved['cells'][0]['outputs'][0]['text'])"
        ),
    )
    [result] = plan_runs([path])
    await run_planned([result], RunOptions(save_every=0))
    assert result.status == "ok", result.error
    written = json.loads(out.read_text())
    assert written["cells"][1]["outputs"][0]["text"] == ["['first\\n']\n"]


@pytest.mark.kernel
@pytest.mark.anyio
@needs_hook("on_output")
async def test_outputs_arrive_while_the_cell_runs(tmp_path: Path) -> None:
    path = write(
        tmp_path / "live.ipynb",
        new_code_cell("print('a')"),
        new_code_cell("display('b'); 1 / 0"),
    )
    [result] = plan_runs([path])
    events = Recorded(wants_outputs=True)
    await run_planned([result], RunOptions(allow_errors=True), events=events)
    assert events.outputs == [(0, "stream"), (1, "display_data"), (1, "error")]


# -- the kernel pool (sidecar run -j N) ------------------------------------------------


def _where_notebooks(tmp_path: Path, count: int) -> list[Path]:
    """Notebooks in directories of their own, each importing a module beside it."""
    paths = []
    for i in range(count):
        folder = tmp_path / f"dir{i}"
        folder.mkdir()
        (folder / f"beside{i}.py").write_text(f"NAME = 'module {i}'\n")
        paths.append(
            write(
                folder / "nb.ipynb",
                new_code_cell(f"import os, beside{i}\nprint(os.getcwd() == {str(folder)!r})"),
                new_code_cell(f"print(beside{i}.NAME)\nprint('leak' in globals())"),
                new_code_cell("leak = 1\nleak"),
            )
        )
    return paths


def _cells(path: Path) -> list[tuple[Any, Any]]:
    nb = nbformat.read(path.with_name("nb.out.ipynb"), as_version=4)
    return [(c.execution_count, c.outputs) for c in nb.cells]


@pytest.mark.anyio
@pytest.mark.parametrize(("pool_size", "reuse"), [(None, False), (1, True), (2, True)])
async def test_pooled_runs_equal_fresh_kernels_in_each_notebooks_directory(
    tmp_path: Path, pool_size: int | None, reuse: bool
) -> None:
    paths = _where_notebooks(tmp_path, 4)
    results = await run_files(paths, jobs=2, pool_size=0)
    assert [r.status for r in results] == ["ok"] * 4, [r.error for r in results]
    fresh = [_cells(p) for p in paths]
    assert fresh[0][0][1][0]["text"] == "True\n"
    assert fresh[0][1][1][0]["text"] == "module 0\nFalse\n"
    results = await run_files(paths, jobs=2, pool_size=pool_size, reuse=reuse)
    assert [r.status for r in results] == ["ok"] * 4, [r.error for r in results]
    # Same outputs and execution counts: the directory change was silent,
    # and a reused kernel was reset (no `leak` from the notebook before).
    assert [_cells(p) for p in paths] == fresh
