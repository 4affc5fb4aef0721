"""Running notebook files, one or many at once, as ``sidecar run`` does.

Each notebook gets its own kernel, whose code runs in the notebook's
directory unless told otherwise.  With ``jobs > 1`` up to that many run at
once.  Running more than one notebook on local IPython kernels, the kernels
come from a pool (:func:`~sidecar.launch_pool`) that keeps ``pool_size`` of
them started ahead, so start-up overlaps with execution; the pool's kernels
start in our directory, and each changes to its notebook's directory
(``os.chdir``, silently) when it is handed out.  Without a pool, a kernel is
launched in the notebook's directory for each notebook, one ahead of the
running ones.  Notebooks start in the order given, one failing
does not stop the others, and each output notebook is written whatever
happened, with everything run so far.

Everything that can be checked without a kernel is checked before the first
one starts (:func:`plan_runs`): the inputs exist and are files, and no two
runs write the same file.
"""

from __future__ import annotations

import copy
import logging
import os
import time
from collections.abc import AsyncIterator, Collection, Mapping, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path
from typing import Any, Final, Literal, final

import anyio
import msgspec

from .._exceptions import KernelError, NoSuchKernel, SidecarError
from ..client._kernel import Kernel
from ..client._launch import launch
from ..client._pool import KernelPool, launch_pool
from ..client._remote import connect_server
from ..kernel._kernelspec import KernelSpec, get_kernelspec
from ..wire import Message
from ._model import CodeCell, Notebook, NotebookError, read_notebook, save_notebook
from ._parameters import declared_parameters
from ._run import CellError, CellProgress, run_notebook

__all__ = [
    "NotebookResult",
    "RunEvents",
    "RunOptions",
    "RunRefused",
    "check_inputs",
    "kernel_arguments",
    "plan_runs",
    "run_files",
    "run_planned",
]

log = logging.getLogger("sidecar.run")

Status = Literal[
    "ok", "error", "timeout", "kernel", "invalid", "unsaved", "interrupted", "not started"
]

DEFAULT_SKIP_TAGS: Final = ("skip-execution",)
_INJECTED_TAG: Final = "injected-parameters"
_IPYTHON_KERNEL_NAMES: Final = frozenset({"python", "python2", "python3"})
_IPYTHON_MODULES: Final = frozenset({"ipykernel", "ipykernel_launcher"})
# nbclient's choice for the kernels it starts: IPython's history in memory, so
# a batch run neither writes to the user's ~/.ipython history nor has
# parallel kernels contend for its SQLite file.
_HISTORY_IN_MEMORY: Final = "--HistoryManager.hist_file=:memory:"


class RunRefused(ValueError):
    """The runs cannot start as asked: an input is missing, or two runs would
    write the same file.  Raised before any kernel starts."""


@final
class NotebookResult(msgspec.Struct, kw_only=True):
    """How one notebook run ended (or, before it ends, how it stands)."""

    path: Path
    output: Path
    """Where the executed copy goes."""
    written: bool = False
    """Whether the executed copy was written to ``output``."""
    status: Status = "not started"
    cells: int = 0
    """Code cells that ran (the failing one included)."""
    total: int | None = None
    """Code cells to run; None until the notebook was read."""
    seconds: float = 0.0
    """Starting its kernel plus running its cells; time spent waiting for a
    free slot (``jobs``) is not counted."""
    error: str = ""
    """For a failed run: what went wrong, traceback included."""
    kernel_log: str = ""


