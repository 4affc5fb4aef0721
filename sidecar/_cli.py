"""The ``sidecar`` command line.

``sidecar exec CODE``       run code on a fresh kernel and print what it outputs
``sidecar kernelspecs``     list the installed kernels
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from typing import Any, TextIO

import anyio

from ._client import launch
from ._exceptions import SidecarError
from ._kernelspec import find_kernelspecs, get_kernelspec
from .wire import ErrorOutput, ErrorReply, Message

__all__ = ["main"]


def _print_output(message: Message, out: TextIO, err: TextIO) -> None:
    """Show one iopub message as a terminal would: text, or the text/plain of rich output."""
    kind = message.msg_type
    content: Any = message.content
    if kind == "stream":
        (err if content.name == "stderr" else out).write(content.text)
    elif kind in ("execute_result", "display_data"):
        text = content.data.get("text/plain")
        if text is not None:
            out.write(text if text.endswith("\n") else text + "\n")
        else:
            out.write(f"<{', '.join(sorted(content.data))}>\n")
    elif kind == "error" and isinstance(content, ErrorOutput):
        err.write("\n".join(content.traceback) + "\n")
    out.flush()


async def _exec(code: str, kernel_name: str, timeout: float | None) -> int:
    def show(message: Message) -> None:
        _print_output(message, sys.stdout, sys.stderr)

    async with launch(kernel_name) as kernel:
        reply = await kernel.execute(code, handlers=[show], timeout=timeout)
    return 1 if isinstance(reply, ErrorReply) else 0


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
    run_code = commands.add_parser("exec", help="run code on a fresh kernel, print its output")
    run_code.add_argument("code", help="the code to run, or - to read it from stdin")
    run_code.add_argument("--kernel", default="python3", help="kernelspec name (python3)")
    run_code.add_argument("--timeout", type=float, default=None, help="seconds before giving up")
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
        code = sys.stdin.read() if args.code == "-" else args.code
        return anyio.run(_exec, code, args.kernel, args.timeout, backend=args.backend)
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
