"""The transport layer: what moves messages between us and a kernel.

Internal: the public API is what :mod:`sidecar` re-exports.  Only this package
imports zmq and wsproto.
"""

from ._base import (
    CHANNELS as CHANNELS,
    Channel as Channel,
    Receiver as Receiver,
    Transport as Transport,
    TransportStatistics as TransportStatistics,
)
from ._websocket import (
    Framing as Framing,
    WebsocketTransport as WebsocketTransport,
    open_websocket_transport as open_websocket_transport,
)
from ._zmq import (
    ZmqContext as ZmqContext,
    ZmqTransport as ZmqTransport,
    curve_keypair as curve_keypair,
    open_zmq_transport as open_zmq_transport,
)
from ._zmq_server import (
    FrontendReceiver as FrontendReceiver,
    ZmqServer as ZmqServer,
    open_zmq_server as open_zmq_server,
)

__all__ = [
    "CHANNELS",
    "Channel",
    "FrontendReceiver",
    "Receiver",
    "Transport",
    "Framing",
    "TransportStatistics",
    "WebsocketTransport",
    "ZmqContext",
    "ZmqServer",
    "ZmqTransport",
    "curve_keypair",
    "open_websocket_transport",
    "open_zmq_server",
    "open_zmq_transport",
]
