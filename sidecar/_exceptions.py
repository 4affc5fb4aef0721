"""The whole error tree of sidecar, in one place.

Every error sidecar raises on purpose derives from :class:`SidecarError`, so
``except sidecar.SidecarError`` catches them all.  Timeouts and cancellation are
not ours: they are anyio's (``TimeoutError`` from ``anyio.fail_after``, the
backend's cancellation exception), and sidecar never turns one into the other.

Who is to blame shapes the tree:

- :class:`WireError`: bytes that arrived do not make a valid Jupyter message.
  The receive loops log and drop these; only code that calls the wire layer
  directly sees them raised.
- :class:`ConnectionFileError`: a connection file is missing, unreadable or
  lacks a field; :class:`AuthenticationError`: its key is not the kernel's.
- :class:`JupyterServerError`: a Jupyter Server (or gateway) refused a request
  or could not be reached; :class:`TokenRejected`: it refused our token.
- :class:`CommRefused`: the kernel refused a comm we opened.
- :class:`KernelError`: the kernel process or its kernelspec: not found, failed
  to start, died, restarted under us, or broke the protocol (no reply).
- :class:`ExecutionError`: the kernel ran the code and the code raised.
- :class:`NotebookError`: a ``.ipynb`` file is not a valid nbformat 4 notebook.
"""

from __future__ import annotations

from collections.abc import Sequence

__all__ = [
    "AuthenticationError",
    "CommRefused",
    "ConnectionFileError",
    "ExecutionError",
    "HandlerError",
    "InvalidSignature",
    "JupyterServerError",
    "KernelDied",
    "KernelError",
    "KernelRestarted",
    "KernelStartError",
    "MalformedMessage",
    "MessageTooLarge",
    "NoReply",
    "NotebookError",
    "NoSuchKernel",
    "ReplayedMessage",
    "SidecarError",
    "TokenRejected",
    "WireError",
]


class SidecarError(Exception):
    """Base class of every error sidecar raises on purpose."""


class WireError(SidecarError):
    """Frames that arrived do not make a valid, authentic Jupyter message."""


class MalformedMessage(WireError):
    """The frames are not a well-formed Jupyter message.

    The message names the frame and what was expected of it, e.g. "header frame
    is not a JSON object".
    """


class InvalidSignature(WireError):
    """The HMAC signature is missing or does not match the message."""


class MessageTooLarge(WireError):
    """A message from the kernel had a frame over ``max_message_size`` and was dropped unread.

    Raised by the request whose reply it was (inferred: the oldest request on
    that channel still without one).  An output that large becomes a
    placeholder output instead, and the channel keeps working.

    Attributes:
        channel: where it came.
        limit: the largest frame allowed, in bytes.
    """

    def __init__(self, channel: str, limit: int) -> None:
        self.channel = channel
        self.limit = limit
        super().__init__(
            f"a message on {channel} had a frame over max_message_size ({limit} bytes) "
            "and was dropped; raise max_message_size to take it"
        )


class ReplayedMessage(WireError):
    """A correctly signed message whose signature was already seen: a replay."""


class ConnectionFileError(SidecarError, ValueError):
    """A connection file could not be read, or a field is missing or mistyped."""


class AuthenticationError(SidecarError):
    """The kernel signs its messages with another key than ours: every one failed verification.

    Raised while connecting, in a few seconds, instead of waiting for a reply
    that would be dropped.  The message names where the key came from.  A
    server that refuses our token raises :class:`TokenRejected`, a subclass.
    """


class JupyterServerError(SidecarError):
    """A Jupyter Server, Kernel Gateway or Enterprise Gateway refused a request,
    or could not be reached.

    Attributes:
        url: what was asked for (without the token).
        status: the HTTP status, or None when no answer came (connection
            refused, TLS failure, timeout).
    """

    def __init__(self, message: str, *, url: str, status: int | None = None) -> None:
        self.url = url
        self.status = status
        super().__init__(message)


class TokenRejected(JupyterServerError, AuthenticationError):
    """The server refused our token (HTTP 401 or 403): it is wrong, expired, or
    missing (neither ``token=`` nor ``JUPYTER_TOKEN`` gave one).

    Raised by the first request, before any kernel is started.
    """


