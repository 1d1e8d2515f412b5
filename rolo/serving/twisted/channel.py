"""The HTTP connection and request of Twisted Web as a gateway serves them."""

from __future__ import annotations

import time
from collections.abc import Callable
from functools import lru_cache
from typing import TYPE_CHECKING, Any

from twisted.internet.protocol import connectionDone
from twisted.python.failure import Failure
from twisted.web.http import HTTPChannel, datetimeToString
from twisted.web.iweb import INonQueuedRequestFactory
from twisted.web.server import Request, version
from zope.interface import provider

from ._twisted import (
    BadRequestHeard,
    collect_head,
    handling_request,
    header_bytes_received,
    reading_request,
    request_line,
    unsent_bytes,
    write_now,
)
from .forwarded import ForwardedClient, connection_peer

if TYPE_CHECKING:
    from ._interfaces import IStreamTransport
    from .site import TwistedGateway

__all__ = ["GatewayChannel", "GatewayRequest"]

WRITE_PROGRESS = 64 * 1024
"""Bytes a client must take of those waiting for it every ``write_timeout`` seconds (or all of them, if
fewer wait), or its connection is cut."""


@lru_cache(maxsize=2)
def http_date(second: int) -> bytes:
    """The HTTP date (RFC 9110 5.6.7) of a second since the epoch: made once for all the responses of
    that second."""
    date: bytes = datetimeToString(second)
    return date


class _BodyTooLarge(Exception):
    """Raised out of the body's parser once the body has passed ``max_body_size``, to stop it there."""


# a factory that takes the channel alone: Twisted Web asks this of its request factory for each request line,
# and a class that does not say so is given the deprecated ``queued`` argument (always 0) after a slower
# look through the class's type
@provider(INonQueuedRequestFactory)
class GatewayRequest(Request):
    """A Twisted Web request that also holds its headers as sent, ``raw_headers`` in order, when its
    request line arrived, ``received_at`` (by the site's reactor clock), whether its response has
    been ``logged``, how many bytes of its body have arrived, ``body_received``, and the client a trusted
    proxy ``forwarded`` it for (a :class:`~rolo.serving.twisted.forwarded.ForwardedClient`, or ``None``).

    ``on_connection_lost``, if set, is called (on the reactor thread) when the connection is lost before
    the request finished: what a ``notifyFinish()`` errback would learn, without a Deferred per request.
    """

    logged = False
    refusal: str | None = None
    """Why the server answered the request itself, without a handler (``"server shutting down"``), for its
    log line; ``None`` for a request a handler answered."""
    cut: str | None = None
    """Why the response a handler made did not reach the client whole (``"the client left before the end of
    the response"``), for its log line; ``None`` for one that did."""
    body_received = 0
    forwarded: ForwardedClient | None = None
    on_connection_lost: Callable[[], None] | None = None
    if TYPE_CHECKING:
        site: TwistedGateway  # the site whose request factory it is: set by Twisted Web as it makes one

    def __init__(self, channel: HTTPChannel, *args: Any, **kwargs: Any) -> None:
        super().__init__(channel, *args, **kwargs)
        self.raw_headers: list[tuple[bytes, bytes]] = []
        if TYPE_CHECKING:
            assert isinstance(channel, GatewayChannel)
        self.received_at: float = channel.site.reactor.seconds()

    def process(self) -> None:
        """Render the request with the site's resource, as Twisted Web does, where that resource is
        TwistedGateway's own: it takes every path as it is, so no tree is walked, and no path segments
        are split and decoded for one (``prepath`` and ``postpath`` stay empty). The ``Date`` header
        (RFC 9110 6.6.1) is the time of this call, formatted once a second. The target ``*``
        (``OPTIONS *``), or a site given another resource (wrapped for gzip, say), goes through Twisted
        Web's own processing."""
        site: TwistedGateway = self.channel.site  # type: ignore[attr-defined]  # the site's own channel
        resource = site.resource
        if self.path == b"*" or not getattr(resource, "takes_whole_path", False):
            super().process()
            return
        self.site = site
        self.prepath, self.postpath = [], []
        self.sitepath: list[bytes] = []
        self.setHeader(b"Server", version)
        self.setHeader(b"Date", http_date(int(time.time())))
        try:
            self.render(resource)
        except BaseException:
            self.processingFailed(Failure())

    def handleContentChunk(self, data: bytes) -> None:
        self.body_received += len(data)
        limit = getattr(self.channel, "max_body_size", None)
        if limit is not None and self.body_received > limit:
            raise _BodyTooLarge()
        super().handleContentChunk(data)

    def connectionLost(self, reason: Any) -> None:
        super().connectionLost(reason)
        if self.on_connection_lost is not None:
            self.on_connection_lost()


