"""``sidecar serve`` and ``sidecar kernelspec install``: one kernel for many frontends.

``sidecar serve`` launches a kernel (``--kernel``), starts one on a Jupyter
Server (``--server``), or attaches to a running one (``--existing``), and
serves it to any number of Jupyter frontends through a connection file of
its own, until interrupted (or until a frontend ends it,
with ``--on-shutdown exit`` or ``forward``).  A kernel it launched that dies
is started again, as a Jupyter server's kernel manager does.

``sidecar kernelspec install NAME --connect FILE`` installs a kernelspec whose
"kernel" is ``sidecar serve --existing FILE`` bound to the connection file
the frontend's kernel manager writes: JupyterLab, jupyter_server or nbclient
start it like any kernel and land on the shared one.  Shutting it down ends
only that proxy.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import uuid
from collections.abc import Awaitable, Callable
from contextlib import AsyncExitStack
from functools import partial
from pathlib import Path
from typing import Any

import anyio
from jupyter_core.paths import jupyter_data_dir, jupyter_runtime_dir

from ..client._kernel import Kernel
from ..client._launch import connect, launch
from ..client._remote import connect_server
from ..server._shared import MessageHook, RequestHook, serve
from ._options import OK, UsageError, add_server_options, check_server, seconds

__all__ = ["add_kernelspec", "add_serve", "install_kernelspec", "prepare_serve"]

log = logging.getLogger("sidecar.cli")

_RESTARTS: int = 5
"""How many times a launched kernel that died is started again."""


def add_serve(commands: Any) -> None:
    serve_parser = commands.add_parser(
        "serve",
        help="share one kernel with many Jupyter frontends",
        description="Launch a kernel (start one on a Jupyter Server, or attach to a running "
        "one) and serve it to any number "
        "of Jupyter frontends (jupyter console --existing FILE, jupyter_client, nbclient...), "
        "keeping every execute in one document. Runs until interrupted. Exit status: 0 a "
        "frontend ended it, 1 the kernel failed, 2 bad usage, 130 interrupted, 143 terminated.",
    )
    which = serve_parser.add_mutually_exclusive_group()
    which.add_argument(
        "--kernel", metavar="NAME", help="kernelspec to launch, or to start on --server (python3)"
    )
    which.add_argument(
        "--existing",
        type=Path,
        metavar="FILE",
        help="attach to a running kernel by its connection file instead",
    )
    remote = serve_parser.add_argument_group(
        "a kernel on a Jupyter Server (or Kernel Gateway, Enterprise Gateway)"
    )
    add_server_options(remote)
    serve_parser.add_argument(
        "--connection-file",
        type=Path,
        metavar="PATH",
        help="where frontends find the shared kernel (default: a new file in Jupyter's runtime "
        "directory); a file that exists is bound as it says, as a kernel binds its own",
    )
    serve_parser.add_argument(
        "--notebook", type=Path, metavar="PATH", help="keep every execute in this .ipynb"
    )
    serve_parser.add_argument(
        "--ip", default="127.0.0.1", help="address to bind for frontends (127.0.0.1)"
    )
    serve_parser.add_argument(
        "--on-shutdown",
        choices=["detach", "exit", "forward"],
        default="detach",
        help="what a frontend's shutdown request does: detach that frontend (the default), "
        "exit (end the serving, keep the kernel), forward (shut down or restart the kernel)",
    )
    hooks = serve_parser.add_argument_group("hooks")
    hooks.add_argument(
        "--lint", action="store_true", help="show pyflakes findings before code runs"
    )
    hooks.add_argument(
        "--lint-refuse", action="store_true", help="refuse to run code with pyflakes findings"
    )
    hooks.add_argument(
        "--deny",
        action="append",
        default=[],
        metavar="PATTERN",
        help="refuse code matching this regular expression (repeatable)",
    )
    hooks.add_argument(
        "--audit-log", type=Path, metavar="FILE", help="append who ran what, when, as JSON lines"
    )
    serve_parser.add_argument(
        "--start-timeout",
        type=seconds,
        default=60.0,
        metavar="SECONDS",
        help="seconds the kernel may take to start or answer (60)",
    )


def add_kernelspec(commands: Any) -> None:
    kernelspec = commands.add_parser(
        "kernelspec",
        help="install a kernelspec that attaches to a shared kernel",
        description="Manage kernelspecs that put frontends on a kernel shared by sidecar serve.",
    )
    verbs = kernelspec.add_subparsers(dest="kernelspec_command", required=True, metavar="VERB")
    install = verbs.add_parser(
        "install",
        help="install a kernelspec whose kernel is a shared one",
        description="Install a kernelspec NAME: starting it (JupyterLab, jupyter_server, "
        "nbclient...) attaches to the kernel that 'sidecar serve' shares through FILE.",
    )
    install.add_argument("name", metavar="NAME", help="the kernelspec's name, e.g. shared-python")
    install.add_argument(
        "--connect",
        type=Path,
        required=True,
        metavar="FILE",
        help="the connection file of 'sidecar serve --connection-file'",
    )
    install.add_argument("--display-name", help="shown in frontends (default: Shared NAME)")
    install.add_argument("--language", default="python", help="the kernel's language (python)")
    where = install.add_mutually_exclusive_group()
    where.add_argument(
        "--prefix", type=Path, metavar="DIR", help="install under DIR/share/jupyter/kernels"
    )
    where.add_argument(
        "--sys-prefix",
        action="store_true",
        help="install into this Python environment (default: the user's Jupyter data dir)",
    )


def install_kernelspec(args: argparse.Namespace) -> int:
    """``sidecar kernelspec install``: write the kernelspec; where it went, on stdout."""
    name: str = args.name
    if not name or not all(c.isalnum() or c in "-._" for c in name):
        raise UsageError(f"kernelspec name {name!r}: use letters, digits, '-', '.', '_'")
    target = args.connect.resolve()
    if not target.is_file():
        raise UsageError(f"--connect {args.connect}: no such file (start 'sidecar serve' first)")
    if args.prefix is not None:
        base = args.prefix / "share" / "jupyter" / "kernels"
    elif args.sys_prefix:
        base = Path(sys.prefix) / "share" / "jupyter" / "kernels"
    else:
        base = Path(jupyter_data_dir()) / "kernels"
    spec = {
        "argv": [
            sys.executable,
            "-m",
            "sidecar",
            "serve",
            "--existing",
            str(target),
            "--connection-file",
            "{connection_file}",
            "--on-shutdown",
            "exit",
        ],
        "display_name": args.display_name or f"Shared {name}",
        "language": args.language,
        # An interrupt is a message to the shared kernel: a signal would only
        # stop the proxy.
        "interrupt_mode": "message",
        "metadata": {"sidecar": {"shared": str(target)}},
    }
    directory = base / name
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "kernel.json").write_text(json.dumps(spec, indent=1) + "\n", encoding="utf-8")
    print(directory)
    return OK


def prepare_serve(args: argparse.Namespace) -> Callable[[], Awaitable[int]]:
    """Everything ``serve`` checks before any kernel starts; the command."""
    if args.existing is not None and not args.existing.is_file():
        raise UsageError(f"--existing {args.existing}: no such file")
    check_server(args.server)
    if args.server is not None and args.existing is not None:
        raise UsageError("--existing is a local kernel's file: give --server or --existing")
    for option, path in (
        ("--connection-file", args.connection_file),
        ("--notebook", args.notebook),
    ):
        if path is not None and not path.parent.is_dir():
            raise UsageError(f"{option} {path}: no such directory {path.parent}")
    request_hooks: list[RequestHook] = []
    message_hooks: list[MessageHook] = []
    from ..server._hooks import AuditLog, deny, lint

    if args.audit_log is not None:
        try:
            audit = AuditLog(args.audit_log)
        except OSError as e:
            raise UsageError(f"--audit-log {args.audit_log}: {e.strerror or e}") from None
        request_hooks.append(audit.on_request)
        message_hooks.append(audit.on_message)
    if args.deny:
        try:
            request_hooks.append(deny(*args.deny))
        except Exception as e:  # re.error
            raise UsageError(f"--deny: {e}") from None
    if args.lint or args.lint_refuse:
        try:
            request_hooks.append(lint(refuse=args.lint_refuse))
        except ImportError:
            raise UsageError("--lint needs pyflakes: pip install pyflakes") from None
    connection_file = args.connection_file or Path(jupyter_runtime_dir()) / (
        f"sidecar-shared-{uuid.uuid4().hex[:12]}.json"
    )
    return partial(_serve, args, connection_file, request_hooks, message_hooks)


async def _serve(
    args: argparse.Namespace,
    connection_file: Path,
    request_hooks: list[RequestHook],
    message_hooks: list[MessageHook],
) -> int:
    async with AsyncExitStack() as stack:
        if args.existing is not None:
            kernel = await stack.enter_async_context(
                connect(args.existing, ready_timeout=args.start_timeout)
            )
            what = f"the kernel of {args.existing}"
        elif args.server is not None:
            kernel = await stack.enter_async_context(
                connect_server(
                    args.server,
                    token=args.token,
                    kernel_name=args.kernel,
                    ready_timeout=args.start_timeout,
                )
            )
            what = f"a new {args.kernel or 'default'} kernel on {args.server}"
        else:
            name = args.kernel or "python3"
            kernel = await stack.enter_async_context(
                launch(name, startup_timeout=args.start_timeout)
            )
            what = f"a new {name} kernel"
        await anyio.to_thread.run_sync(
            partial(connection_file.parent.mkdir, parents=True, exist_ok=True)
        )
        shared = await stack.enter_async_context(
            serve(
                kernel,
                connection_file=connection_file,
                ip=args.ip,
                notebook=args.notebook,
                request_hooks=request_hooks,
                message_hooks=message_hooks,
                on_shutdown=args.on_shutdown,
            )
        )
        print(
            f"sidecar: serving {what}; attach with: jupyter console --existing {connection_file}",
            file=sys.stderr,
            flush=True,
        )
        async with anyio.create_task_group() as tg:
            if kernel.process is not None:
                tg.start_soon(_restart_when_dead, kernel)
            await shared.wait_done()
            tg.cancel_scope.cancel()
    return OK


async def _restart_when_dead(kernel: Kernel) -> None:
    """Start a launched kernel again when it dies (a bounded number of times)."""
    died = anyio.Event()

    def on_change(before: str, after: str) -> None:
        if after == "dead":
            died.set()

    with kernel.on_state_change(on_change):
        for attempt in range(1, _RESTARTS + 1):
            await died.wait()
            died = anyio.Event()
            log.warning("the kernel died; starting it again (%d of %d)", attempt, _RESTARTS)
            print("sidecar: the kernel died; starting it again", file=sys.stderr, flush=True)
            await kernel.restart()
