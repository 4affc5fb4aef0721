"""sidecar: a Jupyter kernel client on pyzmq and anyio, for asyncio and trio alike."""

from ._exceptions import (
    ConnectionFileError as ConnectionFileError,
    ExecutionError as ExecutionError,
    InvalidSignature as InvalidSignature,
    KernelDied as KernelDied,
    KernelError as KernelError,
    KernelRestarted as KernelRestarted,
    KernelStartError as KernelStartError,
    MalformedMessage as MalformedMessage,
    NoSuchKernel as NoSuchKernel,
    ReplayedMessage as ReplayedMessage,
    SidecarError as SidecarError,
    WireError as WireError,
)
from ._version import __version__ as __version__

__all__ = [
    "ConnectionFileError",
    "ExecutionError",
    "InvalidSignature",
    "KernelDied",
    "KernelError",
    "KernelRestarted",
    "KernelStartError",
    "MalformedMessage",
    "NoSuchKernel",
    "ReplayedMessage",
    "SidecarError",
    "WireError",
    "__version__",
]
