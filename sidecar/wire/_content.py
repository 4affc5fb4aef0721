"""Content structs for every message type of the Jupyter messaging spec (5.4 and 5.5).

Field names are the spec's, exactly.  Kernels add fields and message types all
the time, so decoding is lenient: unknown fields are ignored, and a message
type not in :data:`CONTENT_TYPES` decodes to a plain ``dict``.

Replies carry ``status``.  ``"ok"`` decodes to the reply's own struct (e.g.
:class:`ExecuteReply`), ``"error"`` to :class:`ErrorReply` and ``"aborted"`` to
:class:`AbortedReply`, for every reply type: ``status`` is the tag of a msgspec
tagged union.  Two replies are the exception because their ``status`` means
something else or is absent: ``is_complete_reply`` (whose status is the
completeness verdict) and ``debug_reply`` (a Debug Adapter Protocol message).

Optional fields the spec allows to be absent default to :data:`msgspec.UNSET`
and are left out when encoded.
"""

from __future__ import annotations

from typing import Any, Final, Literal, TypeAlias

import msgspec
from msgspec import UNSET, UnsetType, field

__all__ = [
    "AbortedReply",
    "CONTENT_TYPES",
    "ClearOutput",
    "CommClose",
    "CommInfoReply",
    "CommInfoRequest",
    "CommMsg",
    "CommOpen",
    "CompleteReply",
    "CompleteRequest",
    "ConnectReply",
    "ConnectRequest",
    "CreateSubshellReply",
    "CreateSubshellRequest",
    "DebugEvent",
    "DebugReply",
    "DebugRequest",
    "DeleteSubshellReply",
    "DeleteSubshellRequest",
    "DisplayData",
    "ErrorOutput",
    "ErrorReply",
    "ExecuteInput",
    "ExecuteReply",
    "ExecuteRequest",
    "ExecuteResult",
    "HelpLink",
    "HistoryReply",
    "HistoryRequest",
    "InputReply",
    "InputRequest",
    "InspectReply",
    "InspectRequest",
    "InterruptReply",
    "InterruptRequest",
    "IopubWelcome",
    "IsCompleteReply",
    "IsCompleteRequest",
    "KernelInfoReply",
    "KernelInfoRequest",
    "LanguageInfo",
    "ListSubshellReply",
    "ListSubshellRequest",
    "ShutdownReply",
    "ShutdownRequest",
    "Status",
    "Stream",
    "UpdateDisplayData",
]

JSON: TypeAlias = dict[str, Any]


class _Content(msgspec.Struct, kw_only=True):
    """Base of request, broadcast and stdin content."""


class _Reply(msgspec.Struct, kw_only=True, tag_field="status"):
    """Base of reply content: ``status`` is the union's tag."""


# -- replies that are not "ok" ------------------------------------------------


class ErrorReply(_Reply, tag="error"):
    """Any reply with ``status: error``: the request raised in the kernel."""

    ename: str = ""
    evalue: str = ""
    traceback: list[str] = []
    execution_count: int | UnsetType | None = UNSET

    @property
    def status(self) -> Literal["error"]:
        """Always ``"error"``: the tag of the reply union."""
        return "error"


class AbortedReply(_Reply, tag="aborted"):
    """Any reply with ``status: aborted``: the kernel dropped the request unrun,
    e.g. because an earlier cell failed with ``stop_on_error`` or was interrupted."""

    execution_count: int | UnsetType | None = UNSET

    @property
    def status(self) -> Literal["aborted"]:
        """Always ``"aborted"``: the tag of the reply union."""
        return "aborted"


class _Ok(_Reply, tag="ok"):
    @property
    def status(self) -> Literal["ok"]:
        """Always ``"ok"``: the tag of the reply union."""
        return "ok"


# -- shell: execute ------------------------------------------------------------


class ExecuteRequest(_Content):
    """``execute_request`` (shell): run ``code``.

    ``silent`` runs it without broadcasting outputs or counting it;
    ``stop_on_error`` makes the kernel abort the requests queued behind a
    failing one.
    """

    code: str
    silent: bool = False
    store_history: bool = True
    user_expressions: JSON = {}
    allow_stdin: bool = True
    stop_on_error: bool = True


