"""A :class:`~rolo.websocket.adapter.WebSocketAdapter` for handler threads over an event-loop server.

The server owns the connection on its event-loop thread (the I/O side); the handler blocks in a thread of
its own (the handler side). :class:`ThreadedWebSocketAdapter` sits between the two:

- Incoming messages go into an inbox bounded in messages and in bytes. When it fills, the I/O side is
  told to stop reading from the socket, and to start again once the handler has drained it to half. A client
  that floods a slow handler therefore fills its own TCP window, not the server's memory. The inbox is a C
  queue, in which the handler waits without the GIL. A loop that knows when its turn ends wakes the handler then
  (:class:`WakeUps`), so that the handler runs while the loop waits instead of contending with it for the
  GIL, and the handler says when it is about to block again.
- Outgoing messages go into an outbox that the I/O side takes in batches: one hand-off to the loop carries
  every message queued since the last one. ``send`` blocks while the outbox holds more than a high-water
  mark of bytes or while the server's transport has asked its producer to pause, so a peer that does not
  read slows the handler down instead of growing a buffer.

The I/O side is a :class:`ServerConnection`, which the server implements; the adapter calls its methods
only through ``call_in_loop``, so they always run on the loop thread. The server in turn reports to the
adapter's ``on_*`` methods from the loop thread. This module knows no server.
"""

from __future__ import annotations

import enum
import functools
import logging
import queue
import threading
from collections.abc import Callable, Iterable
from sys import getsizeof
from typing import Final, Protocol, TypeVar, final

from rolo.counters import WebSocketCounters

from .adapter import CreateConnection, Event, Message, TextMessage, WebSocketAdapter, message_data
from .errors import WebSocketDisconnectedError, WebSocketStateError
from .frames import Close, CloseCode, fit_close_reason

__all__ = ["Arrival", "Outgoing", "ServerConnection", "ThreadedWebSocketAdapter", "WakeUps", "offer_each"]

LOG = logging.getLogger("rolo.websocket")

_QUEUED_SIZE: Final = getsizeof(TextMessage("")) + 8
"""What a message waiting in the outbox holds beyond its data, in bytes (the message object, or a text's
``str`` header, and its place in a list): counted with the data against ``write_high_water``, so that empty
messages fill the outbox too."""

Outgoing = Message | str
"""What the outbox holds and :meth:`ServerConnection.send` writes: a message, or, for a text message, its
text alone, as :meth:`ThreadedWebSocketAdapter.send_text` takes it (what
:meth:`~rolo.websocket.WebSocket.send` hands over for ASCII text): no message object is made for it on the
handler's side only to be unwrapped on the loop's. A ``str`` always has a UTF-8 form (the handler's side
checked)."""

GOING_AWAY_REASON = "server shutting down"

_BYTES_SIZE: Final = getsizeof(b"")
"""What a ``bytes`` object holds beyond its data, in bytes (``bytes`` is not tracked by the collector, so
``getsizeof`` adds nothing for it)."""

_ASCII_SIZE: Final = getsizeof("")
"""What a ``str`` of ASCII characters holds beyond them, in bytes (one byte each)."""


def _size_in_memory(data: str | bytes) -> int:
    """What a received message's data takes in memory, in bytes, as ``getsizeof`` says; worked out for
    ``bytes`` and ASCII ``str``, what the servers hand over for most messages (see :data:`Arrival`), where
    ``getsizeof`` looks ``__sizeof__`` up on each call and costs as much as the rest of the count."""
    if type(data) is bytes:
        return len(data) + _BYTES_SIZE
    if type(data) is str and data.isascii():
        return len(data) + _ASCII_SIZE
    return getsizeof(data)


class WakeUps(Protocol):
    """When the handlers of a loop's connections are woken for the messages that arrived.

    Waking a handler thread while the loop is still busy is wasted: it only blocks again on the GIL, and
    then takes it from the loop at the loop's next system call. A loop that knows when its turn ends can
    wake them then, and wait for them before it looks at I/O again.
    """

    def wake(self, adapter: ThreadedWebSocketAdapter) -> None:
        """Messages arrived for ``adapter``: call its :meth:`~ThreadedWebSocketAdapter.deliver` soon, on the
        loop thread or while the loop thread waits for it. Called on the loop thread, once until that
        delivery."""

    def blocking(self, adapter: ThreadedWebSocketAdapter) -> None:
        """``adapter``'s handler is about to block in rolo (waiting for a message, for room to send, or
        for a handshake). Called on the handler's thread."""


