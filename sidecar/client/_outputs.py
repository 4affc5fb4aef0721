"""Collecting an execute's outputs the way Jupyter frontends show them.

:class:`Outputs` is a handler: pass it to :meth:`Kernel.execute` and it builds
the nbformat v4 output list (plain dicts, as they appear in an ``.ipynb``):

- consecutive ``stream`` messages of the same name merge into one output, with
  ``\\r`` (return to line start) and ``\\b`` (erase one character) applied as
  nbclient does;
- ``clear_output(wait=True)`` clears just before the next output arrives;
  ``clear_output()`` clears now;
- a ``display_data`` or ``execute_result`` with a ``display_id``, and an
  ``update_display_data``, replace data and metadata of *every* earlier output
  that shows the ``display_id`` (as nbclient's ``_update_display_id`` does);
  several collectors can share one display map (``displays=``) so this
  reaches outputs of other cells, as in a notebook;
- ``transient`` is never written into an output;
- an output message whose content nbformat's schema rejects never becomes an
  output: an ``error`` output naming the problem takes its place (see
  :func:`output_problem`), so what is collected can always be written.

Invariants the incremental document (``_document``) relies on:

1. Each output dict owns its ``data`` and ``metadata`` dicts (copies of the
   message's), and a display update changes them *in place*: whoever holds
   one of those dicts sees every later update.
2. Only display updates change outputs other than the collector's own.
"""

from __future__ import annotations

import re
from typing import Any, Final, final

from ..wire import Message

__all__ = ["INVALID_OUTPUT", "Outputs", "apply_stream_controls", "output_problem"]

_CARRIAGE_RETURN: Final = re.compile(r".*\r(?=[^\n])")
# A backspace (\x08) erases the character before it.  (Not r"\b": in a regex
# that is a word boundary, which would eat text before every word end.)
_BACKSPACE: Final = re.compile("[^\n]\x08")
# The nbformat v4 schema's pattern for mimetypes whose value may be any JSON
# (``misc.mimebundle.patternProperties``), matched as jsonschema matches it.
_JSON_MIMETYPE: Final = re.compile(r"^application/(.*\+)?json$")

INVALID_OUTPUT: Final = "InvalidOutput"
"""``ename`` of the error output that replaces an output nbformat would reject."""

Output = dict[str, Any]


def apply_stream_controls(text: str) -> str:
    """Apply backspace and carriage return to stream text, as a terminal would."""
    while True:
        shorter = _BACKSPACE.sub("", text)
        if len(shorter) == len(text):
            break
        text = shorter
    return _CARRIAGE_RETURN.sub("", text)


def _json_type(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, dict):
        return "an object"
    if isinstance(value, list):
        return "an array"
    return f"a {type(value).__name__}"


def _is_multiline_string(value: object) -> bool:
    return isinstance(value, str) or (
        isinstance(value, list) and all(isinstance(line, str) for line in value)
    )


def output_problem(data: object, metadata: object) -> str | None:
    """Why nbformat would reject an output with this mimebundle and metadata; None if valid.

    The v4 schema (4.0 to 4.5 alike) wants both to be objects, and every value
    of ``data`` to be a string or a list of strings, except under the JSON
    mimetypes (``application/json``, ``application/*+json``), which may hold
    any JSON.  A kernel can send anything: ``display({"a": 1}, raw=True)``
    sends ``{"a": 1}``.
    """
    if not isinstance(data, dict):
        return f"data is {_json_type(data)}, not an object"
    if not isinstance(metadata, dict):
        return f"metadata is {_json_type(metadata)}, not an object"
    for mimetype, value in data.items():
        if type(value) is str:
            continue  # nearly every value: decided without a call
        if not _is_multiline_string(value) and not _JSON_MIMETYPE.search(mimetype):
            return (
                f"data[{mimetype!r}] is {_json_type(value)}; nbformat allows only a string or "
                "a list of strings there (any JSON only under application/json and "
                "application/*+json)"
            )
    return None


def _count(value: object) -> int | None:
    """An execution count as nbformat allows it (an integer >= 0), else None."""
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    return None


def _transient_display_id(content: Any) -> str | None:
    transient = getattr(content, "transient", None)
    if not transient:
        return None  # most outputs: no transient, or an empty one
    display_id = transient.get("display_id") if isinstance(transient, dict) else None
    return display_id if isinstance(display_id, str) else None


