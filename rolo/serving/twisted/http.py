"""Plain HTTP on Twisted Web: the gateway runs in a thread of a pool, the reactor writes the response."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from functools import partial
from http import HTTPStatus
from typing import TYPE_CHECKING, Any, cast

from twisted.internet.interfaces import IPushProducer
from twisted.logger import LogLevel
from twisted.python.failure import Failure
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Request
from zope.interface import implementer

from rolo.counters import HttpCounters
from rolo.gateway import Gateway
from rolo.gateway.answer import answer
from rolo.request import Request as RoloRequest
from rolo.request import forget_request
from rolo.response import Response
from rolo.threads import HandlerCount, HandlerPool, PoolFull
from rolo.websocket.host import NO_THREAD

from ._interfaces import IStreamTransport
from .channel import GatewayChannel, GatewayRequest
from .environ import environ_for
from .forwarded import connection_peer, peer_description
from .logs import enabled, logger
from .settings import TwistedSettings
from .threads import BatchedCallFromThread

if TYPE_CHECKING:
    from .site import TwistedGateway

__all__ = ["HttpResource", "log_response", "note_refusal"]

log = logger(__name__)

_LINE = "{method} {path} from {peer}: {status} in {duration:.3f}s"
"""The line logged for each response (:func:`log_response`)."""

_REFUSED_LINE = _LINE + " ({reason})"
"""The line of a request the server answered itself, without a handler, whose response did not reach its
end, or that got no response at all (status ``-``), with the reason."""

_REASONS = {status.value: status.phrase.encode("ascii") for status in HTTPStatus}
"""The reason phrase of each status code Python knows. Twisted knows none for some (426 Upgrade Required),
and would say "Unknown Status"."""


class HttpResource(Resource):
    """Serves plain HTTP requests through a gateway.

    The gateway runs, and a streamed response body is iterated, in a thread of :attr:`pool`; the reactor
    thread does every write. No thread ever waits for a client: a body that is a sequence is handed to
    the reactor at once, with the status and headers, in one call; a streamed one chunk by chunk until
    the connection has more waiting than the transport's high-water mark (64 KiB) or ``write_high_water``
    bytes wait for the reactor, and then its thread goes back to the pool. The iteration goes on in a
    thread of the pool (not necessarily the same one) once the client has read them. A client that reads
    slowly holds memory, never a thread; how slowly it may read is the channel's ``write_timeout``.

    When every thread is busy, up to ``http_queue`` requests wait for one; beyond that a request is
    answered ``503`` with ``Retry-After`` at once, and a waiting request whose client has left is dropped
    without running. A request for which no thread could be started (the process is out of threads) is
    answered ``503`` with ``Retry-After`` too, and logged as an error of the server's, not of a handler's.
    Once the pool has stopped, a request (on a connection kept alive from before) is answered 503 and the
    connection closed.

    :param gateway: the gateway to serve
    :param settings: the server's settings (``http_threads``, ``http_queue``, ``write_high_water``)
    :param reactor: the reactor the server runs on
    :ivar pool: the threads the handlers run in, ``http_threads`` of them at most
    :ivar handlers: the requests between their arrival and their handler's return (and the end of its
        body's iteration)
    :ivar counters: the responses by status, for metrics (:mod:`rolo.metrics`), counted as they are logged
        (see :func:`log_response`), refusals before a handler included (see :meth:`refused`)
    """

    isLeaf = True

    def __init__(self, gateway: Gateway, settings: TwistedSettings, reactor: Any) -> None:
        super().__init__()
        self.gateway = gateway
        self.reactor = reactor
        self.write_high_water = settings.write_high_water
        self.pool = HandlerPool("rolo-http", settings.http_threads, max_waiting=settings.http_queue)
        self.handlers = HandlerCount()
        self.counters = HttpCounters()
        self._writers: set[_ResponseWriter] = set()  # reactor thread only
        # one wake-up of the reactor carries the responses of every handler that returned meanwhile
        self._to_reactor = BatchedCallFromThread(reactor)

    def render(self, request: Request, target: tuple[bytes, bytes] | None = None) -> bytes | int:
        """Serve ``request``; ``target``: its target's path and query (:func:`rolo.target.split_target`),
        where the caller split it already."""
        environ = environ_for(request, target=target)
        writer = _ResponseWriter(
            request, self.reactor, self._to_reactor, self.pool, self._writer_done, self.write_high_water
        )
        try:
            self.pool.submit(partial(self._serve, environ, writer))
        except PoolFull:
            text = b"every HTTP thread is busy and as many requests wait: try again\n"
            return _unavailable(request, text, "every HTTP thread busy and http_queue requests waiting")
        except RuntimeError:
            if not self.pool.stopped:  # no thread could be started: the server's trouble, not the handler's
                path = request.path.decode("utf-8", "replace")
                log.failure("no thread for the handler of HTTP request to {path}", level=LogLevel.error, path=path)
                return _unavailable(request, NO_THREAD.body, NO_THREAD.reason)
            request.setHeader(b"Connection", b"close")
            return _unavailable(request, b"server shutting down\n", "server shutting down")
        writer.watch_connection()
        self.handlers.started()
        self._writers.add(writer)
        return NOT_DONE_YET

    def refused(
        self, channel: GatewayChannel, method: str, path: str, status: int, reason: str, seconds: float
    ) -> None:
        """Count and log, as :func:`log_response` does a response and with ``reason``
        (``"body over max_body_size"``), a request (``method`` and ``path``, ``-`` where no request line came)
        the channel answered ``status`` before any handler saw it (400 from Twisted Web's parser, 408, 413,
        414, 431), ``seconds`` after the request arrived (or its head began, where no request line came).
        Call it on the reactor thread."""
        self.counters.responded(status, seconds)
        # the headers a proxy sets are not read yet
        _log_with_reason(connection_peer(channel.transport), method, path, status, seconds, reason)

    def unanswered(self, peer: str, method: str, path: str, reason: str, seconds: float) -> None:
        """Log, as :meth:`refused` does, with status ``-`` and ``reason`` (``"the client left while waiting
        for a thread"``), a request (``method`` and ``path``, from ``peer``) whose client left before any
        handler answered it, ``seconds`` after it arrived. It is not counted: no response was written.
        Call it on the reactor thread."""
        _log_with_reason(peer, method, path, "-", seconds, reason)

    def _writer_done(self, writer: _ResponseWriter) -> None:
        # reactor thread: the handler returned and its body is spent, or abandoned
        self._writers.discard(writer)
        self.handlers.finished()

    def stop_writing(self) -> None:
        """Make every response still being written give up, cutting its connection, so that no handler
        thread stays on a response (call before stopping the pool)."""
        for writer in list(self._writers):
            writer.stopProducing()

    def _serve(self, environ: dict[str, Any], writer: _ResponseWriter) -> None:
        # a thread of the pool
        if writer.client_gone:
            writer.dropped()  # it left while the request waited for a thread
            return
        response = None
        try:
            request = RoloRequest(environ)
            response = self.gateway.serve(request)
            status, headers, body, _ = answer(response, request)
            writer.start(status, headers)
            if not isinstance(body, bytes):
                writer.stream(body, response)  # goes on in threads of the pool, then closes it
                return
        except BaseException:
            writer.finish(response, Failure())
        else:
            writer.respond(body, response)
        finally:
            forget_request(environ)


def _unavailable(request: Request, text: bytes, reason: str) -> bytes:
    note_refusal(request, reason)
    request.setResponseCode(HTTPStatus.SERVICE_UNAVAILABLE)
    request.setHeader(b"Content-Type", b"text/plain; charset=utf-8")
    request.setHeader(b"Retry-After", b"1")
    return text


@implementer(IPushProducer)
class _ResponseWriter:
    """Carries one response from the pool's threads to the reactor; ``finished(writer)`` is called on the
    reactor thread once the handler has returned and the body is spent (or abandoned).

    Every call to the reactor goes through ``to_reactor``, in order. A body that is a sequence goes in one
    call with the status and headers (:meth:`respond`). A streamed body is iterated by :meth:`_produce` in
    a thread of the pool, which hands each chunk to the reactor and returns to the pool (*suspends*) while
    the transport has paused it or more than ``high_water`` bytes handed over wait for the reactor;
    :meth:`_resume`, on the reactor, submits it again once both have cleared.
    """

    def __init__(
        self,
        request: Request,
        reactor: Any,
        to_reactor: Callable[[Callable[[], None]], None],
        pool: HandlerPool,
        finished: Callable[[_ResponseWriter], None],
        high_water: int,
    ) -> None:
        self._request = request
        self._reactor = reactor
        self._to_reactor = to_reactor
        self._pool = pool
        self._finished = finished
        self._high_water = high_water
        self._started = False  # the handler's status and headers are known (start was called)
        self._head: tuple[int, list[tuple[bytes, bytes]]] | None = None  # not yet set on the request
        self._lock = threading.Lock()
        self._chunks: Iterator[bytes] | None = None
        self._response: Response | None = None
        self._pending = 0  # bytes handed to the reactor and not written to the transport yet
        self._paused = False
        self._suspended = False  # no thread iterates the body: _resume submits _produce again
        self._gone = False  # the response is abandoned: the client left, or the server stops
        self._lost = False  # the connection is lost

    def watch_connection(self) -> None:
        """Learn when the connection is lost (call on the reactor thread, once the request is admitted)."""
        if isinstance(self._request, GatewayRequest):
            self._request.on_connection_lost = self._connection_lost
        else:
            self._request.notifyFinish().addErrback(lambda _: self._connection_lost())

    @property
    def client_gone(self) -> bool:
        """Whether the client went away (the connection is lost)."""
        return self._lost

    # a thread of the pool

    def dropped(self) -> None:
        """The request is dropped without running: its client left while it waited for a thread."""
        self._to_reactor(self._dropped)

    def start(self, status: int, headers: list[tuple[bytes, bytes]]) -> None:
        """The response's status and header lines, which go to the reactor with the body (:meth:`respond`)
        or before its first chunk (:meth:`stream`)."""
        self._head = status, headers
        self._started = True

    def respond(self, content: bytes, response: Response) -> None:
        """Close ``response``, then hand the whole response to the reactor: status, headers and
        ``content``, its body."""
        self._to_reactor(partial(self._respond, content, self._close(response)))

    def stream(self, chunks: Iterator[bytes], response: Response) -> None:
        """Iterate a streamed body to the client from now on; ``response`` is closed once it is spent."""
        self._to_reactor(self._start)
        self._chunks, self._response = chunks, response
        self._produce()

    def _produce(self) -> None:
        chunks, response = self._chunks, self._response
        assert chunks is not None and response is not None
        failure = None
        try:
            while True:
                with self._lock:
                    if self._gone:
                        break
                    if self._paused or self._pending > self._high_water:
                        self._suspended = True  # _resume submits this again
                        return
                try:
                    chunk = next(chunks)
                except StopIteration:
                    break
                if chunk:
                    with self._lock:
                        self._pending += len(chunk)
                    self._to_reactor(partial(self._write, chunk))
        except BaseException:
            failure = Failure()
        self._chunks = self._response = None
        self.finish(response, failure)

    def finish(self, response: Response | None, failure: Failure | None) -> None:
        """The handler and the body are done with (``failure``: what went wrong in them): close the response
        (if the gateway gave one), then finish it, or fail it with a 500 (see :meth:`_finish`)."""
        self._to_reactor(partial(self._done, failure, self._close(response)))

    @staticmethod
    def _close(response: Response | None) -> Failure | None:
        """Close ``response`` (if the gateway gave one): what closing raised, if anything."""
        try:
            if response is not None:
                response.close()
        except BaseException:
            return Failure()
        return None

    # reactor thread

    def _connection_lost(self) -> None:
        self._lost = True
        self.stopProducing()

    def _dropped(self) -> None:
        self._end()
        request = self._request
        if isinstance(request, GatewayRequest):
            request.logged = True
            request.site.http.unanswered(
                peer_description(request),
                request.method.decode("latin-1"),
                request.path.decode("utf-8", "replace"),
                "the client left while waiting for a thread",
                self._reactor.seconds() - request.received_at,
            )

    def _start(self, producing: bool = True) -> None:
        """Set the handler's status and headers on the request, if not yet; then, if ``producing``, have
        the channel pause and resume the body's iteration."""
        head, self._head = self._head, None
        request = self._request
        if head is None or request.finished:
            return
        status, headers = head
        if self._lost:
            request.code = status  # for the log line: what the handler answered, though none of it is sent
            return
        request.setResponseCode(status, _REASONS.get(status))
        for name, value in headers:
            request.responseHeaders.addRawHeader(name, value)
        if producing:
            request.registerProducer(self, True)

    def _respond(self, content: bytes, closing: Failure | None) -> None:
        channel = self._request.channel  # None once the connection is lost
        gathering = channel if isinstance(channel, GatewayChannel) and channel.gather_writes() else None
        try:
            self._start(producing=False)
            if not self._gone and not self._lost:
                self._request.write(content)  # with its head: one write to the socket
            self._done(None, closing)
        finally:
            if gathering is not None:
                gathering.flush_writes()

    def _write(self, chunk: bytes) -> None:
        with self._lock:
            self._pending -= len(chunk)
        if not self._gone and not self._lost:
            self._request.write(chunk)  # may pause this producer
        self._resume()

    def _resume(self) -> None:
        """Hand the body's iteration to a thread again, if it is suspended and may go on (or is abandoned,
        so that a thread closes it)."""
        with self._lock:
            if not self._suspended or (not self._gone and (self._paused or self._pending > self._high_water)):
                return
            self._suspended = False
        try:
            # not refused when the pool is full: this request was admitted already
            self._pool.submit(self._produce, queue_anyway=True)
        except RuntimeError:
            # the pool has stopped (the server stops), or no thread could be started (the process is out of
            # threads): the body cannot be iterated any more, nor closed (its code never runs on the reactor),
            # which is logged, as under ASGI; the writer lets go of it
            self._gone = True
            self._chunks = self._response = None
            cut = None
            path = self._request.path.decode("utf-8", "replace")
            if not self._lost:
                if self._pool.stopped:
                    cut = "server stopping: connection cut"
                else:
                    log.failure("no thread for the rest of the response to {path}", level=LogLevel.error, path=path)
                    cut = "no thread for the rest of the body: connection cut"
                transport = self._request.channel.transport
                assert transport is not None, "the connection is not lost"
                cast(IStreamTransport, transport).abortConnection()
            log.warn("could not close the response body to {path}: no thread to close it in", path=path)
            self._end()
            self._log(cut)

    def _done(self, failure: Failure | None, closing: Failure | None = None) -> None:
        cut = None
        try:
            self._start(producing=False)  # a failure after start: the log line shows the handler's status
            cut = self._finish(failure, closing)
        finally:
            self._end()
            self._log(cut)

    def _log(self, cut: str | None) -> None:
        """Log the response's line (once), with why it was ``cut``, if it was; else why it did not reach its
        client whole, if it did not. A client that read the whole body may have left before the end of the
        response: its line is logged all the same."""
        if isinstance(self._request, GatewayRequest):
            self._request.cut = cut or self._left()
            log_response(self._request, self._reactor.seconds())

    def _left(self) -> str | None:
        """Why the response did not reach its client whole, if its client left, for its log line; ``None``
        if it did not leave, or left once it had it all: the whole body its ``Content-Length`` announced,
        where that is a number (``1*DIGIT``, RFC 9110 section 8.6: a handler may set any text)."""
        if not self._lost:
            return None
        request = self._request
        length = request.responseHeaders.getRawHeaders(b"Content-Length")
        if length and length[0].isdigit() and request.sentLength >= int(length[0]):
            return None
        if request.sentLength == 0 and not request.startedWriting:
            return "the client left before the response"
        return "the client left before the end of the response"

    def _end(self) -> None:
        """The handler returned and the body is spent, or abandoned."""
        if isinstance(self._request, GatewayRequest):
            self._request.on_connection_lost = None  # which would keep request and writer in a cycle
        self._finished(self)

    def _finish(self, failure: Failure | None, closing: Failure | None) -> str | None:
        """Finish the response, or cut its connection if part of its body may be out and the rest will not
        come (``failure``: what the handler or the body's iteration raised): why it was cut, for its log
        line; ``None`` if it was not. What closing the response raised (``closing``) is an error of the
        handler's too, but the response stands: WSGI closes a body once it is sent (PEP 3333), so a body
        that was whole is the client's whole answer."""
        request = self._request
        error = failure or closing  # one error per request
        if error is not None:
            # the application's error, as a handler's is (rolo.gateway): not a critical one of the server,
            # and counted among the handlers' errors, whether its client is still there or not
            cast("TwistedGateway", request.site).gateway.handler_errors.add("http")
            log.failure(
                "HTTP request to {path} failed", error, LogLevel.error, path=request.path.decode("utf-8", "replace")
            )
        if request.finished or self._lost:
            return None
        if self._started and (failure is not None or self._gone):
            # part of the body may be out: only a cut connection tells the client it is incomplete
            request.loseConnection()
            return "the body failed: connection cut" if failure is not None else "server stopping: connection cut"
        if failure is not None:
            request.setResponseCode(HTTPStatus.INTERNAL_SERVER_ERROR)
            request.responseHeaders.setRawHeaders(b"Content-Type", [b"text/plain; charset=utf-8"])
            request.write(b"internal server error\n")
        if request.producer is not None:
            request.unregisterProducer()
        request.finish()
        return None

    def pauseProducing(self) -> None:
        with self._lock:
            self._paused = True

    def resumeProducing(self) -> None:
        with self._lock:
            self._paused = False
        self._resume()

    def stopProducing(self) -> None:
        with self._lock:
            self._gone = True
        self._resume()


def note_refusal(request: Request, reason: str) -> None:
    """Say, for its log line, why the server answers ``request`` itself, without a handler."""
    if isinstance(request, GatewayRequest):
        request.refusal = reason


def _log_with_reason(peer: str, method: str, path: str, status: int | str, seconds: float, reason: str) -> None:
    """Log the line of a request the server answered itself, or that got no answer (``status`` ``-``),
    with why; nothing of it is made when its level is not logged."""
    if enabled(log, LogLevel.info):
        log.info(_REFUSED_LINE, method=method, path=path, peer=peer, status=status, duration=seconds, reason=reason)


def log_response(request: GatewayRequest, now: float) -> None:
    """Log one line for a response that has been written: method, path, peer, status and how long since
    the request arrived (``now`` is the reactor's clock), and count it in its site's
    :attr:`HttpResource.counters`. A request is logged and counted once; later calls do nothing. Nothing
    of the line is made when its level is not logged."""
    if request.logged:
        return
    request.logged = True
    request.site.http.counters.responded(request.code, now - request.received_at)
    if not enabled(log, LogLevel.info):
        return
    reason = request.refusal or request.cut
    log.info(
        _LINE if reason is None else _REFUSED_LINE,
        method=request.method.decode("latin-1"),
        path=request.path.decode("utf-8", "replace"),
        peer=peer_description(request),
        status=request.code,
        duration=now - request.received_at,
        reason=reason,
    )