@final
class RunOptions(msgspec.Struct, kw_only=True, frozen=True):
    """How each notebook of a batch runs (the same for all of them)."""

    kernel_name: str | None = None
    """The kernelspec; None for each notebook's own (``metadata.kernelspec``), else python3."""
    timeout: float | None = None
    """Seconds a cell may run, unless its ``metadata.timeout`` says otherwise."""
    startup_timeout: float = 60.0
    allow_errors: bool = False
    parameters: dict[str, Any] = {}
    cwd: Path | None = None
    skip_tags: tuple[str, ...] = DEFAULT_SKIP_TAGS
    report_mode: bool = False
    """Hide the code cells' inputs in the written copy (``metadata.jupyter.source_hidden``)."""
    save_every: float | None = None
    """Write the copy after a code cell once this many seconds passed since
    the last write (0: after every cell); None writes it only at the end."""
    history_in_memory: bool = True
    """Start IPython kernels with their history in memory, as nbclient does."""
    server: str | None = None
    """A Jupyter Server's (or gateway's) URL: each notebook runs on a kernel it
    starts there (:func:`~sidecar.connect_server`), not on a local one."""
    token: str | None = None
    """The server's token (``JUPYTER_TOKEN`` if None)."""
    pool_size: int | None = None
    """Kernels kept started ahead (:func:`~sidecar.launch_pool`); None: as many
    as ``jobs`` when more than one notebook runs; 0: no pool.  Only for local
    IPython kernels: the notebooks of another kernelspec (their own, or
    ``kernel_name``) get a kernel each as without a pool."""
    reuse: bool = False
    """Reset a pooled kernel after its notebook and run the next one on it
    (``%reset -f``; modules stay imported, see :func:`~sidecar.launch_pool`)."""


class RunEvents:
    """What a batch run reports as it goes.  Here every method does nothing;
    the command line overrides them to show progress and outputs."""

    wants_outputs: bool = False
    """Whether :meth:`output` should be called (it costs a call per output)."""

    def started(self, result: NotebookResult) -> None:
        """The notebook's kernel is up and its cells are about to run."""

    def cell(self, result: NotebookResult, progress: CellProgress) -> None:
        """A code cell is about to run."""

    def output(self, result: NotebookResult, progress: CellProgress, message: Message) -> None:
        """An output message of the running cell arrived (only if :attr:`wants_outputs`)."""

    def warning(self, result: NotebookResult, text: str) -> None:
        """Something the user should know that does not stop the run."""
        log.warning("%s: %s", result.path, text)

    def done(self, result: NotebookResult) -> None:
        """The run of this notebook ended, whatever way; its copy was written if it could be."""


# -- before any kernel -------------------------------------------------------------


def output_path(path: Path, *, output: Path | None, inplace: bool, many: bool) -> Path:
    """Where the executed copy of ``path`` goes."""
    if inplace:
        return path
    if output is not None:
        return output / path.name if many or output.is_dir() else output
    return path.with_name(f"{path.stem}.out{path.suffix}")


def plan_runs(
    paths: Sequence[Path], *, output: Path | None = None, inplace: bool = False
) -> list[NotebookResult]:
    """One not-yet-started result per path, in the given order, once every
    check that needs no kernel has passed.

    With several notebooks, ``output`` is a directory and is created here.

    Raises:
        RunRefused: a path is missing or not a file, ``output`` cannot be
            used, or two runs would write the same file (or one would write
            over a notebook that is still to be run).
    """
    check_inputs(paths)
    many = len(paths) > 1
    if output is not None:
        _check_output(output, many=many)
    results = [
        NotebookResult(
            path=path, output=output_path(path, output=output, inplace=inplace, many=many)
        )
        for path in paths
    ]
    _check_clashes(results, inplace=inplace)
    return results


def check_inputs(paths: Sequence[Path]) -> None:
    """RunRefused unless every path is a file sidecar may read."""
    for path in paths:
        if not path.exists():
            raise RunRefused(f"no such notebook: {path}")
        if path.is_dir():
            raise RunRefused(f"{path} is a directory, not a notebook")
        if not os.access(path, os.R_OK):
            raise RunRefused(f"{path}: permission denied")


def _check_output(output: Path, *, many: bool) -> None:
    if many:
        if output.exists() and not output.is_dir():
            raise RunRefused(f"-o {output}: with several notebooks, -o names a directory")
        try:
            output.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise RunRefused(f"-o {output}: cannot create it: {e.strerror or e}") from None
    elif not output.is_dir() and not output.parent.is_dir():
        raise RunRefused(f"-o {output}: no such directory: {output.parent}")


