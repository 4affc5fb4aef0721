"""Running notebooks: the library call, the CLI as a user meets it, and nbclient as oracle."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import anyio.lowlevel
import nbformat
import pytest
from nbclient import NotebookClient
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

import sidecar
import sidecar.wire
from sidecar.notebook._model import read_notebook
from sidecar.notebook._run import inject_parameters, parameters_source

pytestmark = pytest.mark.kernel

EXAMPLES = Path(__file__).parent.parent / "examples"


def write(path: Path, *cells: Any, **metadata: Any) -> Path:
    nb = new_notebook(cells=list(cells), metadata=metadata)
    nbformat.write(nb, path)
    return path


def run_cli(
    *args: str, cwd: Path | None = None, backend: str = "trio"
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "sidecar", "--backend", backend, "run", *args],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=cwd,
    )


# -- the library ---------------------------------------------------------------


@pytest.mark.anyio
async def test_run_notebook_fills_outputs_counts_timing_and_widgets(
    kernel: sidecar.Kernel, tmp_path: Path
) -> None:
    path = write(
        tmp_path / "nb.ipynb",
        new_markdown_cell("# title"),
        new_code_cell("x = 1\nprint('a')\nprint('b')"),
        new_code_cell("from IPython.display import display\nh = display('first', display_id=True)"),
        new_code_cell("h.update('updated')\nx + 41"),
        new_code_cell("print('skipped')", metadata={"tags": ["skip-execution"]}),
        new_code_cell("   "),
    )
    notebook = read_notebook(path)
    await sidecar.run_notebook(notebook, kernel)
    cells = notebook.cells
    assert sidecar.outputs_to_dicts(cells[1].outputs) == [  # type: ignore[union-attr]
        {"output_type": "stream", "name": "stdout", "text": "a\nb\n"}
    ]
    display = sidecar.outputs_to_dicts(cells[2].outputs)  # type: ignore[union-attr]
    assert display[0]["data"]["text/plain"] == "'updated'"
    result = sidecar.outputs_to_dicts(cells[3].outputs)  # type: ignore[union-attr]
    assert result[0]["data"] == {"text/plain": "42"}
    assert cells[3].execution_count == result[0]["execution_count"]  # type: ignore[union-attr]
    assert cells[4].outputs == []  # type: ignore[union-attr]
    assert cells[4].execution_count is None  # type: ignore[union-attr]
    timing = cells[1].metadata["execution"]
    assert set(timing) >= {
        "iopub.status.busy",
        "iopub.execute_input",
        "shell.execute_reply",
        "iopub.status.idle",
    }
    assert notebook.metadata["language_info"]["name"] == "python"


@pytest.mark.anyio
async def test_error_stops_the_run_unless_allowed(kernel: sidecar.Kernel, tmp_path: Path) -> None:
    path = write(
        tmp_path / "nb.ipynb",
        new_code_cell("print('before')"),
        new_code_cell("1 / 0"),
        new_code_cell("print('after')"),
    )
    notebook = read_notebook(path)
    with pytest.raises(sidecar.CellError) as info:
        await sidecar.run_notebook(notebook, kernel)
    assert info.value.cell_index == 1
    assert info.value.ename == "ZeroDivisionError"
    errors = sidecar.outputs_to_dicts(notebook.cells[1].outputs)  # type: ignore[union-attr]
    assert errors[-1]["ename"] == "ZeroDivisionError"
    assert notebook.cells[2].outputs == []  # type: ignore[union-attr]

    notebook = read_notebook(path)
    await sidecar.run_notebook(notebook, kernel, allow_errors=True)
    after = sidecar.outputs_to_dicts(notebook.cells[2].outputs)  # type: ignore[union-attr]
    assert after[0]["text"] == "after\n"


@pytest.mark.anyio
async def test_parameters_are_injected_after_the_tagged_cell(
    kernel: sidecar.Kernel, tmp_path: Path
) -> None:
    path = write(
        tmp_path / "nb.ipynb",
        new_code_cell("greeting = 'hi'\ncount = 1", metadata={"tags": ["parameters"]}),
        new_code_cell("print(greeting * count, flag, nothing)"),
    )
    notebook = read_notebook(path)
    await sidecar.run_notebook(
        notebook, kernel, parameters={"greeting": "yo", "count": 2, "flag": True, "nothing": None}
    )
    injected = notebook.cells[1]
    assert injected.metadata["tags"] == ["injected-parameters"]
    assert 'greeting = "yo"' in injected.source
    printed = sidecar.outputs_to_dicts(notebook.cells[2].outputs)  # type: ignore[union-attr]
    assert printed[0]["text"] == "yoyo True None\n"
    # A second run replaces the injected cell rather than adding another.
    await sidecar.run_notebook(notebook, kernel, parameters={"greeting": "x"})
    tags = [c.metadata.get("tags") for c in notebook.cells]
    assert tags.count(["injected-parameters"]) == 1


# -- run_notebook's keywords -----------------------------------------------------------------


@pytest.mark.anyio
async def test_skip_tags_on_output_and_on_cell_done(kernel: sidecar.Kernel, tmp_path: Path) -> None:
    notebook = sidecar.new_notebook(
        cells=[
            sidecar.new_code_cell(
                "from IPython.display import clear_output, display, update_display\n"
                "print('a'); display('d', display_id='i');"
            ),
            sidecar.new_markdown_cell("text"),
            sidecar.new_code_cell("print('not run')", metadata={"tags": ["wip"]}),
            sidecar.new_code_cell("print('runs')", metadata={"tags": ["skip-execution"]}),
            sidecar.new_code_cell("update_display('u', display_id='i'); clear_output()\n'r'"),
        ]
    )
    path = tmp_path / "autosaved.ipynb"
    outputs: list[tuple[int, str]] = []
    done: list[tuple[int, int, int | None, bool]] = []

    async def on_output(progress: sidecar.CellProgress, message: sidecar.wire.Message) -> None:
        await anyio.lowlevel.checkpoint()
        outputs.append((progress.number, message.msg_type))

    def on_cell_done(progress: sidecar.CellProgress) -> None:
        cell = notebook.cells[progress.index]
        assert isinstance(cell, sidecar.CodeCell)
        done.append(
            (progress.number, len(cell.outputs), cell.execution_count, "execution" in cell.metadata)
        )
        sidecar.save_notebook(notebook, path)  # autosave

    await sidecar.run_notebook(
        notebook, kernel, skip_tags=["wip"], on_output=on_output, on_cell_done=on_cell_done
    )
    assert outputs == [
        (1, "stream"),
        (1, "display_data"),
        (2, "stream"),
        (3, "update_display_data"),
        (3, "clear_output"),
        (3, "execute_result"),
    ]
    assert [(number, count) for number, count, _, _ in done] == [(1, 2), (2, 1), (3, 1)]
    assert all(count is not None and timed for _, _, count, timed in done)
    saved = nbformat.read(path, as_version=4)
    nbformat.validate(saved)
    assert saved.cells[0].outputs[1]["data"]["text/plain"] == "'u'"
    assert saved.cells[2].outputs == []
    # A tag given as a single string is that tag, not its letters.
    await sidecar.run_notebook(notebook, kernel, skip_tags="wip")
    assert notebook.cells[3].outputs[0].text == "runs\n"  # type: ignore[union-attr]


@pytest.mark.anyio
async def test_on_cell_done_comes_before_the_error_and_both_numberings(
    kernel: sidecar.Kernel, tmp_path: Path
) -> None:
    notebook = sidecar.new_notebook(
        cells=[
            sidecar.new_markdown_cell("# one"),
            sidecar.new_code_cell("print('ran')"),
            sidecar.new_markdown_cell("# two"),
            sidecar.new_code_cell("raise ValueError('stop')"),
            sidecar.new_code_cell("print('never')"),
        ]
    )
    path = tmp_path / "partial.ipynb"
    done: list[int] = []

    async def on_cell_done(progress: sidecar.CellProgress) -> None:
        done.append(progress.number)
        sidecar.save_notebook(notebook, path)

    with pytest.raises(sidecar.CellError) as info:
        await sidecar.run_notebook(notebook, kernel, on_cell_done=on_cell_done)
    assert (info.value.cell_index, info.value.cell_number) == (3, 2)
    assert done == [1, 2]
    saved = nbformat.read(path, as_version=4)
    assert saved.cells[3].outputs[-1]["ename"] == "ValueError"
    assert saved.cells[3].execution_count is not None


@pytest.mark.anyio
async def test_cell_timeout_overrides_timeout(kernel: sidecar.Kernel) -> None:
    notebook = sidecar.new_notebook(
        cells=[
            sidecar.new_code_cell("import time\ntime.sleep(0.5)\nprint('in time')"),
            sidecar.new_code_cell("time.sleep(30)", metadata={"timeout": 0.5}),
        ]
    )
    done: list[int] = []
    started = time.monotonic()
    with pytest.raises(TimeoutError):
        await sidecar.run_notebook(
            notebook,
            kernel,
            timeout=0.2,  # would stop the first cell, whose cell_timeout is 10
            cell_timeout=lambda cell: cell.metadata.get("timeout", 10.0),
            on_cell_done=lambda progress: done.append(progress.number),
        )
    assert time.monotonic() - started < 15
    assert done == [1, 2]
    assert notebook.cells[0].outputs[0].text == "in time\n"  # type: ignore[union-attr]
    assert notebook.cells[1].outputs[-1].ename == "KeyboardInterrupt"  # type: ignore[union-attr]
    # None from cell_timeout means: use timeout.
    with pytest.raises(TimeoutError):
        await sidecar.run_notebook(notebook, kernel, timeout=0.5, cell_timeout=lambda cell: None)


# -- papermill and nbclient as oracles for injection and clearing ------------------------

PARAMETER_VALUES: dict[str, Any] = {
    "none": None,
    "text": "hi",
    "quotes": 'it\'s "quoted"',
    "backslash": "C:\\new\\table",
    "lines": "one\ntwo\tthree\r",
    "unicode": "Grüße 日本 🐍",
    "control": "\x00\x1b[0m",
    "empty": "",
    "true": True,
    "false": False,
    "zero": 0,
    "negative": -12,
    "big": 10**30,
    "decimal": 0.1,
    "exp": 1e100,
    "tiny": 5e-324,
    "negative_zero": -0.0,
    "inf": float("inf"),
    "minus_inf": float("-inf"),
    "nan": float("nan"),
    "list": [1, "two", None, [3.5, False], {"k": "v"}],
    "dict": {"a": 1, "b": [True, None], "nested": {"deep": {"x": "y"}}, 'quote"d': 'x"'},
    "empty_containers": [[], {}],
    "tuple": (1, 2),
    "int_keys": {1: "one", 2: [2]},
}


def test_parameters_are_written_as_papermill_writes_them(monkeypatch: pytest.MonkeyPatch) -> None:
    from papermill.translators import PythonTranslator

    # papermill formats with black when it is installed; without it, as here.
    monkeypatch.setitem(sys.modules, "black", None)
    assert parameters_source(PARAMETER_VALUES) == PythonTranslator.codify(PARAMETER_VALUES)
    for name, value in PARAMETER_VALUES.items():
        assert parameters_source({name: value}) == PythonTranslator.codify({name: value}), name
    # And the code gives the values back.
    namespace: dict[str, Any] = {}
    exec(parameters_source(PARAMETER_VALUES), namespace)
    assert namespace["quotes"] == PARAMETER_VALUES["quotes"]
    assert namespace["unicode"] == PARAMETER_VALUES["unicode"]
    assert namespace["minus_inf"] == float("-inf")
    assert namespace["dict"] == PARAMETER_VALUES["dict"]
    # papermill writes other types as their str between quotes, unescaped;
    # we escape, so the code stays valid where papermill's would not.
    assert parameters_source({"p": Path('a"b')}) == '# Parameters\np = "a\\"b"\n'


def _papermill_prepared(nb: Any, tmp_path: Path, parameters: dict[str, Any]) -> Any:
    import papermill

    source, prepared = tmp_path / "in.ipynb", tmp_path / "prepared.ipynb"
    nbformat.write(nb, source)
    papermill.execute_notebook(
        str(source),
        str(prepared),
        parameters=parameters,
        prepare_only=True,
        kernel_name="python3",
        language="python",
        progress_bar=False,
    )
    return nbformat.read(prepared, as_version=4)


@pytest.mark.parametrize(
    "tags",
    [
        pytest.param([[], ["parameters"], []], id="after-parameters"),
        pytest.param([[], [], []], id="no-parameters-cell"),
        pytest.param([["parameters"], [], ["injected-parameters"]], id="replaces-injected"),
    ],
)
@pytest.mark.parametrize("minor", [1, 4, 5])
def test_injection_as_papermill_does(tmp_path: Path, tags: list[list[str]], minor: int) -> None:
    nb = new_notebook(
        cells=[new_code_cell(f"x{i} = {i}", metadata={"tags": t}) for i, t in enumerate(tags)]
    )
    nb.nbformat_minor = minor
    if minor < 5:
        for cell in nb.cells:
            del cell["id"]
    parameters = {"name": "Ada", "n": 3}
    expected = _papermill_prepared(nb, tmp_path, parameters)
    path = tmp_path / "ours.ipynb"
    nbformat.write(nb, path)
    ours = read_notebook(path)
    inject_parameters(ours, parameters)
    written = nbformat.reads(sidecar.write_notebook(ours).decode(), as_version=4)
    nbformat.validate(written)
    assert written.nbformat_minor == expected.nbformat_minor == 5
    assert [c.source for c in written.cells] == [c.source for c in expected.cells]
    assert [c.metadata.get("tags") for c in written.cells] == [
        c.metadata.get("tags") for c in expected.cells
    ]
    assert len({c.id for c in written.cells}) == len(written.cells)


@pytest.mark.anyio
async def test_parameters_into_an_old_notebook_write_a_valid_file(
    kernel: sidecar.Kernel, tmp_path: Path
) -> None:
    nb = new_notebook(cells=[new_code_cell("n = 1", metadata={"tags": ["parameters"]})])
    nb.nbformat_minor = 4
    del nb.cells[0]["id"]
    nb.cells.append(nbformat.v4.new_code_cell("print(n)"))
    del nb.cells[1]["id"]
    path = tmp_path / "old.ipynb"
    nbformat.write(nb, path)
    notebook = read_notebook(path)
    await sidecar.run_notebook(notebook, kernel, parameters={"n": float("inf")})
    sidecar.save_notebook(notebook, path)
    written = nbformat.read(path, as_version=4)
    nbformat.validate(written)
    assert written.nbformat_minor == 5
    assert written.cells[1].source == "# Parameters\nn = float('inf')\n"
    assert written.cells[2].outputs[0]["text"] == "inf\n"


def _stale(source: str, text: str, count: int, **metadata: Any) -> Any:
    cell = new_code_cell(source, metadata=metadata, execution_count=count)
    cell.outputs = [nbformat.v4.new_output("stream", name="stdout", text=text)]
    return cell


STALE = [
    _stale("print('ran')", "old 0\n", 5),
    _stale("print('skipped')", "old 1\n", 6, tags=["skip-execution"]),
    _stale("raise ValueError('stop')", "old 2\n", 7),
    _stale("print('never')", "old 3\n", 8),
]


def _shown(nb: Any) -> dict[str, tuple[list[str], bool]]:
    """Per code cell (by source): its outputs in short, and whether it has a count."""
    return {
        cell.source: (
            [o.get("ename") or "".join(o.get("text", "")) for o in cell.outputs],
            cell.execution_count is not None,
        )
        for cell in nb.cells
        if cell.cell_type == "code"
    }


@pytest.fixture(scope="module")
def cleared_by_the_peers(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """What papermill and nbclient leave in the cells of a run that stops at an error."""
    import papermill
    from nbclient.exceptions import CellExecutionError
    from papermill.exceptions import PapermillExecutionError

    directory = tmp_path_factory.mktemp("peers")
    source = directory / "stale.ipynb"
    nbformat.write(new_notebook(cells=STALE), source)
    with pytest.raises(PapermillExecutionError):
        papermill.execute_notebook(
            str(source), str(directory / "pm.ipynb"), kernel_name="python3", progress_bar=False
        )
    nb = nbformat.read(source, as_version=4)
    loop = asyncio.new_event_loop()
    try:
        with pytest.raises(CellExecutionError):
            loop.run_until_complete(NotebookClient(nb, kernel_name="python3").async_execute())
    finally:
        loop.close()
    return {
        "papermill": _shown(nbformat.read(directory / "pm.ipynb", as_version=4)),
        "nbclient": _shown(nb),
        "source": source,
    }


@pytest.mark.anyio
async def test_outputs_are_cleared_first_as_papermill_does_or_kept_as_nbclient_does(
    kernel: sidecar.Kernel, cleared_by_the_peers: dict[str, Any]
) -> None:
    # The peers differ: papermill clears every code cell first, nbclient does not.
    assert cleared_by_the_peers["papermill"]["print('never')"] == ([], False)
    assert cleared_by_the_peers["nbclient"]["print('never')"] == (["old 3\n"], True)
    assert cleared_by_the_peers["nbclient"]["print('skipped')"] == (["old 1\n"], True)
    for clear_outputs, peer in [(True, "papermill"), (False, "nbclient")]:
        notebook = read_notebook(cleared_by_the_peers["source"])
        with pytest.raises(sidecar.CellError):
            await sidecar.run_notebook(notebook, kernel, clear_outputs=clear_outputs)
        written = nbformat.reads(sidecar.write_notebook(notebook).decode(), as_version=4)
        assert _shown(written) == cleared_by_the_peers[peer], peer


# -- nbclient as the oracle ----------------------------------------------------------------

_VOLATILE = re.compile(r"0x[0-9a-f]+")


def _terminal(text: str) -> str:
    """Carriage returns and backspaces applied, as a frontend shows a stream."""
    while True:
        erased = re.sub("[^\n]\x08", "", text)
        if erased == text:
            break
        text = erased
    return re.sub(r"[^\n]*\r(?=[^\n])", "", text)


def _normalized(nb: dict[str, Any]) -> list[list[dict[str, Any]]]:
    """Outputs per code cell as a frontend shows them (consecutive streams
    merged, carriage returns applied), object addresses masked."""
    cells = []
    for cell in nb["cells"]:
        if cell["cell_type"] != "code":
            continue
        merged: list[dict[str, Any]] = []
        for output in cell["outputs"]:
            output = json.loads(_VOLATILE.sub("0x?", json.dumps(output)))
            output.pop("execution_count", None)
            if isinstance(output.get("text"), list):
                output["text"] = "".join(output["text"])
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
        for output in merged:
            if output["output_type"] == "stream":
                output["text"] = _terminal(output["text"])
        cells.append(merged)
    return cells


def _nbclient_run(path: Path) -> dict[str, Any]:
    nb = nbformat.read(path, as_version=4)
    client = NotebookClient(nb, kernel_name="python3", allow_errors=True, timeout=60)
    loop = asyncio.new_event_loop()
    try:
        loop.run_until_complete(client.async_execute())
    finally:
        loop.close()
    return json.loads(nbformat.writes(nb))


@pytest.mark.parametrize("example", ["tour.ipynb", "fibonacci.ipynb"])
def test_same_outputs_as_nbclient(example: str, tmp_path: Path) -> None:
    source = EXAMPLES / example
    ours = tmp_path / "ours.ipynb"
    done = run_cli(str(source), "-o", str(ours), "--allow-errors", "-q")
    assert done.returncode == 0, done.stderr
    expected = _normalized(_nbclient_run(source))
    got = _normalized(json.loads(ours.read_text()))
    assert got == expected


def test_written_notebook_is_what_nbformat_would_write(tmp_path: Path) -> None:
    out = tmp_path / "out.ipynb"
    done = run_cli(str(EXAMPLES / "tour.ipynb"), "-o", str(out), "-q")
    assert done.returncode == 0, done.stderr
    again = tmp_path / "again.ipynb"
    nbformat.write(nbformat.read(out, as_version=4), again)
    assert again.read_bytes() == out.read_bytes()
    nbformat.validate(nbformat.read(out, as_version=4))


# -- the CLI ------------------------------------------------------------------------------


def test_cli_error_exit_code_printout_and_partial_output(tmp_path: Path) -> None:
    path = write(
        tmp_path / "fails.ipynb",
        new_code_cell("print('ran')"),
        new_code_cell("raise ValueError('bad value')"),
        new_code_cell("print('never')"),
    )
    done = run_cli(str(path), "-q")
    assert done.returncode == 1
    assert "cell 1 raised ValueError: bad value" in done.stderr
    assert "raise ValueError('bad value')" in done.stderr
    written = json.loads((tmp_path / "fails.out.ipynb").read_text())
    assert written["cells"][0]["outputs"][0]["text"] == ["ran\n"]
    assert written["cells"][1]["outputs"][-1]["ename"] == "ValueError"
    assert written["cells"][2]["outputs"] == []


def test_cli_parameters_inplace_and_show(tmp_path: Path) -> None:
    path = write(
        tmp_path / "p.ipynb",
        new_code_cell("name = 'x'\nn = 1", metadata={"tags": ["parameters"]}),
        new_code_cell("print(name * n)"),
    )
    done = run_cli(str(path), "--inplace", "-p", "name", "ab", "-p", "n", "3", "--show", "-q")
    assert done.returncode == 0, done.stderr
    assert "ababab" in done.stdout
    written = json.loads(path.read_text())
    assert written["cells"][2]["outputs"][0]["text"] == ["ababab\n"]


def test_cli_runs_in_the_notebooks_directory_by_default(tmp_path: Path) -> None:
    (tmp_path / "data.txt").write_text("from a file")
    path = write(tmp_path / "cwd.ipynb", new_code_cell("print(open('data.txt').read())"))
    done = run_cli(str(path), "-q", cwd=Path("/"))
    assert done.returncode == 0, done.stderr


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_cli_many_notebooks_one_failing(tmp_path: Path, backend: str) -> None:
    paths = [write(tmp_path / f"ok{i}.ipynb", new_code_cell(f"print({i})")) for i in range(3)]
    paths.insert(1, write(tmp_path / "bad.ipynb", new_code_cell("1 / 0")))
    out = tmp_path / "out"
    done = run_cli(*map(str, paths), "-j", "2", "-o", str(out), backend=backend)
    assert done.returncode == 1
    table = done.stderr[done.stderr.index("notebook") :]
    assert re.search(r"bad\.ipynb\s+error\s+1/1", table)
    assert len(re.findall(r"ok\d\.ipynb\s+ok\s+1/1", table)) == 3
    for i in range(3):
        written = json.loads((out / f"ok{i}.ipynb").read_text())
        assert written["cells"][0]["outputs"][0]["text"] == [f"{i}\n"]


def test_cli_invalid_notebook_and_missing_kernel(tmp_path: Path) -> None:
    bad = tmp_path / "bad.ipynb"
    bad.write_text("{not json")
    done = run_cli(str(bad), "-q")
    assert done.returncode == 1
    assert "invalid" in done.stderr
    path = write(tmp_path / "k.ipynb", new_code_cell("1"))
    done = run_cli(str(path), "--kernel", "no-such-kernel", "-q")
    assert done.returncode == 1
    assert "no kernelspec named 'no-such-kernel'" in done.stderr


@pytest.mark.parametrize(("signum", "status"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_a_signal_writes_what_ran_and_leaves_no_kernel(
    tmp_path: Path, backend: str, signum: int, status: int
) -> None:
    """Ctrl-C, or a SIGTERM from a job runner: the running cell is interrupted,
    what ran is written, the kernel is shut down and its files removed."""
    runtime = tmp_path / "runtime"
    path = write(
        tmp_path / "long.ipynb",
        new_code_cell("print('first', flush=True)"),
        new_code_cell("import time, os\nprint(os.getpid(), flush=True)\ntime.sleep(60)"),
        new_code_cell("print('never')"),
    )
    out = tmp_path / "long.out.ipynb"
    proc = subprocess.Popen(
        [sys.executable, "-m", "sidecar", "--backend", backend, "run", str(path), "-o", str(out)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=dict(os.environ, JUPYTER_RUNTIME_DIR=str(runtime)),
    )
    try:
        # Wait until the second cell runs (its progress line is on stderr).
        deadline = time.monotonic() + 60
        assert proc.stderr is not None
        while time.monotonic() < deadline:
            line = proc.stderr.readline()
            if "cell 2/3" in line:
                break
        time.sleep(1.0)
        proc.send_signal(signum)
        _, stderr = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == status, stderr
    assert list(runtime.iterdir()) == []
    written = json.loads(out.read_text())
    assert written["cells"][0]["outputs"][0]["text"] == ["first\n"]
    kernel_pid = int(written["cells"][1]["outputs"][0]["text"][0])
    assert written["cells"][1]["outputs"][-1]["ename"] == "KeyboardInterrupt"
    with pytest.raises(ProcessLookupError):
        os.kill(kernel_pid, 0)


def test_readme_main_command_runs_the_bundled_example(tmp_path: Path) -> None:
    done = run_cli(str(EXAMPLES / "tour.ipynb"), "--show", "-o", str(tmp_path / "t.ipynb"))
    assert done.returncode == 0, done.stderr
    assert "hello, world (2/2)" in done.stdout
    assert "still running after the expected error" in done.stdout


def test_kernel_log_is_kept_out_of_the_terminal_unless_asked(tmp_path: Path) -> None:
    path = write(
        tmp_path / "log.ipynb",
        new_code_cell("import os\nos.write(2, b'straight to the kernel process stderr\\n')"),
    )
    quiet = run_cli(str(path), "-q")
    assert quiet.returncode == 0, quiet.stderr
    assert "straight to the kernel" not in quiet.stderr
    shown = run_cli(str(path), "-q", "--kernel-log")
    assert shown.returncode == 0, shown.stderr
    assert "straight to the kernel process stderr" in shown.stderr


def test_progress_is_one_rewritten_line_on_a_terminal(tmp_path: Path) -> None:
    import pty

    path = write(tmp_path / "p.ipynb", new_code_cell("1"), new_code_cell("2"))
    leader, follower = pty.openpty()
    try:
        done = subprocess.run(
            [sys.executable, "-m", "sidecar", "run", str(path)],
            stdout=subprocess.PIPE,
            stderr=follower,
            timeout=120,
        )
        os.close(follower)
        follower = -1
        chunks = []
        while True:
            try:
                chunk = os.read(leader, 4096)
            except OSError:  # EIO once the terminal is drained and closed
                break
            if not chunk:
                break
            chunks.append(chunk)
    finally:
        os.close(leader)
        if follower != -1:
            os.close(follower)
    assert done.returncode == 0
    shown = b"".join(chunks).decode()
    assert "p.ipynb 1/2" in shown
    assert "\r" in shown
    assert "p.ipynb: ok (2/2 cells" in shown
