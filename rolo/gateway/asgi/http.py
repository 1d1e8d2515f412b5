"""Plain HTTP under ASGI: the gateway runs in a thread pool, the event loop does every receive and send.

The request body flows from the loop to the handler thread through a :class:`RequestBody`, a blocking
file-like ``wsgi.input`` that holds at most a few chunks: the loop calls ASGI ``receive`` only while there
is room, so a handler that reads slowly makes the server stop reading the socket; and a read that would
wait for a body past ``body_timeout`` fails with a 408, so that a client that trickles its body cannot
hold a thread. The response goes out
from the loop: a streamed body is iterated one chunk at a time in a thread of the pool (the next chunk
while the loop sends this one), so a client that reads slowly holds up the iteration, and two chunks,
but no thread.
"""

from __future__ import annotations

import asyncio
import io
import logging
import threading
import time
from collections import deque
from collections.abc import Awaitable, Callable, Iterator
from functools import partial
from http import HTTPStatus
from typing import IO, Any

from werkzeug.exceptions import ClientDisconnected, RequestTimeout

from rolo.counters import HttpCounters
from rolo.gateway.answer import Answer, answer
from rolo.gateway.gateway import Gateway
from rolo.request import forget_request
from rolo.response import Response
from rolo.settings import ServerSettings
from rolo.target import InvalidTarget
from rolo.threads import HandlerPool, PoolFull
from rolo.websocket.host import NO_THREAD
from rolo.websocket.turns import BatchedCalls

from .environ import request_for

__all__ = ["HttpApp", "RequestBody"]

LOG = logging.getLogger(__name__)

Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]


class RequestBody(io.RawIOBase):
    """The request body as the handler thread reads it, fed by the event loop as the client sends it.

    :param loop: the loop that runs :meth:`pump`
    :param max_buffer: how many bytes may wait for the handler before the loop stops receiving
    :param timeout: how long the body may take to arrive, in seconds from now (None: no limit): a read
        that would wait for it past then fails
    """

    def __init__(
        self, loop: asyncio.AbstractEventLoop, max_buffer: int = 64 * 1024, timeout: float | None = None
    ) -> None:
        super().__init__()
        self._loop = loop
        self._max_buffer = max_buffer
        self._deadline = None if timeout is None else time.monotonic() + timeout
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
        :raises RequestTimeout: if the read would wait past the body's deadline (a ``408``)
        """
        view = memoryview(buffer).cast("B")
        with self._readable:
            remaining = None if self._deadline is None else max(0.0, self._deadline - time.monotonic())
            if not self._readable.wait_for(lambda: self._chunks or self._complete or self._disconnected, remaining):
                raise RequestTimeout("the request body did not arrive in time")
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


WATCH_WAITING_AFTER = 0.01
"""Seconds a request without a body waits for a thread before a task watches for its client leaving (a
waiting request whose client has left is dropped). Under load most waits are shorter (a queue of fast
requests drains in a few milliseconds), and a task that receives, then is cancelled, costs the loop about
5 µs per request: more than the handler threads saved on the rare client that leaves that soon."""

_END = object()
"""What a body's iteration gives once it is spent."""

_TRY_AGAIN = [(b"retry-after", b"1")]
"""The header of a ``503`` answered for want of a thread: try again in a second (RFC 9110 10.2.3)."""

_GOING_AWAY = [*_TRY_AGAIN, (b"connection", b"close")]
"""The headers of the ``503`` answered once the application was shut down: and close the connection
(RFC 9112 9.6), so that its client asks the next server (or this one started anew)."""


class _ShutDown(Exception):
    """Raised by :meth:`HttpApp._in_thread` once :meth:`HttpApp.shutdown` stopped the pool (until
    :meth:`HttpApp.start`): no new pool is started, which nothing would stop."""


class _NoBody:
    """What stands for the body of a request that has none (most): nothing to buffer or wait for, only the
    client's leaving to notice. The handler reads an empty ``wsgi.input``; this costs a fraction of a
    :class:`RequestBody` (a condition, an event and a buffered reader), which such a request never needs."""

    __slots__ = ("disconnected",)

    def __init__(self) -> None:
        self.disconnected = False
        """Whether the client went away."""

    async def pump(self, receive: Receive) -> None:
        """Watch for the client leaving (what the server passes before, an empty ``http.request``, says
        nothing)."""
        while (await receive())["type"] != "http.disconnect":
            pass
        self.disconnected = True

    def disconnect(self) -> None:
        """The client left, or the request is over."""
        self.disconnected = True


