"""Notebooks (nbformat v4, minor 0 to 5) as msgspec Structs: read, write, build.

Pure: stdlib and msgspec only (no nbformat), and no I/O except the two path
helpers (:func:`read_notebook` given a path, :func:`save_notebook`).

Theory of operation
-------------------

Reading parses the JSON with the stdlib :mod:`json` (as nbformat does, so
``NaN``, huge numbers and lone surrogate escapes read the same), then walks the
plain dicts cell by cell and output by output, doing what nbformat's reader
does on the way:

- multiline strings stored as lists of lines are joined (``rejoin_lines``):
  ``source`` of every cell, ``text`` of every output that is not
  ``display_data``/``execute_result``, and every value of a mimebundle
  (output ``data``, cell ``attachments``) that is a list of strings, except
  under JSON mimetypes (``application/json``, ``application/*+json``);
- transient keys are dropped (``strip_transient``): ``orig_nbformat``,
  ``orig_nbformat_minor`` and ``signature`` from the notebook's metadata,
  ``trusted`` from each cell's;
- in a 4.5 (or later minor) notebook, a cell without an ``id`` gets a new
  random one, and a cell whose id repeats an earlier cell's gets a new one
  (nbformat's ``validate`` does both, mutating what it validates).

Each dict is then converted with :func:`msgspec.convert`, which checks the
types and names the place of a mistake (``cells[3].outputs[0].name:
expected `str`, got `int```).

Writing is the reverse (``split_lines``: ``source``, stream ``text`` and
mimebundle values under ``text/*``, ``application/javascript`` and
``image/svg+xml`` become :meth:`str.splitlines` lists) and then
``json.dumps(indent=1, sort_keys=True, ensure_ascii=False)`` plus a final
newline: byte for byte what ``nbformat.write`` puts in a file.

Unknown keys
------------

The v4 schema forbids keys it does not list in cells, outputs and the
notebook itself, but nbformat keeps them when reading and writes them back,
so we do too: every struct has an :attr:`extra` dict holding the keys the
schema does not name, verbatim (``metadata`` dicts are kept whole anyway).
Writing merges :attr:`extra` back in; a field of the struct wins over an
:attr:`extra` key of the same name.  :func:`msgspec.json.encode` on these
structs would emit ``extra`` as a key, so write notebooks with
:func:`write_notebook`.

Strictness
----------

nbformat reads an invalid notebook and only logs the schema errors; sidecar
refuses what it cannot model: a key the schema requires is missing, a value
has the wrong JSON type, or a ``cell_type``/``output_type`` is unknown.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
import stat
import uuid
from collections.abc import Iterable, Mapping, Sequence
from functools import cache
from pathlib import Path
from typing import Any, Final, Literal, TypeAlias

import msgspec
from msgspec import UNSET, UnsetType

from .._exceptions import NotebookError

__all__ = [
    "Cell",
    "CodeCell",
    "DisplayDataOutput",
    "ErrorOutput",
    "ExecuteResultOutput",
    "MarkdownCell",
    "Notebook",
    "NotebookError",
    "Output",
    "RawCell",
    "StreamOutput",
    "assemble_notebook",
    "cell_text",
    "new_code_cell",
    "new_markdown_cell",
    "new_notebook",
    "new_raw_cell",
    "normalize_ids",
    "outputs_from_dicts",
    "outputs_to_dicts",
    "read_notebook",
    "save_notebook",
    "upgrade_notebook",
    "write_file_atomically",
    "write_notebook",
]

# The newest minor version this module knows; cells carry ids from 4.5 on.
_NBFORMAT_MINOR: Final = 5
_IDS_SINCE_MINOR: Final = 5


# -- outputs -------------------------------------------------------------------


class _Output(msgspec.Struct, kw_only=True, tag_field="output_type", repr_omit_defaults=True):
    """Base of the four output types; ``output_type`` is the union's tag."""

    extra: dict[str, Any] = {}
    """Keys the schema does not name, kept verbatim."""


class StreamOutput(_Output, tag="stream"):
    """Text a cell printed on ``stdout`` or ``stderr``."""

    name: str
    text: str = ""

    @property
    def output_type(self) -> Literal["stream"]:
        """Always ``"stream"``: the tag of the output union."""
        return "stream"


