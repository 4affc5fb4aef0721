"""The websocket transport: a kernel's channels through a Jupyter Server.

A Jupyter Server (Kernel Gateway, Enterprise Gateway) relays all four
channels of a kernel over one websocket, ``/api/kernels/{id}/channels``; it
signs and verifies for us, so our session has no key.  The websocket protocol
is wsproto's (sans-IO) under our own anyio stream: one receive loop reads the
socket and calls the :class:`~sidecar.transport.Receiver`, one writer task
writes, and nothing else touches the stream.

What it does beyond moving messages:

- **Framing.**  It asks for the v1 binary subprotocol
  (:data:`~sidecar.wire.WS_V1_SUBPROTOCOL`) and falls back to the legacy JSON
  framing when the server does not agree to it (or when asked to).
- **Reconnecting.**  A dropped connection (closed, reset, or silent for two
  pings) is opened again with the same session id, which is what makes
  jupyter_server replay what it buffered for us meanwhile: no output is lost.
  What is sent while the socket is down waits for the new one.  An answer no
  retry changes (404 or 410: the kernel was deleted or culled; 401 or 403:
  we are refused now) ends the reconnecting: the receiver hears
  ``on_gone``, and the kernel is dead to its requests.
- **Heartbeat.**  There is no heartbeat channel: a websocket ping stands in
  for it, and the receiver hears of each pong and each miss (and of misses
  while the socket cannot be opened again).  The kernel's own liveness comes
  from the server: it publishes ``status: restarting`` and ``dead``.

Invariants: nothing the server sends escapes the receive loop (bad frames
are counted, logged and dropped; a broken connection is reconnected); the
loops are shielded from outer cancellation, so cleanup still gets replies,
and stopped when the transport closes.
"""

from __future__ import annotations

import json
import logging
import socket
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager, suppress
from typing import Any, Final, Literal, final
from urllib.parse import urlencode, urlsplit

import anyio
import anyio.abc
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream
from wsproto import ConnectionType, WSConnection
from wsproto.connection import ConnectionState
from wsproto.events import (
    AcceptConnection,
    BytesMessage,
    CloseConnection,
    Event,
    Ping,
    Pong,
    RejectConnection,
    RejectData,
    Request,
    TextMessage,
)
from wsproto.utilities import LocalProtocolError, RemoteProtocolError

from .._exceptions import JupyterServerError, MalformedMessage, TokenRejected, WireError
from .._task_groups import open_task_group
from ..wire import (
    DELIM,
    WS_V1_SUBPROTOCOL,
    Frame,
    Message,
    Session,
    deserialize_ws_json,
    deserialize_ws_v1,
    serialize_ws_json,
    serialize_ws_v1,
)
from ._base import CHANNELS, Channel, Receiver, TransportStatistics

__all__ = ["Framing", "WebsocketTransport", "open_websocket_transport"]

log = logging.getLogger("sidecar.transport")

Framing = Literal["auto", "v1", "json"]
"""Which websocket framing to use: v1 if the server offers it (``auto``), or one."""

_TCP_QUICKACK: Final[int | None] = getattr(socket, "TCP_QUICKACK", None)
_OUTBOX_SIZE: Final = 10_000
_READ_SIZE: Final = 65_536
_RECONNECT_DELAY_MIN: Final = 0.05
_RECONNECT_DELAY_MAX: Final = 2.0
# Answers to a reconnect that no retry will change: the kernel was deleted
# or culled (404, 410), or the server refuses us now (401, 403).
_FINAL_STATUSES: Final = frozenset({401, 403, 404, 410})
# Two pings without a pong: the connection is dead, open another.
_MISSES_TO_RECONNECT: Final = 2
_BROKEN: Final = (
    anyio.BrokenResourceError,
    anyio.ClosedResourceError,
    anyio.EndOfStream,
    OSError,
    LocalProtocolError,
)


