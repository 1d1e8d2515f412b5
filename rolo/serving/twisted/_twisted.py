"""The private parts of Twisted that rolo uses, in one place, each with a fallback to the public path.

Twisted is pinned below its next major release in the package's requirements, and
``./dev test-newest`` runs the test suite against its newest release. If a part used here is missing or
changed, rolo takes the public path instead, which is slower but right:

- :func:`write_now` writes straight to a TCP socket (``tcp.Connection``'s buffer fields and
  ``writeSomeData``); the public path is ``transport.write``, which writes on the reactor's next turn.
  :func:`write_each` writes one frame that way to many connections in one loop (a broadcast).
- :func:`read_into` has a TCP connection read the rest of a large frame straight into the buffer that
  gathers it (``socket.recv_into``), by standing in for the connection's ``doRead`` until the buffer is
  full; Twisted's ``doRead`` reads at most 64 KiB (``bufferSize``) into new bytes at a time, which the
  protocol then copies into the buffer: 16 turns of the reactor and a copy for a message of 1 MiB.
  A TLS connection reads as usual. :func:`read_now` has the stand-in read at once what the socket holds,
  :func:`stop_reading_into` takes it away.
- Both take Twisted's UNIX server connections for TCP ones, as they are (``unix.Server`` subclasses
  ``tcp.Server``, adding the passing of file descriptors, which rolo does not use).
- :func:`forget_exit_signal` clears the signal ``twistd`` re-raises at exit (the reactor's
  ``_exitSignal``), so that a graceful stop exits with status 0; without it, status -15 for SIGTERM.
- :func:`collect_head` has ``HTTPChannel.writeHeaders`` write a response's head into a list rather than
  to the transport (the transport stands aside while it runs), so that head and body go out in one write;
  where ``writeHeaders`` asks more of the transport than ``writeSequence``, the head is written as usual.
- :func:`unsent_bytes` reads the same buffer fields, to tell a client that reads slowly from one that
  reads nothing; without them, a connection whose writes stay paused is taken for one that reads nothing.
- :func:`handling_request` and :func:`header_bytes_received` read two fields of ``HTTPChannel``'s parser
  state; without them the header timeout starts on any data, and an over-long line is answered 431.
  :func:`request_line` reads the method and target it keeps of the request line it parsed (``_command``,
  ``_path``), for the line logged when a request is refused before its handler; without them, that line
  shows ``- -`` for them.
- :class:`BadRequestHeard` tells a channel of each ``400`` Twisted Web answers by itself (a malformed
  request line or header, request line and headers over ``totalHeadersSize``, more than ``maxHeaders``
  headers, a malformed chunked body), which it does through ``HTTPChannel``'s
  ``_respondToBadRequestAndDisconnect``, with the reason read from the parser's state (``_command``,
  ``_receivedHeaderCount``, and the two fields above); without that method, those ``400`` go untold, and
  without the fields, the reason is ``"malformed request"``.
- :func:`adopt_unix_port` makes a worker's port on the listening UNIX socket its supervisor shares
  (``unix.Port._fromListeningDescriptor``, and ``_shouldShutdown`` off); the public path,
  ``reactor.adoptStreamPort``, makes the socket's file world-writable (0o666) as it starts, resets the
  backlog to 50, and when one worker stops, shuts the socket down for all of them and removes its file.
- :func:`without_port_line` leaves out the line each TCP, SSL and UNIX port writes as it starts
  (``TwistedGateway starting on 8000``) through the legacy ``log.msg``: rolo writes its own, with the
  address. The legacy log takes an event's keys from its context (``log.callWithContext``), and an event
  whose ``log_format`` is ``None`` has no text, which Twisted's text observers skip. Where that changes,
  Twisted's line shows again beside rolo's.
- :func:`dispatch_directly` has an epoll reactor (Twisted's default on Linux) call each ready connection's
  ``doRead`` or ``doWrite`` directly from its poll (``EPollReactor.doPoll``, which reads ``_poller``,
  ``_selectables`` and ``_doReadOrWrite``), rather than through ``log.callWithLogger``, which pushes a
  legacy log context naming the connection for the length of the call: 1.8 µs for every event, as much as
  parsing a small frame. The other events of a poll are still handled when one raises. What the legacy
  ``twisted.python.log`` records inside the call shows ``-`` as its system rather than the connection:
  a protocol's own ``log.msg`` lines, and the failures Twisted catches and logs itself, which are those
  a protocol raises as it reads or writes (``dataReceived``, a factory's ``buildProtocol``). Only what
  escapes ``_doReadOrWrite`` (a raising ``connectionLost``) is logged under the connection's
  ``logPrefix``, as before. rolo logs through :mod:`logging`, which none of this touches. Any other
  reactor, or one whose ``doPoll`` names anything it did not (:func:`poll_is_known`), is left as it is.
  Its poll then also runs the calls :func:`call_after_poll` was given once it has handled its events,
  where ``reactor.callLater(0, …)`` would have each wait in the reactor's heap of timed calls; without
  it, the caller makes that timed call. The poll reads the pipe of the reactor's ``_UnixWaker`` itself
  when it is ready to read, as its ``doRead`` does (``fdesc.readFromFD``, 8 KiB at most), rather than
  through ``_doReadOrWrite`` and two calls more; where the waker's ``doRead`` names anything else, or
  the read fails otherwise than with ``EAGAIN``, the waker reads it. It takes an event that is a read
  alone (the commonest) as ``_doReadOrWrite`` (``_PollLikeMixin``'s) does, reading ``_NO_FILEDESC``
  and calling ``_disconnectSelectable``, without its call and its tests of the other events; where
  ``_doReadOrWrite`` names anything else, it calls it. And the reactor's ``timeout``
  (``ReactorBase.timeout``, reading ``_pendingTimedCalls``) is one without its calls of ``min`` and
  ``max``, unless it names anything else: with Twisted Web's timer that updates the log's date every
  second, every turn of the reactor makes them.
- :func:`call_from_thread` is ``reactor.callFromThread`` for calls without arguments, which writes the byte
  that wakes the reactor itself (to the pipe of Twisted's ``_UnixWaker``, its ``o``), as the waker's
  ``wakeUp`` does, without the retry helper it reaches through a deprecated module's proxy: at one
  connection, a fifth of what a handler's send costs the handler's thread. It puts the call into the
  reactor's ``threadCallQueue`` as ``callFromThread`` does. A reactor whose ``callFromThread`` or
  ``wakeUp`` is not ``ReactorBase``'s, or a waker of another kind, takes the public path, as does any
  reactor where ``ReactorBase.callFromThread``, ``ReactorBase.wakeUp`` or ``_UnixWaker.wakeUp`` names
  anything other than what the ones it was written against do.
- :func:`logging_began` reads whether ``globalLogBeginner`` still holds its buffer for the events logged
  before logging began (``_temporaryObserver``); without it, rolo's records go both to Twisted's log and
  to standard error, so that none is lost.
"""

