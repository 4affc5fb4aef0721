"""The papermill engine: papermill's semantics, sidecar's kernel client underneath.

papermill (not sidecar) reads the notebook, injects the parameters, changes
to ``cwd``, and after the engine returns turns an error output into its
error cell and :class:`papermill.exceptions.PapermillExecutionError`.  The
engine runs the cells and calls papermill's :class:`NotebookExecutionManager`
as its nbclient engine does:

- ``cell_start`` and ``cell_complete`` for every cell in order, markdown and
  raw ones included, up to the one that failed; ``cell_exception`` for that
  one, and nothing after it;
- a cell that raised stops the run unless it is tagged ``raises-exception``
  (or ``allow_errors=True`` is passed), as in nbclient; empty cells and those
  tagged ``skip-execution`` are not run;
- ``execution_timeout`` bounds each cell: the kernel is interrupted and
  nbclient's ``CellTimeoutError`` raised (papermill lets it through, the
  notebook saved); a kernel that dies raises nbclient's ``DeadKernelError``;
- ``autosave_cell`` on every output, with the running cell's outputs so far;
- ``log_output``, ``stdout_file`` and ``stderr_file`` as papermill's nbclient
  client writes them (stream text to papermill's logger, stderr as warnings);
- ``start_timeout`` for the kernel's start, in papermill's working directory
  (its ``cwd``), with its history in memory as nbclient starts kernels;
- ``language_info`` and the widget state in the notebook's metadata, timings
  in each cell's ``metadata.execution``.

The kernel is sidecar's: launched from the kernelspec ``kernel_name``, and
stopped for sure, whatever happens, when the engine returns or raises.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from typing import Any, Final

import anyio
import nbformat
from nbclient.exceptions import CellExecutionError, CellTimeoutError, DeadKernelError
from papermill.engines import Engine  # type: ignore[import-untyped]
from papermill.log import logger as papermill_logger  # type: ignore[import-untyped]

from .._exceptions import KernelDied
from ..client._kernel import Kernel
from ..client._launch import launch
from ..client._outputs import INVALID_OUTPUT
from ..kernel._kernelspec import get_kernelspec
from ..notebook._document import NotebookDocument
from ..notebook._files import kernel_arguments
from ..notebook._model import CodeCell, Notebook, outputs_to_dicts, read_notebook
from ..wire import ErrorReply, Message

__all__ = ["SidecarEngine"]

_RAISES_TAG: Final = "raises-exception"
_SKIP_TAG: Final = "skip-execution"
# Keyword arguments papermill passes on that this engine has no use for.
_IGNORED: Final = frozenset({"input_path", "output_path", "timeout", "startup_timeout"})


class SidecarEngine(Engine):  # type: ignore[misc]
    """papermill's engine interface, executing on sidecar.

    Use it by name, ``--engine sidecar`` on papermill's command line or
    ``engine_name="sidecar"`` in ``papermill.execute_notebook``.
    """

    @classmethod
    def execute_managed_notebook(
        cls,
        nb_man: Any,
        kernel_name: str,
        log_output: bool = False,
        stdout_file: Any = None,
        stderr_file: Any = None,
        start_timeout: float = 60,
        execution_timeout: float | None = None,
        **kwargs: Any,
    ) -> Any:
        """Run the cells of ``nb_man.nb`` on a sidecar kernel (papermill calls this).

        Accepts nbclient's ``allow_errors`` and ``timeout`` (used when
        ``execution_timeout`` is not given), and ``backend`` (``"asyncio"``,
        the default, or ``"trio"``: the event loop sidecar runs on); other
        nbclient options are ignored.
        """
        run = _Run(
            nb_man,
            kernel_name,
            log_output=log_output,
            stdout_file=stdout_file,
            stderr_file=stderr_file,
            start_timeout=float(start_timeout),
            timeout=execution_timeout or kwargs.get("timeout"),
            allow_errors=bool(kwargs.get("allow_errors", False)),
        )
        backend = str(kwargs.get("backend", "asyncio"))
        unknown = sorted(set(kwargs) - _IGNORED - {"allow_errors", "backend"})
        if unknown:
            papermill_logger.debug("the sidecar engine ignores %s", ", ".join(unknown))
        _run_sync(run.execute, backend)
        return nb_man.nb


def _run_sync(fn: Callable[[], Any], backend: str) -> None:
    """``anyio.run(fn)``, in a thread of its own when an event loop already runs here.

    papermill is synchronous, but it may be called from a Jupyter notebook,
    whose thread runs an asyncio loop.  Only a loop that is running can be
    found through asyncio, so asyncio is looked up, not imported.
    """
    asyncio = sys.modules.get("asyncio")
    running = False
    if asyncio is not None:
        try:
            asyncio.get_running_loop()
            running = True
        except RuntimeError:
            pass
    if not running:
        anyio.run(fn, backend=backend)
        return
    with ThreadPoolExecutor(1, thread_name_prefix="sidecar-papermill") as pool:
        pool.submit(partial(anyio.run, fn, backend=backend)).result()


class _Run:
    """One notebook's execution through papermill's execution manager."""

    def __init__(
        self,
        nb_man: Any,
        kernel_name: str,
        *,
        log_output: bool,
        stdout_file: Any,
        stderr_file: Any,
        start_timeout: float,
        timeout: float | None,
        allow_errors: bool,
    ) -> None:
        self.nb_man = nb_man
        self.kernel_name = kernel_name
        self.log_output = log_output
        self.stdout_file = stdout_file
        self.stderr_file = stderr_file
        self.start_timeout = start_timeout
        self.timeout = timeout
        self.allow_errors = allow_errors
        self.document: NotebookDocument | None = None

    @property
    def nb(self) -> Any:
        return self.nb_man.nb

    async def execute(self) -> None:
        spec = get_kernelspec(self.kernel_name)
        # Ours to run on: a copy as sidecar's model, cell for cell the same.
        notebook = read_notebook(json.dumps(self.nb).encode())
        async with launch(
            self.kernel_name,
            startup_timeout=self.start_timeout,
            extra_arguments=kernel_arguments(spec),
        ) as kernel:
            papermill_logger.info(f"Executing notebook with kernel: {self.kernel_name}")
            self.document = NotebookDocument(kernel, notebook)
            await self._cells(kernel, notebook)
            done = self.document.notebook
            self.nb.metadata["language_info"] = _node(done.metadata.get("language_info", {}))
            if "widgets" in done.metadata:
                self.nb.metadata["widgets"] = _node(done.metadata["widgets"])

    async def _cells(self, kernel: Kernel, notebook: Notebook) -> None:
        for index, node in enumerate(self.nb.cells):
            cell = notebook.cells[index]
            try:
                self.nb_man.cell_start(node, index)
                if isinstance(cell, CodeCell) and _runs(cell):
                    failure = await self._execute(index, cell, node)
                    if failure is not None:
                        self.nb_man.cell_exception(node, cell_index=index, exception=failure)
                        break
            finally:
                self.nb_man.cell_complete(node, cell_index=index)

    async def _execute(self, index: int, cell: CodeCell, node: Any) -> CellExecutionError | None:
        """Run one code cell; the error that stops the run, if it raised."""
        assert self.document is not None
        tags = cell.metadata.get("tags", [])
        allowed = self.allow_errors or (isinstance(tags, list) and _RAISES_TAG in tags)
        try:
            reply = await self.document.execute(
                index,
                handlers=[partial(self._on_message, index, node)],
                timeout=self.timeout,
                stop_on_error=not allowed,
            )
        except TimeoutError:
            self._copy(index, node)
            raise CellTimeoutError.error_from_timeout_and_cell(
                "Cell execution timed out",
                self.timeout,  # type: ignore[arg-type]  # nbclient's says int, formats any
                node,
            ) from None
        except KernelDied as e:
            self._copy(index, node)
            raise DeadKernelError(f"Kernel died: {e}") from e
        self._copy(index, node)
        if allowed:
            return None
        if isinstance(reply, ErrorReply):
            return CellExecutionError("\n".join(reply.traceback), reply.ename, reply.evalue)
        for output in node.outputs:
            if output.get("output_type") == "error" and output.get("ename") == INVALID_OUTPUT:
                return CellExecutionError(output["evalue"], INVALID_OUTPUT, output["evalue"])
        return None

    def _copy(self, index: int, node: Any) -> None:
        """Bring papermill's cell up to date with ours (outputs, count, timings)."""
        assert self.document is not None
        cell = self.document.notebook.cells[index]
        assert isinstance(cell, CodeCell)
        node.outputs = [_node(o) for o in outputs_to_dicts(cell.outputs)]
        node.execution_count = cell.execution_count
        if "execution" in cell.metadata:
            node.metadata["execution"] = _node(cell.metadata["execution"])

    def _on_message(self, index: int, node: Any, message: Message) -> None:
        if self._autosave_due():
            self._copy(index, node)
            self.nb_man.autosave_cell()
        if self.log_output or self.stdout_file is not None or self.stderr_file is not None:
            self._log(message)

    def _autosave_due(self) -> bool:
        every = self.nb_man.autosave_cell_every
        if not every:
            return False
        since = (self.nb_man.now() - self.nb_man.last_save_time).total_seconds()
        return bool(since >= every)

    def _log(self, message: Message) -> None:
        """What papermill's nbclient client logs and writes of an output."""
        content = message.content
        if message.msg_type == "stream":
            name, text = getattr(content, "name", ""), getattr(content, "text", "")
            if name == "stdout":
                if self.log_output:
                    papermill_logger.info(text)
                _write(self.stdout_file, text)
            elif name == "stderr":
                if self.log_output:
                    papermill_logger.warning(text)
                _write(self.stderr_file, text)
        elif self.log_output and message.msg_type in ("execute_result", "display_data"):
            data = getattr(content, "data", {})
            if isinstance(data, dict) and "text/plain" in data:
                text = data["text/plain"]
                papermill_logger.info("".join(text) if isinstance(text, list) else text)


def _runs(cell: CodeCell) -> bool:
    tags = cell.metadata.get("tags", [])
    return bool(cell.source.strip()) and not (isinstance(tags, list) and _SKIP_TAG in tags)


def _node(value: Any) -> Any:
    """A notebook node, as nbclient puts them in papermill's notebook."""
    return nbformat.from_dict(value)  # type: ignore[no-untyped-call]


def _write(file: Any, text: str) -> None:
    if file is not None:
        file.write(text)
        file.flush()