class ExecuteReply(_Ok):
    """``execute_reply`` with ``status: ok``: the code ran to the end."""

    execution_count: int | None = None
    payload: list[JSON] = []
    user_expressions: JSON = {}


# -- shell: introspection and completion ----------------------------------------


class InspectRequest(_Content):
    """``inspect_request`` (shell): introspect the name at ``cursor_pos`` in ``code``."""

    code: str
    cursor_pos: int
    detail_level: Literal[0, 1] = 0


class InspectReply(_Ok):
    """``inspect_reply`` with ``status: ok``: a mimebundle about the name, if ``found``."""

    found: bool = False
    data: JSON = {}
    metadata: JSON = {}


class CompleteRequest(_Content):
    """``complete_request`` (shell): completions at ``cursor_pos`` in ``code``."""

    code: str
    cursor_pos: int


class CompleteReply(_Ok):
    """``complete_reply`` with ``status: ok``.

    Each of ``matches`` replaces ``code[cursor_start:cursor_end]``.
    """

    matches: list[str] = []
    cursor_start: int = 0
    cursor_end: int = 0
    metadata: JSON = {}


# -- shell: history -------------------------------------------------------------


class HistoryRequest(_Content):
    """``history_request`` (shell): a ``range`` of a session, the ``tail``, or a ``search``."""

    output: bool = False
    raw: bool = True
    hist_access_type: Literal["range", "tail", "search"] = "tail"
    session: int | UnsetType = UNSET
    start: int | UnsetType = UNSET
    stop: int | UnsetType = UNSET
    n: int | UnsetType = UNSET
    pattern: str | UnsetType = UNSET
    unique: bool | UnsetType = UNSET


class HistoryReply(_Ok):
    """``history_reply`` with ``status: ok``.

    Each entry is ``(session, line_number, input)``, or with ``output=True``
    ``(session, line_number, (input, output))``.
    """

    # (session, line_number, input) or, with output=True,
    # (session, line_number, (input, output)).
    history: list[tuple[int, int, str | tuple[str, str | None]]] = []


# -- shell: code completeness ---------------------------------------------------


class IsCompleteRequest(_Content):
    """``is_complete_request`` (shell): is ``code`` ready to run?"""

    code: str


class IsCompleteReply(_Content):
    """``status`` here is the verdict, not ok/error, hence no tagged union."""

    status: str
    indent: str | UnsetType = UNSET


# -- shell: connect (deprecated) and comm_info ----------------------------------


class ConnectRequest(_Content):
    """``connect_request`` (shell, deprecated by the spec): the kernel's ports."""


class ConnectReply(_Ok):
    """``connect_reply`` with ``status: ok``: the kernel's ports."""

    shell_port: int = 0
    iopub_port: int = 0
    stdin_port: int = 0
    hb_port: int = 0
    control_port: int = 0


class CommInfoRequest(_Content):
    """``comm_info_request`` (shell): the open comms, optionally of one ``target_name``."""

    target_name: str | UnsetType = UNSET


class CommInfoReply(_Ok):
    """``comm_info_reply`` with ``status: ok``: ``comm_id`` -> ``{"target_name": ...}``."""

    # comm_id -> {"target_name": ...}
    comms: dict[str, JSON] = {}


# -- kernel_info ---------------------------------------------------------------


class KernelInfoRequest(_Content):
    """``kernel_info_request`` (shell or control): no fields."""


class LanguageInfo(msgspec.Struct, kw_only=True):
    """The ``language_info`` of a kernel_info reply (a notebook's metadata keeps it).

    Only ``name`` is required by the spec, and kernels differ in what else they
    send.  ``codemirror_mode`` falls back to the language name, as frontends
    do when a kernel (e.g. Deno's) leaves it out.
    """

    name: str = ""
    version: str = ""
    mimetype: str | UnsetType = UNSET
    file_extension: str | UnsetType = UNSET
    pygments_lexer: str | UnsetType = UNSET
    codemirror_mode: str | JSON | UnsetType = UNSET
    nbconvert_exporter: str | UnsetType = UNSET

    def __post_init__(self) -> None:
        if self.codemirror_mode is UNSET and self.name:
            self.codemirror_mode = self.name