from __future__ import annotations

import errno
import os
import socket
from collections.abc import Callable, Sequence
from types import MethodType
from typing import Any, TypeVar, cast

from twisted.internet import abstract, base, epollreactor, fdesc, main, posixbase, tcp, unix
from twisted.internet.interfaces import IListeningPort
from twisted.logger import globalLogBeginner
from twisted.python import log
from twisted.web.http import HTTPChannel

__all__ = [
    "BadRequestHeard",
    "adopt_unix_port",
    "call_after_poll",
    "call_from_thread",
    "collect_head",
    "dispatch_directly",
    "forget_exit_signal",
    "handling_request",
    "header_bytes_received",
    "logging_began",
    "poll_is_known",
    "read_into",
    "read_now",
    "request_line",
    "stop_reading_into",
    "unsent_bytes",
    "without_port_line",
    "write_each",
    "write_now",
]

T = TypeVar("T")

_MISSING = object()


def _names(function: Any) -> set[str]:
    """The names a function's code reads (its globals and attributes), none where it has no code."""
    return set(getattr(getattr(function, "__code__", None), "co_names", ()))


# the buffer fields write_now reads are set by FileDescriptor.__init__ and its write methods
_FAST_WRITE = all(hasattr(tcp.Connection, name) for name in ("writeSomeData", "dataBuffer", "offset", "TLS")) and (
    "_tempDataLen" in _names(abstract.FileDescriptor.__init__)
)


