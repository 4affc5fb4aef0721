"""Notebook parameters as papermill takes them, and as a notebook declares them.

On the command line (``sidecar run``), values come the ways papermill's come,
with the same meaning, so a papermill command line gives the same values:

- ``-p NAME VALUE``: ``True``, ``False`` and ``None`` (spelled so), then
  whatever ``int()`` reads, then whatever ``float()`` reads (``inf`` and
  ``nan`` included), else the text itself (:func:`value_of`);
- ``-r NAME VALUE``: the text itself;
- ``-f FILE``, ``-y YAML``, ``-b BASE64``: a YAML mapping of names to values,
  read with PyYAML's safe loader less its timestamps (a date stays text, as
  in papermill).

Later ones win, in papermill's order whatever the order on the command line:
``-b``, then ``-f``, then ``-y``, then ``-p``, then ``-r``.

A notebook declares its parameters in its first code cell tagged
``parameters``; :func:`declared_parameters` reads their names, types,
defaults and help comments from that cell's Python source.
"""

from __future__ import annotations

import ast
import base64
import binascii
import functools
import io
import keyword
import tokenize
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Final, Literal, final

import msgspec

from ._model import CodeCell, Notebook

__all__ = [
    "DeclaredParameters",
    "Parameter",
    "ParameterError",
    "ParameterSource",
    "collect_parameters",
    "declared_parameters",
    "value_of",
]

PARAMETERS_TAG: Final = "parameters"


class ParameterError(ValueError):
    """A parameter given on the command line cannot be used: the message says which and why."""


def value_of(text: str) -> Any:
    """The value of ``-p NAME TEXT``, inferred exactly as papermill infers it.

    ``"True"``/``"False"``/``"None"`` (and only those spellings) are the
    constants; then an int, then a float, as Python's ``int()`` and
    ``float()`` read them (so ``1_000``, `` 7 ``, ``1e3``, ``-inf`` and
    ``nan`` are numbers); anything else is the text.  YAML's ``true`` and
    ``null`` are text here: ``-y 'flag: true'`` gives YAML's types.
    """
    constants: dict[str, Any] = {"True": True, "False": False, "None": None}
    if text in constants:
        return constants[text]
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


@final
class ParameterSource(msgspec.Struct, frozen=True):
    """One parameter option as given: ``-p``/``-r`` carry a name and a text, the others a text."""

    option: Literal["-p", "-r", "-f", "-y", "-b"]
    text: str
    name: str = ""


# papermill applies them in this order, later ones overriding earlier ones.
_ORDER: Final = ("-b", "-f", "-y", "-p", "-r")


def collect_parameters(given: Sequence[ParameterSource]) -> dict[str, Any]:
    """The parameters the options add up to, applied in papermill's order.

    Raises:
        ParameterError: a file cannot be read, a text is not YAML or base64,
            YAML that is not a mapping, or a name that is not a Python name.
    """
    parameters: dict[str, Any] = {}
    for option in _ORDER:
        for source in given:
            if source.option != option:
                continue
            if option == "-p":
                parameters[_checked_name(source.name, option)] = value_of(source.text)
            elif option == "-r":
                parameters[_checked_name(source.name, option)] = source.text
            else:
                parameters.update(_yaml_parameters(source))
    return parameters


def _checked_name(name: str, option: str) -> str:
    if not name.isidentifier() or keyword.iskeyword(name):
        raise ParameterError(f"{option} {name!r}: a parameter name must be a Python name")
    return name


def _yaml_parameters(source: ParameterSource) -> dict[str, Any]:
    # PyYAML is imported here, not at the top: only these options need it.
    import yaml

    where = f"{source.option} {source.text!r}"
    text: str | bytes = source.text
    try:
        if source.option == "-f":
            where = f"-f {source.text}"
            text = Path(source.text).read_bytes()
        elif source.option == "-b":
            text = base64.b64decode(source.text, validate=True)
    except OSError as e:
        raise ParameterError(f"{where}: cannot read it: {e.strerror or e}") from None
    except binascii.Error as e:
        raise ParameterError(f"{where}: not base64: {e}") from None
    try:
        loaded = yaml.load(text, Loader=_no_dates_loader())
    except yaml.YAMLError as e:
        reason = " ".join(str(e).split())
        raise ParameterError(f"{where}: not YAML: {reason}") from None
    if loaded is None:
        return {}
    if not isinstance(loaded, Mapping):
        raise ParameterError(
            f"{where}: expected a YAML mapping of names to values, got {type(loaded).__name__}"
        )
    return {_checked_name(str(name), source.option): value for name, value in loaded.items()}


