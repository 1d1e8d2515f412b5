"""Plain HTTP under ASGI: the gateway runs in a thread pool, the event loop does every receive and send.

The request body flows from the loop to the handler thread through a :class:`RequestBody`, a blocking
file-like ``wsgi.input`` that holds at most a few chunks: the loop calls ASGI ``receive`` only while there
is room, so a handler that reads slowly makes the server stop reading the socket. The response flows back
one chunk at a time, the handler thread waiting for each ASGI ``send`` to complete, so a client that reads
slowly holds up the thread that iterates the body rather than growing a buffer.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import io
import logging
import threading
from collections import deque
from collections.abc import Awaitable, Callable
from http import HTTPStatus
from typing import Any

from werkzeug.exceptions import ClientDisconnected

from rolo.gateway.gateway import Gateway
from rolo.request import Request
from rolo.response import Response
from rolo.settings import ServerSettings
from rolo.threads import HandlerPool

from .environ import environ_for

__all__ = ["HttpApp", "RequestBody"]

LOG = logging.getLogger(__name__)

Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]


class RequestBody(io.RawIOBase):
    """The request body as the handler thread reads it, fed by the event loop as the client sends it.

    :param loop: the loop that runs :meth:`pump`
    :param max_buffer: how many bytes may wait for the handler before the loop stops receiving
    """

    def __init__(self, loop: asyncio.AbstractEventLoop, max_buffer: int = 64 * 1024) -> None:
        super().__init__()
        self._loop = loop
        self._max_buffer = max_buffer
        self._readable = threading.Condition()
        self._chunks: deque[memoryview] = deque()
        self._buffered = 0
        self._complete = False
        self._disconnected = False
        self._room = asyncio.Event()
        self._room.set()

    # -- loop side ---------------------------------------------------------------------------------

    async def pump(self, receive: Receive) -> None:
        """Receive the body into the buffer while it has room, then watch for the client leaving."""
        while True:
            await self._room.wait()
            message = await receive()
            if message["type"] == "http.disconnect":
                self.disconnect()
                return
            chunk = message.get("body", b"")
            more = message.get("more_body", False)
            with self._readable:
                if chunk:
                    self._chunks.append(memoryview(chunk))
                    self._buffered += len(chunk)
                    if self._buffered >= self._max_buffer:
                        self._room.clear()
                self._complete = not more
                self._readable.notify()
            if not more:
                break
        if (await receive())["type"] == "http.disconnect":
            self.disconnect()

    def disconnect(self) -> None:
        """The client left, or the request was cancelled: a read still waiting for the body fails."""
        with self._readable:
            self._disconnected = True
            self._readable.notify_all()

    @property
    def disconnected(self) -> bool:
        """Whether the client went away."""
        return self._disconnected

    # -- handler side ------------------------------------------------------------------------------

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        """Fill ``buffer`` with what has arrived, waiting for at least one byte or the end of the body.

        :raises ClientDisconnected: if the client left before sending the whole body
        """
        view = memoryview(buffer).cast("B")
        with self._readable:
            self._readable.wait_for(lambda: self._chunks or self._complete or self._disconnected)
            if not self._chunks:
                if self._complete:
                    return 0
                raise ClientDisconnected("the client went away before sending the whole body")
            count = 0
            while self._chunks and count < len(view):
                chunk = self._chunks[0]
                taken = min(len(chunk), len(view) - count)
                view[count : count + taken] = chunk[:taken]
                count += taken
                if taken == len(chunk):
                    self._chunks.popleft()
                else:
                    self._chunks[0] = chunk[taken:]
            was_full = self._buffered >= self._max_buffer
            self._buffered -= count
            wake = was_full and self._buffered < self._max_buffer
        if wake:
            self._loop.call_soon_threadsafe(self._room.set)
        return count


class _ResponseSender:
    """Hands a response from its handler thread to the loop, one ASGI ``send`` at a time."""

    def __init__(self, loop: asyncio.AbstractEventLoop, send: Send, body: RequestBody) -> None:
        self._loop = loop
        self._send = send
        self._body = body
        self._lock = threading.Lock()  # so that abort() never misses a send scheduled as it runs
        self._pending: concurrent.futures.Future[None] | None = None
        self._aborted = False
        self.started = False

    def respond(self, status: int, headers: list[tuple[str, str]], chunk: bytes, more: bool) -> bool:
        """Send the status line, headers and first chunk; False if the client is gone."""
        self.started = True
        start = {
            "type": "http.response.start",
            "status": status,
            "headers": [(name.encode("latin-1"), value.encode("latin-1")) for name, value in headers],
        }
        return self._call(self._send_all, start, {"type": "http.response.body", "body": chunk, "more_body": more})

    def write(self, chunk: bytes, more: bool = True) -> bool:
        """Send a chunk of the body, once the server has taken the previous one; False if the client is gone."""
        return self._call(self._send_all, {"type": "http.response.body", "body": chunk, "more_body": more})

    async def _send_all(self, *messages: dict[str, Any]) -> None:
        for message in messages:
            await self._send(message)

    def _call(self, fn: Callable[..., Awaitable[None]], *args: Any) -> bool:
        with self._lock:
            if self._aborted or self._body.disconnected:
                return False
            pending = self._pending = asyncio.run_coroutine_threadsafe(fn(*args), self._loop)
        try:
            pending.result()
        except (concurrent.futures.CancelledError, OSError):
            return False  # aborted, or the server found the client gone
        return True

    def abort(self) -> None:
        """The request is over on the loop side (done or cancelled): release a thread waiting to send."""
        with self._lock:
            self._aborted = True
            if self._pending is not None:
                self._pending.cancel()


class HttpApp:
    """Serves ASGI ``http`` scopes through a gateway, running it in a pool of ``http_threads`` threads.

    The pool starts with the first request, and :meth:`shutdown` stops it; a later request starts a new one.
    """

    def __init__(self, gateway: Gateway, settings: ServerSettings) -> None:
        self.gateway = gateway
        self.settings = settings
        self._pool: HandlerPool | None = None

    async def __call__(self, scope: dict[str, Any], receive: Receive, send: Send) -> None:
        loop = asyncio.get_running_loop()
        body = RequestBody(loop)
        try:
            environ = environ_for(scope, io.BufferedReader(body))
        except UnicodeDecodeError:
            await self._send_error(send, HTTPStatus.BAD_REQUEST, b"the request path is not valid UTF-8\n")
            return
        sender = _ResponseSender(loop, send, body)
        pump = loop.create_task(body.pump(receive))
        try:
            await self._in_thread(loop, lambda: self._serve(environ, sender))
        except Exception:
            LOG.exception("HTTP request to %s failed", scope.get("path"))
            if sender.started:
                raise  # part of the body is out: only a cut connection tells the client it is incomplete
            await self._send_error(send, HTTPStatus.INTERNAL_SERVER_ERROR, b"internal server error\n")
        finally:
            pump.cancel()
            body.disconnect()
            sender.abort()

    def _in_thread(self, loop: asyncio.AbstractEventLoop, job: Callable[[], None]) -> asyncio.Future[None]:
        """Run ``job`` in a thread of the pool; the future is done when it returned, or failed with what it
        raised."""
        done: asyncio.Future[None] = loop.create_future()

        def settle(error: BaseException | None) -> None:
            if done.done():
                return  # the request was cancelled meanwhile
            if error is None:
                done.set_result(None)
            else:
                done.set_exception(error)

        def run() -> None:
            error: BaseException | None = None
            try:
                job()
            except BaseException as raised:
                error = raised
            if not loop.is_closed():
                loop.call_soon_threadsafe(settle, error)

        if self._pool is None:
            self._pool = HandlerPool("rolo-http", self.settings.http_threads, max_waiting=2**62)
        self._pool.submit(run)
        return done

    def _serve(self, environ: dict[str, Any], sender: _ResponseSender) -> None:
        response = Response()
        self.gateway.process(Request(environ), response)
        try:
            chunks, status, headers = response.get_wsgi_response(environ)
            status_code = int(status.split(" ", 1)[0])
            if response.is_sequence:
                sender.respond(status_code, headers, b"".join(chunks), more=False)
                return
            if not sender.respond(status_code, headers, b"", more=True):
                return
            for chunk in chunks:
                if chunk and not sender.write(chunk):
                    return  # the client went away
            sender.write(b"", more=False)
        finally:
            response.close()

    @staticmethod
    async def _send_error(send: Send, status: HTTPStatus, text: bytes) -> None:
        headers = [(b"content-type", b"text/plain; charset=utf-8"), (b"content-length", b"%d" % len(text))]
        await send({"type": "http.response.start", "status": status.value, "headers": headers})
        await send({"type": "http.response.body", "body": text})

    def shutdown(self) -> None:
        """Stop the pool once the requests in it are done; do not wait for them."""
        if self._pool is not None:
            self._pool.stop()
            self._pool = None