def _check_clashes(results: Sequence[NotebookResult], *, inplace: bool) -> None:
    # A directory of outputs whose names depended on which other notebooks
    # were given would surprise whatever reads them, so a clash is refused
    # rather than renamed.
    writers: dict[Path, NotebookResult] = {}
    inputs = {r.path.resolve(): r for r in results}
    for result in results:
        target = result.output.resolve()
        earlier = writers.get(target)
        if earlier is not None:
            same = earlier.path.resolve() == result.path.resolve()
            raise RunRefused(
                f"{result.path} is given twice"
                if same
                else f"{earlier.path} and {result.path} would both be written to "
                f"{result.output}; run them separately or give them different names"
            )
        writers[target] = result
        overwritten = inputs.get(target)
        if overwritten is not None and overwritten is not result and not inplace:
            raise RunRefused(
                f"the output of {result.path} would overwrite {overwritten.path}, "
                "which is also to be run"
            )


def kernel_arguments(spec: KernelSpec, *, history_in_memory: bool = True) -> list[str]:
    """Arguments added to the kernel's command line for a notebook run.

    IPython kernels (the ``python``/``python3`` kernelspecs, or any whose
    command runs ipykernel) keep their history in memory, as nbclient starts
    them.
    """
    chosen = any(arg.startswith("--HistoryManager.hist_file") for arg in spec.argv)
    if history_in_memory and _is_ipython(spec) and not chosen:
        return [_HISTORY_IN_MEMORY]
    return []


def _is_ipython(spec: KernelSpec) -> bool:
    if spec.name in _IPYTHON_KERNEL_NAMES:
        return True
    argv = spec.argv
    for i, arg in enumerate(argv[:-1]):
        if arg == "-m" and argv[i + 1] in _IPYTHON_MODULES:
            return True
    return any(Path(arg).name in _IPYTHON_MODULES for arg in argv[:1])


# -- reading a notebook for its run --------------------------------------------------


def _tags(cell: Any) -> list[str]:
    tags = cell.metadata.get("tags", [])
    return [t for t in tags if isinstance(t, str)] if isinstance(tags, list) else []


def cell_timeout(cell: CodeCell) -> float | None:
    """A cell's own timeout: ``metadata.timeout`` in seconds, or None for the run's.

    The key is top-level (``metadata.timeout``) and not under
    ``metadata.execution``: a run replaces ``metadata.execution`` with the
    cell's timings, so a timeout kept there would be gone from the executed
    copy and from every later run of it.
    """
    value = cell.metadata.get("timeout")
    return None if value is None else float(value)


def _check_cell_timeouts(notebook: Notebook) -> bool:
    """Whether any cell has its own timeout; NotebookError for one that is not seconds > 0."""
    found = False
    for index, cell in enumerate(notebook.cells):
        if not isinstance(cell, CodeCell) or cell.metadata.get("timeout") is None:
            continue
        value = cell.metadata["timeout"]
        if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
            raise NotebookError(
                f"metadata.timeout must be a number of seconds > 0, not {value!r}",
                where=f"cells[{index}]",
            )
        found = True
    return found


def _runnable_cells(notebook: Notebook, options: RunOptions) -> int:
    """How many code cells the run will run (as run_notebook counts them)."""
    count = 0
    for cell in notebook.cells:
        if not isinstance(cell, CodeCell) or not cell.source.strip():
            continue
        tags = _tags(cell)
        if any(tag in tags for tag in options.skip_tags):
            continue
        if options.parameters and _INJECTED_TAG in tags:
            continue  # replaced by the new injected cell, counted below
        count += 1
    return count + (1 if options.parameters else 0)


def _parameter_warnings(notebook: Notebook, parameters: Collection[str]) -> list[str]:
    if not parameters:
        return []
    declared = declared_parameters(notebook)
    if declared is None:
        return ["no cell is tagged 'parameters': the parameters go into a new cell at the top"]
    if not declared.readable:
        return []
    known = [p.name for p in declared.parameters]
    unknown = [name for name in parameters if name not in known]
    if not unknown:
        return []
    names = ", ".join(repr(n) for n in unknown)
    which = ", ".join(known) if known else "nothing"
    return [
        f"{'parameter' if len(unknown) == 1 else 'parameters'} {names} not assigned in "
        f"the parameters cell (cell {declared.cell_index}, which assigns {which})"
    ]


