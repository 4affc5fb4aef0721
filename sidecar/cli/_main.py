"""The ``sidecar`` command line.

``sidecar run NOTEBOOK...``  run notebooks, each on its own fresh kernel
``sidecar params NOTEBOOK``  list the parameters a notebook declares
``sidecar exec CODE``        run code on a fresh kernel and print what it outputs
``sidecar bench CODE...``    time code or notebooks on kernels, print statistics
``sidecar serve``            share one kernel with many Jupyter frontends
``sidecar kernelspec install`` a kernelspec that attaches to a shared kernel
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
import os
import platform
import signal
import sys
from collections.abc import Awaitable, Callable, Sequence
from contextlib import ExitStack
from functools import partial
from pathlib import Path
from typing import Any, Final, Literal, TextIO

import anyio

from .._exceptions import SidecarError
from .._version import __version__
from ..client._launch import launch
from ..client._remote import connect_server
from ..kernel._kernelspec import find_kernelspecs, get_kernelspec
from ..notebook._files import (
    DEFAULT_SKIP_TAGS,
    NotebookResult,
    RunOptions,
    RunRefused,
    plan_runs,
    run_planned,
)
from ..notebook._model import NotebookError, read_notebook
from ..notebook._parameters import (
    ParameterError,
    ParameterSource,
    collect_parameters,
    declared_parameters,
)
from ..wire import ErrorReply, Message
from ._bench import add_bench, prepare_bench
from ._options import (
    FAILED,
    OK,
    TIMED_OUT,
    USAGE,
    Parser,
    UsageError,
    add_server_options,
    check_readable,
    check_server,
    count,
    seconds,
)
from ._serve import add_kernelspec, add_serve, install_kernelspec, prepare_serve
from ._signals import Signalled, Signals, status_of_signal, until_signalled
from ._terminal import TerminalRun, print_message

log = logging.getLogger("sidecar.cli")

__all__ = ["main"]


_PAIR_OPTIONS: Final[dict[str, Literal["-p", "-r"]]] = {
    "-p": "-p",
    "--parameter": "-p",
    "-r": "-r",
    "--raw-parameter": "-r",
}


# -- argument parsing ----------------------------------------------------------------


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
            raise UsageError(f"{word} needs a NAME and a VALUE (see 'sidecar run --help')")
        pairs.append(ParameterSource(option, argv[i + 2], argv[i + 1]))
        i += 3
    return rest, pairs


def _parser() -> Parser:
    parser = Parser(prog="sidecar", description="A Jupyter kernel client for asyncio and trio.")
    parser.add_argument(
        "--version",
        action="version",
        version=f"sidecar {__version__} from {Path(__file__).parent.parent} "
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
        "--timeout", type=seconds, metavar="SECONDS", help="seconds before giving up"
    )
    run_code.add_argument(
        "--start-timeout",
        type=seconds,
        default=60.0,
        metavar="SECONDS",
        help="seconds the kernel may take to start (60)",
    )
    add_server_options(run_code)
    add_bench(commands)
    add_serve(commands)
    add_kernelspec(commands)
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
        type=partial(seconds, zero=True),
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
        type=seconds,
        metavar="SECONDS",
        help="seconds a cell may run (a cell's metadata.timeout overrides it)",
    )
    execution.add_argument(
        "--start-timeout",
        type=seconds,
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
        "-j", "--jobs", type=count(1), default=1, help="notebooks run at once (1)"
    )
    execution.add_argument(
        "--pool-size",
        type=count(0),
        metavar="N",
        help="local IPython kernels kept started ahead when several notebooks run "
        "(default: as many as --jobs; 0: no pool, a kernel launched per notebook)",
    )
    execution.add_argument(
        "--reuse",
        action="store_true",
        help="run the next notebook on a pooled kernel once reset (%%reset -f; "
        "imported modules and global side effects persist)",
    )
    add_server_options(execution)
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


# -- the commands --------------------------------------------------------------------


async def _exec(
    code: str,
    kernel_name: str,
    timeout: float | None,
    start_timeout: float,
    server: str | None = None,
    token: str | None = None,
) -> int:
    def show(message: Message) -> None:
        print_message(message, sys.stdout, sys.stderr)

    opened = (
        launch(kernel_name, startup_timeout=start_timeout)
        if server is None
        else connect_server(
            server, token=token, kernel_name=kernel_name, ready_timeout=start_timeout
        )
    )
    async with opened as kernel:
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
        # Cancelled by a signal (see until_signalled), run_planned interrupts
        # the running cells and writes what ran before the kernels go.
        await run_planned(results, options, jobs=jobs, events=display)
    finally:
        # After an interrupt too: the reports and the summary of what ran.
        display.finish()
    return _run_status(results)


def _params(paths: Sequence[Path]) -> int:
    """``sidecar params``: each notebook's parameters, as Python assignments."""
    check_readable(paths)
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
        raise UsageError(f"{option} {path}: {e.strerror or e}") from None


