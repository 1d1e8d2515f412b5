"""Plain HTTP on Twisted Web: the gateway runs in a thread of a pool, the reactor writes the response."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from http import HTTPStatus
from typing import Any

from autobahn.twisted.util import peer2str
from twisted.internet.interfaces import IPushProducer
from twisted.python.failure import Failure
from twisted.logger import Logger
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Request
from zope.interface import implementer

from rolo.gateway import Gateway
from rolo.request import Request as RoloRequest
from rolo.response import Response
from rolo.threads import HandlerCount, HandlerPool

from .channel import GatewayRequest
from .environ import environ_for
from .settings import TwistedSettings

__all__ = ["HttpResource", "log_response"]

log = Logger()


class HttpResource(Resource):
    """Serves plain HTTP requests through a gateway.

    The gateway runs, and a streamed response body is iterated, in a thread of :attr:`pool`; the reactor
    thread does every write. A body that is a sequence is written at once; a streamed one chunk by chunk,
    the iterating thread waiting while the client is slow to read (the transport pauses its producer).
    A client that reads nothing for ``write_timeout`` seconds is abandoned: its connection is cut and the
    thread goes back to the pool, so that clients that stop reading cannot take every HTTP thread.
    Once the pool has stopped, a request (on a connection kept alive from before) is answered 503 and the
    connection closed.

    :param gateway: the gateway to serve
    :param settings: the server's settings (``http_threads``, ``write_timeout``)
    :param reactor: the reactor the server runs on
    :ivar pool: the threads the handlers run in, ``http_threads`` of them at most
    :ivar handlers: the requests between their arrival and their handler's return
    """

    isLeaf = True

    def __init__(self, gateway: Gateway, settings: TwistedSettings, reactor: Any) -> None:
        super().__init__()
        self.gateway = gateway
        self.reactor = reactor
        self.write_timeout = settings.write_timeout
        self.pool = HandlerPool("rolo-http", settings.http_threads, max_waiting=2**62)
        self.handlers = HandlerCount()
        self._writers: set[_ResponseWriter] = set()  # reactor thread only

    def render(self, request: Request) -> bytes | int:
        environ = environ_for(request)
        writer = _ResponseWriter(request, self.reactor, self.handlers.finished, self.write_timeout)
        try:
            self.pool.submit(lambda: self._serve(environ, writer))
        except RuntimeError:
            request.setResponseCode(HTTPStatus.SERVICE_UNAVAILABLE)
            request.setHeader(b"Content-Type", b"text/plain; charset=utf-8")
            request.setHeader(b"Connection", b"close")
            return b"server shutting down\n"
        self.handlers.started()
        self._writers.add(writer)
        request.notifyFinish().addBoth(lambda _: self._writers.discard(writer))
        return NOT_DONE_YET

    def stop_writing(self) -> None:
        """Make every response still being written give up, cutting its connection, so that no handler
        thread stays blocked on a slow client (call before stopping the pool)."""
        for writer in list(self._writers):
            writer.stopProducing()

    def _serve(self, environ: dict[str, Any], writer: _ResponseWriter) -> None:
        # a thread of the pool
        try:
            response = Response()
            self.gateway.process(RoloRequest(environ), response)
            try:
                body, status, headers = response.get_wsgi_response(environ)
                writer.start(int(status.split(" ", 1)[0]), headers)
                if response.is_sequence:
                    writer.write_all(list(body))
                else:
                    for chunk in body:
                        if not writer.write(chunk):
                            break  # the client went away
            finally:
                response.close()
        except BaseException:
            writer.done(False, Failure())
        else:
            writer.done(True, None)


@implementer(IPushProducer)
class _ResponseWriter:
    """Carries one response from its handler thread to the reactor; ``finished`` is called on the reactor
    thread once the handler has returned. A chunk waits at most ``write_timeout`` seconds for the client
    to read."""

    def __init__(
        self, request: Request, reactor: Any, finished: Callable[[], None], write_timeout: float | None
    ) -> None:
        self._request = request
        self._reactor = reactor
        self._finished = finished
        self._write_timeout = write_timeout
        self._stalled = False
        self._started = False
        self._writable = threading.Condition()
        self._paused = False
        self._in_flight = False
        self._gone = False  # the response is abandoned: the client left, or the server stops
        self._lost = False  # the connection is lost
        request.notifyFinish().addErrback(self._connection_lost)

    # handler thread

    def start(self, status: int, headers: Iterable[tuple[str, str]]) -> None:
        # encoded here, so that a header that is not Latin-1 fails the request with a 500 rather than
        # failing in the reactor and leaving a 200 without it
        encoded = [(name.encode("latin-1"), value.encode("latin-1")) for name, value in headers]
        self._started = True
        self._reactor.callFromThread(self._start, status, encoded)

    def write_all(self, chunks: list[bytes]) -> None:
        self._reactor.callFromThread(self._write_all, chunks)

    def write(self, chunk: bytes) -> bool:
        """Hand a chunk to the reactor, once the previous one is written and the client reads; False once
        the response is abandoned (the client left, or the server stops)."""
        with self._writable:
            # one chunk in flight at a time, none while the client is not reading: a slow client slows
            # the handler instead of growing memory. stopProducing() and the timeout are the ways out.
            writable = self._writable.wait_for(
                lambda: self._gone or not (self._paused or self._in_flight), self._write_timeout
            )
            if not writable:
                self._gone = self._stalled = True
            if self._gone:
                return False
            self._in_flight = True
        self._reactor.callFromThread(self._write, chunk)
        return True

    def done(self, success: bool, result: Any) -> None:
        """The handler thread finished: finish the response, or fail it with a 500."""
        self._reactor.callFromThread(self._done, success, result)

    # reactor thread

    def _connection_lost(self, reason: Failure) -> None:
        self._lost = True
        self.stopProducing()

    def _start(self, status: int, headers: list[tuple[bytes, bytes]]) -> None:
        request = self._request
        if request.finished or self._lost:
            return
        request.setResponseCode(status)
        for name, value in headers:
            request.responseHeaders.addRawHeader(name, value)
        request.registerProducer(self, True)

    def _write_all(self, chunks: list[bytes]) -> None:
        if not self._gone and not self._lost:
            self._request.write(b"".join(chunks))

    def _write(self, chunk: bytes) -> None:
        if chunk and not self._gone and not self._lost:
            self._request.write(chunk)
        with self._writable:
            self._in_flight = False
            self._writable.notify_all()

    def _done(self, success: bool, result: Any) -> None:
        try:
            self._finish(success, result)
        finally:
            self._finished()
            # a client that read the whole body may have left before the finish: log its response anyway
            if isinstance(self._request, GatewayRequest):
                log_response(self._request, self._reactor.seconds())

    def _finish(self, success: bool, result: Any) -> None:
        request = self._request
        if request.finished or self._lost:
            return
        if not success:
            log.failure("HTTP request to {path} failed", result, path=request.path)
        if self._stalled:
            # a client that reads nothing would never let a polite close flush: cut it
            request.channel.transport.abortConnection()
            return
        if self._started and (not success or self._gone):
            # part of the body may be out: only a cut connection tells the client it is incomplete
            request.loseConnection()
            return
        if not success:
            request.setResponseCode(HTTPStatus.INTERNAL_SERVER_ERROR)
            request.responseHeaders.setRawHeaders(b"Content-Type", [b"text/plain; charset=utf-8"])
            request.write(b"internal server error\n")
        if request.producer is not None:
            request.unregisterProducer()
        request.finish()

    def pauseProducing(self) -> None:
        with self._writable:
            self._paused = True

    def resumeProducing(self) -> None:
        with self._writable:
            self._paused = False
            self._writable.notify_all()

    def stopProducing(self) -> None:
        with self._writable:
            self._gone = True
            self._writable.notify_all()


def log_response(request: GatewayRequest, now: float) -> None:
    """Log one line for a response that has been written: method, path, peer, status and how long since
    the request arrived (``now`` is the reactor's clock). A request is logged once; later calls do
    nothing."""
    if request.logged:
        return
    request.logged = True
    log.info(
        "{method} {path} from {peer}: {status} in {duration:.3f}s",
        method=request.method.decode("latin-1"),
        path=request.path.decode("utf-8", "replace"),
        peer=peer2str(request.transport) if request.transport is not None else "unknown",
        status=request.code,
        duration=now - request.received_at,
    )