def write_now(transport: Any, pieces: Sequence[bytes]) -> None:
    """Write ``pieces``, in order, to a TCP transport's socket at once when nothing waits before them (in
    one ``sendmsg``, without joining them), and buffer what the socket does not take. ``pieces`` is not
    changed, so one frame may be written to many connections.

    A transport's ``write`` only buffers: the bytes go out on a later turn of the reactor, once epoll says
    the socket is writable, which costs two ``epoll_ctl`` calls (to watch for writability and to stop) and
    that turn. Small writes usually fit in the socket's send buffer straight away. Anything but a plain
    TCP (or UNIX) connection with an empty buffer (TLS) takes ``transport.writeSequence``.
    """
    if _FAST_WRITE and _writable_now(transport):
        try:
            if len(pieces) == 1:  # most writes: done once the socket takes it
                written = transport.socket.send(pieces[0])
                if written == len(pieces[0]):
                    return
            else:
                written = transport.socket.sendmsg(pieces)
        except OSError:  # the socket is full, or the connection is lost: the buffered write below lets
            written = 0  # Twisted wait for room, or find out and close it
        _buffer_rest(transport, pieces, written)
    else:
        transport.writeSequence(pieces)


def write_each(
    transports: Sequence[Any], pieces: Sequence[bytes], failed: Callable[[Any, Exception], None]
) -> None:
    """:func:`write_now` ``pieces`` to each of ``transports`` in turn, leaving ``pieces`` as it is: one frame
    to many connections (a broadcast), in one loop where a call of :func:`write_now` for each would cost a
    tenth of a microsecond more than the checks it makes. A transport whose write raises is reported to
    ``failed(transport, error)``, and the others are still written to."""
    if not (_FAST_WRITE and len(pieces) == 1):
        for transport in transports:
            try:
                write_now(transport, pieces)
            except Exception as error:
                failed(transport, error)
        return
    data = pieces[0]
    size = len(data)
    for transport in transports:
        try:
            if _writable_now(transport):
                try:
                    written = transport.socket.send(data)
                except OSError:  # as in write_now
                    written = 0
                if written != size:
                    _buffer_rest(transport, pieces, written)
            else:
                transport.writeSequence(pieces)
        except Exception as error:  # a producer's, say: the others still get the frame
            failed(transport, error)


def _writable_now(transport: Any) -> bool:
    """Whether ``transport`` is a plain TCP (or UNIX) connection, open, with nothing waiting to be sent
    before what is written now (read only where ``_FAST_WRITE`` holds)."""
    return bool(
        isinstance(transport, tcp.Connection)
        and not transport.TLS
        and transport.connected
        and not transport.disconnecting
        and not transport._tempDataLen
        and transport.offset == len(transport.dataBuffer)
    )


def _buffer_rest(transport: Any, pieces: Sequence[bytes], written: int) -> None:
    """Have Twisted write what the socket did not take of ``pieces``, whose first ``written`` bytes it
    did (Twisted waits for room, or finds the connection lost and closes it)."""
    rest = list(pieces)
    while written and rest:
        if written >= len(rest[0]):
            written -= len(rest.pop(0))
        else:
            rest[0], written = rest[0][written:], 0
    if rest:
        transport.writeSequence(rest)


_READ_INTO = _FAST_WRITE and callable(getattr(tcp.Connection, "doRead", None))


def read_into(transport: Any, buffer: memoryview, received: Callable[[int], None]) -> bool:
    """Have a TCP transport read what comes next from its socket straight into ``buffer``, as much as the
    socket has each time it is readable, until ``buffer`` is full; ``received(count)`` is called after
    each read, ``count`` bytes more being in ``buffer``, and once it is full, reading goes on as usual
    (the call that fills it comes after that). Whether it does: ``False`` (and nothing changed) for
    anything but a plain TCP (or UNIX) connection; the bytes then come to the protocol's
    ``dataReceived``."""
    if not (_READ_INTO and isinstance(transport, tcp.Connection) and not transport.TLS and len(buffer)):
        return False
    vars(transport)["doRead"] = _ReadInto(transport, buffer, received)  # the reactor calls it instead
    return True