def hide_inputs(notebook: Notebook) -> None:
    """Mark every code cell's input hidden, as papermill's report mode does."""
    for cell in notebook.cells:
        if isinstance(cell, CodeCell):
            jupyter = cell.metadata.get("jupyter")
            cell.metadata["jupyter"] = {
                **(jupyter if isinstance(jupyter, dict) else {}),
                "source_hidden": True,
            }


# -- running -------------------------------------------------------------------------


_STATUS_OF: Final[dict[type[BaseException], Status]] = {
    CellError: "error",
    TimeoutError: "timeout",
    KernelError: "kernel",
    NotebookError: "invalid",
}


@final
class _Run:
    """The run of one notebook: its result, and what its hooks need."""

    def __init__(self, result: NotebookResult, options: RunOptions, events: RunEvents) -> None:
        self.result = result
        self.options = options
        self.events = events
        self.notebook: Notebook | None = None
        self.current: CellProgress | None = None
        self.last_save = 0.0
        self.hooks: dict[str, Any] = {}
        """The keyword arguments for run_notebook's optional hooks that this run uses."""

    def on_cell(self, progress: CellProgress) -> None:
        self.current = progress
        self.result.cells = progress.number
        self.result.total = progress.total
        self.events.cell(self.result, progress)

    def on_output(self, progress: CellProgress, message: Message) -> None:
        self.events.output(self.result, progress, message)

    async def on_cell_done(self, progress: CellProgress) -> None:
        every = self.options.save_every
        if every is None or self.notebook is None or time.monotonic() - self.last_save < every:
            return
        # A copy taken here, between cells, is consistent; the write happens
        # in a thread while outputs of later cells may already arrive.
        snapshot = copy.deepcopy(self.notebook)
        if self.options.report_mode:
            hide_inputs(snapshot)
        try:
            await anyio.to_thread.run_sync(save_notebook, snapshot, self.result.output)
        except OSError as e:
            self.events.warning(self.result, f"cannot save {self.result.output}: {e}")
        else:
            self.result.written = True
        self.last_save = time.monotonic()

    async def save(self) -> None:
        """The final write, shielded: a cancelled run still leaves what ran."""
        assert self.notebook is not None
        if self.options.report_mode:
            hide_inputs(self.notebook)
        with anyio.CancelScope(shield=True):
            try:
                await anyio.to_thread.run_sync(save_notebook, self.notebook, self.result.output)
            except (OSError, NotebookError) as e:
                self.result.status = "unsaved"
                self.result.error = f"cannot write {self.result.output}: {e}"
                return
        self.result.written = True

    def describe(self, error: BaseException) -> str:
        if isinstance(error, CellError):
            source = "\n".join(f"    {line}" for line in error.source.splitlines())
            return (
                f"cell {error.cell_index} raised {error.ename}: {error.evalue}\n"
                f"{source}\n" + "\n".join(error.traceback)
            )
        if isinstance(error, TimeoutError):
            if self.current is None or self.notebook is None:
                return "timed out"
            index = self.current.index
            cell = self.notebook.cells[index]
            seconds = cell_timeout(cell) if isinstance(cell, CodeCell) else None
            seconds = seconds or self.options.timeout
            limit = f" ({seconds:g} s)" if seconds is not None else ""
            return f"cell {index} ran longer than its timeout{limit} and was interrupted"
        return str(error)


async def _prepare(run: _Run) -> Notebook:
    """Read the notebook, check it, warn about its parameters, choose the hooks."""
    result, options = run.result, run.options
    notebook = await anyio.to_thread.run_sync(read_notebook, result.path)
    has_timeouts = _check_cell_timeouts(notebook)
    result.total = _runnable_cells(notebook, options)
    for text in _parameter_warnings(notebook, options.parameters):
        run.events.warning(result, text)
    run.notebook = notebook
    # Only the hooks a run uses are passed to run_notebook: each costs a call
    # per cell or per output.
    hooks = run.hooks
    if tuple(options.skip_tags) != DEFAULT_SKIP_TAGS:
        hooks["skip_tags"] = options.skip_tags
    if has_timeouts:
        hooks["cell_timeout"] = cell_timeout
    if run.events.wants_outputs:
        hooks["on_output"] = run.on_output
    if options.save_every is not None:
        hooks["on_cell_done"] = run.on_cell_done
    return notebook