class DisplayDataOutput(_Output, tag="display_data"):
    """A rich display (``IPython.display.display``): a mimebundle and its metadata."""

    data: dict[str, Any] = {}
    metadata: dict[str, Any] = {}

    @property
    def output_type(self) -> Literal["display_data"]:
        """Always ``"display_data"``: the tag of the output union."""
        return "display_data"


class ExecuteResultOutput(_Output, tag="execute_result"):
    """The value of a cell's last expression (``Out[n]``)."""

    execution_count: int | None = None
    data: dict[str, Any] = {}
    metadata: dict[str, Any] = {}

    @property
    def output_type(self) -> Literal["execute_result"]:
        """Always ``"execute_result"``: the tag of the output union."""
        return "execute_result"


class ErrorOutput(_Output, tag="error"):
    """An exception the cell raised."""

    ename: str
    evalue: str
    traceback: list[str] = []

    @property
    def output_type(self) -> Literal["error"]:
        """Always ``"error"``: the tag of the output union."""
        return "error"


Output: TypeAlias = StreamOutput | DisplayDataOutput | ExecuteResultOutput | ErrorOutput
"""Any of the four output types, told apart by ``output_type``."""

# -- cells ---------------------------------------------------------------------


class _Cell(msgspec.Struct, kw_only=True, tag_field="cell_type", repr_omit_defaults=True):
    """Base of the three cell types; ``cell_type`` is the union's tag."""

    id: str | UnsetType = UNSET
    """Absent before nbformat 4.5; a 4.5 notebook gets one for every cell."""
    metadata: dict[str, Any] = {}
    source: str = ""
    extra: dict[str, Any] = {}
    """Keys the schema does not name, kept verbatim."""


class CodeCell(_Cell, tag="code"):
    """A code cell: its ``source``, and what running it gave (``outputs``,
    ``execution_count``)."""

    execution_count: int | None = None
    outputs: list[Output] = []

    @property
    def cell_type(self) -> Literal["code"]:
        """Always ``"code"``: the tag of the cell union."""
        return "code"


class MarkdownCell(_Cell, tag="markdown"):
    """A Markdown cell, with the files pasted into it as ``attachments``."""

    attachments: dict[str, dict[str, Any]] | UnsetType = UNSET
    """Attachment name -> mimebundle (e.g. a pasted ``image/png``)."""

    @property
    def cell_type(self) -> Literal["markdown"]:
        """Always ``"markdown"``: the tag of the cell union."""
        return "markdown"


class RawCell(_Cell, tag="raw"):
    """A raw cell: text that nbconvert passes through untouched."""

    attachments: dict[str, dict[str, Any]] | UnsetType = UNSET

    @property
    def cell_type(self) -> Literal["raw"]:
        """Always ``"raw"``: the tag of the cell union."""
        return "raw"


Cell: TypeAlias = CodeCell | MarkdownCell | RawCell
"""Any of the three cell types, told apart by ``cell_type``."""


class Notebook(msgspec.Struct, kw_only=True, repr_omit_defaults=True):
    """An nbformat v4 notebook.

    ``metadata`` is kept whole (``kernelspec``, ``language_info``,
    ``widgets``...).  Build one with :func:`new_notebook` or
    :func:`read_notebook`; write it with :func:`write_notebook` or
    :func:`save_notebook`.
    """

    cells: list[Cell] = []
    metadata: dict[str, Any] = {}
    nbformat: int = 4
    nbformat_minor: int = _NBFORMAT_MINOR
    extra: dict[str, Any] = {}
    """Top-level keys the schema does not name, kept verbatim."""

    def code_cells(self) -> list[CodeCell]:
        """The code cells, in order."""
        return [cell for cell in self.cells if isinstance(cell, CodeCell)]

    def clear_outputs(self) -> None:
        """Empty every code cell's outputs and execution count."""
        for cell in self.code_cells():
            cell.outputs = []
            cell.execution_count = None


# -- tables derived from the structs ---------------------------------------------