def read_now(transport: Any) -> None:
    """Have a transport that :func:`read_into` set up read what its socket holds at once, rather than on
    the reactor's next turn: the rest of a frame has often come with its start. Does nothing for a
    transport reading as usual. Call it where the protocol may take what ``received`` hands it."""
    reader = getattr(transport, "doRead", None)
    if isinstance(reader, _ReadInto):
        reader.read_now()


def stop_reading_into(transport: Any) -> None:
    """Undo :func:`read_into` before its buffer is full (the connection was lost): drop the buffer, and
    its cycle through the transport, at once. Does nothing for a transport reading as usual."""
    if isinstance(getattr(transport, "doRead", None), _ReadInto):
        del vars(transport)["doRead"]


class _ReadInto:
    """Stands in for a TCP connection's ``doRead`` (which the reactor calls when its socket is readable)
    while ``buffer`` fills; it returns what ``doRead`` does: ``None``, or why the connection ended."""

    __slots__ = ("_buffer", "_ended", "_filled", "_received", "_transport")

    def __init__(self, transport: tcp.Connection, buffer: memoryview, received: Callable[[int], None]) -> None:
        self._transport = transport
        self._buffer = buffer
        self._filled = 0
        self._received = received
        self._ended: Any = None

    def read_now(self) -> None:
        # why the connection ended, if it did, is the reactor's to hear: the socket stays readable, and
        # the reactor's next call returns it
        self._ended = self()

    def __call__(self) -> Any:
        if self._ended is not None:
            return self._ended
        transport = self._transport
        try:
            count = transport.socket.recv_into(self._buffer[self._filled :])
        except BlockingIOError:
            return None
        except OSError:
            return main.CONNECTION_LOST
        if not count:
            return main.CONNECTION_DONE
        self._filled += count
        if self._filled == len(self._buffer):
            del vars(transport)["doRead"]  # the class's again
        self._received(count)
        return None


class _HeadCollector:
    """Stands in for a channel's transport while ``HTTPChannel.writeHeaders`` runs: keeps what it writes."""

    def __init__(self, into: list[bytes]) -> None:
        self.writeSequence = into.extend


def collect_head(channel: HTTPChannel, into: list[bytes], *head: Any) -> bool:
    """Append to ``into`` the bytes ``HTTPChannel.writeHeaders(*head)`` would write to ``channel``'s
    transport (status line, headers, blank line), instead of writing them. Whether it could: ``False``
    (and ``into`` as it was) where ``writeHeaders`` uses more of the transport than ``writeSequence``."""
    mark = len(into)
    transport = channel.transport
    # a stand-in, not an ITransport: writeHeaders calls its writeSequence alone (AttributeError otherwise)
    channel.transport = _HeadCollector(into)  # type: ignore[assignment]
    try:
        HTTPChannel.writeHeaders(channel, *head)
    except AttributeError:
        del into[mark:]
        return False
    finally:
        channel.transport = transport
    return True


def unsent_bytes(transport: Any) -> int | None:
    """How many bytes written to a connection have not gone out to the socket yet (under TLS, the
    encrypted bytes of the TCP connection below); ``None`` where that is unknown."""
    if hasattr(transport, "wrappedProtocol"):  # TLS wraps the application protocol
        transport = getattr(transport, "transport", None)
    if _FAST_WRITE and isinstance(transport, tcp.Connection):
        return len(transport.dataBuffer) - transport.offset + transport._tempDataLen
    return None


def forget_exit_signal(reactor: Any) -> None:
    """Make ``twistd`` exit with status 0 after a graceful stop on SIGTERM or SIGINT, rather than re-raise
    the signal (exit status -15). Does nothing where the reactor keeps no such signal."""
    if getattr(reactor, "_exitSignal", _MISSING) is not _MISSING:
        reactor._exitSignal = None