class GatewayChannel(BadRequestHeard):
    """Twisted Web's HTTP connection, with these changes:

    - it records each header line's name before Twisted canonicalises it (``GatewayRequest.raw_headers``);
    - a request's line and headers must arrive within ``header_timeout`` seconds, counted from the
      connection's start or from the first byte of a later request on it, and its body within
      ``body_timeout`` seconds after them, or the client gets a ``408`` and the connection closes.
      Twisted's own timeout is an idle one, which a client trickling one byte at a time (slowloris)
      resets forever;
    - a body over ``max_body_size`` bytes gets a ``413`` and the connection closes: at once when its
      ``Content-Length`` says so (no ``100 Continue`` is sent), as soon as it passes the limit when it is
      chunked. The rest is never read;
    - a request line or header line over ``MAX_LENGTH`` bytes gets a ``414`` or ``431`` where Twisted
      would close the connection without a word;
    - each of these refusals, and each ``400`` Twisted Web answers by itself (a malformed request line or
      header, request line and headers over ``totalHeadersSize`` bytes …, see :meth:`bad_request`), is
      counted and logged as a response is, with its reason
      (:meth:`~rolo.serving.twisted.http.HttpResource.refused`);
    - while the connection has more response bytes waiting than its transport's high-water mark
      (Twisted's ``bufferSize``, 64 KiB), no later request on it is started: requests pipelined behind
      stay unparsed, and the connection unread, until the client has taken them all;
    - meanwhile the client must take ``WRITE_PROGRESS`` bytes (or all, if fewer wait) every
      ``write_timeout`` seconds, or the connection is cut;
    - Twisted Web's idle timeout (the site's ``timeout``, ``keep_alive_timeout``) closes a connection
      idle between requests, but not one whose client is still reading an answer;
    - once a request upgrades the connection (:meth:`switch_protocols`), the bytes behind it go to the new
      protocol rather than wait for a next HTTP request;
    - its local and peer addresses and whether it is secure, which Twisted Web asks for each request (a
      system call, an address object made, an adapter lookup), are looked up once per connection;
    - a response written between :meth:`gather_writes` and :meth:`flush_writes` (its head and body) goes
      to the transport in one write, and straight into the socket when nothing waits before it.
    """

    header_timeout: float | None = None
    body_timeout: float | None = None
    max_body_size: int | None = None
    write_timeout: float | None = None
    _deadline: Any = None  # of the request's head, then of its body: its delayed call, while it runs
    _deadline_call: Any = None  # that call, kept once the deadline is met, for the next one to move
    _refused = False
    _heard = False  # whether the client has sent any byte on this connection
    _head_began = 0.0  # when the current request's head began (reactor clock): its connection, or first bytes
    _idle_timed_out: float | None = None  # the idle timeout that closed the connection, in seconds, once it did
    _send_blocked = False  # the transport paused the channel: its buffer is over the high-water mark
    _write_deadline: Any = None
    _written = 0  # response bytes written to the transport, ever
    _mark: tuple[int | None, int] = (None, 0)  # unsent bytes and _written when the write deadline was set
    _held: bytes | None = None  # received while send-blocked between requests, not parsed yet
    _switched_to: Any = None  # the protocol that took the connection over (a WebSocket's)
    _host: Any = None  # the local address, once asked for
    _peer: Any = None  # the peer's address, once asked for
    _secure: bool | None = None  # whether the transport is TLS, once asked
    _gathered: list[bytes] | None = None  # what a response wrote since gather_writes, not yet written
    if TYPE_CHECKING:
        transport: IStreamTransport | None
        site: TwistedGateway  # set by the site that built it

    def switch_protocols(self, protocol: Any) -> None:
        """Hand what the client sends from now on to ``protocol``, which has taken the connection over:
        the bytes that came behind the request being handled, in the same read, first (RFC 9110 7.8)."""
        self._switched_to = protocol
        # no request follows, and the connection's loss goes to the new protocol: the call kept for the
        # next request's deadline would keep this channel alive until it fired
        self._deadline = None
        _cancel(self._deadline_call)
        self._deadline_call = None
        self._stop_idle_timeout()

    def connectionMade(self) -> None:
        super().connectionMade()
        self._head_began = self.site.reactor.seconds()
        self._start_deadline(self.header_timeout)

    def getHost(self) -> Any:
        if self._host is None:
            self._host = super().getHost()
        return self._host

    def getPeer(self) -> Any:
        if self._peer is None:
            self._peer = super().getPeer()
        return self._peer

    def isSecure(self) -> bool:
        if self._secure is None:
            secure: bool = super().isSecure()
            self._secure = secure
            return secure
        return self._secure

    def dataReceived(self, data: bytes) -> None:
        if self._refused:
            return  # the connection is closing after a refusal: nothing more is parsed
        self._heard = True
        if self._held is not None:
            self._held += data  # no request starts while earlier answers wait unsent
            return
        if self._deadline is None and self.line_mode and not handling_request(self):
            # the first bytes of another request on this connection (or, with no header_timeout, the latest)
            self._head_began = self.site.reactor.seconds()
            self._start_deadline(self.header_timeout)
        super().dataReceived(data)

    def headerReceived(self, line: bytes) -> bool:
        accepted: bool = super().headerReceived(line)
        if accepted:
            name, _, value = line.partition(b":")
            request = self.requests[-1]
            if isinstance(request, GatewayRequest):
                request.raw_headers.append((name, value.strip(b" \t")))
        return accepted

    def allHeadersReceived(self) -> None:
        self._cancel_deadline()
        if self.max_body_size is not None and self.length is not None and self.length > self.max_body_size:
            # before the 100 Continue Twisted would send
            self._refuse(b"413 Content Too Large", "Content-Length over max_body_size")
            return
        super().allHeadersReceived()
        if self.length != 0:  # a body follows: of that length, or chunked
            self._start_deadline(self.body_timeout)

    def rawDataReceived(self, data: bytes) -> None:
        if self._switched_to is not None:
            self._switched_to.dataReceived(data)
            return
        try:
            super().rawDataReceived(data)
        except _BodyTooLarge:
            self._refuse(b"413 Content Too Large", "body over max_body_size")

    def allContentReceived(self) -> None:
        self._cancel_deadline()
        super().allContentReceived()

    def lineLengthExceeded(self, line: bytes) -> None:
        # no line completed yet means the request line itself is the long one
        if header_bytes_received(self) == 0:
            self._refuse(b"414 URI Too Long", f"request line over {self.MAX_LENGTH} bytes")
        else:
            self._refuse(b"431 Request Header Fields Too Large", f"header line over {self.MAX_LENGTH} bytes")

    def bad_request(self, reason: str) -> None:
        """Count and log the ``400`` Twisted Web is about to answer, for ``reason``, as the refusals here
        are; nothing more of the connection is parsed."""
        if not self._refused:
            self._refused = True
            self._account_refusal(400, reason)

    def gather_writes(self) -> bool:
        """Hold what responses write (heads included) until :meth:`flush_writes`, which writes it all at
        once; call it on the reactor thread, and :meth:`flush_writes` before the reactor gets back to I/O.
        Whether it started holding (``False``: it holds already, and the caller leaves the flush to who
        started it).

        Each write to a transport only buffers, and has the reactor watch the socket for writability
        (``epoll_ctl``), write on its next turn, and stop watching (``epoll_ctl``): a small response's head
        and body, written at once, usually fit in the socket's buffer straight away. A request that ends
        (:meth:`requestDone`) or a connection that is closed writes what is held first.
        """
        if self._gathered is not None:
            return False
        self._gathered = []
        return True

    def flush_writes(self) -> None:
        """Write what :meth:`gather_writes` held, in one write, and stop holding."""
        gathered, self._gathered = self._gathered, None
        if gathered and self.transport is not None:
            write_now(self.transport, [b"".join(gathered)])  # one piece: a head is dozens of small ones

    def writeHeaders(self, version: bytes, code: bytes, reason: bytes, headers: Any) -> None:
        gathered = self._gathered
        if gathered is not None:
            if collect_head(self, gathered, version, code, reason, headers):
                return
            self.flush_writes()  # the head goes to the transport itself: what was held goes before it
        super().writeHeaders(version, code, reason, headers)

    def loseConnection(self) -> None:
        self.flush_writes()
        super().loseConnection()

    def requestDone(self, request: Request) -> None:
        # what the response wrote goes out before a request pipelined behind it is parsed (and may write,
        # or take the connection over)
        self.flush_writes()
        if self._send_blocked and self.persistent:
            # what Twisted hands back of the requests pipelined behind this one is held, unparsed, and the
            # connection goes unread, until the client has taken the answers waiting for it
            self._held = b""
            super().requestDone(request)
            if self.transport is not None:
                self.transport.pauseProducing()
        else:
            super().requestDone(request)

    def write(self, data: bytes) -> None:
        self._written += len(data)
        if self._gathered is not None:
            self._gathered.append(data)
        else:
            super().write(data)

    def writeSequence(self, iovec: list[bytes]) -> None:
        self._written += sum(map(len, iovec))
        if self._gathered is not None:
            self._gathered.extend(iovec)
        else:
            super().writeSequence(iovec)

    def pauseProducing(self) -> None:
        # the transport's buffer is over its high-water mark
        self._send_blocked = True
        if self._write_deadline is None and self.write_timeout:
            self._start_write_deadline()
        super().pauseProducing()

    def resumeProducing(self) -> None:
        # the transport has written all it had
        self._send_blocked = False
        self._cancel_write_deadline()
        super().resumeProducing()
        if self._held is not None and self.transport is not None:
            held, self._held = self._held, None
            if held:
                self.dataReceived(held)

    def setTimeout(self, period: float | None) -> float | None:
        # Twisted Web turns its idle timeout off while it handles a request (period None) and back on
        # after, which cancels one delayed call and makes another per request: here the call stays while
        # the timeout is off, and is moved when it is back on. The connection's loss or hand-over to
        # another protocol cancels it (_stop_idle_timeout)
        if period is None:
            previous = self.timeOut
            self.timeOut = None
            return previous
        previous_period: float | None = super().setTimeout(period)
        return previous_period

    def _stop_idle_timeout(self) -> None:
        self.timeOut = None
        super().setTimeout(None)  # cancels the call, which keeps the channel alive until it runs

    def timeoutConnection(self) -> None:
        if self.timeOut is None:
            return  # the idle timeout is off (a request is handled): its call ran meanwhile
        # Twisted Web's idle timeout, off while a request is handled; idle here means between requests
        if self.transport is not None and unsent_bytes(self.transport):
            self.setTimeout(self.timeOut)  # the client is still reading an answer: write_timeout's business
            return
        self._idle_timed_out = self.timeOut  # amid a request's head or body, without header_timeout or body_timeout
        super().timeoutConnection()

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        if not self._refused and self._switched_to is None and reading_request(self):
            self._account_left()
        self._cancel_deadline()
        _cancel(self._deadline_call)
        self._deadline_call = None
        self._cancel_write_deadline()
        self._stop_idle_timeout()
        super().connectionLost(reason)

    def _start_deadline(self, timeout: float | None) -> None:
        if not timeout:
            return
        # a request on a kept-alive connection moves the call its predecessor left, which costs less than
        # a call made and cancelled for each
        call = self._deadline_call
        if call is not None and call.active():
            call.reset(timeout)
        else:
            call = self._deadline_call = self.callLater(timeout, self._timed_out)
        self._deadline = call

    def _cancel_deadline(self) -> None:
        # the call stays, for the next deadline to move; if it comes first, it finds no deadline running
        self._deadline = None

    def _timed_out(self) -> None:
        self._deadline_call = None
        if self._deadline is None:
            return  # the deadline was met
        self._deadline = None
        if not self._heard:
            # no request: a connection opened ahead of one (a browser's preconnect) is closed, not logged
            self._refuse(b"408 Request Timeout", None)
        elif self.line_mode:
            self._refuse(b"408 Request Timeout", "request line and headers not received within header_timeout")
        else:
            self._refuse(b"408 Request Timeout", "body not received within body_timeout")
        # a client that reads nothing (or never finished its TLS handshake) cannot be closed politely:
        # it gets as long again to take the answer, then the connection is cut
        self._abortingCall = self.callLater(self.header_timeout or self.body_timeout, self.forceAbortClient)

    def _cancel_write_deadline(self) -> None:
        _cancel(self._write_deadline)
        self._write_deadline = None

    def _start_write_deadline(self) -> None:
        self._mark = unsent_bytes(self.transport), self._written
        self._write_deadline = self.callLater(self.write_timeout, self._write_timed_out)

    def _write_timed_out(self) -> None:
        self._write_deadline = None
        if self.transport is None:
            return  # handed over to a WebSocket protocol
        (unsent_then, written_then), unsent = self._mark, unsent_bytes(self.transport)
        if unsent is not None and unsent_then is not None:
            waiting = unsent_then + self._written - written_then  # all the client could have taken
            if waiting - unsent >= min(WRITE_PROGRESS, waiting):
                self._start_write_deadline()  # slow, but reading: another write_timeout for as much again
                return
        self.transport.abortConnection()

    def _refuse(self, status: bytes, reason: str | None) -> None:
        """Answer ``status`` (``b"413 Content Too Large"``) and close the connection, the request unread;
        counted and logged, with ``reason``, as the site's responses are (``None``: on a connection where
        no request began, neither)."""
        if self._refused:
            return  # more of the same request arrived before the connection closed
        self._refused = True
        request = self.requests[-1] if self.requests else None  # once its request line arrived
        if request is not None and request.content is not None:
            request.content.close()  # the part of a body that came: its temporary file goes now
        assert self.transport is not None, "a request is refused on its open connection"
        self.transport.write(b"HTTP/1.1 %s\r\nConnection: close\r\nContent-Length: 0\r\n\r\n" % status)
        if reason is not None:
            self._account_refusal(int(status[:3]), reason)
        self.loseConnection()

    def _account_left(self) -> None:
        """Log the request whose head or body was arriving when its connection ended: no handler saw it,
        and it got no response. Its client left; or Twisted Web's idle timeout closed it (without
        ``header_timeout`` or ``body_timeout``, nothing else limits a request that stalls); or, once the
        server is stopping, the process's exit may have cut it as well."""
        request = self.requests[-1]
        method, path = request_line(self)
        began = request.received_at if isinstance(request, GatewayRequest) else self._head_began
        part = "headers" if self.line_mode else "body"
        if self._idle_timed_out is not None:
            reason = f"timed out: no more of the request {part} within keep_alive_timeout ({self._idle_timed_out:g}s)"
        elif self.site.websocket.host.accepting:
            reason = f"the client left before the request {part} ended"
        else:
            reason = f"server stopping: the connection ended before the request {part} did"
        self.site.http.unanswered(
            connection_peer(self.transport), method, path, reason, self.site.reactor.seconds() - began
        )

    def _account_refusal(self, status: int, reason: str) -> None:
        """Count and log a refusal of the request whose head is being parsed: from its arrival, or from the
        head's start where no request line came."""
        request = self.requests[-1] if self.requests else None  # once its request line arrived
        method, path = request_line(self)
        if isinstance(request, GatewayRequest):
            request.logged = True  # by the line refused writes
            began = request.received_at
        else:
            began = self._head_began
        self.site.http.refused(self, method, path, status, reason, self.site.reactor.seconds() - began)


def _cancel(call: Any) -> None:
    """Cancel a delayed call (or ``None``) if it has not run."""
    if call is not None and call.active():
        call.cancel()