_CELL_TYPES: Final[dict[str, type[Cell]]] = {
    "code": CodeCell,
    "markdown": MarkdownCell,
    "raw": RawCell,
}
_OUTPUT_TYPES: Final[dict[str, type[Output]]] = {
    "stream": StreamOutput,
    "display_data": DisplayDataOutput,
    "execute_result": ExecuteResultOutput,
    "error": ErrorOutput,
}
# Keys the schema lets a cell or output leave out; every other key it names is
# required.
_OPTIONAL_KEYS: Final = frozenset({"id", "attachments"})
_NOTEBOOK_KEYS: Final = ("nbformat", "nbformat_minor", "metadata", "cells")
_TRANSIENT_NOTEBOOK_METADATA: Final = ("orig_nbformat", "orig_nbformat_minor", "signature")
_TRANSIENT_CELL_METADATA: Final = "trusted"
# Mimebundle values written as lists of lines besides ``text/*`` (rwbase.py).
_NON_TEXT_SPLIT_MIMES: Final = frozenset({"application/javascript", "image/svg+xml"})


@cache
def _fields(cls: type[msgspec.Struct]) -> tuple[tuple[str, str], ...]:
    """(attribute, JSON key) of each field of ``cls`` but ``extra``."""
    pairs = zip(cls.__struct_fields__, cls.__struct_encode_fields__, strict=True)
    return tuple((name, key) for name, key in pairs if name != "extra")


@cache
def _keys(cls: type[msgspec.Struct]) -> tuple[tuple[str, ...], frozenset[str]]:
    """The JSON keys ``cls`` models (tag first, in field order), and the required ones."""
    tag_field = cls.__struct_config__.tag_field
    names = [key for _, key in _fields(cls)]
    if isinstance(tag_field, str):
        names.insert(0, tag_field)
    return tuple(names), frozenset(names) - _OPTIONAL_KEYS


# -- errors ----------------------------------------------------------------------

_MSGSPEC_PATH: Final = re.compile(r"^(?P<reason>.*) - at `\$(?P<path>.*)`$", re.DOTALL)


def _at(where: str, key: str | int) -> str:
    if isinstance(key, int):
        return f"{where}[{key}]"
    return f"{where}.{key}" if where else key