_PARSER_FIELDS = {"_handlingRequest", "_receivedHeaderSize"} <= set(vars(HTTPChannel)) | _names(HTTPChannel.__init__)


def handling_request(channel: HTTPChannel) -> bool:
    """Whether the channel has a complete request in hand (its handler runs, or its response is being
    written); ``False`` where that is unknown."""
    return bool(getattr(channel, "_handlingRequest", False)) if _PARSER_FIELDS else False


def reading_request(channel: HTTPChannel) -> bool:
    """Whether the channel is amid a request's head or body: its request line has arrived, and the rest of
    the request has not (no handler has it); ``False`` where that is unknown."""
    return _PARSER_FIELDS and bool(channel.requests) and not getattr(channel, "_handlingRequest", True)


def header_bytes_received(channel: HTTPChannel) -> int:
    """How many bytes of the current request's head (its line and headers) the channel has parsed; ``1``
    where that is unknown (as if the request line had been received)."""
    return int(getattr(channel, "_receivedHeaderSize", 1)) if _PARSER_FIELDS else 1


_REQUEST_LINE_FIELDS = {"_command", "_path"} <= _names(HTTPChannel.lineReceived)
"""Whether Twisted's channel keeps the method and target of the request line it parsed where this module
reads them."""


def request_line(channel: HTTPChannel) -> tuple[str, str]:
    """The method and path (without its query) of the request whose head the channel is parsing, as text
    for the log; ``("-", "-")`` before its request line has arrived, or where that is unknown."""
    if not channel.requests or not _REQUEST_LINE_FIELDS:
        return "-", "-"
    method, target = getattr(channel, "_command", None), getattr(channel, "_path", None)
    if not isinstance(method, bytes) or not isinstance(target, bytes):
        return "-", "-"
    return method.decode("latin-1"), target.split(b"?", 1)[0].decode("utf-8", "replace")


_BAD_REQUEST_FIELDS = (
    _PARSER_FIELDS
    and _REQUEST_LINE_FIELDS
    and "_receivedHeaderCount" in _names(HTTPChannel.headerReceived)
    and isinstance(getattr(HTTPChannel, "totalHeadersSize", None), int)
    and isinstance(getattr(HTTPChannel, "maxHeaders", None), int)
)
"""Whether the parser's state :func:`_bad_request_reason` reads is where it reads it."""


class BadRequestHeard(HTTPChannel):
    """Twisted Web's HTTP connection, told through :meth:`bad_request` of each ``400 Bad Request`` it answers
    by itself before closing the connection, with the reason; where Twisted answers them otherwise,
    :meth:`bad_request` is never called."""

    def bad_request(self, reason: str) -> None:
        """Twisted Web is about to answer ``400`` and close the connection, for ``reason`` (``"malformed
        request line"``); the request it refuses, if its line arrived, is the last of ``requests``. Called on
        the reactor thread; does nothing unless overridden."""

    def _respondToBadRequestAndDisconnect(self) -> None:
        try:
            self.bad_request(_bad_request_reason(self))
        finally:  # the client gets its 400 whatever telling of it raised
            super()._respondToBadRequestAndDisconnect()


def _bad_request_reason(channel: HTTPChannel) -> str:
    """Why Twisted Web answers ``400`` to what the channel is parsing, from the parser's state."""
    if not _BAD_REQUEST_FIELDS:
        return "malformed request"
    if not channel.line_mode:
        return "malformed chunked body"
    if header_bytes_received(channel) > channel.totalHeadersSize:
        return f"request line and headers over {channel.totalHeadersSize} bytes"
    if not isinstance(getattr(channel, "_command", None), bytes):  # set once the request line is parsed
        return "malformed request line"
    if getattr(channel, "_receivedHeaderCount", 0) > channel.maxHeaders:
        return f"more than {channel.maxHeaders} headers"
    return "malformed header, or a bad Content-Length or Transfer-Encoding"