@final
class _Pooled(msgspec.Struct, frozen=True):
    """The batch's kernel pool, and the kernelspec its kernels are of."""

    pool: KernelPool
    name: str


async def _run_one(run: _Run, turn: _Turns, index: int, pooled: _Pooled | None) -> None:
    """Run one notebook and write the result, whatever happens."""
    result, options, events = run.result, run.options, run.events
    began = time.monotonic()
    ended: float | None = None
    waited = 0.0
    process = None
    has_turn = False
    try:
        try:
            notebook = await _prepare(run)
        except (NotebookError, OSError) as e:
            result.status = "invalid"
            result.error = str(e) if isinstance(e, NotebookError) else f"{result.path}: {e}"
            return
        name = options.kernel_name or notebook.metadata.get("kernelspec", {}).get("name")
        if pooled is not None and (name or "python3") == pooled.name:
            # A pooled kernel is taken once the turn came: taken earlier, it
            # would sit idle while a notebook before it still waits.
            queued = time.monotonic()
            async with turn.slot(index):
                has_turn = True
                waited = time.monotonic() - queued
                async with pooled.pool.kernel(cwd=_code_directory(options, result.path)) as kernel:
                    process = kernel.process
                    ended = await _execute(run, notebook, kernel)
            return
        async with _open_kernel(name, options, result.path) as kernel:
            process = kernel.process
            queued = time.monotonic()
            async with turn.slot(index):
                has_turn = True
                waited = time.monotonic() - queued
                ended = await _execute(run, notebook, kernel)
    except anyio.get_cancelled_exc_class():
        # Cancelled before its first cell, it did not start; after, what ran was written.
        result.status = "interrupted" if has_turn else "not started"
        raise
    except (SidecarError, TimeoutError) as e:
        unsaved = f"\n{result.error}" if result.status == "unsaved" else ""
        result.status = next((s for t, s in _STATUS_OF.items() if isinstance(e, t)), "error")
        result.error = run.describe(e) + unsaved
    finally:
        if not has_turn:
            turn.skip(index)
        # Not counting the kernel's shutdown, which overlaps the next run.
        result.seconds = (ended or time.monotonic()) - began - waited
        if process is not None:
            result.kernel_log = process.log_tail(200)
        events.done(result)


async def _execute(run: _Run, notebook: Notebook, kernel: Kernel) -> float:
    """Run the notebook's cells on ``kernel`` and write it; when it ended."""
    result, options = run.result, run.options
    run.last_save = time.monotonic()
    run.events.started(result)
    try:
        await run_notebook(
            notebook,
            kernel,
            timeout=options.timeout,
            allow_errors=options.allow_errors,
            parameters=options.parameters or None,
            on_cell=run.on_cell,
            **run.hooks,
        )
        result.status = "ok"
    finally:
        await run.save()
    return time.monotonic()


def _code_directory(options: RunOptions, path: Path) -> Path:
    """Where a notebook's code runs: ``cwd``, else the notebook's directory."""
    return options.cwd or path.parent.resolve()


def _pool_spec(results: Sequence[NotebookResult], options: RunOptions, jobs: int) -> str | None:
    """The kernelspec of the batch's pool, or None for no pool."""
    size = options.pool_size
    if size is None:
        size = jobs if len(results) > 1 else 0
    if size <= 0 or options.server is not None:
        return None
    name = options.kernel_name or "python3"
    try:
        spec = get_kernelspec(name)
    except NoSuchKernel:
        return None  # each notebook fails on its own, as without a pool
    return name if _is_ipython(spec) else None