def _json_type(value: object) -> str:
    """The JSON name of a parsed value's type, in msgspec's words."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, dict):
        return "object"
    if isinstance(value, list):
        return "array"
    return type(value).__name__


def _expect_object(value: object, where: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise NotebookError(f"expected `object`, got `{_json_type(value)}`", where=where)
    return value


def _convert(obj: dict[str, Any], cls: type[msgspec.Struct], where: str) -> Any:
    """``msgspec.convert``, its errors turned into NotebookError at ``where``."""
    try:
        return msgspec.convert(obj, cls)
    except msgspec.ValidationError as exc:
        text = str(exc)
        match = _MSGSPEC_PATH.match(text)
        if match is None:  # pragma: no cover - msgspec always names the path
            reason, path = text, ""
        else:
            reason, path = match["reason"], match["path"]
        if path and not where:
            path = path.removeprefix(".")
        raise NotebookError(reason[:1].lower() + reason[1:], where=where + path) from None


def _partition(obj: dict[str, Any], cls: type[msgspec.Struct], where: str) -> dict[str, Any]:
    """The keys ``cls`` models, plus ``extra``: everything else.

    Raises:
        NotebookError: a key the schema requires is missing.
    """
    names, required = _keys(cls)
    for name in names:
        if name in required and name not in obj:
            raise NotebookError(f"missing field `{name}`", where=where)
    known = {k: v for k, v in obj.items() if k in names}
    known["extra"] = {k: v for k, v in obj.items() if k not in names}
    return known


# -- multiline strings (nbformat/v4/rwbase.py) -------------------------------------


def _is_json_mime(mime: str) -> bool:
    return mime == "application/json" or (
        mime.startswith("application/") and mime.endswith("+json")
    )


def _rejoin_mimebundle(bundle: dict[str, Any]) -> dict[str, Any]:
    """A copy of ``bundle`` with lists of strings joined, JSON mimetypes aside."""
    return {
        mime: "".join(value)
        if not _is_json_mime(mime)
        and isinstance(value, list)
        and all(isinstance(line, str) for line in value)
        else value
        for mime, value in bundle.items()
    }


def _split_mimebundle(bundle: dict[str, Any]) -> dict[str, Any]:
    """A copy of ``bundle`` with text-like strings split into lines."""
    return {
        mime: value.splitlines(True)
        if isinstance(value, str) and (mime.startswith("text/") or mime in _NON_TEXT_SPLIT_MIMES)
        else value
        for mime, value in bundle.items()
    }


def _joined(value: object, where: str) -> object:
    """A multiline string field as read: a list of lines is joined."""
    if not isinstance(value, list):
        return value
    if not all(isinstance(line, str) for line in value):
        raise NotebookError("expected `str` or an array of `str`", where=where)
    return "".join(value)


def _rejoin_attachments(attachments: object, where: str) -> object:
    if not isinstance(attachments, dict):
        return attachments
    return {
        name: _rejoin_mimebundle(_expect_object(bundle, f"{where}[{name!r}]"))
        for name, bundle in attachments.items()
    }


def _split_attachments(attachments: object) -> object:
    if not isinstance(attachments, dict):
        return attachments
    return {
        name: _split_mimebundle(bundle) if isinstance(bundle, dict) else bundle
        for name, bundle in attachments.items()
    }


# -- dicts -> structs ----------------------------------------------------------------


def _output_from_dict(raw: object, where: str) -> Output:
    obj = dict(_expect_object(raw, where))
    if "output_type" not in obj:
        raise NotebookError("missing field `output_type`", where=where)
    kind = obj["output_type"]
    cls = _OUTPUT_TYPES.get(kind) if isinstance(kind, str) else None
    if cls is None:
        expected = ", ".join(repr(k) for k in _OUTPUT_TYPES)
        raise NotebookError(
            f"unknown output type {kind!r} (expected one of {expected})",
            where=_at(where, "output_type"),
        )
    if cls is DisplayDataOutput or cls is ExecuteResultOutput:
        if isinstance(obj.get("data"), dict):
            obj["data"] = _rejoin_mimebundle(obj["data"])
    elif "text" in obj:  # stream, and any stray "text" of an error output
        obj["text"] = _joined(obj["text"], _at(where, "text"))
    output: Output = _convert(_partition(obj, cls, where), cls, where)
    return output


def _cell_from_dict(raw: object, where: str) -> Cell:
    obj = dict(_expect_object(raw, where))
    if "cell_type" not in obj:
        raise NotebookError("missing field `cell_type`", where=where)
    kind = obj["cell_type"]
    cls = _CELL_TYPES.get(kind) if isinstance(kind, str) else None
    if cls is None:
        expected = ", ".join(repr(k) for k in _CELL_TYPES)
        raise NotebookError(
            f"unknown cell type {kind!r} (expected one of {expected})",
            where=_at(where, "cell_type"),
        )
    if "source" in obj:
        obj["source"] = _joined(obj["source"], _at(where, "source"))
    if "attachments" in obj:  # nbformat rejoins them on code cells too
        obj["attachments"] = _rejoin_attachments(obj["attachments"], _at(where, "attachments"))
    metadata = obj.get("metadata")
    if isinstance(metadata, dict) and _TRANSIENT_CELL_METADATA in metadata:
        obj["metadata"] = {k: v for k, v in metadata.items() if k != _TRANSIENT_CELL_METADATA}
    if cls is CodeCell and isinstance(obj.get("outputs"), list):
        outputs_at = _at(where, "outputs")
        obj["outputs"] = [
            _output_from_dict(output, _at(outputs_at, j)) for j, output in enumerate(obj["outputs"])
        ]
    cell: Cell = _convert(_partition(obj, cls, where), cls, where)
    return cell


def _random_cell_id() -> str:
    """A new cell id: 8 hex digits, as nbformat makes them."""
    return uuid.uuid4().hex[:8]


def normalize_ids(nb: Notebook) -> None:
    """Give a 4.5+ notebook's cells missing or repeated ids new ones, as nbformat does.

    Two passes in nbformat's order (missing first, then repeats), so that the
    same sequence of random ids gives the same notebook.
    """
    if (nb.nbformat, nb.nbformat_minor) < (4, _IDS_SINCE_MINOR):
        return
    for cell in nb.cells:
        if cell.id is UNSET:
            cell.id = _random_cell_id()
    seen: set[str | UnsetType] = set()
    for cell in nb.cells:
        old = cell.id
        if old in seen:
            cell.id = _random_cell_id()
        seen.add(old)


def upgrade_notebook(nb: Notebook) -> None:
    """Bring an nbformat 4.0-4.4 notebook to 4.5, as nbformat's ``v4.upgrade`` does.

    Every cell gets a new random id (ids are not allowed before 4.5, and
    required from then on).  A 4.5 notebook is left as it is.
    """
    if nb.nbformat != 4 or nb.nbformat_minor >= _IDS_SINCE_MINOR:
        return
    for cell in nb.cells:
        cell.id = _random_cell_id()
    nb.nbformat_minor = _NBFORMAT_MINOR


def _notebook_from_dict(raw: object) -> Notebook:
    obj = _expect_object(raw, "")
    if "nbformat" not in obj:
        raise NotebookError("missing field `nbformat`")
    major = obj["nbformat"]
    if not isinstance(major, int) or isinstance(major, bool):
        raise NotebookError(f"expected `int`, got `{_json_type(major)}`", where="nbformat")
    if major < 4:
        raise NotebookError(
            f"nbformat {major} notebooks are not supported; "
            "convert with `jupyter nbconvert --to notebook --nbformat 4`"
        )
    if major > 4:
        raise NotebookError(f"nbformat {major} notebooks are not supported (only nbformat 4)")
    for key in _NOTEBOOK_KEYS:
        if key not in obj:
            raise NotebookError(f"missing field `{key}`")
    minor = obj["nbformat_minor"]
    if not isinstance(minor, int) or isinstance(minor, bool):
        raise NotebookError(f"expected `int`, got `{_json_type(minor)}`", where="nbformat_minor")
    obj = dict(obj)
    metadata = obj["metadata"]
    if isinstance(metadata, dict):
        obj["metadata"] = {
            k: v for k, v in metadata.items() if k not in _TRANSIENT_NOTEBOOK_METADATA
        }
    cells = obj["cells"]
    if isinstance(cells, list):
        obj["cells"] = [_cell_from_dict(cell, _at("cells", i)) for i, cell in enumerate(cells)]
    nb: Notebook = _convert(_partition(obj, Notebook, ""), Notebook, "")
    normalize_ids(nb)
    return nb


# -- structs -> dicts ------------------------------------------------------------------


def _struct_to_dict(value: msgspec.Struct) -> dict[str, Any]:
    """A shallow dict of the JSON keys of ``value``: ``extra`` merged, unset fields left out."""
    out = dict(getattr(value, "extra", {}))
    config = value.__struct_config__
    if isinstance(config.tag_field, str):
        out[config.tag_field] = config.tag
    for name, key in _fields(type(value)):
        item = getattr(value, name)
        if item is not UNSET:
            out[key] = item
    return out


def _output_to_file_dict(output: Output) -> dict[str, Any]:
    obj = _struct_to_dict(output)
    if isinstance(output, DisplayDataOutput | ExecuteResultOutput):
        if isinstance(obj.get("data"), dict):
            obj["data"] = _split_mimebundle(obj["data"])
    elif isinstance(output, StreamOutput) and isinstance(obj.get("text"), str):
        obj["text"] = obj["text"].splitlines(True)
    return obj


def _cell_to_file_dict(cell: Cell) -> dict[str, Any]:
    obj = _struct_to_dict(cell)
    if isinstance(obj.get("source"), str):
        obj["source"] = obj["source"].splitlines(True)
    if "attachments" in obj:
        obj["attachments"] = _split_attachments(obj["attachments"])
    metadata = obj.get("metadata")
    if isinstance(metadata, dict) and _TRANSIENT_CELL_METADATA in metadata:
        obj["metadata"] = {k: v for k, v in metadata.items() if k != _TRANSIENT_CELL_METADATA}
    if isinstance(cell, CodeCell):
        obj["outputs"] = [_output_to_file_dict(output) for output in cell.outputs]
    return obj


def _json_default(value: object) -> object:
    # nbformat's BytesEncoder: bytes are taken to be ASCII (e.g. base64) text.
    if isinstance(value, bytes):
        return value.decode("ascii")
    raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")


# -- public functions -------------------------------------------------------------------


def read_notebook(data: bytes | str | os.PathLike[str]) -> Notebook:
    """Read an ``.ipynb``: its content (bytes, or text), or the file at a path.

    A ``str`` is the notebook's JSON text, not a file name: pass a
    :class:`pathlib.Path` to read a file.

    Raises:
        NotebookError: not JSON, not an nbformat 4 notebook, or a value of
            the wrong shape; the message names the place.
        OSError: the file could not be read.
    """
    if isinstance(data, os.PathLike):
        filename = os.fspath(data)
        content = Path(filename).read_bytes()
        try:
            return _parse(content)
        except NotebookError as exc:
            raise NotebookError(exc.reason, where=exc.where, filename=filename) from exc.__cause__
    return _parse(data)


def _parse(content: bytes | str) -> Notebook:
    try:
        raw = json.loads(content)
    except (ValueError, RecursionError) as exc:
        reason = f"not valid JSON: {exc}"
        if isinstance(content, str) and not content.lstrip().startswith("{"):
            reason += " (to read a file, pass a pathlib.Path)"
        raise NotebookError(reason) from exc
    return _notebook_from_dict(raw)


def write_notebook(nb: Notebook) -> bytes:
    """The ``.ipynb`` file content of ``nb``, byte for byte what nbformat writes.

    Like nbformat, it gives the cells of a 4.5 notebook that lack an id (or
    repeat an earlier cell's) a new id, *on* ``nb``, so that writing twice
    gives the same bytes.

    Raises:
        NotebookError: ``nb.nbformat`` is not 4, or a string cannot be
            encoded as UTF-8 (a lone surrogate).
        TypeError: a value (in metadata, say) is not JSON serializable.
    """
    _check_writable(nb)
    normalize_ids(nb)
    return assemble_notebook(nb, [cell_text(cell) for cell in nb.cells])


def _check_writable(nb: Notebook) -> None:
    if nb.nbformat != 4:
        raise NotebookError(f"cannot write nbformat {nb.nbformat} (only nbformat 4)")


def _dumps(obj: object) -> str:
    return json.dumps(
        obj,
        indent=1,
        sort_keys=True,
        separators=(",", ": "),
        ensure_ascii=False,
        default=_json_default,
    )


def cell_text(cell: Cell) -> str:
    """``cell`` as it appears in the file: its JSON, indented to sit in ``cells``.

    Nested two levels deep, every line of the cell's own dump gains two
    spaces (a JSON string never holds a raw newline, so only lines move).
    """
    return _dumps(_cell_to_file_dict(cell)).replace("\n", "\n  ")


def assemble_notebook(nb: Notebook, cell_texts: Sequence[str]) -> bytes:
    """The file content of ``nb`` with its cells given as :func:`cell_text` made them.

    What ``json.dumps(indent=1, sort_keys=True)`` of the whole notebook
    gives, byte for byte: the rest of the notebook is dumped with an empty
    ``cells``, and the cells go in its place, so that a caller that keeps
    each cell's text pays only for the cells that changed.
    """
    _check_writable(nb)
    obj = _struct_to_dict(nb)
    obj["metadata"] = {
        k: v for k, v in nb.metadata.items() if k not in _TRANSIENT_NOTEBOOK_METADATA
    }
    obj["cells"] = []
    text = _dumps(obj)
    if cell_texts:
        # The top level's keys are the only lines indented by one space.
        cells = "[\n  " + ",\n  ".join(cell_texts) + "\n ]"
        text = text.replace('\n "cells": []', '\n "cells": ' + cells, 1)
    try:
        return (text + "\n").encode("utf-8")
    except UnicodeEncodeError as exc:
        raise NotebookError(f"cannot encode as UTF-8: {exc.reason}") from exc


def save_notebook(nb: Notebook, path: str | os.PathLike[str]) -> None:
    """Write ``nb`` to ``path`` atomically: a temporary file beside it, then
    :func:`os.replace`.

    A reader never sees a half-written file, and a failure leaves the old file
    as it was.  The new file keeps the old one's permission bits; a symlink is
    written through, not replaced.

    Raises:
        NotebookError: as :func:`write_notebook`.
        OSError: the file could not be written.
    """
    write_file_atomically(write_notebook(nb), path)


def write_file_atomically(content: bytes, path: str | os.PathLike[str]) -> None:
    """Write ``content`` to ``path`` as :func:`save_notebook` does: a temporary
    file beside it, synced, then :func:`os.replace`; permissions kept,
    symlinks written through."""
    target = os.path.realpath(os.fspath(path))
    directory, name = os.path.split(target)
    temporary = os.path.join(directory, f".{name}.{secrets.token_hex(4)}.tmp")
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)
    fd = os.open(temporary, flags, 0o666)
    try:
        with os.fdopen(fd, "wb") as file:
            file.write(content)
            file.flush()
            os.fsync(file.fileno())
        with contextlib.suppress(FileNotFoundError):
            os.chmod(temporary, stat.S_IMODE(os.stat(target).st_mode))
        os.replace(temporary, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise


def new_notebook(
    *,
    cells: Iterable[Cell] = (),
    metadata: Mapping[str, Any] | None = None,
    nbformat_minor: int = _NBFORMAT_MINOR,
) -> Notebook:
    """A new nbformat 4 notebook (4.5 unless told otherwise)."""
    return Notebook(
        cells=list(cells),
        metadata=dict(metadata or {}),
        nbformat_minor=nbformat_minor,
    )


def new_code_cell(
    source: str = "",
    *,
    metadata: Mapping[str, Any] | None = None,
    outputs: Iterable[Output] = (),
    execution_count: int | None = None,
    id: str | None = None,
) -> CodeCell:
    """A new code cell with a new random id (unless ``id`` is given)."""
    return CodeCell(
        id=_random_cell_id() if id is None else id,
        source=source,
        metadata=dict(metadata or {}),
        outputs=list(outputs),
        execution_count=execution_count,
    )


def new_markdown_cell(
    source: str = "",
    *,
    metadata: Mapping[str, Any] | None = None,
    attachments: Mapping[str, dict[str, Any]] | None = None,
    id: str | None = None,
) -> MarkdownCell:
    """A new markdown cell with a new random id (unless ``id`` is given)."""
    return MarkdownCell(
        id=_random_cell_id() if id is None else id,
        source=source,
        metadata=dict(metadata or {}),
        attachments=UNSET if attachments is None else dict(attachments),
    )


def new_raw_cell(
    source: str = "",
    *,
    metadata: Mapping[str, Any] | None = None,
    attachments: Mapping[str, dict[str, Any]] | None = None,
    id: str | None = None,
) -> RawCell:
    """A new raw cell with a new random id (unless ``id`` is given)."""
    return RawCell(
        id=_random_cell_id() if id is None else id,
        source=source,
        metadata=dict(metadata or {}),
        attachments=UNSET if attachments is None else dict(attachments),
    )


def outputs_from_dicts(dicts: Iterable[Mapping[str, Any]]) -> list[Output]:
    """Output structs from nbformat output dicts, such as :class:`Outputs` collects.

    The dicts are not changed; the structs share their nested values (``data``
    mimebundle values, ``metadata`` contents).  Text may be a string or a list
    of lines, as in a file.

    Raises:
        NotebookError: a dict is not a valid output (``outputs[2]: missing
            field `name```).
    """
    return [_output_from_dict(dict(d), _at("outputs", i)) for i, d in enumerate(dicts)]


def outputs_to_dicts(outputs: Iterable[Output]) -> list[dict[str, Any]]:
    """nbformat output dicts (text as strings, not lists of lines) from Output structs."""
    return [_struct_to_dict(output) for output in outputs]