class _InheritedUNIXPort(unix.Port):
    """A UNIX port on a socket it shares: when it stops, it closes its own descriptor and nothing more."""

    # shutdown() before close() would end the socket for every process that shares it
    _shouldShutdown = False

    def connectionLost(self, reason: Any) -> None:
        # unix.Port's removes the socket's file and releases a lock file (never taken here) before this
        tcp.Port.connectionLost(self, reason)


_ADOPT_UNIX = hasattr(unix.Port, "_fromListeningDescriptor") and hasattr(tcp.Port, "_shouldShutdown")


def adopt_unix_port(reactor: Any, fd: int, factory: Any, backlog: int, mode: int) -> IListeningPort:
    """A port accepting from the listening UNIX socket ``fd``, which other processes share and whose
    ``backlog`` and file ``mode`` the endpoint gave (the caller still closes ``fd``; the port has a copy)."""
    if not _ADOPT_UNIX:
        adopted: IListeningPort = reactor.adoptStreamPort(fd, socket.AF_UNIX, factory)
        return adopted
    port: _InheritedUNIXPort = _InheritedUNIXPort._fromListeningDescriptor(reactor, fd, factory)
    port.mode, port.backlog = mode, backlog  # what startListening sets on the socket and its file
    port.startListening()
    return port


def logging_began() -> bool | None:
    """Whether Twisted's log is written anywhere: ``globalLogBeginner.beginLoggingTo`` was called (``twistd``
    calls it). Before that, Twisted keeps the events in a buffer and shows only the critical ones on standard
    error. ``None`` where that is unknown."""
    buffering = getattr(globalLogBeginner, "_temporaryObserver", _MISSING)
    return None if buffering is _MISSING else buffering is None


def without_port_line(listen: Callable[[], T]) -> T:
    """Call ``listen`` (an endpoint's, which starts a port) without the line the port logs as it starts."""
    result: T = log.callWithContext({"log_format": None}, listen)
    return result


_EPOLL_POLL_NAMES = frozenset(
    {"EINTR", "KeyError", "OSError", "_doReadOrWrite", "_poller", "_selectables", "callWithLogger", "errno"}
    | {"len", "log", "poll"}
)


def poll_is_known(do_poll: Callable[..., Any]) -> bool:
    """Whether ``do_poll`` (``EPollReactor.doPoll``) names exactly what the one :func:`dispatch_directly`
    stands in for does: a poll that reads anything else may do more than that one, so it is kept."""
    return _names(do_poll) == _EPOLL_POLL_NAMES


_DIRECT_DISPATCH = poll_is_known(epollreactor.EPollReactor.doPoll)


def _unix_waker() -> Any:
    """Twisted's ``_UnixWaker`` class, ``None`` where there is none."""
    try:
        from twisted.internet._signals import _UnixWaker
    except ImportError:
        return None
    return _UnixWaker


_UnixWaker = _unix_waker()

# _FDWaker.doRead reads the pipe through fdesc.readFromFD, which reads up to 8 KiB and ignores EAGAIN
_READ_WAKER = (
    _UnixWaker is not None
    and _names(_UnixWaker.doRead) == {"fdesc", "readFromFD", "fileno"}
    and {"read", "EAGAIN", "EINTR"} <= _names(fdesc.readFromFD)
)

# ReactorBase.timeout: the time to the first timed call once the new ones are in the heap, in [0, 2147483]
_TIMEOUT_KNOWN = _names(base.ReactorBase.timeout) == {
    "_insertNewDelayedCalls",
    "_pendingTimedCalls",
    "time",
    "seconds",
    "max",
    "min",
}

_EPOLLIN = epollreactor.EPOLLIN

_DO_READ_OR_WRITE = getattr(getattr(posixbase, "_PollLikeMixin", None), "_doReadOrWrite", None)