def _prepare_run(
    args: argparse.Namespace, pairs: list[ParameterSource], stack: ExitStack
) -> Callable[[], Awaitable[int]] | int:
    """Everything ``run`` checks before any kernel starts; the command, or an exit status."""
    if args.inplace and args.output is not None:
        raise UsageError("--inplace and -o exclude each other")
    if args.help_notebook:
        return _params(args.notebooks)
    given = [
        *pairs,
        *(ParameterSource("-f", text) for text in args.parameters_file),
        *(ParameterSource("-y", text) for text in args.parameters_yaml),
        *(ParameterSource("-b", text) for text in args.parameters_base64),
    ]
    check_readable(args.notebooks)
    output = None if args.output is None else Path(args.output)
    if output is not None and args.output.endswith(("/", os.sep)):
        # `-o DIR/` names a directory even for one notebook.
        try:
            output.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise UsageError(f"-o {args.output}: cannot create it: {e.strerror or e}") from None
    try:
        parameters = collect_parameters(given)
        results = plan_runs(args.notebooks, output=output, inplace=args.inplace)
    except (ParameterError, RunRefused) as e:
        raise UsageError(str(e)) from None
    check_server(args.server)
    if args.server is not None and args.cwd is not None:
        raise UsageError("--cwd is for local kernels: a server starts its kernels where it runs")
    if args.reuse and (args.server is not None or args.pool_size == 0):
        raise UsageError("--reuse needs the pool of local kernels (not --server, --pool-size 0)")
    if args.cwd is not None and not args.cwd.is_dir():
        raise UsageError(f"--cwd {args.cwd}: no such directory")
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
        server=args.server,
        token=args.token,
        pool_size=args.pool_size,
        reuse=args.reuse,
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


def _main(argv: list[str], signals: Signals) -> int:
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
        if args.command == "kernelspec":
            return install_kernelspec(args)
        if args.command == "run":
            prepared = _prepare_run(args, pairs, stack)
            if isinstance(prepared, int):
                return prepared
            command, what = prepared, "; what ran was written"
        elif args.command == "bench":
            command = prepare_bench(args)
        elif args.command == "serve":
            command = prepare_serve(args)
        else:
            check_server(args.server)
            code = sys.stdin.read() if args.code == "-" else args.code
            command = partial(
                _exec,
                code,
                args.kernel,
                args.timeout,
                args.start_timeout,
                args.server,
                args.token,
            )
        with signals.in_event_loop():
            return anyio.run(until_signalled, command, what, signals, backend=args.backend)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``sidecar`` command line; its exit status."""
    signals = Signals()
    signals.install()
    try:
        return _main(list(sys.argv[1:] if argv is None else argv), signals)
    except UsageError as e:
        print(f"sidecar: {e}", file=sys.stderr)
        return USAGE
    except TimeoutError:
        print("sidecar: timed out", file=sys.stderr)
        return TIMED_OUT
    except (SidecarError, OSError) as e:
        print(f"sidecar: {e}", file=sys.stderr)
        return FAILED
    except Signalled as e:
        return status_of_signal(e.signum)
    except KeyboardInterrupt:
        return status_of_signal(signal.SIGINT)
    finally:
        # Called without arguments, main() is the program itself (the console
        # script, python -m sidecar); with arguments, it may be a caller's
        # function, whose handlers come back as they were.
        signals.restore(finished=argv is None)


if __name__ == "__main__":
    sys.exit(main())
