"""The ``sidecar`` command line.

``sidecar run NOTEBOOK...``  run notebooks, each on its own fresh kernel
``sidecar params NOTEBOOK``  list the parameters a notebook declares
``sidecar exec CODE``        run code on a fresh kernel and print what it outputs
``sidecar bench CODE...``    time code or notebooks on kernels, print statistics
``sidecar kernelspecs``      list the installed kernels

One rule for the exit status of every command (``docs/cli.md`` has the
table): 0 done; 1 the work failed (code raised, a notebook failed, no such
kernel, a kernel did not start or died); 2 bad usage, found before any
kernel starts; 3 a ``--timeout`` expired; 128 + the signal number when
interrupted (130 SIGINT, 143 SIGTERM).
"""

from __future__ import annotations

import argparse
import logging
import math
import os
import platform
import signal
import sys
import threading
from collections.abc import Awaitable, Callable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from functools import partial
from pathlib import Path
from types import FrameType
from typing import Any, Final, Literal, NoReturn, TextIO, final

import anyio

from ._batch import (
    DEFAULT_SKIP_TAGS,
    NotebookResult,
    RunOptions,
    RunRefused,
    check_inputs,
    plan_runs,
    run_planned,
)
from ._bench import BenchVariant, VariantLike, bench
from ._exceptions import ExecutionError, SidecarError
from ._notebook import NotebookError, read_notebook
from ._parameters import (
    ParameterError,
    ParameterSource,
    collect_parameters,
    declared_parameters,
)
from ._task_groups import open_task_group
from ._terminal import TerminalRun, print_message, strip_ansi
from ._version import __version__
from .client._launch import launch
from .kernel._kernelspec import find_kernelspecs, get_kernelspec
from .wire import ErrorReply, Message

log = logging.getLogger("sidecar.cli")

__all__ = ["main"]

OK: Final = 0
FAILED: Final = 1
USAGE: Final = 2
TIMED_OUT: Final = 3

_COMMANDS: Final = ("run", "params", "exec", "bench", "kernelspecs")
_PAIR_OPTIONS: Final[dict[str, Literal["-p", "-r"]]] = {
    "-p": "-p",
    "--parameter": "-p",
    "-r": "-r",
    "--raw-parameter": "-r",
}


class _UsageError(Exception):
    """Bad usage: printed as one line, exit status 2."""


# -- signals -----------------------------------------------------------------------