# _PollLikeMixin._doReadOrWrite: for an event that is a read alone, checks fileno() against -1 (then
# _NO_FILEDESC), calls doRead, logs what raises (log.err), and disconnects for a reason returned or raised
_READ_ALONE = _names(_DO_READ_OR_WRITE) == {
    "_POLL_DISCONNECTED",
    "_POLL_IN",
    "_reads",
    "CONNECTION_DONE",
    "CONNECTION_LOST",
    "fileno",
    "_NO_FILEDESC",
    "doRead",
    "_POLL_OUT",
    "doWrite",
    "BaseException",
    "sys",
    "exc_info",
    "log",
    "err",
    "_disconnectSelectable",
} and isinstance(getattr(posixbase, "_NO_FILEDESC", None), BaseException)

_LONGEST_POLL = 2147483
"""The longest a poll waits, in seconds, as ``ReactorBase.timeout`` bounds it (epoll_wait takes
milliseconds as a C ``int``)."""


def dispatch_directly(reactor: Any) -> bool:
    """Have an epoll ``reactor`` handle each I/O event without a legacy log context around it (see the
    module's docstring); whether it does. Call it on the reactor's thread, before or while it runs."""
    if not (
        _DIRECT_DISPATCH
        and isinstance(reactor, epollreactor.EPollReactor)
        and type(reactor).doIteration is epollreactor.EPollReactor.doPoll
    ):
        return False
    if "doIteration" not in vars(reactor):
        vars(reactor)[_AFTER_POLL] = []
        vars(reactor)["doIteration"] = MethodType(_do_poll, reactor)  # the instance's, before its class's
        if _TIMEOUT_KNOWN and type(reactor).timeout is base.ReactorBase.timeout:
            vars(reactor)["timeout"] = MethodType(_timeout, reactor)
    return True


def _timeout(reactor: Any) -> float | None:
    # ReactorBase.timeout, without its calls of min and max: a microsecond for every turn of the reactor
    reactor._insertNewDelayedCalls()
    pending = reactor._pendingTimedCalls
    if not pending:
        return None
    delay = pending[0].time - reactor.seconds()
    if delay <= 0:
        return 0
    return delay if delay < _LONGEST_POLL else _LONGEST_POLL


def _if_names(function: Any, names: set[str]) -> Any:
    """``function`` if its code names exactly ``names``, else ``None``."""
    return function if _names(function) == names else None


# call_from_thread stands in for three methods, each kept here where it names exactly what the one it was
# written against does, and compared with the reactor's as call_from_thread is made: ReactorBase.callFromThread
# appends (f, args, kwargs) to threadCallQueue and calls wakeUp; ReactorBase.wakeUp calls the waker's unless
# there is none; _UnixWaker.wakeUp writes a byte to its pipe's end ``o`` unless it is None, ignoring EAGAIN
_CALL_FROM_THREAD = _if_names(base.ReactorBase.callFromThread, {"callable", "threadCallQueue", "append", "wakeUp"})
_REACTOR_WAKE_UP = _if_names(base.ReactorBase.wakeUp, {"waker", "wakeUp"})
_PIPE_WAKE_UP = _if_names(
    getattr(_UnixWaker, "wakeUp", None),
    {"o", "os", "write", "util", "untilConcludes", "OSError", "errno", "EAGAIN"},
)
_WAKE_BY_PIPE = None not in (_CALL_FROM_THREAD, _REACTOR_WAKE_UP, _PIPE_WAKE_UP)

_NO_KEYWORDS: dict[str, Any] = {}
"""The keyword arguments of every call :func:`call_from_thread` queues: the reactor only unpacks them."""


def call_from_thread(reactor: Any) -> Callable[[Callable[[], object]], None]:
    """``reactor.callFromThread`` for calls without arguments (see the module's docstring): puts the call
    into the reactor's queue and wakes it, from any thread; ``reactor.callFromThread`` itself where the
    fast path does not apply."""
    if not (
        _WAKE_BY_PIPE
        and type(reactor).callFromThread is _CALL_FROM_THREAD
        and type(reactor).wakeUp is _REACTOR_WAKE_UP
        and _UnixWaker.wakeUp is _PIPE_WAKE_UP
        and isinstance(getattr(reactor, "threadCallQueue", None), list)
    ):
        return cast("Callable[[Callable[[], object]], None]", reactor.callFromThread)
    write = os.write

    def call_from_thread(call: Callable[[], object]) -> None:
        reactor.threadCallQueue.append((call, (), _NO_KEYWORDS))
        waker = reactor.waker
        if type(waker) is not _UnixWaker:
            if waker:  # as ReactorBase.wakeUp: none while the reactor does not run
                waker.wakeUp()
            return
        pipe = waker.o
        if pipe is not None:
            try:
                write(pipe, b"x")
            except BlockingIOError:  # the pipe is full of wake-ups the reactor has not read: it wakes anyway
                pass

    return call_from_thread