class HelpLink(msgspec.Struct, kw_only=True):
    """One entry of a kernel_info reply's ``help_links``."""

    text: str = ""
    url: str = ""


class KernelInfoReply(_Ok):
    """``kernel_info_reply`` with ``status: ok``: protocol version, implementation, language."""

    protocol_version: str = ""
    implementation: str = ""
    implementation_version: str = ""
    language_info: LanguageInfo = field(default_factory=LanguageInfo)
    banner: str = ""
    debugger: bool = False
    help_links: list[HelpLink] = []
    supported_features: list[str] = []


# -- control: shutdown, interrupt, debug ----------------------------------------


class ShutdownRequest(_Content):
    """``shutdown_request`` (control): exit, or with ``restart`` restart."""

    restart: bool = False


class ShutdownReply(_Ok):
    """``shutdown_reply`` with ``status: ok``."""

    restart: bool = False


class InterruptRequest(_Content):
    """``interrupt_request`` (control), for kernels whose ``interrupt_mode`` is ``message``."""


class InterruptReply(_Ok):
    """``interrupt_reply`` with ``status: ok``."""


class DebugRequest(_Content):
    """A Debug Adapter Protocol request, carried as-is."""

    seq: int
    command: str
    type: str = "request"
    arguments: JSON | UnsetType = UNSET


class DebugReply(_Content):
    """A Debug Adapter Protocol response, carried as-is (no Jupyter ``status``)."""

    seq: int = 0
    type: str = "response"
    request_seq: int = 0
    success: bool = False
    command: str = ""
    message: str | UnsetType = UNSET
    body: JSON | UnsetType = UNSET


# -- control: subshells (5.5) ----------------------------------------------------


class CreateSubshellRequest(_Content):
    """``create_subshell_request`` (control, protocol 5.5): no fields."""


class CreateSubshellReply(_Ok):
    """``create_subshell_reply`` with ``status: ok``: the new subshell's id."""

    subshell_id: str


class DeleteSubshellRequest(_Content):
    """``delete_subshell_request`` (control, protocol 5.5)."""

    subshell_id: str


class DeleteSubshellReply(_Ok):
    """``delete_subshell_reply`` with ``status: ok``."""


class ListSubshellRequest(_Content):
    """``list_subshell_request`` (control, protocol 5.5): no fields."""


class ListSubshellReply(_Ok):
    """``list_subshell_reply`` with ``status: ok``: the ids of the subshells."""

    subshell_id: list[str] = []


# -- iopub ---------------------------------------------------------------------


class Stream(_Content):
    """``stream`` (iopub): text the code wrote to ``stdout`` or ``stderr``."""

    name: str  # "stdout" or "stderr"
    text: str


class DisplayData(_Content):
    """``display_data`` (iopub): a rich output, a mimebundle and its metadata.

    ``transient`` may hold a ``display_id`` that later ``update_display_data``
    messages refer to.
    """

    data: JSON = {}
    metadata: JSON = {}
    transient: JSON | UnsetType = UNSET


class UpdateDisplayData(_Content):
    """``update_display_data`` (iopub): new data for the outputs of a ``display_id``.

    The id is in ``transient["display_id"]``.
    """

    data: JSON = {}
    metadata: JSON = {}
    transient: JSON | UnsetType = UNSET


class ExecuteInput(_Content):
    """``execute_input`` (iopub): the code being run and its execution count."""

    code: str
    execution_count: int | None = None


class ExecuteResult(_Content):
    """``execute_result`` (iopub): the value of the code's last expression (``Out[n]``)."""

    execution_count: int | None = None
    data: JSON = {}
    metadata: JSON = {}
    transient: JSON | UnsetType = UNSET


class ErrorOutput(_Content):
    """The iopub ``error`` message (the reply's twin is :class:`ErrorReply`)."""

    ename: str = ""
    evalue: str = ""
    traceback: list[str] = []


class Status(_Content):
    """``status`` (iopub): the kernel's ``execution_state`` (busy, idle, starting...)."""

    execution_state: str  # "busy", "idle", "starting", "restarting" or "dead"