class CommRefused(SidecarError):
    """The kernel closed a comm as we opened it: no such target, or the target raised.

    Attributes:
        target_name: the comm target asked for.
    """

    def __init__(self, target_name: str) -> None:
        self.target_name = target_name
        super().__init__(
            f"the kernel closed the comm to target {target_name!r} as it opened it "
            "(no such target is registered in the kernel, or its handler raised)"
        )


class KernelError(SidecarError):
    """Something went wrong with the kernel itself rather than with a message."""


class NoSuchKernel(KernelError, LookupError):
    """No kernelspec of that name was found.

    Attributes:
        name: the kernel name asked for.
        available: the names that were found, sorted.
    """

    def __init__(self, name: str, available: Sequence[str]) -> None:
        self.name = name
        self.available = sorted(available)
        found = ", ".join(self.available) if self.available else "none"
        if name.lower() in ("python", "python3"):
            hint = "install one with: pip install ipykernel (or pip install 'sidecar[ipykernel]')"
        else:
            hint = "`sidecar kernelspecs` or `jupyter kernelspec list` shows what is installed"
        super().__init__(f"no kernelspec named {name!r} (found: {found}); {hint}")


class KernelStartError(KernelError):
    """The kernel process did not come up: it exited, or never answered in time.

    Attributes:
        exit_code: the process's exit status, or None if it was still running.
        stderr: the tail of what the kernel wrote to stderr.
    """

    def __init__(self, reason: str, *, exit_code: int | None = None, stderr: str = "") -> None:
        self.reason = reason
        self.exit_code = exit_code
        self.stderr = stderr
        text = reason
        if exit_code is not None:
            text += f" (exit code {exit_code})"
        if stderr.strip():
            text += "\n--- kernel stderr (last lines) ---\n" + stderr.rstrip()
        super().__init__(text)


class KernelDied(KernelError):
    """The kernel stopped answering: its process exited or its heartbeat stopped.

    Every request waiting at that moment fails with this, and so does every later
    request on the same connection.

    Attributes:
        exit_code: the process's exit status when sidecar owns the process and
            it has exited, else None.
    """

    def __init__(self, reason: str, *, exit_code: int | None = None) -> None:
        self.reason = reason
        self.exit_code = exit_code
        text = reason if exit_code is None else f"{reason} (exit code {exit_code})"
        super().__init__(text)


class NoReply(KernelError):
    """The kernel finished a request (went idle) but never sent its reply."""


class KernelRestarted(KernelError):
    """The kernel restarted while a request was waiting, so its reply will never come."""


class ExecutionError(SidecarError):
    """The code raised in the kernel (an ``execute_reply`` with ``status: error``).

    Only raised when asked for (``execute(..., raise_on_error=True)``); by
    default an error reply is returned as a value.

    Attributes:
        ename: the exception's class name, e.g. ``"ZeroDivisionError"``.
        evalue: the exception's message.
        traceback: the formatted traceback lines, ANSI colours included.
    """

    def __init__(self, ename: str, evalue: str, traceback: Sequence[str]) -> None:
        self.ename = ename
        self.evalue = evalue
        self.traceback = list(traceback)
        super().__init__(f"{ename}: {evalue}")


class HandlerError(SidecarError):
    """One or more handlers raised while the request ran.

    The request itself completed (the kernel is fine and the connection is
    usable); the handlers' exceptions are in :attr:`errors`, the first also
    as ``__cause__``.

    Attributes:
        errors: every exception a handler raised, in order.
        reply: the reply content the request got.
    """

    def __init__(self, errors: Sequence[Exception], reply: object) -> None:
        self.errors = list(errors)
        self.reply = reply
        first = self.errors[0]
        more = f" (and {len(self.errors) - 1} more)" if len(self.errors) > 1 else ""
        super().__init__(f"a handler raised {type(first).__name__}: {first}{more}")


class NotebookError(SidecarError, ValueError):
    """A notebook could not be read or written: bad JSON, wrong version, or a
    value of the wrong shape.

    Attributes:
        reason: what is wrong, e.g. "missing field `name`".
        where: the place in the notebook, e.g. ``"cells[3].outputs[0]"``;
            ``""`` for the notebook as a whole.
        filename: the file read, when one was.
    """

    def __init__(self, reason: str, *, where: str = "", filename: str | None = None) -> None:
        self.reason = reason
        self.where = where
        self.filename = filename
        parts = [p for p in (filename, where) if p]
        super().__init__(": ".join([*parts, reason]))