def _settle(done: asyncio.Future[Any], result: Any, error: BaseException | None) -> None:
    """Make ``done`` what a job returned or raised (on the loop), unless its request was cancelled meanwhile."""
    if done.done():
        return
    if error is None:
        done.set_result(result)
    else:
        done.set_exception(error)


def _may_have_body(scope: dict[str, Any]) -> bool:
    """Whether a request may have a body: under HTTP/1 only one with a ``Transfer-Encoding``, or a
    ``Content-Length`` other than 0, has one (RFC 9112 6.3); under HTTP/2 and 3 any may."""
    if scope.get("http_version", "1.1") not in ("1.1", "1.0"):
        return True
    for name, value in scope.get("headers", ()):
        name = name.lower()
        if name == b"transfer-encoding" or (name == b"content-length" and value.strip() != b"0"):
            return True
    return False


class HttpApp:
    """Serves ASGI ``http`` scopes through a gateway, running it in a pool of ``http_threads`` threads.

    When every thread is busy, up to ``http_queue`` requests wait for one; beyond, a request is answered
    ``503`` with ``Retry-After`` at once, and a waiting request whose client has left is dropped without
    running. A request for which no thread could be started (the process is out of threads) is answered
    ``503`` with ``Retry-After`` too, and logged as an error of the server's, not counted as a handler's.
    The pool starts with the first request, and :meth:`shutdown` stops it. From then until :meth:`start`
    (the next lifespan startup, when a server is started anew in the process) no thread is started: a
    request (on a connection kept alive from before) is answered ``503`` and its connection closed, and a
    streamed response still going out is cut before its next chunk (the cut logged, the body left
    unclosed: its code runs in the pool's threads alone). The first request after :meth:`start` starts
    a new pool.

    A request's body is received by a task of its own (:meth:`RequestBody.pump`) while the handler runs,
    which then watches for the client leaving. A request without a body (most) has that task only when the
    client's leaving matters: once the request has waited ``WATCH_WAITING_AFTER`` seconds for a thread, and
    while a streamed response goes out.

    The request is made in its thread, so a target that does not parse takes a thread too, for its ``400``,
    and waits for one as any request does (``503`` once ``http_queue`` wait).

    :ivar counters: the responses by status, for metrics (:mod:`rolo.metrics`)
    """

    def __init__(self, gateway: Gateway, settings: ServerSettings) -> None:
        self.gateway = gateway
        self.settings = settings
        self.counters = HttpCounters()
        self._pool: HandlerPool | None = None
        self._stopped = False  # shut down, and not started again
        # the loop the pool's threads hand results to, and how: one pair, read and replaced at once
        self._calls: tuple[asyncio.AbstractEventLoop, BatchedCalls] | None = None

    @property
    def pool(self) -> HandlerPool | None:
        """The threads the handlers run in; None until the first request, and after :meth:`shutdown`."""
        return self._pool

    async def __call__(self, scope: dict[str, Any], receive: Receive, send: Send) -> None:
        loop = asyncio.get_running_loop()
        started = time.monotonic()
        body: RequestBody | _NoBody
        has_body = _may_have_body(scope)
        if has_body:
            body = RequestBody(loop, timeout=self.settings.body_timeout)
            stream: IO[bytes] = io.BufferedReader(body)
        else:
            body, stream = _NoBody(), io.BytesIO()
        pump: asyncio.Task[None] | None = loop.create_task(body.pump(receive)) if has_body else None
        watch: asyncio.TimerHandle | None = None
        try:
            try:
                try:
                    answered, waits = self._in_thread(loop, self._respond, scope, stream, body)
                except PoolFull:
                    text = b"every HTTP thread is busy and as many requests wait: try again\n"
                    await self._send_error(send, started, HTTPStatus.SERVICE_UNAVAILABLE, text, _TRY_AGAIN)
                    return
                except _ShutDown:
                    text = b"server shutting down\n"
                    await self._send_error(send, started, HTTPStatus.SERVICE_UNAVAILABLE, text, _GOING_AWAY)
                    return
                except RuntimeError:  # no thread could be started: the server's trouble, not the handler's
                    LOG.exception("no thread for the handler of HTTP request to %s", scope.get("path"))
                    await self._send_error(send, started, NO_THREAD.status, NO_THREAD.body, _TRY_AGAIN)
                    return
                if pump is None and waits:

                    def watch_client() -> None:
                        nonlocal pump
                        if pump is None and not answered.done():
                            pump = loop.create_task(body.pump(receive))

                    # it waits: it is dropped if its client leaves meanwhile, once it has waited a while
                    watch = loop.call_later(WATCH_WAITING_AFTER, watch_client)
                parts = await answered
            except Exception:
                self.gateway.handler_errors.add("http")
                LOG.exception("HTTP request to %s failed", scope.get("path"))
                await self._send_error(send, started, HTTPStatus.INTERNAL_SERVER_ERROR, b"internal server error\n")
                return
            if parts is None:
                return  # the client left while the request waited for a thread
            if type(parts) is bytes:  # the request's target, which says why
                await self._send_error(send, started, HTTPStatus.BAD_REQUEST, parts)
                return
            start = {"type": "http.response.start", "status": parts.status, "headers": parts.headers}
            try:
                if isinstance(parts.body, bytes):  # most responses: nothing to stream, nor to close after
                    try:
                        await send(start)
                        last = {"type": "http.response.body", "body": parts.body}
                        await self._send_last(send, started, parts.status, last)
                    except OSError:
                        pass  # the client left
                else:
                    if pump is None:
                        pump = loop.create_task(body.pump(receive))  # the stream stops if its client leaves
                    await self._send_stream(loop, send, started, body, start, parts, parts.body, scope.get("path"))
            except Exception:
                self.gateway.handler_errors.add("http")
                LOG.exception("HTTP request to %s failed", scope.get("path"))
                raise  # part of the body is out: only a cut connection tells the client it is incomplete
        finally:
            if watch is not None:
                watch.cancel()
            if pump is not None:
                pump.cancel()
            body.disconnect()

    def _in_thread(
        self, loop: asyncio.AbstractEventLoop, job: Callable[..., Any], *args: Any, queue_anyway: bool = False
    ) -> tuple[asyncio.Future[Any], bool]:
        """Run ``job(*args)`` in a thread of the pool: a future, done when it returned, with what it returned
        or raised; and whether the job waits for a thread (every one is busy).

        :param queue_anyway: for a job that goes on with a request admitted before (see
            :meth:`~rolo.threads.HandlerPool.submit`)
        :raises PoolFull: if every thread is busy and ``http_queue`` jobs wait (unless ``queue_anyway``)
        :raises _ShutDown: if :meth:`shutdown` stopped the pool (and :meth:`start` was not called since)
        :raises RuntimeError: if no thread could be started (the process is out of threads)
        """
        done: asyncio.Future[Any] = loop.create_future()
        pair = self._calls
        calls = pair[1] if pair is not None and pair[0] is loop else self._calls_to(loop)

        def run() -> None:
            try:
                result = job(*args)
            except BaseException as error:
                if not loop.is_closed():  # closed: nobody awaits it, and nothing is kept for it
                    calls(partial(_settle, done, None, error))
            else:
                if not loop.is_closed():
                    calls(partial(_settle, done, result, None))

        if self._pool is None:
            if self._stopped:
                raise _ShutDown
            settings = self.settings
            self._pool = HandlerPool("rolo-http", settings.http_threads, max_waiting=settings.http_queue)
        return done, self._pool.submit(run, queue_anyway=queue_anyway)

    def _calls_to(self, loop: asyncio.AbstractEventLoop) -> BatchedCalls:
        """What the pool's threads hand their results to ``loop`` through: a batch of them wakes the loop
        once (:class:`~rolo.websocket.turns.BatchedCalls`), where a ``call_soon_threadsafe`` each would
        write to the loop's waker once per request. Made for the first request on a loop, and again if a
        later one comes on another. A result handed over as the loop closes is dropped (see
        :class:`~rolo.websocket.turns.BatchedCalls`): nobody awaits it any more."""
        calls = BatchedCalls(loop.call_soon_threadsafe)
        self._calls = (loop, calls)
        return calls

    def _respond(self, scope: dict[str, Any], stream: IO[bytes], body: RequestBody | _NoBody) -> Answer | bytes | None:
        """Run the gateway (in a thread of the pool) on the request of ``scope``, whose body the handler reads
        from ``stream``: its response; or None if the client left before; or, for a target that does not
        parse or a path that is not UTF-8, the text of the ``400`` to answer instead.

        The request is made here, from the scope the server no longer changes, rather than on the loop: the
        loop does less per request (under uvicorn the process spent some 4 % less CPU per request). Its
        WSGI environment is built only if something reads it (see :func:`request_for`).
        """
        if body.disconnected:
            return None  # it left while the request waited for a thread
        try:
            request = request_for(scope, stream)
        except UnicodeDecodeError:
            return b"the request path is not valid UTF-8\n"
        except InvalidTarget as invalid:
            return f"{invalid}\n".encode()
        response = self.gateway.serve(request)
        try:
            parts = answer(response, request)
        except BaseException:
            response.close()
            raise
        finally:
            forget_request(request)
        if isinstance(parts.body, bytes):
            try:
                response.close()
            except Exception:
                self._close_failed(scope.get("path"))
        return parts

    async def _send_last(self, send: Send, started: float, status: int, message: dict[str, Any]) -> None:
        """Send a response's last message, and count the response, whether it went out or not."""
        try:
            await send(message)
        finally:
            self.counters.responded(status, time.monotonic() - started)

    async def _send_stream(
        self,
        loop: asyncio.AbstractEventLoop,
        send: Send,
        started: float,
        body: RequestBody | _NoBody,
        start: dict[str, Any],
        answer: Answer,
        chunks: Iterator[bytes],
        path: str | None,
    ) -> None:
        """Send a response with a streamed body, ``chunks`` (``answer``'s body), whose chunks are taken in
        threads of the pool, one ahead; ``path``, the request's, for the log.

        A client that leaves ends the iteration; so does the application's :meth:`shutdown`, which cuts the
        connection (the response returns unfinished) and logs it.

        :raises Exception: what the body's iteration raised
        """
        pending: asyncio.Future[Any] | None = None
        try:
            await send(start)
            pending = self._in_thread(loop, next, chunks, _END, queue_anyway=True)[0]
            while True:
                # shielded: a cancelled request leaves the thread to finish, then closes the body
                chunk = await asyncio.shield(pending)
                if chunk is _END or body.disconnected:
                    break
                pending = self._in_thread(loop, next, chunks, _END, queue_anyway=True)[0]
                if chunk:
                    await send({"type": "http.response.body", "body": chunk, "more_body": True})
            if chunk is _END:
                await self._send_last(
                    send, started, answer.status, {"type": "http.response.body", "body": b"", "more_body": False}
                )
        except OSError:
            pass  # the client left
        except _ShutDown:
            # returned unfinished: the server cuts the connection, which tells the client so
            LOG.warning("server shutting down: the rest of the response to %s cut", path)
        finally:
            self._close_after(pending, answer.response, path)

    def _close_after(self, pending: asyncio.Future[Any] | None, response: Response, path: str | None) -> None:
        """Close ``response`` in a thread of the pool (it may run the body's own code), once the iteration
        in ``pending`` has returned (see :meth:`_close_failed`)."""

        def close_response(counted: bool) -> None:
            # a thread of the pool
            try:
                response.close()
            except Exception:
                self._close_failed(path, counted)

        def close(_: object = None) -> None:
            counted = pending is not None and not pending.cancelled() and pending.exception() is not None
            try:
                self._in_thread(asyncio.get_running_loop(), close_response, counted, queue_anyway=True)
            except (_ShutDown, RuntimeError):
                LOG.warning("could not close the response body to %s: no thread to close it in", path)

        if pending is not None and not pending.done():
            pending.add_done_callback(close)
        else:
            close()

    def _close_failed(self, path: str | None, counted: bool = False) -> None:
        """Log what closing the response to the request for ``path`` raised (call it in the ``except``), and
        count it as a handler's error unless it is ``counted`` already (the body's iteration raised: one
        error per request), as Twisted's server does. A response whose body was whole stands: WSGI closes
        a body once it is sent (PEP 3333), so what closing raises does not undo the answer."""
        if not counted:
            self.gateway.handler_errors.add("http")
        LOG.exception("HTTP request to %s failed", path)

    async def _send_error(
        self,
        send: Send,
        started: float,
        status: HTTPStatus,
        text: bytes,
        extra_headers: list[tuple[bytes, bytes]] | None = None,
    ) -> None:
        headers = [(b"content-type", b"text/plain; charset=utf-8"), (b"content-length", b"%d" % len(text))]
        headers += extra_headers or []
        await send({"type": "http.response.start", "status": status.value, "headers": headers})
        await self._send_last(send, started, status.value, {"type": "http.response.body", "body": text})

    def start(self) -> None:
        """Serve again after :meth:`shutdown` (a lifespan startup), in a new pool started with the next
        request."""
        self._stopped = False

    def shutdown(self) -> None:
        """Stop the pool once the requests in it are done; do not wait for them. Until :meth:`start`, start
        no other (see the class)."""
        self._stopped = True
        if self._pool is not None:
            self._pool.stop()
            self._pool = None