def _open_kernel(
    name: str | None, options: RunOptions, path: Path
) -> AbstractAsyncContextManager[Kernel]:
    """A kernel for one notebook: launched here, or started on the server."""
    if options.server is not None:
        # The kernel's working directory is the server's to choose.
        return connect_server(
            options.server,
            token=options.token,
            kernel_name=name,
            ready_timeout=options.startup_timeout,
        )
    name = name or "python3"
    spec = get_kernelspec(name)
    return launch(
        name,
        cwd=_code_directory(options, path),
        startup_timeout=options.startup_timeout,
        extra_arguments=kernel_arguments(spec, history_in_memory=options.history_in_memory),
    )


@final
class _Turns:
    """Run slots (``jobs`` of them), handed out in the notebooks' given order.

    Notebook ``i`` queues for a slot only once notebook ``i - 1`` has one (or
    has given up on it), so the kernel that came up first does not jump the
    queue.
    """

    def __init__(self, jobs: int, count: int) -> None:
        self._slots = anyio.Semaphore(jobs)
        self._queued = [anyio.Event() for _ in range(count + 1)]
        self._queued[0].set()

    def skip(self, index: int) -> None:
        """Notebook ``index`` will not ask for a slot: let the next one queue."""
        self._queued[index + 1].set()

    @asynccontextmanager
    async def slot(self, index: int) -> AsyncIterator[None]:
        await self._queued[index].wait()
        try:
            await self._slots.acquire()
        finally:
            self.skip(index)
        try:
            yield
        finally:
            self._slots.release()


async def run_planned(
    results: Sequence[NotebookResult],
    options: RunOptions,
    *,
    jobs: int = 1,
    events: RunEvents | None = None,
) -> None:
    """Run the notebooks of :func:`plan_runs`, up to ``jobs`` at once,
    filling in their results as they go.

    Runs start in the given order.  With a pool (see
    :attr:`RunOptions.pool_size`) its kernels start ahead; without, one kernel
    more than ``jobs`` is launched ahead.  Either way start-up overlaps with
    execution.  Cancelled (Ctrl-C), the running notebooks are interrupted and
    written, those not started yet keep the status ``"not started"``, and
    every kernel is stopped.
    """
    events = events or RunEvents()
    jobs = max(1, jobs)
    name = _pool_spec(results, options, jobs)
    if name is None:
        await _run_all(results, options, jobs, events, None)
        return
    spec = get_kernelspec(name)
    async with launch_pool(
        name,
        size=options.pool_size or jobs,
        reuse=options.reuse,
        startup_timeout=options.startup_timeout,
        extra_arguments=kernel_arguments(spec, history_in_memory=options.history_in_memory),
    ) as pool:
        await _run_all(results, options, jobs, events, _Pooled(pool, name))


async def _run_all(
    results: Sequence[NotebookResult],
    options: RunOptions,
    jobs: int,
    events: RunEvents,
    pooled: _Pooled | None,
) -> None:
    kernels = anyio.Semaphore(jobs + 1 if len(results) > jobs else jobs)
    turns = _Turns(jobs, len(results))

    async def one(index: int, run: _Run) -> None:
        try:
            await _run_one(run, turns, index, pooled)
        finally:
            kernels.release()

    async with anyio.create_task_group() as tg:
        for index, result in enumerate(results):
            await kernels.acquire()
            tg.start_soon(one, index, _Run(result, options, events))


async def run_files(
    paths: Sequence[Path],
    *,
    output: Path | None = None,
    inplace: bool = False,
    kernel_name: str | None = None,
    timeout: float | None = None,
    allow_errors: bool = False,
    parameters: Mapping[str, Any] | None = None,
    cwd: Path | None = None,
    jobs: int = 1,
    pool_size: int | None = None,
    reuse: bool = False,
    events: RunEvents | None = None,
) -> list[NotebookResult]:
    """Run notebook files, up to ``jobs`` at once; one result per file, in order.

    Raises:
        RunRefused: as :func:`plan_runs`, before any kernel starts.
    """
    results = plan_runs(paths, output=output, inplace=inplace)
    options = RunOptions(
        kernel_name=kernel_name,
        timeout=timeout,
        allow_errors=allow_errors,
        parameters=dict(parameters or {}),
        cwd=cwd,
        pool_size=pool_size,
        reuse=reuse,
    )
    await run_planned(results, options, jobs=jobs, events=events)
    return results