class _Signalled(BaseException):
    """A signal arrived while no event loop was there to turn it into a cancellation."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


@final
class _Signals:
    """SIGINT and SIGTERM for the whole life of :func:`main`.

    Installed first thing, so that Python's default (a KeyboardInterrupt
    raised wherever the code happens to be, or for SIGTERM death on the
    spot) never applies once ``main`` runs.  Outside the event loop a signal
    stops the command at once (:class:`_Signalled`); inside it, the signal
    is recorded, and :func:`_until_signalled` turns it into a cancellation
    whether it came before, during or after its own receiver was installed.
    With this handler in place neither trio nor asyncio installs its own
    KeyboardInterrupt handler (both only replace Python's default).
    """

    def __init__(self) -> None:
        self.caught: list[int] = []
        self.in_loop = False
        self._previous: dict[int, Any] = {}
        self.ignored: set[int] = set()
        """Signals ignored when sidecar started (a shell's background job
        ignores SIGINT): they stay ignored."""

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        self.caught.append(signum)
        if not self.in_loop:
            raise _Signalled(signum)

    def install(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            return
        for signum in (signal.SIGINT, signal.SIGTERM):
            if signum in self.ignored:
                continue
            if signum not in self._previous and signal.getsignal(signum) == signal.SIG_IGN:
                self.ignored.add(signum)
                continue
            previous = signal.signal(signum, self._handle)
            self._previous.setdefault(signum, previous)

    @property
    def watched(self) -> list[signal.Signals]:
        """The signals that cancel a command."""
        return [s for s in (signal.SIGINT, signal.SIGTERM) if s not in self.ignored]

    def restore(self, *, finished: bool = False) -> None:
        """Put the handlers back; ``finished``: the process is about to exit
        with its status decided, so a late Ctrl-C is ignored rather than
        turned into death by SIGINT while the interpreter shuts down."""
        for signum, previous in self._previous.items():
            ignore = finished and signum == signal.SIGINT
            signal.signal(signum, signal.SIG_IGN if ignore else previous)
        self._previous.clear()

    @contextmanager
    def in_event_loop(self) -> Iterator[None]:
        self.in_loop = True
        try:
            yield
        finally:
            self.in_loop = False


def _status_of_signal(signum: int, what: str = "") -> int:
    name = "interrupted" if signum == signal.SIGINT else "terminated"
    print(f"sidecar: {name}{what}", file=sys.stderr)
    return 128 + signum


async def _until_signalled(
    command: Callable[[], Awaitable[int]], what: str, signals: _Signals
) -> int:
    """``command()``, cancelled by SIGINT or SIGTERM: exit status 128 + the signal.

    Cancelling is what makes a signal safe: every kernel the command started
    is interrupted and shut down, and its files removed, before the process
    exits.  The receiver stays installed until the command has unwound, so
    further signals are swallowed rather than killing the cleanup half-way;
    and once a signal came, an error raised by the cleanup does not change
    the status.  A signal that came before the receiver was installed (while
    the event loop started) cancels the command before it begins.
    """
    if not signals.watched:
        return await command()
    caught: list[int] = []
    command_scope = anyio.CancelScope()
    with anyio.open_signal_receiver(*signals.watched) as received:
        if signals.caught:
            caught.append(signals.caught[0])
            command_scope.cancel()
        async with open_task_group() as tg:

            async def watch() -> None:
                async for signum in received:
                    if not caught:
                        caught.append(signum)
                        command_scope.cancel()

            tg.start_soon(watch)
            try:
                with command_scope:
                    status = await command()
            except Exception:
                if not caught:
                    raise
                log.warning("error while cleaning up after a signal", exc_info=True)
            finally:
                tg.cancel_scope.cancel()
    # asyncio puts Python's defaults back when its receiver closes: ours again.
    signals.install()
    if caught:
        return _status_of_signal(caught[0], what)
    return status


# -- argument parsing ----------------------------------------------------------------


class _Parser(argparse.ArgumentParser):
    """argparse, with a usage error as one line (``sidecar: ...``, exit 2)."""

    def error(self, message: str) -> NoReturn:
        raise _UsageError(f"{message} (see '{self.prog} --help')")


def _seconds(text: str, *, zero: bool = False) -> float:
    """A number of seconds > 0 (>= 0 with ``zero``)."""
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and (value > 0 or (zero and value == 0))):
        least = ">= 0" if zero else "> 0"
        raise argparse.ArgumentTypeError(f"expected a number of seconds {least}, got {text!r}")
    return value


def _count(least: int) -> Callable[[str], int]:
    """A whole number >= ``least``."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            value = least - 1
        if value < least:
            raise argparse.ArgumentTypeError(f"expected a whole number >= {least}, got {text!r}")
        return value

    return parse


def _take_pairs(argv: list[str]) -> tuple[list[str], list[ParameterSource]]:
    """``-p NAME VALUE`` and ``-r NAME VALUE`` of ``run``, taken out of ``argv`` before argparse.

    argparse refuses a VALUE that starts with ``-`` (``-p x -inf``, ``-p s
    -text``) as "expected 2 arguments"; papermill takes the next two words
    whatever they are, and so does this.
    """
    command_at = None
    skip_value = False
    for i, word in enumerate(argv):
        if skip_value:
            skip_value = False
        elif word == "--backend":
            skip_value = True
        elif not word.startswith("-"):
            command_at = i
            break
    if command_at is None or argv[command_at] != "run":
        return argv, []
    rest, pairs = argv[: command_at + 1], []
    i = command_at + 1
    while i < len(argv):
        word = argv[i]
        if word == "--":
            rest += argv[i:]
            break
        option = _PAIR_OPTIONS.get(word)
        if option is None:
            rest.append(word)
            i += 1
            continue
        if len(argv) - i < 3:
            raise _UsageError(f"{word} needs a NAME and a VALUE (see 'sidecar run --help')")
        pairs.append(ParameterSource(option, argv[i + 2], argv[i + 1]))
        i += 3
    return rest, pairs


def _parser() -> _Parser:
    parser = _Parser(prog="sidecar", description="A Jupyter kernel client for asyncio and trio.")
    parser.add_argument(
        "--version",
        action="version",
        version=f"sidecar {__version__} from {Path(__file__).parent} "
        f"(Python {platform.python_version()})",
    )
    parser.add_argument(
        "--backend", choices=["asyncio", "trio"], default="trio", help="event loop to run on"
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log what sidecar does")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _add_run(commands)
    params = commands.add_parser(
        "params",
        help="list the parameters a notebook declares",
        description="List the parameters that the cell tagged 'parameters' of each notebook "
        "assigns: name, type, default and help comment. Exit status: 0 listed, 1 a notebook "
        "is invalid, 2 bad usage.",
    )
    params.add_argument("notebooks", nargs="+", type=Path, metavar="NOTEBOOK", help=".ipynb files")
    run_code = commands.add_parser(
        "exec",
        help="run code on a fresh kernel, print its output",
        description="Run code on a fresh kernel and print its outputs. Exit status: 0 ran, "
        "1 the code raised or the kernel failed, 2 bad usage, 3 --timeout expired, "
        "130 interrupted, 143 terminated.",
    )
    run_code.add_argument("code", help="the code to run, or - to read it from stdin")
    run_code.add_argument("--kernel", default="python3", help="kernelspec name (python3)")
    run_code.add_argument(
        "--timeout", type=_seconds, metavar="SECONDS", help="seconds before giving up"
    )
    run_code.add_argument(
        "--start-timeout",
        type=_seconds,
        default=60.0,
        metavar="SECONDS",
        help="seconds the kernel may take to start (60)",
    )
    _add_bench(commands)
    commands.add_parser(
        "kernelspecs",
        help="list installed kernels",
        description="List the installed kernels: name, display name, directory.",
    )
    return parser


def _add_run(commands: Any) -> None:
    run = commands.add_parser(
        "run",
        help="run notebooks, each on a fresh kernel",
        description="Run the code cells of notebooks in order and write the results. "
        "Exit status: 0 all ran, 1 a notebook failed, 2 bad usage (nothing was run), "
        "3 a cell timed out, 130 interrupted (SIGINT), 143 terminated (SIGTERM).",
    )
    run.add_argument("notebooks", nargs="+", type=Path, metavar="NOTEBOOK", help=".ipynb files")
    out = run.add_argument_group("output")
    out.add_argument(
        "-o",
        "--output",
        help="output notebook (a directory with several, or ending in /); "
        "default NAME.out.ipynb beside each",
    )
    out.add_argument("--inplace", action="store_true", help="overwrite the input notebooks")
    out.add_argument(
        "--save-every",
        type=partial(_seconds, zero=True),
        metavar="SECONDS",
        help="also write the output after a cell once SECONDS passed since the last write "
        "(0: after every cell)",
    )
    out.add_argument(
        "--report-mode", action="store_true", help="hide the code cells' inputs in the output"
    )
    params = run.add_argument_group(
        "parameters", "as papermill takes them; later ones win, in the order -b -f -y -p -r"
    )
    params.add_argument(
        "-p",
        "--parameter",
        nargs=2,
        action="append",
        metavar=("NAME", "VALUE"),
        help="NAME = VALUE, read as papermill reads it: True, False, None, int, float, "
        "else text (repeatable)",
    )
    params.add_argument(
        "-r",
        "--raw-parameter",
        nargs=2,
        action="append",
        metavar=("NAME", "VALUE"),
        help="NAME = VALUE as text (repeatable)",
    )
    params.add_argument(
        "-f",
        "--parameters-file",
        action="append",
        default=[],
        metavar="FILE",
        help="a YAML file of parameters (repeatable)",
    )
    params.add_argument(
        "-y",
        "--parameters-yaml",
        action="append",
        default=[],
        metavar="YAML",
        help="YAML text of parameters (repeatable)",
    )
    params.add_argument(
        "-b",
        "--parameters-base64",
        action="append",
        default=[],
        metavar="BASE64",
        help="base64-encoded YAML of parameters (repeatable)",
    )
    params.add_argument(
        "--help-notebook",
        action="store_true",
        help="list the notebooks' parameters and exit (as 'sidecar params')",
    )
    execution = run.add_argument_group("execution")
    execution.add_argument("--kernel", help="kernelspec (default: the notebook's, else python3)")
    execution.add_argument(
        "--timeout",
        type=_seconds,
        metavar="SECONDS",
        help="seconds a cell may run (a cell's metadata.timeout overrides it)",
    )
    execution.add_argument(
        "--start-timeout",
        type=_seconds,
        default=60.0,
        metavar="SECONDS",
        help="seconds a kernel may take to start (60)",
    )
    execution.add_argument("--allow-errors", action="store_true", help="go on after a cell raises")
    execution.add_argument(
        "--skip-tag",
        action="append",
        default=[],
        metavar="TAG",
        help="also skip cells tagged TAG (repeatable; skip-execution always is)",
    )
    execution.add_argument(
        "--cwd", type=Path, metavar="DIR", help="kernel working directory (default: the notebook's)"
    )
    execution.add_argument(
        "-j", "--jobs", type=_count(1), default=1, help="notebooks run at once (1)"
    )
    shown = run.add_argument_group("what is printed")
    shown.add_argument("--show", action="store_true", help="print the outputs when done")
    shown.add_argument("--log-output", action="store_true", help="print the outputs as they arrive")
    shown.add_argument(
        "--stdout-file", type=Path, metavar="FILE", help="write the cells' stdout to FILE"
    )
    shown.add_argument(
        "--stderr-file", type=Path, metavar="FILE", help="write the cells' stderr to FILE"
    )
    shown.add_argument("--kernel-log", action="store_true", help="print what the kernel logged")
    shown.add_argument("-q", "--quiet", action="store_true", help="no progress on stderr")


def _add_bench(commands: Any) -> None:
    timing = commands.add_parser(
        "bench",
        help="time code or notebooks on kernels",
        description="Run each CODE (and each --notebook) N times on kernels of its own and "
        "print statistics of the client's and the kernel's time per run. "
        "Exit status: 0 done, 1 the code raised or a kernel failed, 2 bad usage, "
        "3 a run timed out, 130 interrupted, 143 terminated.",
    )
    timing.add_argument("code", nargs="*", help="code to time; - reads it from stdin")
    timing.add_argument(
        "--notebook",
        action="append",
        default=[],
        type=Path,
        metavar="PATH",
        help="time a run of this notebook's code cells (repeatable)",
    )
    timing.add_argument("-n", type=_count(1), default=100, help="runs of each (100)")
    timing.add_argument(
        "-k", "--kernels", type=_count(1), default=1, help="kernels for each, running at once (1)"
    )
    timing.add_argument(
        "--warmup", type=_count(0), help="untimed runs on each kernel first (1; 0 with --fresh)"
    )
    timing.add_argument("--fresh", action="store_true", help="a new kernel for every run")
    timing.add_argument(
        "--no-interleave",
        dest="interleave",
        action="store_false",
        help="time one variant after another instead of in turns",
    )
    timing.add_argument(
        "--name",
        action="append",
        default=[],
        help="names for the variants, in order: codes, then notebooks (repeatable)",
    )
    timing.add_argument("--kernel", default="python3", help="kernelspec name (python3)")
    timing.add_argument(
        "--timeout",
        type=_seconds,
        metavar="SECONDS",
        help="seconds a run (a notebook's cell) may take",
    )
    timing.add_argument("--json", action="store_true", help="print JSON, every run included")


# -- the commands --------------------------------------------------------------------


async def _exec(code: str, kernel_name: str, timeout: float | None, start_timeout: float) -> int:
    def show(message: Message) -> None:
        print_message(message, sys.stdout, sys.stderr)

    async with launch(kernel_name, startup_timeout=start_timeout) as kernel:
        reply = await kernel.execute(code, handlers=[show], timeout=timeout)
    return FAILED if isinstance(reply, ErrorReply) else OK


def _run_status(results: Sequence[NotebookResult]) -> int:
    failed = [r for r in results if r.status != "ok"]
    if not failed:
        return OK
    return TIMED_OUT if all(r.status == "timeout" for r in failed) else FAILED


async def _run(
    results: list[NotebookResult], options: RunOptions, jobs: int, display: TerminalRun
) -> int:
    try:
        # Cancelled by a signal (see _until_signalled), run_planned interrupts
        # the running cells and writes what ran before the kernels go.
        await run_planned(results, options, jobs=jobs, events=display)
    finally:
        # After an interrupt too: the reports and the summary of what ran.
        display.finish()
    return _run_status(results)


def _check_readable(paths: Sequence[Path]) -> None:
    try:
        check_inputs(paths)
    except RunRefused as e:
        raise _UsageError(str(e)) from None


def _params(paths: Sequence[Path]) -> int:
    """``sidecar params``: each notebook's parameters, as Python assignments."""
    _check_readable(paths)
    status = OK
    for n, path in enumerate(paths):
        if n:
            print()
        try:
            notebook = read_notebook(path)
        except NotebookError as e:
            print(f"sidecar: {e}", file=sys.stderr)
            status = FAILED
            continue
        declared = declared_parameters(notebook)
        if declared is None:
            print(f"{path}: no cell tagged 'parameters'")
            continue
        print(f"{path}: parameters (cell {declared.cell_index}):")
        if not declared.readable:
            print("  (the cell's code is not Python that sidecar can read)")
        elif not declared.parameters:
            print("  (the cell assigns none)")
        for parameter in declared.parameters:
            kind = f": {parameter.type}" if parameter.type else ""
            line = f"  {parameter.name}{kind} = {parameter.default}"
            print(f"{line}  # {parameter.help}" if parameter.help else line)
    return status


async def _bench(args: argparse.Namespace) -> int:
    items: list[str | Path] = [*args.code, *args.notebook]
    variants: list[VariantLike] = list(items)
    for i, name in enumerate(args.name):
        item = items[i]
        code, notebook = (item, None) if isinstance(item, str) else (None, str(item))
        variants[i] = BenchVariant(name, code=code, notebook=notebook)
    try:
        result = await bench(
            *variants,
            n=args.n,
            kernels=args.kernels,
            warmup=args.warmup,
            fresh=args.fresh,
            interleave=args.interleave,
            kernel_name=args.kernel,
            timeout=args.timeout,
        )
    except TimeoutError:
        # Before OSError and ValueError: TimeoutError is an OSError.
        print(f"sidecar: a run took longer than --timeout {args.timeout:g} s", file=sys.stderr)
        return TIMED_OUT
    except ExecutionError as e:
        print(strip_ansi("\n".join(e.traceback)), file=sys.stderr)
        print(f"sidecar: {e}", file=sys.stderr)
        return FAILED
    except NotebookError as e:
        print(f"sidecar: {e}", file=sys.stderr)
        return FAILED
    except ValueError as e:
        print(f"sidecar: {e}", file=sys.stderr)
        return USAGE
    print(result.to_json().decode() if args.json else result.render())
    return OK


def _kernelspecs() -> int:
    specs = find_kernelspecs()
    if not specs:
        print(
            "no kernels found; install one with: pip install ipykernel "
            "(or pip install 'sidecar[ipykernel]')",
            file=sys.stderr,
        )
    width = max((len(name) for name in specs), default=4)
    for name, path in sorted(specs.items()):
        spec = get_kernelspec(name)
        where = str(path) if str(path) not in ("", ".") else "(this interpreter's ipykernel)"
        print(f"{name:<{width}}  {spec.display_name:<28}  {where}")
    return OK


# -- putting a command together ------------------------------------------------------


def _open_for_writing(path: Path | None, option: str, stack: ExitStack) -> TextIO | None:
    if path is None:
        return None
    try:
        return stack.enter_context(path.open("w", encoding="utf-8"))
    except OSError as e:
        raise _UsageError(f"{option} {path}: {e.strerror or e}") from None


def _prepare_run(
    args: argparse.Namespace, pairs: list[ParameterSource], stack: ExitStack
) -> Callable[[], Awaitable[int]] | int:
    """Everything ``run`` checks before any kernel starts; the command, or an exit status."""
    if args.inplace and args.output is not None:
        raise _UsageError("--inplace and -o exclude each other")
    if args.help_notebook:
        return _params(args.notebooks)
    given = [
        *pairs,
        *(ParameterSource("-f", text) for text in args.parameters_file),
        *(ParameterSource("-y", text) for text in args.parameters_yaml),
        *(ParameterSource("-b", text) for text in args.parameters_base64),
    ]
    _check_readable(args.notebooks)
    output = None if args.output is None else Path(args.output)
    if output is not None and args.output.endswith(("/", os.sep)):
        # `-o DIR/` names a directory even for one notebook.
        try:
            output.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise _UsageError(f"-o {args.output}: cannot create it: {e.strerror or e}") from None
    try:
        parameters = collect_parameters(given)
        results = plan_runs(args.notebooks, output=output, inplace=args.inplace)
    except (ParameterError, RunRefused) as e:
        raise _UsageError(str(e)) from None
    if args.cwd is not None and not args.cwd.is_dir():
        raise _UsageError(f"--cwd {args.cwd}: no such directory")
    options = RunOptions(
        kernel_name=args.kernel,
        timeout=args.timeout,
        startup_timeout=args.start_timeout,
        allow_errors=args.allow_errors,
        parameters=parameters,
        cwd=args.cwd,
        skip_tags=tuple(dict.fromkeys([*DEFAULT_SKIP_TAGS, *args.skip_tag])),
        report_mode=args.report_mode,
        save_every=args.save_every,
    )
    display = TerminalRun(
        results,
        out=sys.stdout,
        err=sys.stderr,
        quiet=args.quiet,
        show=args.show,
        kernel_log=args.kernel_log,
        log_output=args.log_output,
        stdout_file=_open_for_writing(args.stdout_file, "--stdout-file", stack),
        stderr_file=_open_for_writing(args.stderr_file, "--stderr-file", stack),
    )
    return partial(_run, results, options, args.jobs, display)


def _prepare_bench(args: argparse.Namespace) -> Callable[[], Awaitable[int]]:
    if not args.code and not args.notebook:
        raise _UsageError("bench needs code or --notebook")
    if len(args.name) > len(args.code) + len(args.notebook):
        raise _UsageError("more --name than things to time")
    _check_readable(args.notebook)
    args.code = [sys.stdin.read() if code == "-" else code for code in args.code]
    return partial(_bench, args)


def _main(argv: list[str], signals: _Signals) -> int:
    argv, pairs = _take_pairs(argv)
    try:
        args = _parser().parse_args(argv)
    except SystemExit as e:  # --help, --version
        return e.code if isinstance(e.code, int) else OK
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.WARNING,
        format="%(name)s: %(message)s",
    )
    log.debug("sidecar %s: %s on %s", __version__, args.command, args.backend)
    with ExitStack() as stack:
        what = ""
        if args.command == "kernelspecs":
            return _kernelspecs()
        if args.command == "params":
            return _params(args.notebooks)
        if args.command == "run":
            prepared = _prepare_run(args, pairs, stack)
            if isinstance(prepared, int):
                return prepared
            command, what = prepared, "; what ran was written"
        elif args.command == "bench":
            command = _prepare_bench(args)
        else:
            code = sys.stdin.read() if args.code == "-" else args.code
            command = partial(_exec, code, args.kernel, args.timeout, args.start_timeout)
        with signals.in_event_loop():
            return anyio.run(_until_signalled, command, what, signals, backend=args.backend)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``sidecar`` command line; its exit status."""
    signals = _Signals()
    signals.install()
    try:
        return _main(list(sys.argv[1:] if argv is None else argv), signals)
    except _UsageError as e:
        print(f"sidecar: {e}", file=sys.stderr)
        return USAGE
    except TimeoutError:
        print("sidecar: timed out", file=sys.stderr)
        return TIMED_OUT
    except (SidecarError, OSError) as e:
        print(f"sidecar: {e}", file=sys.stderr)
        return FAILED
    except _Signalled as e:
        return _status_of_signal(e.signum)
    except KeyboardInterrupt:
        return _status_of_signal(signal.SIGINT)
    finally:
        # Called without arguments, main() is the program itself (the console
        # script, python -m sidecar); with arguments, it may be a caller's
        # function, whose handlers come back as they were.
        signals.restore(finished=argv is None)


if __name__ == "__main__":
    sys.exit(main())