_AFTER_POLL = "_rolo_after_poll"
"""The reactor's attribute (rolo's own, set by :func:`dispatch_directly`) that lists the calls to run once
its next poll's events are handled (:func:`call_after_poll`)."""


def call_after_poll(reactor: Any, call: Callable[[], None]) -> bool:
    """Run ``call`` on the reactor's thread once the events of its next poll are handled, the poll then
    not waiting (at once when no event is ready): whether it will, which it does where
    :func:`dispatch_directly` holds. Call it on the reactor's thread.

    Where ``reactor.callLater(0, call)`` makes a timed call, which the reactor keeps in a heap and runs
    on its next turn, this is a list's append, run where the poll returns. A call that raises is logged,
    as the reactor logs a timed call that raises."""
    after: list[Callable[[], None]] | None = vars(reactor).get(_AFTER_POLL)
    if after is None:
        return False
    after.append(call)
    return True


def _do_poll(reactor: Any, timeout: float | None) -> None:
    # EPollReactor.doPoll, calling _doReadOrWrite directly; then the calls made for after it (call_after_poll)
    after = vars(reactor)[_AFTER_POLL]
    if after:  # calls wait for the end of this poll: it does not wait for events
        timeout = 0
    try:
        events = reactor._poller.poll(-1 if timeout is None else timeout, len(reactor._selectables))
    except OSError as error:
        if error.errno == errno.EINTR:
            return
        raise
    selectables = reactor._selectables
    handle = reactor._doReadOrWrite
    waker = reactor.waker if _READ_WAKER else None
    read_alone = _READ_ALONE and type(reactor)._doReadOrWrite is _DO_READ_OR_WRITE
    for fd, event in events:
        selectable = selectables.get(fd)
        if selectable is None:
            continue
        if selectable is waker and type(waker) is _UnixWaker and event == _EPOLLIN:
            # a handler's wake-up (call_from_thread): the pipe read as the waker's doRead reads it,
            # without the three calls between. An error other than EAGAIN goes the waker's way below
            try:
                os.read(fd, 8192)
                continue
            except (BlockingIOError, InterruptedError):
                continue
            except OSError:
                pass
        try:
            if event != _EPOLLIN or not read_alone:
                handle(selectable, fd, event)
                continue
            # a read alone, the commonest event, as _doReadOrWrite takes it, without its call and the
            # tests of the other events
            why: Any = None
            reading = False
            try:
                if selectable.fileno() == -1:
                    why = posixbase._NO_FILEDESC
                else:
                    why = selectable.doRead()
                    reading = True
            except BaseException as error:
                why = error
                log.err()
            if why:
                reactor._disconnectSelectable(selectable, why, reading)
        except KeyboardInterrupt:
            raise
        except BaseException:  # as log.callWithLogger: what escapes is logged under the connection's name
            log.err(system=_log_prefix(selectable))
    if after:
        # those made so far: one made by these calls runs after the next poll. A KeyboardInterrupt passes
        # out, as out of the events above (the reactor's main loop logs it and goes on): the calls behind
        # the interrupted one stay for after the next poll
        count = len(after)
        ran = 0
        try:
            while ran < count:
                call = after[ran]
                ran += 1
                try:
                    call()
                except KeyboardInterrupt:
                    raise
                except BaseException:  # as the reactor logs a timed call that raised
                    log.err()
        finally:
            del after[:ran]


def _log_prefix(selectable: Any) -> str:
    try:
        return str(selectable.logPrefix())
    except Exception:
        return "(buggy logPrefix method)"
