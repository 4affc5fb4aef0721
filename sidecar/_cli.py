"""The ``sidecar`` command line.

``sidecar run NOTEBOOK...``  run notebooks, each on its own fresh kernel
``sidecar exec CODE``        run code on a fresh kernel and print what it outputs
``sidecar bench CODE...``    time code or notebooks on kernels, print statistics
``sidecar kernelspecs``      list the installed kernels
"""

from __future__ import annotations

import argparse
import logging
import re
import signal
import sys
from collections.abc import Awaitable, Callable, Sequence
from functools import partial
from pathlib import Path
from typing import Any, Final, TextIO

import anyio
import msgspec

from ._batch import Progress, parse_parameter, run_files, summary_table
from ._bench import BenchVariant, VariantLike, bench
from ._exceptions import ExecutionError, SidecarError
from ._notebook import CodeCell, outputs_to_dicts, read_notebook
from ._task_groups import open_task_group
from .client._launch import launch
from .kernel._kernelspec import find_kernelspecs, get_kernelspec
from .wire import ErrorReply, Message

log = logging.getLogger("sidecar.cli")

__all__ = ["main"]

_ANSI: Final = re.compile(r"\x1b\[[0-9;]*m")


def _print_output(message: Message, out: TextIO, err: TextIO) -> None:
    """Show one iopub output message as a terminal would."""
    if message.msg_type in ("stream", "execute_result", "display_data", "error"):
        output = {"output_type": message.msg_type, **msgspec.to_builtins(message.content)}
        _print_output_dict(output, out, err)


async def _exec(code: str, kernel_name: str, timeout: float | None) -> int:
    def show(message: Message) -> None:
        _print_output(message, sys.stdout, sys.stderr)

    async with launch(kernel_name) as kernel:
        reply = await kernel.execute(code, handlers=[show], timeout=timeout)
    return 1 if isinstance(reply, ErrorReply) else 0


async def _run(args: argparse.Namespace) -> int:
    paths = [Path(p) for p in args.notebooks]
    if args.output is not None and len(paths) > 1 and args.output.suffix == ".ipynb":
        print("sidecar: with several notebooks, -o names a directory", file=sys.stderr)
        return 2
    parameters = {name: parse_parameter(value) for name, value in args.parameters or []}
    progress = Progress(sys.stderr, enabled=not args.quiet)
    # Cancelled by a signal (see _until_signalled), run_files interrupts the
    # running cells and writes what ran before the kernels go.
    results = await run_files(
        paths,
        output=args.output,
        inplace=args.inplace,
        kernel_name=args.kernel,
        timeout=args.timeout,
        allow_errors=args.allow_errors,
        parameters=parameters,
        cwd=args.cwd,
        jobs=args.jobs,
        progress=progress,
    )
    for result in results:
        if args.show and result.output is not None:
            _show_notebook(result.output)
        if result.status != "ok":
            print(f"\n{result.path}: {result.status}\n{result.error}", file=sys.stderr)
            if result.kernel_log and result.status == "kernel":
                print(f"--- kernel log ---\n{result.kernel_log}", file=sys.stderr)
        if args.kernel_log and result.kernel_log:
            print(f"--- kernel log of {result.path} ---\n{result.kernel_log}", file=sys.stderr)
    if len(results) > 1:
        print(summary_table(results), file=sys.stderr)
    return 0 if all(r.status == "ok" for r in results) else 1


async def _bench(args: argparse.Namespace) -> int:
    items: list[str | Path] = [*args.code, *args.notebook]
    if not items:
        print("sidecar: bench needs code or --notebook", file=sys.stderr)
        return 2
    if len(args.name) > len(items):
        print("sidecar: more --name than things to time", file=sys.stderr)
        return 2
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
    except (ValueError, OSError) as e:
        print(f"sidecar: {e}", file=sys.stderr)
        return 2
    except ExecutionError as e:
        print(_ANSI.sub("", "\n".join(e.traceback)), file=sys.stderr)
        print(f"sidecar: {e}", file=sys.stderr)
        return 1
    print(result.to_json().decode() if args.json else result.render())
    return 0


async def _until_signalled(command: Callable[[], Awaitable[int]], what: str) -> int:
    """``command()``, cancelled by SIGINT or SIGTERM: exit status 128 + the signal.

    Cancelling is what makes a signal safe: every kernel the command started
    is interrupted and shut down, and its files removed, before the process
    exits.  Python's default for SIGTERM is to die on the spot, leaving the
    kernels to notice their parent is gone and their files behind.  The
    receiver stays installed until the command has unwound, so further
    signals are swallowed rather than killing the cleanup half-way; and once
    a signal came, an error raised by the cleanup does not change the status.
    """
    caught: list[int] = []
    command_scope = anyio.CancelScope()
    with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async with open_task_group() as tg:

            async def watch() -> None:
                async for signum in signals:
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
    if caught:
        name = "interrupted" if caught[0] == signal.SIGINT else "terminated"
        print(f"sidecar: {name}{what}", file=sys.stderr)
        return 128 + caught[0]
    return status


def _show_notebook(path: Path) -> None:
    """Print a notebook's outputs as a terminal shows them."""
    notebook = read_notebook(path)
    for cell in notebook.cells:
        if not isinstance(cell, CodeCell) or not cell.outputs:
            continue
        print(f"[{cell.execution_count}]")
        for output in outputs_to_dicts(cell.outputs):
            _print_output_dict(output, sys.stdout, sys.stdout)