@final
class _Connection:
    """One open websocket: its stream, its wsproto state, what arrived half-way."""

    def __init__(
        self, stream: anyio.abc.ByteStream, ws: WSConnection, subprotocol: str | None
    ) -> None:
        self.stream = stream
        self.ws = ws
        self.v1 = subprotocol == WS_V1_SUBPROTOCOL
        self.scope = anyio.CancelScope()
        self.leftover: list[Event] = []
        self.fragments: list[bytes | bytearray | str] = []
        self.pong = anyio.Event()
        self.closed = False
        # When bytes last came in or went out, and whether a write is under
        # way: a connection that moves a large message is alive, though its
        # pong waits behind the message.
        self.heard = anyio.current_time()
        self.writing = False
        # A socket.socket on trio, asyncio's TransportSocket wrapper on asyncio.
        self._socket: Any = None
        if _TCP_QUICKACK is not None:
            raw = stream.extra(anyio.abc.SocketAttribute.raw_socket, None)
            if raw is not None and getattr(raw, "family", None) in (
                socket.AF_INET,
                socket.AF_INET6,
            ):
                self._socket = raw

    def ack_now(self) -> None:
        """Acknowledge what arrived at once (Linux ``TCP_QUICKACK``, which the
        kernel turns off again by itself).

        Servers write small messages without ``TCP_NODELAY`` (tornado's
        websockets, so jupyter_server): ``status: busy`` goes out, and the
        reply behind it waits for our ACK, which Linux delays by up to 40 ms.
        """
        sock = self._socket
        if sock is not None:
            with suppress(OSError):
                sock.setsockopt(socket.IPPROTO_TCP, _TCP_QUICKACK, 1)

    def drop(self) -> None:
        """Stop using this connection: its receive loop ends and reconnects."""
        self.closed = True
        self.scope.cancel()


_Item = tuple[_Connection | None, Event | tuple[Channel, list[Frame]]]
"""What the writer writes: a control event for one connection (a pong, a
ping, a close), or a message (channel and parts) for whichever is open."""