@functools.cache
def _no_dates_loader() -> type[Any]:
    import yaml

    # A date or time stays text, as papermill reads YAML: a notebook that
    # wants a datetime parses it itself.
    resolvers = {
        first: [r for r in found if r[0] != "tag:yaml.org,2002:timestamp"]
        for first, found in yaml.SafeLoader.yaml_implicit_resolvers.items()
    }
    return type("NoDatesSafeLoader", (yaml.SafeLoader,), {"yaml_implicit_resolvers": resolvers})


# -- what a notebook declares --------------------------------------------------------


@final
class Parameter(msgspec.Struct, frozen=True, kw_only=True):
    """One parameter of a notebook, as its ``parameters`` cell assigns it."""

    name: str
    type: str = ""
    """The annotation or ``# type:`` comment; else the type of a literal default; else ``""``."""
    default: str
    """The default value's source text."""
    help: str = ""
    """The comment at the end of the assignment."""


@final
class DeclaredParameters(msgspec.Struct, frozen=True, kw_only=True):
    """The parameters cell of a notebook and what it assigns."""

    cell_index: int
    """The index of the cell tagged ``parameters`` in ``notebook.cells``."""
    parameters: list[Parameter]
    readable: bool = True
    """False when the cell's code is not Python that could be read."""


def _tags(cell: Any) -> list[str]:
    tags = cell.metadata.get("tags", [])
    return [t for t in tags if isinstance(t, str)] if isinstance(tags, list) else []


def declared_parameters(notebook: Notebook) -> DeclaredParameters | None:
    """What the first code cell tagged ``parameters`` assigns; None without such a cell.

    Only top-level assignments of one name count (``x = 1``, ``x: int = 1``);
    IPython magics and shell lines in the cell are skipped.
    """
    for index, cell in enumerate(notebook.cells):
        if isinstance(cell, CodeCell) and PARAMETERS_TAG in _tags(cell):
            found = _assignments(cell.source)
            return DeclaredParameters(
                cell_index=index, parameters=found or [], readable=found is not None
            )
    return None


def _assignments(source: str) -> list[Parameter] | None:
    # Magics (%x) and shell lines (!x) are IPython, not Python: blank them,
    # keeping the line numbers.
    lines = source.splitlines()
    python = "\n".join("" if line.lstrip()[:1] in ("%", "!") else line for line in lines)
    try:
        tree = ast.parse(python, type_comments=True)
    except (SyntaxError, ValueError):
        return None
    comments = _trailing_comments(python)
    found = []
    for node in tree.body:
        if isinstance(node, ast.Assign) and len(node.targets) == 1:
            target, annotation = node.targets[0], node.type_comment or ""
        elif isinstance(node, ast.AnnAssign) and node.value is not None:
            target, annotation = node.target, ast.get_source_segment(python, node.annotation) or ""
        else:
            continue
        if not isinstance(target, ast.Name) or node.value is None:
            continue
        default = ast.get_source_segment(python, node.value) or ""
        help_text = comments.get(node.end_lineno or node.lineno, "")
        if help_text.startswith("type:"):
            help_text = ""
        found.append(
            Parameter(
                name=target.id,
                type=annotation or _literal_type(node.value),
                default=" ".join(default.split()) if "\n" in default else default,
                help=help_text,
            )
        )
    return found


def _literal_type(node: ast.expr) -> str:
    try:
        value = ast.literal_eval(node)
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
        return ""
    return "None" if value is None else type(value).__name__


def _trailing_comments(source: str) -> dict[int, str]:
    """Line number -> the text of the comment that ends that line."""
    comments: dict[int, str] = {}
    try:
        for token in tokenize.generate_tokens(io.StringIO(source).readline):
            if token.type == tokenize.COMMENT:
                comments[token.start[0]] = token.string.lstrip("#").strip()
    except (tokenize.TokenError, SyntaxError):
        pass
    return comments