def _print_output_dict(output: dict[str, Any], out: TextIO, err: TextIO) -> None:
    kind = output["output_type"]
    if kind == "stream":
        (err if output["name"] == "stderr" else out).write(output["text"])
    elif kind in ("execute_result", "display_data"):
        data = output["data"]
        # A terminal shows text: markdown where the object offers it (its
        # text/plain is then usually just a repr), else the plain text.
        text = data.get("text/markdown", data.get("text/plain"))
        if text is not None:
            out.write(text if text.endswith("\n") else text + "\n")
        else:
            out.write(f"<{', '.join(sorted(output['data']))}>\n")
    elif kind == "error":
        err.write(_ANSI.sub("", "\n".join(output["traceback"])) + "\n")
    out.flush()


def _kernelspecs() -> int:
    specs = find_kernelspecs()
    width = max((len(name) for name in specs), default=4)
    for name, path in sorted(specs.items()):
        spec = get_kernelspec(name)
        where = str(path) if str(path) not in ("", ".") else "(this interpreter's ipykernel)"
        print(f"{name:<{width}}  {spec.display_name:<28}  {where}")
    return 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="sidecar", description="A Jupyter kernel client for asyncio and trio."
    )
    parser.add_argument(
        "--backend", choices=["asyncio", "trio"], default="trio", help="event loop to run on"
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log what sidecar does")
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser(
        "run",
        help="run notebooks, each on a fresh kernel",
        description="Run the code cells of notebooks in order and write the results. "
        "Exit status: 0 all ran, 1 a notebook failed, 2 bad usage, "
        "130 interrupted (SIGINT), 143 terminated (SIGTERM).",
    )
    run.add_argument("notebooks", nargs="+", help=".ipynb files")
    run.add_argument(
        "-o",
        "--output",
        type=Path,
        help="output notebook (a directory with several); default NAME.out.ipynb beside each",
    )
    run.add_argument("--inplace", action="store_true", help="overwrite the input notebooks")
    run.add_argument("--kernel", help="kernelspec (default: the notebook's, else python3)")
    run.add_argument("--timeout", type=float, help="seconds a cell may run")
    run.add_argument("--allow-errors", action="store_true", help="go on after a cell raises")
    run.add_argument(
        "-p",
        "--parameter",
        dest="parameters",
        nargs=2,
        action="append",
        metavar=("NAME", "VALUE"),
        help="inject NAME = VALUE after the cell tagged 'parameters' (repeatable)",
    )
    run.add_argument("--cwd", type=Path, help="kernel working directory (default: the notebook's)")
    run.add_argument("-j", "--jobs", type=int, default=1, help="notebooks run at once")
    run.add_argument("--show", action="store_true", help="print the outputs when done")
    run.add_argument("--kernel-log", action="store_true", help="print what the kernel logged")
    run.add_argument("-q", "--quiet", action="store_true", help="no progress on stderr")
    run_code = commands.add_parser("exec", help="run code on a fresh kernel, print its output")
    run_code.add_argument("code", help="the code to run, or - to read it from stdin")
    run_code.add_argument("--kernel", default="python3", help="kernelspec name (python3)")
    run_code.add_argument("--timeout", type=float, default=None, help="seconds before giving up")
    timing = commands.add_parser(
        "bench",
        help="time code or notebooks on kernels",
        description="Run each CODE (and each --notebook) N times on kernels of its own and "
        "print statistics of the client's and the kernel's time per run. "
        "Exit status: 0 done, 1 the code raised, 2 bad usage or no kernel, 3 a run timed out, "
        "130 interrupted, 143 terminated.",
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
    timing.add_argument("-n", type=int, default=100, help="runs of each (100)")
    timing.add_argument(
        "-k", "--kernels", type=int, default=1, help="kernels for each, running at once (1)"
    )
    timing.add_argument(
        "--warmup", type=int, help="untimed runs on each kernel first (1; 0 with --fresh)"
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
    timing.add_argument("--timeout", type=float, help="seconds a run (a notebook's cell) may take")
    timing.add_argument("--json", action="store_true", help="print JSON, every run included")
    commands.add_parser("kernelspecs", help="list installed kernels")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.WARNING,
        format="%(name)s: %(message)s",
    )
    try:
        if args.command == "kernelspecs":
            return _kernelspecs()
        if args.command == "run":
            if args.inplace and args.output is not None:
                print("sidecar: --inplace and -o exclude each other", file=sys.stderr)
                return 2
            command = partial(_run, args)
            what = "; what ran was written"
        elif args.command == "bench":
            args.code = [sys.stdin.read() if code == "-" else code for code in args.code]
            command, what = partial(_bench, args), ""
        else:
            code = sys.stdin.read() if args.code == "-" else args.code
            command, what = partial(_exec, code, args.kernel, args.timeout), ""
        return anyio.run(_until_signalled, command, what, backend=args.backend)
    except SidecarError as e:
        print(f"sidecar: {e}", file=sys.stderr)
        return 2
    except TimeoutError:
        print("sidecar: timed out", file=sys.stderr)
        return 3
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
