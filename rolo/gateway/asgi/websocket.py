"""WebSockets under ASGI: the server speaks the protocol, a handler thread runs the application.

For each ``websocket`` scope, :class:`WebSocketApp` has its :class:`~rolo.websocket.host.WebSocketHost`
run the listener (the gateway) in a handler thread, with a
:class:`~rolo.websocket.threaded.ThreadedWebSocketAdapter` in its environment whose I/O side is an
:class:`AsgiConnection`. That connection reads in a task on the event loop, and sends from the loop's callbacks:

- a reader that calls ASGI ``receive`` and reports messages to the adapter. It stops calling ``receive``
  while the adapter's inbox is full, which is how an ASGI application stops reading: the server's own
  bounded queue fills and it stops reading the socket.
- each message the adapter hands over is sent at once, in the callback that hands it over
  (:func:`~rolo.gateway.asgi.eager.run_eagerly`): a server's ``send`` usually only frames and writes it. One
  that the server makes wait, and those behind it, are sent in order by a task. ASGI gives no signal of a
  full transport buffer; awaiting ``send`` is the closest there is, so messages waiting for it count
  against the adapter's write high-water mark, and ``send`` in the handler blocks while they exceed it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterable
from http import HTTPStatus
from sys import getsizeof
from types import CoroutineType
from typing import Any

from rolo.settings import ServerSettings
from rolo.target import InvalidTarget
from rolo.websocket.adapter import BytesMessage, WebSocketListener
from rolo.websocket.frames import Close, CloseCode
from rolo.websocket.handshake import Refusal
from rolo.websocket.host import NO_THREAD, WebSocketHost
from rolo.websocket.threaded import Outgoing, ThreadedWebSocketAdapter
from rolo.websocket.turns import BatchedCalls, HandlerTurns

from .eager import RETURNED, resume, run_eagerly
from .environ import environ_for

__all__ = ["AsgiConnection", "WebSocketApp"]

LOG = logging.getLogger(__name__)


DENIAL_RESPONSE_EXTENSION = "websocket.http.response"
"""The ASGI extension with which an application answers an upgrade request with any HTTP response."""

_EVENT_SIZE = getsizeof({"type": "websocket.send", "text": ""}) + getsizeof((None, 0)) + 8
"""What a send event waiting for the server holds beyond its message's data, in bytes (its dictionary, and
its pair with its size and their place in the queue: about 250): counted with the data, so that the queue
of empty messages is bounded too."""

Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]

_LoopSide = tuple[asyncio.AbstractEventLoop, Callable[[Callable[[], None]], None], HandlerTurns]
"""A loop, how handler threads hand it their calls (a :class:`~rolo.websocket.turns.BatchedCalls`' bound
``__call__``, see there), and how it wakes them: what serves the connections on it."""


def _encode_headers(headers: Iterable[tuple[str, str]]) -> list[tuple[bytes, bytes]]:
    return [(name.encode("latin-1"), value.encode("latin-1")) for name, value in headers]


def denial(scope: dict[str, Any], status: int, headers: Iterable[tuple[str, str]], body: bytes) -> list[dict[str, Any]]:
    """The ASGI messages that answer an upgrade request with this HTTP response.

    Through the denial-response extension when the server offers it; otherwise a plain close before
    accepting, which the server answers with ``403`` and no body.
    """
    if DENIAL_RESPONSE_EXTENSION in (scope.get("extensions") or {}):
        return [
            {"type": "websocket.http.response.start", "status": status, "headers": _encode_headers(headers)},
            {"type": "websocket.http.response.body", "body": body, "more_body": False},
        ]
    return [{"type": "websocket.close", "code": 1000}]


class AsgiConnection:
    """The I/O side of a connection (:class:`~rolo.websocket.threaded.ServerConnection`) over ASGI
    ``receive`` and ``send``. Every method runs on the event loop.

    :param scope: the connection's ASGI scope
    :param write_high_water: bytes waiting for ``send`` above which the adapter holds the handler's sends
        (each message's data and its event's dictionary)
    :param close_timeout: seconds from sending a close to the end of the connection, after which it is
        taken as lost
    """

    # one per open connection, for its life: slots rather than a dictionary, and while idle no
    # asyncio.Event, deque or closure of its own; the full collections a burst sets off walk every one of
    # these objects
    __slots__ = (
        "_answered",
        "_close_timeout",
        "_close_timer",
        "_closing",
        "_outgoing",
        "_outgoing_bytes",
        "_reading",
        "_reading_paused",
        "_receive",
        "_scope",
        "_send",
        "_sending",
        "_sent",
        "_waiter",
        "_write_high_water",
        "_writing_paused",
        "adapter",
        "finished",
        "gone",
        "open_timer",
        "returned",
    )

    adapter: ThreadedWebSocketAdapter

    def __init__(
        self, scope: dict[str, Any], receive: Receive, send: Send, write_high_water: int, close_timeout: float
    ) -> None:
        self._scope = scope
        self._receive = receive
        self._send = send
        self._write_high_water = write_high_water
        self._close_timeout = close_timeout
        self._close_timer: asyncio.TimerHandle | None = None
        # the messages the server has not taken yet, in order: rarely more than the one it makes wait, and
        # at most a few hundred (each counts its event's size), so taking from the front stays cheap
        self._outgoing: list[tuple[dict[str, Any], int]] = []
        self._outgoing_bytes = 0
        self._writing_paused = False
        self._sending: asyncio.Task[None] | None = None  # finishes a send the server made wait
        self._reading_paused = False
        self._reading: asyncio.Event | None = None  # what a paused reader waits on, made the first time
        self._answered = False  # accept, reject or close was asked for
        self._closing = False
        self._sent: Close | None = None  # the close the application sent
        self._waiter: asyncio.Future[None] | None = None  # what changed() handed out
        self.gone = False
        self.open_timer: asyncio.TimerHandle | None = None
        """What gives up on the opening if the handler takes too long to answer; cancelled once it has."""
        self.returned = False
        """Whether the handler has returned (:meth:`handler_returned`)."""
        self.finished = False
        """Whether the last message (a close or a denial response) is out, or the connection is gone."""

    # -- ServerConnection --------------------------------------------------------------------------

    def accept(self, subprotocol: str | None, headers: list[tuple[str, str]]) -> None:
        if self._answered:
            return  # given up on while the handler decided; the adapter knows already
        self._answer()
        self._queue({"type": "websocket.accept", "subprotocol": subprotocol, "headers": _encode_headers(headers)})

    def reject(self, status: int, headers: list[tuple[str, str]], body: bytes) -> None:
        if self._answered:
            return
        self._answer()
        self._closing = True
        for message in denial(self._scope, status, headers, body):
            self._queue(message)
        LOG.info("WebSocket rejected %s: %s", self._scope.get("path"), status)

    def send(self, messages: list[Outgoing]) -> None:
        if self._closing or self.gone:
            return
        for message in messages:
            data = message if isinstance(message, str) else message.data  # a str is a text message's text
            event: dict[str, Any]
            if isinstance(data, str):
                event = {"type": "websocket.send", "text": data}
            else:
                event = {"type": "websocket.send", "bytes": data}
            if self._outgoing:  # behind one the server makes wait (a task is sending it)
                self._queue(event, len(data) + _EVENT_SIZE)
                self._pause_writing_if_full()
                continue
            # nothing ahead of it: sent at once, without the queue's bookkeeping (what _send_queued does),
            # and run_eagerly's step taken here, a call fewer per message
            try:
                sending = self._send(event)
                if type(sending) is CoroutineType:
                    waiting = next(sending.__await__(), RETURNED)
                    if waiting is RETURNED:
                        continue
                    rest: Awaitable[None] | None = resume(sending, waiting)
                else:
                    rest = run_eagerly(sending)  # not a native coroutine
            except Exception as error:
                self._send_failed(error)
                return
            if rest is None:
                continue
            size = len(data) + _EVENT_SIZE
            self._outgoing.append((event, size))
            self._outgoing_bytes += size
            self._sending = asyncio.ensure_future(self._finish_sending(rest))
            self._pause_writing_if_full()

    def close(self, code: int, reason: str | None) -> None:
        if self._closing or self.gone:
            return
        if not self._answered:
            self.give_up_opening()  # never accepted: refuse it at once
            return
        self._closing = True
        self._sent = Close(int(code), reason or "")
        self._queue({"type": "websocket.close", "code": int(code), "reason": reason or ""})
        # read on whatever the inbox holds: the peer's close reply is behind its last messages
        self.resume_reading()

    def drop(self) -> None:
        # the ASGI server's connection ends once the handler has returned and __call__ with it
        self.lost()

    def pause_reading(self) -> None:
        if not self._closing:
            self._reading_paused = True
            if self._reading is None:
                self._reading = asyncio.Event()
            self._reading.clear()

    def resume_reading(self) -> None:
        self._reading_paused = False
        if self._reading is not None:
            self._reading.set()

    # -- loop side ---------------------------------------------------------------------------------

    def _answer(self) -> None:
        """The handler accepted or rejected the connection, or it is given up on: no more timer for that."""
        self._answered = True
        if self.open_timer is not None:
            self.open_timer.cancel()
            self.open_timer = None

    def give_up_opening(self) -> None:
        """Refuse the connection before the handler accepted or rejected it (it took too long, or the
        server shuts down), and tell the adapter."""
        if not self._answered:
            self._answer()
            self._closing = True
            self._queue({"type": "websocket.close", "code": 1000})
            self.adapter.on_close(None)

    async def read(self) -> None:
        """Report what the server receives to the adapter until the connection ends."""
        # the adapter rather than its bound method: that would be one more object for the connection's life
        receive, adapter = self._receive, self.adapter
        while True:
            if self._reading_paused and self._reading is not None:
                await self._reading.wait()
            message = await receive()
            # a text message's event is the only one with text: looked for first, the commonest is known
            # without reading its type. Once the application sent its close, reading goes on, whatever the
            # inbox holds, only to find the peer's close (RFC 6455, 5.5.1): the messages before it are
            # dropped, as TwistedGateway drops them, or a peer that keeps sending would grow the inbox
            # until the close timeout
            text = message.get("text")
            if text is not None:
                if not self._closing:
                    adapter.on_message(text)  # handed over as it is: no TextMessage made only to be unwrapped
            else:
                kind = message["type"]
                if kind == "websocket.receive":
                    if not self._closing:
                        adapter.on_message(BytesMessage(message.get("bytes") or b""))
                elif kind == "websocket.disconnect":
                    self.lost(message.get("code"), message.get("reason") or None)
                    return
            # not held while the next is awaited: once its handler has taken it, a message (up to
            # max_message_size bytes) is gone, and its event does not outlive the burst it came in
            del message, text

    def _queue(self, message: dict[str, Any], size: int = 0) -> None:
        self._outgoing.append((message, size))
        self._outgoing_bytes += size
        if self._sending is None:
            self._send_queued()

    def _pause_writing_if_full(self) -> None:
        """Hold the handler's sends while the messages waiting for the server exceed the high-water mark."""
        if self._outgoing_bytes > self._write_high_water and not self._writing_paused:
            self._writing_paused = True
            self.adapter.on_pause_writing()

    def _send_queued(self) -> None:
        """Send the queued messages in order, each at once, until one has to wait: a task finishes that
        one, then sends on."""
        outgoing = self._outgoing
        while outgoing and not self.finished:
            try:
                rest = run_eagerly(self._send(outgoing[0][0]))
            except Exception as error:
                self._send_failed(error)
                return
            if rest is not None:
                self._sending = asyncio.ensure_future(self._finish_sending(rest))
                return
            self._first_sent()

    async def _finish_sending(self, rest: Awaitable[None]) -> None:
        try:
            await rest
        except Exception as error:
            self._sending = None
            self._send_failed(error)
            return
        self._sending = None
        self._first_sent()
        self._send_queued()

    def _send_failed(self, error: Exception) -> None:
        if not isinstance(error, (OSError, RuntimeError)):
            LOG.error("ASGI send failed for WebSocket %s", self._scope.get("path"), exc_info=error)
        # the server refuses to send (uvicorn raises once the client is gone): the connection is over
        self.lost()

    def _first_sent(self) -> None:
        """The first queued message is out."""
        message, size = self._outgoing.pop(0)
        self._outgoing_bytes -= size
        if self._writing_paused and self._outgoing_bytes <= self._write_high_water // 2:
            self._writing_paused = False
            self.adapter.on_resume_writing()
        kind = message["type"]
        if kind == "websocket.accept":
            self.adapter.on_open()
        elif kind in ("websocket.close", "websocket.http.response.body"):
            if kind == "websocket.close" and not self.gone:
                # some servers wait for the peer's close reply forever: give up on it after a while
                self._close_timer = asyncio.get_running_loop().call_later(self._close_timeout, self.lost)
            self._finish()

    def lost(self, code: int | None = None, reason: str | None = None) -> None:
        """The connection is over: with the close code the server reported, or lost (``None``)."""
        if self._close_timer is not None:
            self._close_timer.cancel()
        if self._sending is not None:
            self._sending.cancel()
            self._sending = None
        self.gone = True
        self._outgoing.clear()
        self._outgoing_bytes = 0
        # ASGI servers report a connection that ended without a close frame as 1006 (uvicorn: 1005)
        received = Close(code, reason or "") if code is not None and code != CloseCode.ABNORMAL_CLOSURE else None
        closed_by = "server" if self._sent is not None else "peer" if received is not None else None
        self.adapter.on_close(received, self._sent, closed_by)
        self._finish()

    def _finish(self) -> None:
        self.finished = True
        self._wake()

    def handler_returned(self) -> None:
        """The handler returned (the host's ``on_finished``)."""
        self.returned = True
        self._wake()

    def _wake(self) -> None:
        waiter, self._waiter = self._waiter, None
        if waiter is not None and not waiter.done():  # done: cancelled with the task that awaited it
            waiter.set_result(None)

    async def wait_finished(self) -> None:
        """Return once :attr:`finished`."""
        while not self.finished:
            await self.changed()

    def changed(self) -> asyncio.Future[None]:
        """A future done once :attr:`returned` or :attr:`finished` may have changed (a plain future
        rather than a coroutine: what the application's task awaits for the life of the connection). One
        awaiter at a time: each call replaces the future the last one handed out."""
        waiter = self._waiter = asyncio.get_running_loop().create_future()
        return waiter