@final
class WebsocketTransport:
    """The channels of one kernel through a Jupyter Server's websocket.

    Made by :func:`open_websocket_transport`.
    """

    def __init__(
        self,
        url: str,
        session: Session,
        receiver: Receiver,
        *,
        headers: Sequence[tuple[str, str]] = (),
        ssl_context: ssl.SSLContext | None = None,
        framing: Framing = "auto",
        connect_timeout: float = 30.0,
    ) -> None:
        parts = urlsplit(url)
        scheme = {"http": "ws", "https": "wss"}.get(parts.scheme, parts.scheme)
        if scheme not in ("ws", "wss") or not parts.hostname:
            raise ValueError(f"not a websocket or http URL: {url!r}")
        self.url: Final = parts._replace(scheme=scheme, query="").geturl()
        self._host = parts.hostname
        self._port = parts.port or (443 if scheme == "wss" else 80)
        self._host_header = parts.netloc.rsplit("@", 1)[-1]
        query = urlencode({"session_id": session.session_id})
        self._target = f"{parts.path or '/'}?{parts.query + '&' if parts.query else ''}{query}"
        self._headers = [(k.encode(), v.encode()) for k, v in headers]
        if scheme == "wss" and ssl_context is None:
            ssl_context = ssl.create_default_context()
        self._ssl = ssl_context if scheme == "wss" else None
        self._framing = framing
        self._connect_timeout = connect_timeout
        self._session = session
        self._receiver = receiver
        self._conn: _Connection | None = None
        self._connected = anyio.Event()
        self._closed = False
        self._gone = False
        """The kernel can never be reached again: reconnecting stopped."""
        self._scopes: list[anyio.CancelScope] = []
        self._outbox: MemoryObjectSendStream[_Item]
        self._outbox_out: MemoryObjectReceiveStream[_Item]
        self._outbox, self._outbox_out = anyio.create_memory_object_stream[_Item](_OUTBOX_SIZE)
        self._received = 0
        self._received_bytes = 0
        self._dropped_invalid = 0
        self.reconnects = 0
        """How many times the websocket was opened again after it dropped."""

    @property
    def session(self) -> Session:
        return self._session

    @property
    def framing(self) -> Literal["v1", "json"] | None:
        """The framing of the open websocket (None while none is open)."""
        conn = self._conn
        if conn is None:
            return None
        return "v1" if conn.v1 else "json"

    # -- opening ---------------------------------------------------------------------

    async def _handshake(self) -> _Connection:
        """Open a websocket.

        Raises:
            TokenRejected: the server refused our token.
            JupyterServerError: the server refused the websocket or cannot be
                reached.
        """
        try:
            with anyio.fail_after(self._connect_timeout):
                if self._ssl is not None:
                    stream: anyio.abc.ByteStream = await anyio.connect_tcp(
                        self._host,
                        self._port,
                        ssl_context=self._ssl,
                        tls_hostname=self._host,
                        tls_standard_compatible=False,
                    )
                else:
                    stream = await anyio.connect_tcp(self._host, self._port)
                try:
                    return await self._upgrade(stream)
                except BaseException:
                    await anyio.aclose_forcefully(stream)
                    raise
        except (OSError, TimeoutError, anyio.BrokenResourceError, anyio.EndOfStream) as e:
            raise JupyterServerError(
                f"cannot open the websocket {self.url}: {e or type(e).__name__}", url=self.url
            ) from e
        except RemoteProtocolError as e:
            raise JupyterServerError(
                f"{self.url} did not answer as a websocket server: {e}", url=self.url
            ) from e

    async def _upgrade(self, stream: anyio.abc.ByteStream) -> _Connection:
        ws = WSConnection(ConnectionType.CLIENT)
        protocols = [] if self._framing == "json" else [WS_V1_SUBPROTOCOL]
        request = Request(
            host=self._host_header,
            target=self._target,
            subprotocols=protocols,
            extra_headers=self._headers,
        )
        await stream.send(ws.send(request))
        rejected: RejectConnection | None = None
        body: list[bytes] = []
        while True:
            ws.receive_data(await stream.receive(_READ_SIZE))
            events = ws.events()
            for event in events:
                if isinstance(event, AcceptConnection):
                    if self._framing == "v1" and event.subprotocol != WS_V1_SUBPROTOCOL:
                        raise JupyterServerError(
                            f"{self.url} does not offer the {WS_V1_SUBPROTOCOL} subprotocol",
                            url=self.url,
                        )
                    conn = _Connection(stream, ws, event.subprotocol)
                    conn.leftover = list(events)
                    return conn
                if isinstance(event, RejectConnection):
                    rejected = event
                    if not event.has_body:
                        raise _refused(self.url, event.status_code, "")
                elif isinstance(event, RejectData):
                    body.append(event.data)
                    if event.body_finished and rejected is not None:
                        raise _refused(self.url, rejected.status_code, b"".join(body).decode())

    async def _reconnect(self) -> _Connection | None:
        """Open the websocket again, same session id, until it opens or we close."""
        delay = _RECONNECT_DELAY_MIN
        while not self._closed:
            try:
                conn = await self._handshake()
            except JupyterServerError as e:
                if e.status in _FINAL_STATUSES:
                    why = "we are refused" if e.status in (401, 403) else "the kernel is gone"
                    self._give_up(f"{e}; {why}, not reconnecting")
                    return None
                log.warning("reconnecting to %s: %s", self.url, e)
            else:
                self.reconnects += 1
                log.info("reconnected to %s", self.url)
                return conn
            await anyio.sleep(delay)
            delay = min(delay * 2, _RECONNECT_DELAY_MAX)
        return None

    def _give_up(self, reason: str) -> None:
        log.error("%s", reason)
        self._gone = True
        self._connected.set()  # nobody waits for a connection that will not come
        self._receiver.on_gone(reason)

    def _use(self, conn: _Connection) -> None:
        self._conn = conn
        self._connected.set()

    # -- the loops ---------------------------------------------------------------------

    def _start(self, tg: anyio.abc.TaskGroup, heartbeat_interval: float | None) -> None:
        tg.start_soon(self._shielded, self._receive_loop, name="sidecar websocket")
        tg.start_soon(self._shielded, self._write_loop, name="sidecar websocket writer")
        if heartbeat_interval is not None:
            tg.start_soon(self._heartbeat, heartbeat_interval, name="sidecar websocket ping")

    async def _shielded(self, loop: Callable[[], Awaitable[None]]) -> None:
        # Shielded: when a scope around the whole block is cancelled, cleanup
        # (interrupting a cancelled execute) still needs the socket.  The
        # loops stop when the transport closes (_close cancels these scopes).
        with anyio.CancelScope(shield=True) as scope:
            self._scopes.append(scope)
            if self._closed:
                return
            await loop()

    async def _receive_loop(self) -> None:
        conn = self._conn
        while conn is not None:
            await self._receive(conn)
            if self._closed:
                return
            self._connected = anyio.Event()
            log.warning("the websocket to %s dropped; reconnecting", self.url)
            conn = await self._reconnect()
            if conn is not None:
                self._use(conn)

    async def _receive(self, conn: _Connection) -> None:
        """Read ``conn`` until it closes, breaks, or is dropped."""
        try:
            with conn.scope:
                for event in conn.leftover:
                    self._on_event(conn, event)
                conn.leftover = []
                ws, stream = conn.ws, conn.stream
                while not conn.closed:
                    try:
                        data: bytes | None = await stream.receive(_READ_SIZE)
                    except _BROKEN:
                        data = None
                    else:
                        conn.ack_now()
                        conn.heard = anyio.current_time()
                    try:
                        ws.receive_data(data)
                        for event in ws.events():
                            self._on_event(conn, event)
                    except RemoteProtocolError as e:
                        log.warning("the websocket to %s broke the protocol: %s", self.url, e)
                        return
                    if data is None:
                        return
        finally:
            conn.closed = True
            with anyio.CancelScope(shield=True):
                await anyio.aclose_forcefully(conn.stream)

    def _on_event(self, conn: _Connection, event: Event) -> None:
        if isinstance(event, BytesMessage | TextMessage):
            if not event.message_finished:
                conn.fragments.append(event.data)
                return
            data: bytes | bytearray | str = event.data
            if conn.fragments:
                conn.fragments.append(data)
                if isinstance(data, str):
                    data = "".join(str(f) for f in conn.fragments)
                else:
                    data = b"".join(f for f in conn.fragments if not isinstance(f, str))
                conn.fragments = []
            self._on_payload(conn, data)
        elif isinstance(event, Ping):
            self._control(conn, event.response())
        elif isinstance(event, Pong):
            conn.pong.set()
        elif isinstance(event, CloseConnection):
            log.info("%s closed the websocket (%s %s)", self.url, event.code, event.reason or "")
            if conn.ws.state is ConnectionState.REMOTE_CLOSING:
                self._control(conn, event.response())
            conn.closed = True

    def _on_payload(self, conn: _Connection, data: bytes | bytearray | str) -> None:
        self._received += 1
        self._received_bytes += len(data)
        channel: str | None = None
        try:
            if conn.v1:
                if isinstance(data, str):
                    raise MalformedMessage("a text message on a v1 websocket")
                channel, parts = deserialize_ws_v1(data)
                frames: list[Frame] = [DELIM, b"", *parts]
            else:
                channel, json_parts = deserialize_ws_json(data)
                frames = [DELIM, b"", *json_parts]
            if channel not in CHANNELS:
                raise MalformedMessage(f"a message on no known channel ({channel!r})")
            message = self._session.deserialize(frames)
        except WireError as e:
            self._dropped_invalid += 1
            log.warning("dropped an invalid websocket message from %s: %s", self.url, e)
            self._receiver.on_invalid(_channel(channel), e)
            return
        self._receiver.on_message(_channel(channel), message)

    def _control(self, conn: _Connection, event: Event) -> None:
        """Queue a control frame; dropped if the writer is that far behind."""
        with suppress(anyio.WouldBlock, anyio.ClosedResourceError):
            self._outbox.send_nowait((conn, event))

    async def _write_loop(self) -> None:
        async for conn, what in self._outbox_out:
            if conn is not None:
                if not conn.closed or isinstance(what, CloseConnection):
                    await self._write(conn, what)
                continue
            while not self._closed and not self._gone:  # once gone, dropped
                current = self._conn
                if current is None or current.closed:
                    await self._wait_reconnected(current)
                    continue
                if await self._write(current, what):
                    break

    async def _wait_reconnected(self, conn: _Connection | None) -> None:
        while self._conn is conn and not self._closed and not self._gone:
            await self._connected.wait()
            if self._conn is conn:
                await anyio.sleep(_RECONNECT_DELAY_MIN)

    async def _write(self, conn: _Connection, what: Event | tuple[Channel, list[Frame]]) -> bool:
        """Write to ``conn``; False if it broke (it is dropped, and reconnects)."""
        try:
            if isinstance(what, Event):
                data = conn.ws.send(what)
            else:
                channel, parts = what
                if conn.v1:
                    data = conn.ws.send(BytesMessage(data=serialize_ws_v1(channel, parts)))
                else:
                    payload = serialize_ws_json(channel, parts)
                    event = (
                        TextMessage(data=payload)
                        if isinstance(payload, str)
                        else BytesMessage(data=payload)
                    )
                    data = conn.ws.send(event)
            conn.writing = True
            try:
                await conn.stream.send(data)
            finally:
                conn.writing = False
            conn.heard = anyio.current_time()
        except _BROKEN as e:
            if not conn.closed:
                log.warning("writing to the websocket %s failed: %s", self.url, e)
                conn.drop()
            return False
        return True

    async def _heartbeat(self, interval: float) -> None:
        """Ping every ``interval`` s; tell the receiver each pong and each miss."""
        receiver = self._receiver
        misses = 0
        while not self._closed and not self._gone:
            conn = self._conn
            started = anyio.current_time()
            if conn is None or conn.closed:
                with anyio.move_on_after(interval):
                    await self._wait_reconnected(conn)
                    continue
                receiver.on_heartbeat(False, interval)
                continue
            conn.pong = pong = anyio.Event()
            self._control(conn, Ping(payload=b"sidecar"))
            with anyio.move_on_after(interval):
                await pong.wait()
            if pong.is_set() or conn.writing or conn.heard > started:
                # No pong yet but bytes moving: a large message is under way
                # (the ping waits behind it, or the pong does).
                misses = 0
                receiver.on_heartbeat(True, anyio.current_time() - started)
                # Outside the scope above: a sleep ending with it would let the
                # deadline win on trio and report the pong as a miss.
                await anyio.sleep(max(0.0, interval - (anyio.current_time() - started)))
                continue
            misses += 1
            receiver.on_heartbeat(False, interval)
            if misses >= _MISSES_TO_RECONNECT and conn is self._conn:
                log.warning("no pong from %s for %.1f s; reconnecting", self.url, misses * interval)
                conn.drop()
                misses = 0

    # -- the Transport protocol ----------------------------------------------------------

    async def send(self, channel: Channel, message: Message) -> None:
        await self._outbox.send((None, (channel, self._parts(message))))

    def send_nowait(self, channel: Channel, message: Message) -> None:
        self._outbox.send_nowait((None, (channel, self._parts(message))))

    def _parts(self, message: Message) -> list[Frame]:
        # The frames after the delimiter and the (empty) signature.
        return self._session.serialize(message)[2:]

    async def wait_connected(self) -> None:
        while not self._connected.is_set():
            await self._connected.wait()

    def expect_new_kernel(self) -> None:
        # The server connects to the new kernel itself.
        pass

    def statistics(self) -> TransportStatistics:
        return TransportStatistics(
            received=self._received,
            received_bytes=self._received_bytes,
            dropped_invalid=self._dropped_invalid,
            dropped_oversized=0,
        )

    def describe(self, channel: Channel) -> str:
        return f"{self.url} ({channel})"

    def drop_connection(self) -> None:
        """Drop the open websocket as if the network had: it reconnects.  For tests."""
        if self._conn is not None:
            self._conn.drop()

    def _close(self) -> None:
        self._closed = True
        self._outbox.close()
        for scope in self._scopes:
            scope.cancel()
        if self._conn is not None:
            self._conn.drop()