class ServerConnection(Protocol):
    """The I/O side of one connection. Every method is called on the server's event-loop thread.

    A server may also give its connection class a static ``send_each(connections, message)``: write
    ``message`` to each of ``connections`` (a list of its own), as ``send([message])`` would to each.
    :func:`offer_each`'s loop side then writes the members of a broadcast whose outbox holds its message
    alone in that one call, rather than calling ``send`` for each.
    """

    def accept(self, subprotocol: str | None, headers: list[tuple[str, str]]) -> None:
        """Send the ``101`` response; report :meth:`ThreadedWebSocketAdapter.on_open` once it is out."""

    def reject(self, status: int, headers: list[tuple[str, str]], body: bytes) -> None:
        """Send this HTTP response instead of the ``101``, then close the connection."""

    def send(self, messages: list[Outgoing]) -> None:
        """Write these messages to the peer, in order: a ``str`` as a text message (see
        :data:`Outgoing`)."""

    def close(self, code: int, reason: str | None) -> None:
        """Start the closing handshake (or drop the connection if it never opened). ``reason`` fits in a
        close frame (:func:`fit_close_reason`)."""

    def drop(self) -> None:
        """End the connection at once, without waiting any longer for the peer's answer to a close the
        server sent: the server shuts down, and the peer has not answered in time. The connection's end is
        reported to :meth:`ThreadedWebSocketAdapter.on_close`."""

    def pause_reading(self) -> None:
        """Stop reading from the socket."""

    def resume_reading(self) -> None:
        """Read from the socket again."""


Arrival = Message | bytes | str
"""What a server hands to :meth:`ThreadedWebSocketAdapter.on_message`: a message, or, for a text message,
its data alone. As ``bytes``: its UTF-8 as it came off the wire, which the server has validated; the
handler decodes it when it takes it, so that the inbox holds it at its size on the wire (as a ``str`` it
may take up to four times that), and the event loop does not spend its time decoding. As ``str``: its
text, from a server that decoded it already (an ASGI server). Either way no message object is made for it."""


class _End(enum.Enum):
    END = enum.auto()


_END: Final = _End.END
"""Put into the inbox behind the last message once the connection is closed."""


_CREATE_CONNECTION: Final = CreateConnection()
"""The first event of every adapter: it holds nothing, so all share one rather than each connection making
one the collector tracks until its handler takes it."""


class _State(enum.Enum):
    CONNECTING = "connecting"
    ACCEPTING = "accepting"
    OPEN = "open"
    REJECTED = "rejected"
    CLOSED = "closed"


# the state the paths every message takes compare with, as a global: reading a member off its enum class
# takes five times as long as reading a global
_OPEN = _State.OPEN


