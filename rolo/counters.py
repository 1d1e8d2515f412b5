"""The plain counters a server keeps as it works, which :mod:`rolo.metrics` reads when it is scraped.

Counting costs an integer addition where the work happens, whether or not anything reads the counts, and
needs nothing installed: ``prometheus-client`` is imported only by :mod:`rolo.metrics`, which turns these
into metric families at scrape time. What happens once per message is counted by the one thread that
sees it (the event loop), in plain attributes without a lock; what happens at most once per connection or
per request, from whichever thread, goes into a :class:`Tally`, under its lock.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Hashable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from rolo.websocket.frames import Close

__all__ = ["HttpCounters", "Tally", "WebSocketCounters"]


class Tally:
    """Counts by key (a status, a close code and who closed …), from any thread.

    Each key's count only grows, so a reader sees a Prometheus counter per key.
    """

    __slots__ = ("_counts", "_lock")

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts: dict[Hashable, int] = {}

    def add(self, key: Hashable, count: int = 1) -> None:
        """Count ``count`` more of ``key``."""
        with self._lock:
            self._counts[key] = self._counts.get(key, 0) + count

    def counts(self) -> dict[Hashable, int]:
        """A copy of the counts so far, by key."""
        with self._lock:
            return dict(self._counts)


class WebSocketCounters:
    """What the WebSocket connections of one server did (its :class:`~rolo.websocket.host.WebSocketHost`
    keeps one, and hands it to each connection's adapter).

    The message and byte counts are added on the event-loop thread only. Sizes are those of the messages'
    payloads as the adapter sees them, ``len`` of a message's data: the bytes of a binary message; for a
    text message, the same as its UTF-8 bytes when it is ASCII, else its UTF-8 bytes where the server hands
    it over encoded and its characters where it hands it over as ``str`` (which counting bytes would have
    to encode again).

    :ivar messages_received: messages the handlers' inboxes took
    :ivar received_bytes: the sizes of those messages
    :ivar messages_sent: messages handed to the server to send
    :ivar sent_bytes: the sizes of those messages
    :ivar upgrades: upgrade requests answered, by HTTP status: ``101`` accepted, any other refused (by
        the server, or by the handler's ``reject``)
    :ivar closes: connections that were open and closed, by ``(code, closed_by)``: the code of the close
        frame of the side that closed first, ``closed_by`` ``"server"`` or ``"peer"``; ``(1006, "none")``
        for a connection lost without a close frame
    """

    __slots__ = ("closes", "messages_received", "messages_sent", "received_bytes", "sent_bytes", "upgrades")

    def __init__(self) -> None:
        self.messages_received = 0
        self.received_bytes = 0
        self.messages_sent = 0
        self.sent_bytes = 0
        self.upgrades = Tally()
        self.closes = Tally()

    def closed(self, received: Close | None, sent: Close | None, closed_by: str | None) -> None:
        """An open connection closed: with the peer's close frame ``received`` and the server's ``sent``
        (either ``None`` if none came or went), the first sent by ``closed_by`` (``"server"``, ``"peer"``,
        or ``None`` for neither)."""
        frame = sent if closed_by == "server" else received if closed_by == "peer" else None
        self.closes.add((int(frame.code), closed_by) if frame is not None else (1006, "none"))


class HttpCounters:
    """What the plain HTTP requests of one server did.

    :ivar responses: responses written, by HTTP status
    :ivar observe: called with each response's duration in seconds, from its request's arrival to its
        end, when metrics that need it are on (a histogram's ``observe``); ``None`` otherwise
    """

    __slots__ = ("observe", "responses")

    def __init__(self) -> None:
        self.responses = Tally()
        self.observe: Callable[[float], None] | None = None

    def responded(self, status: int, seconds: float) -> None:
        """A response with ``status`` ended, ``seconds`` after its request arrived."""
        self.responses.add(status)
        if self.observe is not None:
            self.observe(seconds)
