"""Finding kernelspecs the way Jupyter does.

The search path is jupyter_core's ``jupyter_path("kernels")`` (``JUPYTER_PATH``
first, then the user's data dir and the environment's ``share/jupyter`` in the
order jupyter_core decides, then the system dirs), plus ``~/.ipython/kernels``
as jupyter_client adds it.  A kernel is a directory holding ``kernel.json``;
the first directory of a name wins.  ``python3`` falls back to the running
interpreter's ipykernel when no spec of that name is installed.
"""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path
from typing import Any, Final, Literal

import msgspec
from jupyter_core.paths import jupyter_path

from .._exceptions import NoSuchKernel

__all__ = ["KernelSpec", "find_kernelspecs", "get_kernelspec", "kernel_dirs"]

_NAME: Final = re.compile(r"^[a-z0-9._\-]+$", re.IGNORECASE)
_PYTHON_NAMES: Final = frozenset(
    {"python", "python3", f"python{sys.version_info[0]}.{sys.version_info[1]}"}
)


class KernelSpec(msgspec.Struct, frozen=True, kw_only=True):
    """A kernelspec: how to start a kernel (``kernel.json`` plus where it lives)."""

    name: str
    argv: list[str]
    display_name: str = ""
    language: str = ""
    env: dict[str, str] = {}
    interrupt_mode: Literal["signal", "message"] = "signal"
    metadata: dict[str, Any] = {}
    kernel_protocol_version: str = ""
    resource_dir: str = ""

    def command(self, connection_file: str) -> list[str]:
        """``argv`` with ``{connection_file}``, ``{resource_dir}`` and ``{prefix}``
        filled in, and a bare ``python``/``python3`` replaced by this interpreter."""
        values = {
            "connection_file": connection_file,
            "resource_dir": self.resource_dir,
            "prefix": sys.prefix,
        }
        argv = [_fill(arg, values) for arg in self.argv]
        if argv and argv[0] in _PYTHON_NAMES:
            argv[0] = sys.executable
        return argv


def _fill(arg: str, values: dict[str, str]) -> str:
    for key, value in values.items():
        arg = arg.replace("{" + key + "}", value)
    return arg


def kernel_dirs() -> list[Path]:
    """The directories searched for kernelspecs, in priority order."""
    dirs = [Path(p) for p in jupyter_path("kernels")]
    dirs.append(Path.home() / ".ipython" / "kernels")
    return dirs


def find_kernelspecs() -> dict[str, Path]:
    """Every installed kernel name and its resource directory (first one wins)."""
    found: dict[str, Path] = {}
    for base in kernel_dirs():
        try:
            entries = sorted(os.scandir(base), key=lambda e: e.name)
        except OSError:
            continue
        for entry in entries:
            name = entry.name.lower()
            if name in found or not _NAME.match(name):
                continue
            if os.path.isfile(os.path.join(entry.path, "kernel.json")):
                found[name] = Path(entry.path)
    if "python3" not in found and _ipykernel_available():
        found["python3"] = Path("")
    return found


def _ipykernel_available() -> bool:
    from importlib.util import find_spec

    return find_spec("ipykernel") is not None


def _fallback_python3() -> KernelSpec:
    return KernelSpec(
        name="python3",
        argv=[sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        display_name="Python 3 (ipykernel)",
        language="python",
        metadata={"debugger": True},
    )


def get_kernelspec(name: str = "python3") -> KernelSpec:
    """The kernelspec called ``name``.

    Raises:
        NoSuchKernel: no kernel of that name is installed (the error lists the
            names that are).
        KernelStartError: its ``kernel.json`` is unreadable or invalid.
    """
    from .._exceptions import KernelStartError

    specs = find_kernelspecs()
    key = name.lower()
    if key not in specs:
        raise NoSuchKernel(name, list(specs))
    resource_dir = specs[key]
    if resource_dir == Path(""):
        return _fallback_python3()
    path = resource_dir / "kernel.json"
    try:
        raw = msgspec.json.decode(path.read_bytes())
        if not isinstance(raw, dict):
            raise msgspec.ValidationError("expected a JSON object")
        raw.update(name=key, resource_dir=str(resource_dir))
        return msgspec.convert(raw, KernelSpec)
    except (OSError, msgspec.DecodeError, UnicodeDecodeError, RecursionError) as e:
        raise KernelStartError(f"invalid kernelspec {path}: {e}") from None