def _channel(name: str | None) -> Channel:
    return name if name in CHANNELS else "iopub"


def _refused(url: str, status: int, body: str) -> JupyterServerError:
    detail = _detail(body)
    if status in (401, 403):
        return TokenRejected(
            f"{url} refused our token (HTTP {status}){': ' + detail if detail else ''}",
            url=url,
            status=status,
        )
    return JupyterServerError(
        f"{url} refused the websocket (HTTP {status}){': ' + detail if detail else ''}",
        url=url,
        status=status,
    )


def _detail(body: str) -> str:
    """What a refusal's body says, in a line: a server's JSON ``message``, a
    short text, or nothing for an HTML error page (no sentence in it)."""
    text = body.strip()
    if text.startswith("<"):
        return ""
    try:
        parsed = json.loads(text)
    except ValueError:
        return text[:300]
    if isinstance(parsed, dict):
        return str(parsed.get("message") or parsed.get("reason") or parsed)[:300]
    return text[:300]


@asynccontextmanager
async def open_websocket_transport(
    url: str,
    receiver: Receiver,
    *,
    session: Session | None = None,
    headers: Sequence[tuple[str, str]] = (),
    ssl_context: ssl.SSLContext | None = None,
    framing: Framing = "auto",
    heartbeat_interval: float | None = 5.0,
    connect_timeout: float = 30.0,
) -> AsyncIterator[WebsocketTransport]:
    """Open the websocket of a kernel at ``url``, delivering to ``receiver``.

    Args:
        url: ``ws(s)://`` or ``http(s)://`` URL of ``/api/kernels/{id}/channels``.
        session: the wire session (unsigned: the server signs); a new one
            by default.  Its id is the websocket's ``session_id``.
        headers: sent with the upgrade request (``Authorization``...).
        ssl_context: for ``wss://``; the system's defaults if None.
        framing: ``auto`` (v1 if the server offers it, else JSON), ``v1``
            or ``json``.
        heartbeat_interval: seconds between websocket pings; None for none.
        connect_timeout: seconds each attempt to open the websocket gets.

    Raises:
        TokenRejected: the server refused our token.
        JupyterServerError: the websocket could not be opened.
    """
    transport = WebsocketTransport(
        url,
        session or Session(),
        receiver,
        headers=headers,
        ssl_context=ssl_context,
        framing=framing,
        connect_timeout=connect_timeout,
    )
    try:
        transport._use(await transport._handshake())
        async with open_task_group() as tg:
            transport._start(tg, heartbeat_interval)
            try:
                yield transport
            finally:
                transport._close()
                tg.cancel_scope.cancel()
    finally:
        transport._close()
        transport._outbox_out.close()
        if transport._conn is not None:
            with anyio.CancelScope(shield=True):
                await anyio.aclose_forcefully(transport._conn.stream)
