"""papermill's ``--engine sidecar``, against papermill's own default engine as the oracle.

Every test runs the same notebook through papermill twice, once on its
default engine (nbclient) and once on sidecar's, through papermill's command
line or its Python API, and compares what papermill defines: the outputs,
execution counts, its error cell, its ``metadata.papermill`` of the
notebook and of each cell (timestamps aside), the exception it raises.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import nbformat
import papermill
import pytest
from conftest import kernel_processes_of
from nbclient.exceptions import CellTimeoutError, DeadKernelError
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook
from papermill.engines import papermill_engines

import sidecar.papermill

pytestmark = pytest.mark.kernel

ENGINES = [None, "sidecar"]
BACKENDS = ["asyncio", "trio"]
_PAPERMILL = [sys.executable, "-m", "papermill"]
_TIMES = ("start_time", "end_time", "duration")


def _notebook(path: Path, *cells: Any) -> Path:
    metadata = {"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}}
    nbformat.write(new_notebook(cells=list(cells), metadata=metadata), path)
    return path


def _parameterized(path: Path) -> Path:
    return _notebook(
        path,
        new_markdown_cell("# A report"),
        new_code_cell("x = 1\nname = 'a'", metadata={"tags": ["parameters"]}),
        new_code_cell(
            # Flushed: stdout and stderr go out in the order each is flushed.
            "print(x * 2, name, flush=True)\nimport sys; print('to stderr', file=sys.stderr)"
        ),
        new_code_cell(
            "from IPython.display import HTML, display\ndisplay(HTML('<b>hi</b>'))\nx + 1"
        ),
        new_code_cell("import os; os.getcwd()"),
        new_code_cell("print('skipped')", metadata={"tags": ["skip-execution"]}),
        new_code_cell(""),
        new_code_cell("[i * x for i in range(3)]"),
    )


def _failing(path: Path) -> Path:
    return _notebook(
        path,
        new_code_cell("x = 1", metadata={"tags": ["parameters"]}),
        new_markdown_cell("before"),
        new_code_cell("print('ran')"),
        new_code_cell("raise ValueError(f'bad {x}')"),
        new_markdown_cell("after"),
        new_code_cell("print('never')"),
    )


def _comparable(path: Path) -> dict[str, Any]:
    """What papermill defines of an executed notebook, without what differs run to run."""
    nb = json.loads(path.read_text())
    papermill_meta = nb["metadata"]["papermill"]
    for key in (*_TIMES, "input_path", "output_path"):
        assert key in papermill_meta
        papermill_meta.pop(key)
    for cell in nb["cells"]:
        cell.pop("id", None)
        meta = cell["metadata"]
        for key in _TIMES:
            if "papermill" in meta:  # papermill's error cells have none
                meta["papermill"][key] = meta["papermill"][key] is not None
        # sidecar also records shell.execute_reply.started (ipykernel sends it):
        # compare nbclient's keys.
        execution = meta.pop("execution", None)
        if execution is not None:
            meta["execution"] = sorted(k for k in execution if k != "shell.execute_reply.started")
    return nb  # type: ignore[no-any-return]


def _cli(*args: str | Path, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*_PAPERMILL, *map(str, args)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        cwd=cwd,
    )


def _engine_args(engine: str | None) -> list[str]:
    return [] if engine is None else ["--engine", engine]


def test_the_entry_point_is_registered() -> None:
    assert papermill_engines.get_engine("sidecar") is sidecar.papermill.SidecarEngine


def test_cli_parameters_outputs_and_metadata_equal_the_default_engine(tmp_path: Path) -> None:
    source = _parameterized(tmp_path / "in.ipynb")
    done = {}
    for engine in ENGINES:
        out = tmp_path / f"out-{engine}.ipynb"
        proc = _cli(source, out, "-p", "x", "3", "-p", "name", "b", *_engine_args(engine))
        assert proc.returncode == 0, proc.stderr
        done[engine] = _comparable(out)
    assert done["sidecar"] == done[None]
    cells = done["sidecar"]["cells"]
    assert cells[2]["source"] == ["# Parameters\n", "x = 3\n", 'name = "b"\n']
    assert cells[3]["outputs"][0]["text"] == ["6 b\n"]


def test_cli_error_notebook_equals_the_default_engine(tmp_path: Path) -> None:
    source = _failing(tmp_path / "in.ipynb")
    done, errors = {}, {}
    for engine in ENGINES:
        out = tmp_path / f"out-{engine}.ipynb"
        proc = _cli(source, out, "-p", "x", "7", *_engine_args(engine))
        assert proc.returncode == 1
        errors[engine] = proc.stderr[proc.stderr.index("PapermillExecutionError") :]
        done[engine] = _comparable(out)
    assert done["sidecar"] == done[None]
    assert errors["sidecar"] == errors[None]
    nb = done["sidecar"]
    # papermill's error cell at the top, its anchor before the failing cell.
    assert "An Exception was encountered" in "".join(nb["cells"][0]["source"])
    assert nb["metadata"]["papermill"]["exception"] is True
    statuses = [c["metadata"].get("papermill", {}).get("status") for c in nb["cells"][1:]]
    assert statuses == [
        "completed",  # parameters
        "completed",  # injected
        "completed",  # markdown
        "completed",
        None,  # the anchor papermill inserts
        "failed",
        "pending",
        "pending",
    ]
    assert "bad 7" in errors["sidecar"]


def test_cli_log_output_and_stream_files(tmp_path: Path) -> None:
    source = _parameterized(tmp_path / "in.ipynb")
    logs, files = {}, {}
    for engine in ENGINES:
        stdout, stderr = tmp_path / f"{engine}.out", tmp_path / f"{engine}.err"
        proc = _cli(
            source,
            tmp_path / f"out-{engine}.ipynb",
            "--log-output",
            "--no-progress-bar",
            "--stdout-file",
            stdout,
            "--stderr-file",
            stderr,
            *_engine_args(engine),
        )
        assert proc.returncode == 0, proc.stderr
        # The kernel's own log goes to the terminal under nbclient (sidecar
        # keeps it for its errors), and the output's name differs.
        logs[engine] = [
            line
            for line in proc.stderr.splitlines()
            if not line.startswith(("[IPKernelApp]", "Output Notebook"))
        ]
        files[engine] = (stdout.read_text(), stderr.read_text())
    assert files["sidecar"] == files[None] == ("2 a\n", "to stderr\n")
    assert logs["sidecar"] == logs[None]


def test_cli_cwd_and_kernel_name(tmp_path: Path) -> None:
    source = _parameterized(tmp_path / "in.ipynb")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    done = {}
    for engine in ENGINES:
        out = tmp_path / f"out-{engine}.ipynb"
        proc = _cli(source, out, "--cwd", elsewhere, "-k", "python3", *_engine_args(engine))
        assert proc.returncode == 0, proc.stderr
        done[engine] = _comparable(out)
    assert done["sidecar"] == done[None]
    assert done["sidecar"]["cells"][4]["outputs"][0]["data"]["text/plain"] == [repr(str(elsewhere))]


@pytest.mark.parametrize("backend", BACKENDS)
def test_python_api_equals_the_default_engine(tmp_path: Path, backend: str) -> None:
    source = _parameterized(tmp_path / "in.ipynb")
    results = {}
    for engine in ENGINES:
        out = tmp_path / f"out-{engine}.ipynb"
        extra = {} if engine is None else {"backend": backend}
        nb = papermill.execute_notebook(
            source,
            out,
            parameters={"x": 5, "name": "api"},
            engine_name=engine,
            kernel_name="python3",
            progress_bar=False,
            start_timeout=60,
            execution_timeout=30,
            cwd=tmp_path,
            **extra,
        )
        assert nb.metadata.papermill.parameters == {"x": 5, "name": "api"}
        results[engine] = _comparable(out)
    assert results["sidecar"] == results[None]


@pytest.mark.parametrize("backend", BACKENDS)
def test_python_api_timeout_raises_as_the_default_engine(tmp_path: Path, backend: str) -> None:
    source = _notebook(
        tmp_path / "in.ipynb",
        new_code_cell("print('started', flush=True)"),
        new_code_cell("import time; time.sleep(30)"),
        new_code_cell("print('never')"),
    )
    results = {}
    for engine in ENGINES:
        out = tmp_path / f"out-{engine}.ipynb"
        extra = {} if engine is None else {"backend": backend}
        began = time.monotonic()
        with pytest.raises(CellTimeoutError, match="timed out"):
            papermill.execute_notebook(
                source, out, engine_name=engine, progress_bar=False, execution_timeout=1, **extra
            )
        assert time.monotonic() - began < 20
        nb = _comparable(out)
        # nbclient leaves the interrupted cell's output empty; sidecar
        # interrupted the kernel and may hold its KeyboardInterrupt: compare
        # what papermill defines of it, its status.
        nb["cells"][1]["outputs"] = []
        nb["cells"][1]["execution_count"] = None
        nb["cells"][1]["metadata"].pop("execution", None)
        results[engine] = nb
    assert results["sidecar"] == results[None]
    assert kernel_processes_of(os.getpid()) == []


@pytest.mark.parametrize("backend", BACKENDS)
def test_python_api_dead_kernel_raises_as_the_default_engine(tmp_path: Path, backend: str) -> None:
    source = _notebook(
        tmp_path / "in.ipynb", new_code_cell("import os; os._exit(1)"), new_code_cell("1")
    )
    for engine in ENGINES:
        extra = {} if engine is None else {"backend": backend}
        with pytest.raises(DeadKernelError):
            papermill.execute_notebook(
                source,
                tmp_path / f"out-{engine}.ipynb",
                engine_name=engine,
                progress_bar=False,
                **extra,
            )
    assert kernel_processes_of(os.getpid()) == []


def test_autosave_writes_the_running_cells_outputs(tmp_path: Path) -> None:
    source = _notebook(
        tmp_path / "in.ipynb",
        new_code_cell(
            "import time\nprint('early', flush=True)\ntime.sleep(2)\n"
            "print('tick', flush=True)\ntime.sleep(3)\nprint('late')"
        ),
    )
    out = tmp_path / "out.ipynb"
    seen: list[str] = []
    stop = threading.Event()

    def watch() -> None:
        while not stop.is_set():
            with contextlib.suppress(OSError):
                seen.append(out.read_text())
            time.sleep(0.1)

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        papermill.execute_notebook(
            source, out, engine_name="sidecar", progress_bar=False, autosave_cell_every=1
        )
    finally:
        stop.set()
        watcher.join()

    def printed(text: str) -> str:
        try:
            outputs = json.loads(text)["cells"][0]["outputs"]
        except ValueError:  # read while being written
            return ""
        return "".join("".join(o.get("text", "")) for o in outputs)

    assert "early\ntick\n" in [printed(text) for text in seen], "no autosave while the cell ran"
    assert printed(out.read_text()) == "early\ntick\nlate\n"


def test_running_inside_an_event_loop(tmp_path: Path) -> None:
    """Called from async code (a Jupyter notebook's thread runs a loop), it still runs."""
    import asyncio

    source = _notebook(tmp_path / "in.ipynb", new_code_cell("1 + 1"))

    async def main() -> Any:
        return papermill.execute_notebook(
            source, tmp_path / "out.ipynb", engine_name="sidecar", progress_bar=False
        )

    nb = asyncio.run(main())
    assert nb.cells[0].outputs[0]["data"]["text/plain"] == "2"


def test_registered_as_papermill_default_engine(tmp_path: Path) -> None:
    """The one line the orchestrator how-to gives: the stock operators' engine_name=None."""
    source = _notebook(tmp_path / "in.ipynb", new_code_cell("1 + 1"))
    default = papermill_engines.get_engine(None)
    papermill_engines.register(None, sidecar.papermill.SidecarEngine)
    try:
        nb = papermill.execute_notebook(source, tmp_path / "out.ipynb", progress_bar=False)
    finally:
        papermill_engines.register(None, default)
    # ipykernel's reply start time is kept by sidecar alone.
    assert "shell.execute_reply.started" in nb.cells[0].metadata.execution