@final  # offer_each hands a broadcast to the loop in one call for this class only (exactly)
class ThreadedWebSocketAdapter(WebSocketAdapter):
    """Bridges one connection between its handler thread and the server's event loop.

    :param connection: the I/O side
    :param call_in_loop: runs a callable on the loop thread, from any thread (``reactor.callFromThread``,
        ``loop.call_soon_threadsafe``)
    :param max_queue: how many received messages may wait for the handler before the server stops reading
    :param max_queue_bytes: how many bytes of received messages (their size in memory) may wait for the
        handler before the server stops reading; the message that crosses it is still taken, so any one
        message gets through
    :param write_high_water: how many bytes of outgoing messages may wait for the loop before ``send``
        blocks; each message counts its data and about 48 bytes for itself, so that empty messages count too
    :param close_timeout: how long ``close`` waits for the closing handshake when given no timeout, in
        seconds
    :param wake_ups: when the loop has one, what wakes the handler for new messages (see
        :class:`WakeUps`); ``None`` puts each message into the inbox as it arrives, waking the handler at
        once
    :param counters: where to count what the connection does (its server's, for metrics)
    """

    # one per open connection: its attributes in slots take about 60 bytes less than in a dictionary
    __slots__ = (
        "__weakref__",
        "_arrived",
        "_bytes_waiting",
        "_call_in_loop",
        "_changed",
        "_close_listeners",
        "_close_timeout",
        "_connection",
        "_counters",
        "_ending",
        "_flush_pending",
        "_inbox",
        "_lock",
        "_max_queue",
        "_max_queue_bytes",
        "_opened",
        "_outbox",
        "_outbox_bytes",
        "_reading_paused",
        "_resume_below",
        "_resume_pending",
        "_senders_waiting",
        "_sent",
        "_sizes",
        "_state",
        "_waiting",
        "_wake_ups",
        "_write_high_water",
        "_writing_paused",
    )

    def __init__(
        self,
        connection: ServerConnection,
        call_in_loop: Callable[[Callable[[], None]], None],
        *,
        max_queue: int = 16,
        max_queue_bytes: int = 512 * 1024,
        write_high_water: int = 64 * 1024,
        close_timeout: float = 10.0,
        wake_ups: WakeUps | None = None,
        counters: WebSocketCounters | None = None,
    ) -> None:
        if max_queue < 1:
            raise ValueError("max_queue must be at least 1")
        self._connection = connection
        self._call_in_loop = call_in_loop
        self._max_queue = max_queue
        self._max_queue_bytes = max_queue_bytes
        self._resume_below = max_queue // 2 + 1
        self._write_high_water = write_high_water
        self._close_timeout = close_timeout
        self._wake_ups = wake_ups
        self._counters = counters if counters is not None else WebSocketCounters()

        # one lock for the state shared by both sides; a condition over it is for the rare waits (accept,
        # close, send without room), never for receiving: it exists only while a thread waits (see _wait_for).
        # The paths of each message that only a handler or the loop take (receive, the loop's flush) take it
        # with acquire and release: a with block costs 0.13 µs more, making two bound methods each time. Send
        # and a broadcast's offer, which any thread may call, the main one among them, keep the with block:
        # an exception a signal raises could land between an acquire and its try, leaving the lock held. The
        # loop is safe from that: where it runs on the main thread (twistd, an ASGI server), the signal
        # handlers installed there do not raise, and run_in_thread runs it on a thread of its own
        self._lock = threading.Lock()
        self._changed: threading.Condition | None = None
        self._waiting = 0  # threads waiting on _changed
        self._state = _State.CONNECTING
        # the close frame the server sent or is about to send (by the handler's close or a shutdown)
        self._sent: Close | None = None
        self._ending: WebSocketDisconnectedError | None = None  # how it ended, once closed
        self._opened = False

        # the inbox is a C queue: a receiver blocks in it without the GIL, and putting a message wakes it
        # without a Python-level condition; _END behind the last message marks the close
        self._inbox: queue.SimpleQueue[Event | Arrival | _End] = queue.SimpleQueue()
        self._inbox.put(_CREATE_CONNECTION)
        # loop side: read, not yet handed to the inbox. None while empty, as it is on an idle connection; the
        # message itself while one waits, as each does in a burst over many connections; a list once more
        # do. No list of its own per waiting message: in a burst, those waiting for their handler's turn
        # outlive the collector's younger generations, and what reaches the oldest sets off full collections
        self._arrived: list[Arrival] | Arrival | None = None
        # loop side, for the inbox's bound in bytes: the sizes of the messages read that the handler may not
        # have taken yet, oldest first (a box, as _arrived: None, a size, or a list of them), and their sum.
        # The handler counts nothing as it takes a message: the loop forgets those taken (_forget_taken)
        self._sizes: list[int] | int | None = None
        self._bytes_waiting = 0
        self._reading_paused = False
        self._resume_pending = False

        # the outbox: None while empty, the message itself while it holds one, a list once it holds more. A
        # broadcast leaves one message on each of its members: a list for each would be as many containers
        # alive at once, which set the garbage collector off (a full collection every hundred broadcasts
        # to 1,000 members)
        self._outbox: list[Outgoing] | Outgoing | None = None
        self._outbox_bytes = 0
        self._flush_pending = False
        self._writing_paused = False
        self._senders_waiting = 0

        # a tuple of their number (one or two): a list would leave room for four
        self._close_listeners: tuple[Callable[[], None], ...] = ()

    # -- handler side ------------------------------------------------------------------------------

    def receive(self, timeout: float | None = None) -> Event:
        event = self._take(timeout)
        if isinstance(event, bytes):
            return TextMessage(event.decode("utf-8"))
        if isinstance(event, str):
            return TextMessage(event)
        return event

    def receive_data(self, timeout: float | None = None) -> str | bytes:
        # a text message's data without the TextMessage that receive would make only to be unwrapped
        event = self._take(timeout)
        if isinstance(event, bytes):
            return event.decode("utf-8")
        if isinstance(event, str):
            return event
        return message_data(event)

    def _take(self, timeout: float | None) -> Event | Arrival:
        """Take the next event from the inbox, and have reading resumed if that drained it: an :data:`Arrival`
        (a text message's UTF-8 ``bytes``, not decoded yet, or its ``str``) or :class:`CreateConnection`.

        :raises TimeoutError: if no event came within ``timeout`` seconds
        :raises WebSocketDisconnectedError: once the connection is closed and every message was taken
        """
        inbox = self._inbox
        if self._wake_ups is not None and inbox.empty():
            self._wake_ups.blocking(self)
        try:
            event = inbox.get(True, timeout)
        except queue.Empty:
            raise TimeoutError(f"no message within {timeout} seconds") from None
        if event is _END:
            inbox.put(_END)  # for the next receive, in this thread or another
            raise self._disconnected()
        # nothing to count, and no lock to take, while reading goes on: the loop keeps the inbox's bytes. It
        # says reading is paused before it hands over the message that filled the inbox, so the handler that
        # takes that message sees the pause
        if self._reading_paused:
            self._ask_to_resume()
        return event

    def _ask_to_resume(self) -> None:
        """Reading is paused and a message was taken: have the loop resume reading if the inbox is below half
        its bounds (handler side). The count, which the handler can tell, is checked here first: the loop is
        asked only once that is below half, and once at a time; each message taken after it said no asks
        again, so the one that empties the inbox is the last to ask at most."""
        if self._inbox.qsize() + _count(self._arrived) >= self._resume_below:
            return
        with self._lock:
            if self._resume_pending:
                return  # the loop looks at the inbox after this take
            self._resume_pending = True
        self._call_in_loop(self._resume_reading)

    def _forget_taken(self, sizes: list[int] | int, queued: int) -> list[int] | int | None:
        """Forget the sizes of the messages the handler took (loop thread): the oldest of those recorded, as
        many as the inbox and ``_arrived`` (``queued`` messages between them) no longer hold. Returns the sizes
        left.

        Race-free without a lock: only the loop records sizes and puts messages into the inbox (or hands
        them over in a turn, while the loop waits), all in the order read, and receivers only take the
        oldest. ``queued``, counted before, can only be more than the inbox holds by now, never less: it
        forgets no message still waiting; those taken meanwhile stay counted until the next count.
        """
        taken = (len(sizes) if isinstance(sizes, list) else 1) - queued
        if taken <= 0:
            return sizes
        if isinstance(sizes, list):
            self._bytes_waiting -= sum(sizes[:taken])
            del sizes[:taken]
            left: list[int] | int | None = sizes if len(sizes) > 1 else sizes[0] if sizes else None
        else:
            self._bytes_waiting -= sizes
            left = None
        self._sizes = left
        return left

    def _drained(self) -> bool:
        """Whether the inbox is below half its bounds, so that reading may go on (loop thread). Half, not
        half floored: an empty inbox is below half of ``max_queue_bytes=1``."""
        queued = self._inbox.qsize() + _count(self._arrived)
        if self._sizes is not None:
            self._forget_taken(self._sizes, queued)
        return queued < self._resume_below and 2 * self._bytes_waiting < self._max_queue_bytes

    def accept(
        self,
        subprotocol: str | None = None,
        headers: Iterable[tuple[str, str]] = (),
        timeout: float | None = None,
    ) -> None:
        with self._lock:
            if self._state is not _State.CONNECTING:
                if self._state is _State.CLOSED:
                    raise self._disconnected()
                raise WebSocketStateError(f"cannot accept a connection that is {self._state.value}")
            self._state = _State.ACCEPTING
        self._call_in_loop(lambda: self._connection.accept(subprotocol, list(headers)))
        self._about_to_block()
        with self._lock:
            if not self._wait_for(lambda: self._state is not _State.ACCEPTING, timeout):
                raise TimeoutError(f"the opening handshake did not complete within {timeout} seconds")
            # a connection that opened and was lost before this thread woke is still accepted: the
            # handler learns of the loss from its next receive or send, with the close code
            if not self._opened:
                raise self._disconnected()

    def reject(self, status: int, headers: Iterable[tuple[str, str]], body: bytes) -> None:
        with self._lock:
            if self._state is not _State.CONNECTING:
                raise WebSocketStateError(f"cannot reject a connection that is {self._state.value}")
            self._state = _State.REJECTED
        self._counters.upgrades.add(status)
        self._call_in_loop(lambda: self._connection.reject(status, list(headers), body))

    def send(self, message: Outgoing, timeout: float | None = None) -> None:
        # also send_text's: a str is queued as it is (see Outgoing)
        with self._lock:
            flush = self._queued(message)
            if flush is None:  # no room now
                self._wait_to_send(timeout)
                flush = self._queued(message)  # there is room once it returns
        if flush:
            self._call_in_loop(self._flush)

    send_text = send

    def _offer(self, message: Message) -> bool | None:
        """Queue ``message`` if there is room now, without handing it to the loop: ``True`` if it is
        queued and the loop must be asked to flush, ``False`` if it is queued behind a flush already asked
        for, ``None`` if there is no room.

        :raises WebSocketDisconnectedError: if the connection is closed or closing
        """
        with self._lock:
            flush = self._queued(message)
            if flush is None and not self._is_open():
                raise self._not_open()
            return flush

    def _queued(self, message: Outgoing) -> bool | None:
        """Put ``message`` in the outbox if there is room now (holding the lock; see
        :meth:`_can_send_now`, whose test it makes without the call): whether the loop must be asked to
        flush it, rather than a flush being asked for already; ``None`` if there is no room."""
        outbox = self._outbox
        if not (
            self._state is _OPEN
            and self._sent is None
            and not self._writing_paused
            and (outbox is None or self._outbox_bytes < self._write_high_water)
        ):
            return None
        # a lone message, the commonest, without a call to _added
        self._outbox = message if outbox is None else _added(outbox, message)
        self._outbox_bytes += (len(message) if isinstance(message, str) else len(message.data)) + _QUEUED_SIZE
        flush = not self._flush_pending
        self._flush_pending = True
        return flush

    def _can_send_now(self) -> bool:
        # an empty outbox always takes one message, however large, so progress never stalls
        return (
            self._state is _OPEN
            and self._sent is None
            and not self._writing_paused
            and (self._outbox is None or self._outbox_bytes < self._write_high_water)
        )

    def _wait_to_send(self, timeout: float | None) -> None:
        # called holding the lock
        if not self._is_open():
            raise self._not_open()
        self._senders_waiting += 1
        self._about_to_block()
        try:
            if not self._wait_for(lambda: not self._is_open() or self._can_send_now(), timeout):
                raise TimeoutError(f"the peer did not read within {timeout} seconds")
        finally:
            self._senders_waiting -= 1
        if not self._is_open():
            raise self._not_open()

    def close(self, code: int = 1000, reason: str | None = None, timeout: float | None = None) -> None:
        with self._lock:
            if self._state in (_State.CLOSED, _State.REJECTED):
                return
            if self._sent is None:
                reason = fit_close_reason(reason)
                self._sent = Close(code, reason or "")
                self._call_in_loop(lambda: self._flush_and_close(code, reason))
                self._notify_all()  # a send waiting for room gives up now, not at the close's end
            self._about_to_block()
            closed = self._wait_for(
                lambda: self._state is _State.CLOSED,
                self._close_timeout if timeout is None else timeout,
            )
        if not closed:
            raise TimeoutError("the closing handshake did not complete in time")

    def add_close_listener(self, listener: Callable[[], None]) -> None:
        with self._lock:
            closed = self._state is _State.CLOSED
            if not closed:
                self._close_listeners += (listener,)
        if closed:
            listener()

    def _wait_for(self, predicate: Callable[[], bool], timeout: float | None) -> bool:
        """Wait until ``predicate()`` is true, at most ``timeout`` seconds (``None``: no limit), holding the
        lock (:meth:`threading.Condition.wait_for`): whether it is.

        The condition is made for the first thread to wait and dropped by the last: an open connection
        whose handler waits in ``receive`` holds none (about 1 KB with its deque of waiters).
        """
        changed = self._changed
        if changed is None:
            # made and initialised in two steps, so that its __init__ is a plain Python call: calling the
            # class would run it in a C frame of its own, the deepest the handler's stack would ever go,
            # and leave one more page of that stack resident (see rolo.threads)
            changed = self._changed = threading.Condition.__new__(threading.Condition)
            threading.Condition.__init__(changed, self._lock)
        self._waiting += 1
        try:
            return changed.wait_for(predicate, timeout)
        finally:
            self._waiting -= 1
            if not self._waiting:
                self._changed = None

    def _notify_all(self) -> None:
        """Wake the threads waiting in :meth:`_wait_for` (holding the lock)."""
        if self._changed is not None:
            self._changed.notify_all()

    def _about_to_block(self) -> None:
        if self._wake_ups is not None:
            self._wake_ups.blocking(self)

    def _is_open(self) -> bool:
        # once a close began, a message would only be queued behind the close frame and dropped
        return self._state is _OPEN and self._sent is None

    def _not_open(self) -> Exception:
        if self._state is _State.CLOSED or self._sent is not None:
            return self._disconnected()
        return WebSocketStateError(f"cannot send on a connection that is {self._state.value}")

    def _disconnected(self) -> WebSocketDisconnectedError:
        if self._ending is not None:
            return self._ending
        # closing, not closed yet: what the server sent is all there is to say
        sent = self._sent
        return WebSocketDisconnectedError(
            sent.code if sent else None, sent.reason if sent else None, sent=sent, closed_by="server"
        )

    # -- loop side ---------------------------------------------------------------------------------

    def on_open(self) -> None:
        """The ``101`` response is out: the connection is open."""
        with self._lock:
            if self._state is _State.ACCEPTING:
                self._state = _State.OPEN
                self._opened = True
                self._notify_all()
                self._counters.upgrades.add(101)

    def on_message(self, message: Arrival) -> None:
        """A complete message arrived: a message, or a text message's data (see :data:`Arrival`)."""
        # its _size_in_memory, without the call, for what servers hand over for most messages: a text
        # message's UTF-8 (Twisted's protocol) or its ASCII text (an ASGI server)
        if type(message) is bytes:
            received = len(message)
            size = received + _BYTES_SIZE
        elif type(message) is str and message.isascii():
            received = len(message)
            size = received + _ASCII_SIZE
        else:
            data = message if isinstance(message, (bytes, str)) else message.data
            received = len(data)
            size = _size_in_memory(data)
        counters = self._counters
        counters.messages_received += 1
        counters.received_bytes += received
        queued = self._inbox.qsize()
        arrived = self._arrived
        sizes = self._sizes
        if sizes is not None:
            if arrived is None and not queued and type(sizes) is int:
                # the commonest: the handler took the one message before this one. _forget_taken, inline
                self._bytes_waiting -= sizes
                sizes = None
            else:
                sizes = self._forget_taken(sizes, queued + _count(arrived))
        self._sizes = size if sizes is None else _added(sizes, size)
        waiting_bytes = self._bytes_waiting = self._bytes_waiting + size
        if arrived is None:  # the one message its handler is woken for, usually: no box to count
            self._arrived = message
            waiting = 1
        else:
            self._arrived = arrived = _added(arrived, message)
            waiting = _count(arrived)
        wake_ups = self._wake_ups
        if waiting == 1 and wake_ups is not None:
            wake_ups.wake(self)
        if not self._reading_paused and (
            queued + waiting >= self._max_queue or waiting_bytes >= self._max_queue_bytes
        ):
            with self._lock:
                self._reading_paused = True
            self._connection.pause_reading()
        if wake_ups is None:
            # only now (counted above in waiting, not in the inbox): a handler that takes it sees reading
            # paused, and resumes it once it drained the inbox (one that drained it before the pause was
            # said would not have)
            self.deliver()

    def on_close(self, received: Close | None, sent: Close | None = None, closed_by: str | None = None) -> None:
        """The connection is closed.

        :param received: the peer's close frame, ``None`` if none came (the connection was lost, or the
            server gave up waiting for the reply)
        :param sent: the server's close frame, ``None`` if it sent none
        :param closed_by: ``"peer"`` or ``"server"``, whichever sent its close frame first; ``None`` if
            neither did
        """
        with self._lock:
            if self._state is _State.CLOSED:
                return
            self._state = _State.CLOSED
            # what the peer said is how the connection ended, whatever the handler asked for
            self._ending = WebSocketDisconnectedError(
                received.code if received else CloseCode.ABNORMAL_CLOSURE,
                (received.reason or None) if received else None,
                received=received,
                sent=sent,
                closed_by=closed_by,
            )
            if self._opened:
                self._counters.closed(received, sent, closed_by)
            self._outbox = None
            self._outbox_bytes = 0  # dropped, not sent
            self._notify_all()
            listeners, self._close_listeners = self._close_listeners, ()
        self.deliver()  # messages that arrived before the close are still received
        self._inbox.put(_END)
        for listener in listeners:
            try:
                listener()
            except Exception:
                LOG.exception("a close listener failed")

    def go_away(self) -> None:
        """Close with 1001 (going away) because the server is shutting down (loop thread).

        The messages the handler sent before go out first; those it sends from now on fail as on a
        closed connection. A connection the handler has not accepted yet is refused.
        """
        with self._lock:
            if self._state in (_State.CLOSED, _State.REJECTED) or self._sent is not None:
                return
            self._sent = Close(CloseCode.GOING_AWAY, GOING_AWAY_REASON)
            self._notify_all()
        self._flush_and_close(CloseCode.GOING_AWAY, GOING_AWAY_REASON)

    def drop(self) -> None:
        """End a connection not closed yet at once, without waiting for the rest of its closing handshake
        (loop thread): at shutdown, one whose peer has not answered :meth:`go_away`'s close in time. Its
        handler's ``receive`` then ends, as for any lost connection."""
        with self._lock:
            if self._state in (_State.CLOSED, _State.REJECTED):
                return  # over, or its rejection on its way out
        self._connection.drop()

    def on_pause_writing(self) -> None:
        """The transport's buffer is over its high-water mark: hold ``send``."""
        with self._lock:
            self._writing_paused = True

    def on_resume_writing(self) -> None:
        """The transport has drained: let ``send`` go on."""
        with self._lock:
            self._writing_paused = False
            self._notify_all()

    def _flush_and_close(self, code: int, reason: str | None) -> None:
        # the messages queued before the close go out first: those whose flush is pending in the loop, and
        # those queued behind a flush that offer_each has not handed over yet
        self._flush()
        self._connection.close(code, reason)

    def _flush(self) -> None:
        outbox = self._take_outbox()
        if outbox is not None:
            self._connection.send(outbox if isinstance(outbox, list) else [outbox])  # _listed, without its call

    def _take_outbox(self) -> list[Outgoing] | Outgoing | None:
        """Empty the outbox, counting its messages as sent: what it held (as it holds it), for the loop to
        write."""
        lock = self._lock
        lock.acquire()
        try:
            outbox = self._outbox
            if outbox is not None:  # None once closed, or flushed by a close
                self._outbox = None
                count = len(outbox) if type(outbox) is list else 1
                counters = self._counters
                counters.messages_sent += count
                counters.sent_bytes += self._outbox_bytes - _QUEUED_SIZE * count
                self._outbox_bytes = 0
            self._flush_pending = False
            if self._senders_waiting:
                self._notify_all()
        finally:
            lock.release()
        return outbox

    def deliver(self) -> bool:
        """Hand the messages that arrived to the handler, waking it (see :class:`WakeUps`).

        :returns: whether any messages were handed over (none once :meth:`on_close` has handed them over)
        """
        arrived, self._arrived = self._arrived, None
        if arrived is None:
            return False
        if isinstance(arrived, list):
            for message in arrived:
                self._inbox.put(message)
        else:
            self._inbox.put(arrived)
        return True

    def _resume_reading(self) -> None:
        with self._lock:
            self._resume_pending = False
            resume = self._reading_paused and self._drained()
            if resume:
                self._reading_paused = False
        if resume:
            self._connection.resume_reading()