class ClearOutput(_Content):
    """``clear_output`` (iopub): clear the outputs now, or with ``wait`` at the next one."""

    wait: bool = False


class DebugEvent(_Content):
    """``debug_event`` (iopub): a Debug Adapter Protocol event, carried as-is."""

    seq: int = 0
    type: str = "event"
    event: str = ""
    body: JSON | UnsetType = UNSET


class IopubWelcome(_Content):
    """Sent by 5.5 kernels when a subscriber joins iopub: proof it is live."""

    subscription: str = ""


class CommOpen(_Content):
    """``comm_open`` (shell or iopub): open comm ``comm_id`` to ``target_name``.

    ``data`` of the comm messages is any JSON value: the spec says a dict, but
    ipykernel sends whatever ``comm.send(...)`` was given (a string, a list).
    """

    comm_id: str
    target_name: str
    data: Any = {}
    target_module: str | UnsetType | None = UNSET


class CommMsg(_Content):
    """``comm_msg`` (shell or iopub): data for the other side of comm ``comm_id``."""

    comm_id: str
    data: Any = {}


class CommClose(_Content):
    """``comm_close`` (shell or iopub): close comm ``comm_id``."""

    comm_id: str
    data: Any = {}


# -- stdin ---------------------------------------------------------------------


class InputRequest(_Content):
    """``input_request`` (stdin, from the kernel): the code called ``input()`` or ``getpass()``."""

    prompt: str = ""
    password: bool = False


class InputReply(_Content):
    """``input_reply`` (stdin, to the kernel): the text typed."""

    value: str


# -- the table -----------------------------------------------------------------


def _reply(ok: type[_Ok]) -> Any:
    return ok | ErrorReply | AbortedReply


CONTENT_TYPES: Final[dict[str, Any]] = {
    "execute_request": ExecuteRequest,
    "execute_reply": _reply(ExecuteReply),
    "inspect_request": InspectRequest,
    "inspect_reply": _reply(InspectReply),
    "complete_request": CompleteRequest,
    "complete_reply": _reply(CompleteReply),
    "history_request": HistoryRequest,
    "history_reply": _reply(HistoryReply),
    "is_complete_request": IsCompleteRequest,
    "is_complete_reply": IsCompleteReply,
    "connect_request": ConnectRequest,
    "connect_reply": _reply(ConnectReply),
    "comm_info_request": CommInfoRequest,
    "comm_info_reply": _reply(CommInfoReply),
    "kernel_info_request": KernelInfoRequest,
    "kernel_info_reply": _reply(KernelInfoReply),
    "shutdown_request": ShutdownRequest,
    "shutdown_reply": _reply(ShutdownReply),
    "interrupt_request": InterruptRequest,
    "interrupt_reply": _reply(InterruptReply),
    "debug_request": DebugRequest,
    "debug_reply": DebugReply,
    "create_subshell_request": CreateSubshellRequest,
    "create_subshell_reply": _reply(CreateSubshellReply),
    "delete_subshell_request": DeleteSubshellRequest,
    "delete_subshell_reply": _reply(DeleteSubshellReply),
    "list_subshell_request": ListSubshellRequest,
    "list_subshell_reply": _reply(ListSubshellReply),
    "stream": Stream,
    "display_data": DisplayData,
    "update_display_data": UpdateDisplayData,
    "execute_input": ExecuteInput,
    "execute_result": ExecuteResult,
    "error": ErrorOutput,
    "status": Status,
    "clear_output": ClearOutput,
    "debug_event": DebugEvent,
    "iopub_welcome": IopubWelcome,
    "comm_open": CommOpen,
    "comm_msg": CommMsg,
    "comm_close": CommClose,
    "input_request": InputRequest,
    "input_reply": InputReply,
}
"""msg_type -> the type its content decodes to. Anything else decodes to ``dict``."""

# msg_type of each content struct, for building a message from its content alone.
MSG_TYPES: Final[dict[type, str]] = {
    t: name for name, t in CONTENT_TYPES.items() if isinstance(t, type)
} | {
    ok: name
    for name, t in CONTENT_TYPES.items()
    if not isinstance(t, type)
    for ok in t.__args__[:1]
}