class WebSocketApp:
    """Serves ASGI ``websocket`` scopes: each connection's listener runs in a handler thread of
    :attr:`host`.

    Nothing here touches an event loop before the server calls it: a connection's handler hands work to
    the loop that serves it. Handlers are woken at the end of the loop's turn (with more than one
    connection open, of the turn after), which waits for them, and their calls reach the loop in batches
    (:mod:`rolo.websocket.turns`). What does that for a loop is made with its first connection, and made
    anew for a connection on another loop: a server stopped and started again in the same process (a new
    loop) is served as the first was.

    :param listener: called in a handler thread with each upgrade request's environment
    :param settings: the server's settings
    :ivar host: the :class:`~rolo.websocket.host.WebSocketHost` of the server's connections
    """

    def __init__(self, listener: WebSocketListener, settings: ServerSettings) -> None:
        self.settings = settings
        self.host = WebSocketHost(listener, settings)
        # the loop of the last connection, and how handler threads hand it their calls and how it wakes
        # them: one triple, read and replaced at once
        self._loop_side: _LoopSide | None = None

    def _serve_on(self, loop: asyncio.AbstractEventLoop) -> _LoopSide:
        """What hands the handlers' calls to ``loop`` and wakes them from it (the first connection on it)."""
        connections = self.host.connections

        def call_soon(call: Callable[[], None]) -> None:
            if len(connections) > 1:
                # a message reaches its reader two turns of the loop after its bytes: the server's task reads
                # and parses them, then the reader's task takes the message. Readers of connections that were
                # readable in successive turns therefore wake in successive turns; one turn more lets a turn
                # of handlers take those in, rather than each paying for a turn of its own
                loop.call_soon(loop.call_soon, call)
            else:
                loop.call_soon(call)

        # once the loop is closed, the calls of handlers still running are dropped (see BatchedCalls)
        calls = BatchedCalls(loop.call_soon_threadsafe)
        side = self._loop_side = (loop, calls.__call__, HandlerTurns(call_soon, calls))
        return side

    async def __call__(self, scope: dict[str, Any], receive: Receive, send: Send) -> None:
        if (await receive())["type"] != "websocket.connect":
            return  # the client left before the application was called
        loop = asyncio.get_running_loop()
        origin = next((v.decode("latin-1") for n, v in scope.get("headers", ()) if n.lower() == b"origin"), None)
        refused = self.host.refusal(origin)
        if refused is None:
            try:
                environ = environ_for(scope, method="WEBSOCKET")
            except UnicodeDecodeError:
                refused = Refusal(HTTPStatus.BAD_REQUEST, "the request path is not valid UTF-8")
            except InvalidTarget as invalid:
                refused = Refusal(HTTPStatus.BAD_REQUEST, str(invalid))
        if refused is not None:
            self.host.counters.upgrades.add(refused.status)
            for message in self._refusal_response(scope, refused):
                await send(message)
            return

        settings = self.settings
        side = self._loop_side
        if side is None or side[0] is not loop:
            side = self._serve_on(loop)
        connection = AsgiConnection(scope, receive, send, settings.write_high_water, settings.close_timeout)
        try:
            connection.adapter = self.host.open(
                connection, environ, connection.handler_returned, call_in_loop=side[1], wake_ups=side[2]
            )
        except RuntimeError:  # the process is out of threads
            LOG.exception("could not start a handler thread for WebSocket %s", scope.get("path"))
            for message in self._refusal_response(scope, NO_THREAD):
                await send(message)
            return
        reader = loop.create_task(connection.read())
        connection.open_timer = loop.call_later(settings.open_timeout, connection.give_up_opening)
        try:
            while not connection.returned:
                await connection.changed()
            # the gateway has settled the connection: let its last message go out
            await asyncio.wait_for(connection.wait_finished(), settings.close_timeout)
        except asyncio.TimeoutError:
            LOG.warning("WebSocket %s did not finish closing in time", scope.get("path"))
        finally:
            if connection.open_timer is not None:
                connection.open_timer.cancel()
            reader.cancel()
            connection.lost()  # a handler still running (the server gave up on it) is released

    @staticmethod
    def _refusal_response(scope: dict[str, Any], refused: Refusal) -> list[dict[str, Any]]:
        body = refused.body
        headers = [("Content-Type", "text/plain; charset=utf-8"), ("Content-Length", str(len(body))), *refused.headers]
        LOG.info("WebSocket refused %s: %s (%s)", scope.get("path"), int(refused.status), refused.reason)
        return denial(scope, refused.status, headers, body)

    async def shutdown(self, grace_period: float) -> None:
        """Stop taking connections, close every open one with 1001 (going away), and return once every
        handler has returned or ``grace_period`` seconds have passed, whichever comes first. A connection
        whose peer has not answered the close within :meth:`~rolo.websocket.host.WebSocketHost.closing_time`
        (half the grace period at most) is dropped then, so that its handler has the rest to return."""
        host = self.host
        host.go_away()
        dropping = asyncio.get_running_loop().call_later(host.closing_time(grace_period), host.drop_open)
        idle = asyncio.Event()
        host.handlers.when_idle(idle.set)
        try:
            if not idle.is_set():  # wait_for with no time at all would time out on a set event too
                await asyncio.wait_for(idle.wait(), grace_period)
        except asyncio.TimeoutError:
            LOG.warning(
                "%d WebSocket handlers still running %ss after shutdown began; not waiting longer",
                host.handlers.running,
                grace_period,
            )
        finally:
            dropping.cancel()  # every handler returned first: the closes left finish in their own time
        host.stop()
