"""sidecar: a Jupyter kernel client on pyzmq and anyio, for asyncio and trio alike."""

from ._client import (
    Handler as Handler,
    Kernel as Kernel,
    StdinCallback as StdinCallback,
    connect as connect,
    launch as launch,
)
from ._comms import Comm as Comm, Comms as Comms, CommTarget as CommTarget
from ._connection import Connection as Connection, Statistics as Statistics
from ._exceptions import (
    ConnectionFileError as ConnectionFileError,
    ExecutionError as ExecutionError,
    HandlerError as HandlerError,
    InvalidSignature as InvalidSignature,
    KernelDied as KernelDied,
    KernelError as KernelError,
    KernelRestarted as KernelRestarted,
    KernelStartError as KernelStartError,
    MalformedMessage as MalformedMessage,
    NoReply as NoReply,
    NoSuchKernel as NoSuchKernel,
    ReplayedMessage as ReplayedMessage,
    SidecarError as SidecarError,
    WireError as WireError,
)
from ._kernelspec import (
    KernelSpec as KernelSpec,
    find_kernelspecs as find_kernelspecs,
    get_kernelspec as get_kernelspec,
)
from ._outputs import Outputs as Outputs, apply_stream_controls as apply_stream_controls
from ._process import KernelProcess as KernelProcess
from ._version import __version__ as __version__

__all__ = [
    "Comm",
    "CommTarget",
    "Comms",
    "Outputs",
    "apply_stream_controls",
    "Connection",
    "ConnectionFileError",
    "ExecutionError",
    "Handler",
    "HandlerError",
    "InvalidSignature",
    "Kernel",
    "KernelDied",
    "KernelError",
    "KernelProcess",
    "KernelRestarted",
    "KernelSpec",
    "KernelStartError",
    "MalformedMessage",
    "NoReply",
    "NoSuchKernel",
    "ReplayedMessage",
    "SidecarError",
    "Statistics",
    "StdinCallback",
    "WireError",
    "__version__",
    "connect",
    "find_kernelspecs",
    "get_kernelspec",
    "launch",
]
