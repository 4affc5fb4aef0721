"""Three extensions for a shared kernel, as examples of hooks: lint, audit, deny.

Each is a request hook (see :data:`~sidecar.RequestHook`), and the audit log a
message hook too; pass them to :func:`~sidecar.serve` or to ``sidecar serve``
(``--lint``, ``--audit-log``, ``--deny``).
"""

from __future__ import annotations

import json
import os
import re
import time
from collections.abc import Iterable
from typing import IO, Final, final

from ..transport import Channel
from ..wire import Message
from ._shared import FrontendRequest, Refuse, RequestHook

__all__ = ["AuditLog", "deny", "lint"]


def _pyflakes_findings(code: str) -> list[str]:
    """pyflakes' messages for ``code`` (line: message), none for code it cannot parse
    (the kernel says that better)."""
    from pyflakes import api, messages, reporter

    class _Collect(reporter.Reporter):
        def __init__(self) -> None:
            self.found: list[str] = []

        def unexpectedError(self, filename: str, msg: str) -> None:
            pass

        def syntaxError(
            self, filename: str, msg: str, lineno: int, offset: int | None, text: str | None
        ) -> None:
            pass

        def flake(self, message: messages.Message) -> None:
            text = message.message % message.message_args
            self.found.append(f"line {message.lineno}: {text}")

    collected = _Collect()
    api.check(code, "cell", collected)
    return collected.found


def lint(*, refuse: bool = False, ignore: Iterable[str] = ("imported but unused",)) -> RequestHook:
    """A request hook that lints the code of every execute with pyflakes.

    The findings go to the frontend as a stderr stream before the code runs;
    with ``refuse``, code with findings does not run at all.  ``ignore``
    drops findings containing any of these words (a notebook cell often
    imports what a later cell uses).

    Raises:
        ImportError: pyflakes is not installed (``pip install pyflakes``).
    """
    import pyflakes  # noqa: F401  (fail now, not at the first execute)

    ignored = tuple(ignore)

    async def lint_hook(request: FrontendRequest) -> Refuse | None:
        code = request.code
        if not code or request.message.content.silent:
            return None
        found = [f for f in _pyflakes_findings(code) if not any(i in f for i in ignored)]
        if not found:
            return None
        text = "".join(f"lint: {finding}\n" for finding in found)
        if refuse:
            return Refuse(f"refused by lint:\n{text}".rstrip("\n"))
        request.stderr(text)
        return None

    return lint_hook


def deny(*patterns: str) -> RequestHook:
    """A request hook that refuses every execute whose code matches one of ``patterns``
    (regular expressions, searched anywhere in the code)."""
    compiled = [re.compile(p) for p in patterns]

    async def deny_hook(request: FrontendRequest) -> Refuse | None:
        code = request.code
        if code is None:
            return None
        for pattern in compiled:
            if pattern.search(code):
                return Refuse(f"denied: the code matches {pattern.pattern!r}")
        return None

    return deny_hook


_DONE: Final = frozenset({"ok", "error", "aborted"})


@final
class AuditLog:
    """Who ran what, when, and how it ended: one JSON object per line.

    Pass :meth:`on_request` as a request hook and :meth:`on_message` as a
    message hook.  A line is written when a request's reply passes on its
    way to the frontend: ``time`` (seconds since the epoch, of the request),
    ``frontend`` (its session), ``msg_type``, ``msg_id``, ``code`` (for an
    execute), ``status`` of the reply (``ename`` too for an error, e.g.
    ``Refused`` when a later hook refused it: put the audit first) and
    ``seconds`` until the reply.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = os.fspath(path)
        self._file: IO[str] = open(self.path, "a", encoding="utf-8")  # noqa: SIM115
        self._pending: dict[str, dict[str, object]] = {}

    async def on_request(self, request: FrontendRequest) -> None:
        message = request.message
        if not message.msg_type.endswith("_request"):
            return  # no reply will end it
        entry: dict[str, object] = {
            "time": round(time.time(), 6),
            "frontend": request.frontend.session,
            "msg_type": message.msg_type,
            "msg_id": message.msg_id,
        }
        if request.code is not None:
            entry["code"] = request.code
        self._pending[message.msg_id] = entry

    async def on_message(self, channel: Channel, message: Message) -> None:
        if not message.msg_type.endswith("_reply"):
            return None
        entry = self._pending.pop(message.parent_id or "", None)
        if entry is None:
            return None
        content = message.content
        status = getattr(content, "status", "unknown")
        entry["status"] = status if status in _DONE else "unknown"
        if status == "error":
            entry["ename"] = getattr(content, "ename", "")
        entry["seconds"] = round(time.time() - float(entry["time"]), 6)  # type: ignore[arg-type]
        self._file.write(json.dumps(entry, ensure_ascii=False) + "\n")
        self._file.flush()
        return None

    def close(self) -> None:
        self._file.close()
