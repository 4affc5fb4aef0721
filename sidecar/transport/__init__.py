"""The transport layer: what moves messages between us and a kernel.

Internal: the public API is what :mod:`sidecar` re-exports.  Only this package
imports zmq.
"""

from ._base import (
    CHANNELS as CHANNELS,
    Channel as Channel,
    Receiver as Receiver,
    Transport as Transport,
    TransportStatistics as TransportStatistics,
)
from ._zmq import (
    ZmqContext as ZmqContext,
    ZmqTransport as ZmqTransport,
    curve_keypair as curve_keypair,
    open_zmq_transport as open_zmq_transport,
)

__all__ = [
    "CHANNELS",
    "Channel",
    "Receiver",
    "Transport",
    "TransportStatistics",
    "ZmqContext",
    "ZmqTransport",
    "curve_keypair",
    "open_zmq_transport",
]
