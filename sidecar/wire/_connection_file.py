"""Connection files: where a kernel listens and the key it signs with.

Reading is strict about the fields a client needs (ports, transport, key) and
lenient about everything else: keys sidecar does not know are kept in
:attr:`ConnectionInfo.extra` and written back, so a file passes through us
unchanged.  Writing creates the file with mode 0600 before any secret is in it.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Final, Literal

import msgspec

from .._exceptions import ConnectionFileError

__all__ = ["ConnectionInfo", "read_connection_file", "write_connection_file"]

CHANNELS: Final = ("shell", "iopub", "stdin", "control", "hb")


class ConnectionInfo(msgspec.Struct, kw_only=True, frozen=True):
    """The contents of a kernel connection file.

    For ``transport="ipc"``, ``ip`` is a filesystem path prefix and each
    "port" is a suffix: the shell endpoint is ``ipc://{ip}-{shell_port}``.
    """

    shell_port: int
    iopub_port: int
    stdin_port: int
    control_port: int
    hb_port: int
    ip: str = "127.0.0.1"
    transport: Literal["tcp", "ipc"] = "tcp"
    key: str = ""
    signature_scheme: str = "hmac-sha256"
    kernel_name: str = ""
    # CurveZMQ keypair (Z85 text) of a kernel that requires encrypted TCP.
    curve_publickey: str | None = None
    curve_secretkey: str | None = None
    extra: dict[str, Any] = {}

    def endpoint(self, channel: str) -> str:
        """The ZeroMQ address of ``channel`` (shell, iopub, stdin, control or hb)."""
        if channel not in CHANNELS:
            raise ValueError(f"unknown channel {channel!r}; expected one of {CHANNELS}")
        port: int = getattr(self, f"{channel}_port")
        if self.transport == "ipc":
            return f"ipc://{self.ip}-{port}"
        host = f"[{self.ip}]" if ":" in self.ip else self.ip
        return f"tcp://{host}:{port}"

    def to_dict(self) -> dict[str, Any]:
        """The connection file's JSON object, unknown keys included."""
        out = dict(self.extra)
        for name in self.__struct_fields__:
            if name == "extra":
                continue
            value = getattr(self, name)
            if value is not None:
                out[name] = value
        return out


_KNOWN: Final = frozenset(ConnectionInfo.__struct_fields__) - {"extra"}


def _parse(data: bytes | str, source: str) -> ConnectionInfo:
    try:
        raw = msgspec.json.decode(data)
    except (msgspec.DecodeError, UnicodeDecodeError, RecursionError) as e:
        raise ConnectionFileError(f"{source}: not valid JSON ({e})") from None
    if not isinstance(raw, dict):
        raise ConnectionFileError(f"{source}: expected a JSON object, got {type(raw).__name__}")
    known = {k: v for k, v in raw.items() if k in _KNOWN}
    extra = {k: v for k, v in raw.items() if k not in _KNOWN}
    try:
        info = msgspec.convert(known, ConnectionInfo)
    except msgspec.ValidationError as e:
        # msgspec says e.g. "Object missing required field `hb_port`" or
        # "Expected `int`, got `str` - at `$.shell_port`".
        raise ConnectionFileError(f"{source}: {e}") from None
    if extra:
        info = msgspec.structs.replace(info, extra=extra)
    return info


def read_connection_file(source: str | os.PathLike[str] | bytes) -> ConnectionInfo:
    """Read a connection file from a path, or parse its bytes.

    Raises:
        ConnectionFileError: the file is missing or unreadable, is not a JSON
            object, or a field is missing or of the wrong type (named in the
            message along with the file).
    """
    if isinstance(source, bytes):
        return _parse(source, "connection info")
    path = Path(source)
    try:
        data = path.read_bytes()
    except OSError as e:
        raise ConnectionFileError(f"{path}: cannot read connection file ({e.strerror})") from None
    return _parse(data, str(path))


def write_connection_file(info: ConnectionInfo, path: str | os.PathLike[str]) -> Path:
    """Write ``info`` to ``path`` with mode 0600, refusing to overwrite.

    The file is created owner-only before the key is written, so the key is
    never readable by others, not even for a moment.

    Raises:
        FileExistsError: ``path`` already exists.
    """
    path = Path(path)
    data = msgspec.json.format(msgspec.json.encode(info.to_dict()), indent=2)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    return path