# The adapter's arrived messages and its outbox are each a box: None while empty, the message itself while
# it holds one, a list once it holds more (no container of its own for a lone message; see __init__)
_Item = TypeVar("_Item")


def _added(box: list[_Item] | _Item | None, item: _Item) -> list[_Item] | _Item:
    """``box`` with ``item`` at its end: what the box is now."""
    if box is None:
        return item
    if isinstance(box, list):
        box.append(item)
        return box
    return [box, item]


def _count(box: list[_Item] | _Item | None) -> int:
    """How many items ``box`` holds."""
    if box is None:
        return 0
    return len(box) if isinstance(box, list) else 1


def _listed(box: list[_Item] | _Item) -> list[_Item]:
    """The items of a box that holds some, as a list."""
    return box if isinstance(box, list) else [box]


def offer_each(
    adapters: Iterable[WebSocketAdapter], message: Message
) -> tuple[list[bool | WebSocketDisconnectedError], Callable[[], None]]:
    """Queue ``message`` on each connection that has room for it now, without waiting for any: one message
    to many connections (a broadcast). Callable from any thread but a loop's.

    The loop of the connections of :class:`ThreadedWebSocketAdapter` is handed their sends in one call,
    when the caller calls the ``hand_over`` returned: best just before it blocks, since the loop wakes and
    takes the GIL for them, and a thread that still has Python to run then contends with it for the GIL
    at every write. Other adapters are sent to at once (``send`` with ``timeout=0``).

    :returns: ``(outcomes, hand_over)``: for each adapter, in order, ``True`` if the message is queued
        for its connection, ``False`` if the connection had no room (where ``send`` with ``timeout=0``
        raises ``TimeoutError``), or the :class:`~rolo.websocket.errors.WebSocketDisconnectedError`
        ``send`` raises for a connection that is closed or closing; and what hands the sends to the loop
        (call it once)
    :raises WebSocketStateError: for a connection that is not open yet (or was rejected); the message
        then goes to the connections before it in ``adapters`` that took it, as if handed over
    """
    outcomes: list[bool | WebSocketDisconnectedError] = []
    to_flush: dict[Callable[[Callable[[], None]], None], list[ThreadedWebSocketAdapter]] = {}

    def hand_over() -> None:
        for call_in_loop, group in to_flush.items():
            call_in_loop(functools.partial(_flush_each, group, message))

    outcome = outcomes.append
    # the connections of one server share its call_in_loop: the group of the last one is usually theirs
    call_in_loop: object = None
    group: list[ThreadedWebSocketAdapter] = []
    try:
        for adapter in adapters:
            try:
                if type(adapter) is ThreadedWebSocketAdapter:  # final: as isinstance, in less time
                    flush = adapter._offer(message)
                    if flush:
                        if adapter._call_in_loop is not call_in_loop:
                            call_in_loop = adapter._call_in_loop
                            group = to_flush.setdefault(adapter._call_in_loop, [])
                        group.append(adapter)
                    outcome(flush is not None)
                else:
                    adapter.send(message, 0)
                    outcome(True)
            except TimeoutError:
                outcome(False)
            except WebSocketDisconnectedError as error:
                outcome(error)
    except BaseException:
        # the connections it queued on before have their flush marked pending: without it, none of
        # their later sends would ask the loop for one
        hand_over()
        raise
    return outcomes, hand_over


def _flush_each(adapters: list[ThreadedWebSocketAdapter], message: Message) -> None:
    # the loop's side of offer_each. The members whose outbox holds the broadcast's message alone (all
    # but those whose handler sent too) are written to together, where their server's connection class
    # has a send_each (see ServerConnection); the others each send what their outbox held, in order
    kind = type(adapters[0]._connection)
    send_each = getattr(kind, "send_each", None)
    alone: list[ServerConnection] = []
    for adapter in adapters:
        try:
            outbox = adapter._take_outbox()
            connection = adapter._connection
            if outbox is message and send_each is not None and type(connection) is kind:
                alone.append(connection)
            elif outbox is not None:  # None: closed meanwhile, or flushed by a close
                connection.send(_listed(outbox))
        except Exception:
            LOG.exception("writing a message to a connection failed")
    if alone and send_each is not None:
        try:
            send_each(alone, message)
        except Exception:
            LOG.exception("writing a message to connections failed")
