"""Collecting an execute's outputs the way Jupyter frontends show them.

:class:`Outputs` is a handler: pass it to :meth:`Kernel.execute` and it builds
the nbformat v4 output list (plain dicts, as they appear in an ``.ipynb``):

- consecutive ``stream`` messages of the same name merge into one output, with
  ``\\r`` (return to line start) and ``\\b`` (erase one character) applied as
  nbclient does;
- ``clear_output(wait=True)`` clears just before the next output arrives;
  ``clear_output()`` clears now;
- ``update_display_data`` replaces data and metadata of *every* output that
  shows its ``display_id``; several collectors can share one display map
  (``displays=``) so an update reaches outputs of other cells, as in a notebook;
- ``transient`` is never written into an output.
"""

from __future__ import annotations

import re
from typing import Any, Final, final

from .wire import Message

__all__ = ["Outputs", "apply_stream_controls"]

_CARRIAGE_RETURN: Final = re.compile(r".*\r(?=[^\n])")
# A backspace (\x08) erases the character before it.  (Not r"\b": in a regex
# that is a word boundary, which would eat text before every word end.)
_BACKSPACE: Final = re.compile("[^\n]\x08")

Output = dict[str, Any]


def apply_stream_controls(text: str) -> str:
    """Apply backspace and carriage return to stream text, as a terminal would."""
    while True:
        shorter = _BACKSPACE.sub("", text)
        if len(shorter) == len(text):
            break
        text = shorter
    return _CARRIAGE_RETURN.sub("", text)


@final
class Outputs:
    """A handler that collects nbformat-shaped outputs and the execution count.

    Args:
        displays: ``display_id`` -> the outputs showing it; share one dict
            between the collectors of a notebook's cells.
    """

    def __init__(self, displays: dict[str, list[Output]] | None = None) -> None:
        self.outputs: list[Output] = []
        self.execution_count: int | None = None
        self.displays: dict[str, list[Output]] = {} if displays is None else displays
        self._clear_pending = False

    def clear(self) -> None:
        """Drop every output, and forget which of them showed a display_id."""
        for output in self.outputs:
            for shown in self.displays.values():
                while output in shown:
                    shown.remove(output)
        self.outputs.clear()

    def _add(self, output: Output) -> Output:
        if self._clear_pending:
            self._clear_pending = False
            self.clear()
        self.outputs.append(output)
        return output

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

    def _display(self, output: Output, content: Any) -> None:
        transient = content.transient if isinstance(content.transient, dict) else {}
        display_id = transient.get("display_id")
        self._add(output)
        if isinstance(display_id, str):
            self.displays.setdefault(display_id, []).append(output)

    def on_display_data(self, message: Message) -> None:
        """Add a ``display_data`` output, remembered under its ``display_id``."""
        content = message.content
        output = {
            "output_type": "display_data",
            "data": content.data,
            "metadata": content.metadata,
        }
        self._display(output, content)

    def on_execute_result(self, message: Message) -> None:
        """Add the ``execute_result`` output and take its execution count."""
        content = message.content
        self.execution_count = content.execution_count
        output = {
            "output_type": "execute_result",
            "execution_count": content.execution_count,
            "data": content.data,
            "metadata": content.metadata,
        }
        self._display(output, content)

    def on_update_display_data(self, message: Message) -> None:
        """Replace data and metadata of every output showing the ``display_id``."""
        content = message.content
        transient = content.transient if isinstance(content.transient, dict) else {}
        for output in self.displays.get(transient.get("display_id", ""), ()):
            output["data"] = content.data
            output["metadata"] = content.metadata

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
        self.execution_count = message.content.execution_count

    def on_execute_reply(self, message: Message) -> None:
        """Take the execution count of the reply, if it has one."""
        count = getattr(message.content, "execution_count", None)
        if isinstance(count, int):
            self.execution_count = count

    def text(self, name: str = "stdout") -> str:
        """The merged text of the ``name`` stream (``stdout`` or ``stderr``)."""
        return "".join(
            o["text"] for o in self.outputs if o["output_type"] == "stream" and o["name"] == name
        )