@final
class Outputs:
    """A handler that collects nbformat-shaped outputs and the execution count.

    Args:
        displays: ``display_id`` -> the outputs showing it; share one dict
            between the collectors of a notebook's cells.

    Attributes:
        outputs: the outputs, as nbformat v4 dicts.
        execution_count: the execute's count (``In [n]``), once known.
        displays: ``display_id`` -> every output (of any collector sharing
            the dict) that shows it.
        rejected: why each output message nbformat would reject was replaced
            by an error output (``ename`` :data:`INVALID_OUTPUT`), in order.
    """

    def __init__(self, displays: dict[str, list[Output]] | None = None) -> None:
        self.outputs: list[Output] = []
        self.execution_count: int | None = None
        self.displays: dict[str, list[Output]] = {} if displays is None else displays
        self.rejected: list[str] = []
        self._clear_pending = False
        # (display_id, output) for each output of ours in ``displays``: clearing
        # costs what we showed, not the size of a shared map.
        self._shown: list[tuple[str, Output]] = []

    def clear(self) -> None:
        """Drop every output, and forget which of them showed a display_id."""
        for display_id, output in self._shown:
            shown = self.displays.get(display_id)
            if shown is None:
                continue
            # By identity: an equal output of another cell stays mapped.
            shown[:] = [o for o in shown if o is not output]
            if not shown:
                del self.displays[display_id]
        self._shown.clear()
        self.outputs.clear()

    def _add(self, output: Output) -> Output:
        if self._clear_pending:
            self._clear_pending = False
            self.clear()
        self.outputs.append(output)
        return output

    def _reject(self, msg_type: str, problem: str) -> None:
        evalue = f"{msg_type} message not valid in a notebook: {problem}"
        self.rejected.append(evalue)
        self._add(
            {
                "output_type": "error",
                "ename": INVALID_OUTPUT,
                "evalue": evalue,
                "traceback": [f"{INVALID_OUTPUT}: {evalue}"],
            }
        )

    def _update_displays(self, display_id: str, data: dict[str, Any], metadata: Any) -> None:
        for output in self.displays.get(display_id, ()):
            # In place: the document's output structs share these dicts.
            output["data"].clear()
            output["data"].update(data)
            output["metadata"].clear()
            output["metadata"].update(metadata)

    def _display(self, content: Any, output: Output) -> None:
        data, metadata = content.data, content.metadata
        problem = output_problem(data, metadata)
        if problem is not None:
            self._reject(output["output_type"], problem)
            return
        output["data"] = dict(data)
        output["metadata"] = dict(metadata)
        display_id = _transient_display_id(content)
        if display_id is not None:
            # A display with an id already shown updates the earlier outputs
            # too, wherever they are (nbclient's _update_display_id).
            self._update_displays(display_id, content.data, content.metadata)
        self._add(output)
        if display_id is not None:
            self.displays.setdefault(display_id, []).append(output)
            self._shown.append((display_id, output))

    def __call__(self, message: Message) -> None:
        """Any message: to its ``on_<msg_type>`` method, if there is one (the
        :class:`~sidecar.Handler` protocol; the request engine calls those
        methods directly)."""
        method = getattr(self, f"on_{message.msg_type}", None)
        if method is not None:
            method(message)

    def on_stream(self, message: Message) -> None:
        """Append stream text, merged into the previous output of the same stream."""
        content = message.content
        last = self.outputs[-1] if self.outputs and not self._clear_pending else None
        if last is not None and last["output_type"] == "stream" and last["name"] == content.name:
            last["text"] = apply_stream_controls(last["text"] + content.text)
            return
        self._add(
            {
                "output_type": "stream",
                "name": content.name,
                "text": apply_stream_controls(content.text),
            }
        )

    def on_display_data(self, message: Message) -> None:
        """Add a ``display_data`` output; one with a ``display_id`` also updates
        the earlier outputs showing it."""
        self._display(message.content, {"output_type": "display_data"})

    def on_execute_result(self, message: Message) -> None:
        """Add the ``execute_result`` output and take its execution count."""
        content = message.content
        count = _count(content.execution_count)
        self.execution_count = count
        self._display(content, {"output_type": "execute_result", "execution_count": count})

    def on_update_display_data(self, message: Message) -> None:
        """Replace data and metadata of every output showing the ``display_id``."""
        content = message.content
        problem = output_problem(content.data, content.metadata)
        if problem is not None:
            self._reject("update_display_data", problem)
            return
        display_id = _transient_display_id(content)
        if display_id is not None:
            self._update_displays(display_id, content.data, content.metadata)

    def on_error(self, message: Message) -> None:
        """Add an ``error`` output."""
        content = message.content
        self._add(
            {
                "output_type": "error",
                "ename": content.ename,
                "evalue": content.evalue,
                "traceback": list(content.traceback),
            }
        )

    def on_clear_output(self, message: Message) -> None:
        """Clear the outputs now, or (``wait=True``) just before the next one."""
        if message.content.wait:
            self._clear_pending = True
        else:
            self._clear_pending = False
            self.clear()

    def on_execute_input(self, message: Message) -> None:
        """Take the execution count the kernel announced."""
        self.execution_count = _count(message.content.execution_count)

    def on_execute_reply(self, message: Message) -> None:
        """Take the execution count of the reply, if it has one."""
        count = _count(getattr(message.content, "execution_count", None))
        if count is not None:
            self.execution_count = count

    def text(self, name: str = "stdout") -> str:
        """The merged text of the ``name`` stream (``stdout`` or ``stderr``)."""
        return "".join(
            o["text"] for o in self.outputs if o["output_type"] == "stream" and o["name"] == name
        )
