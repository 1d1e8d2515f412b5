"""Pushes that arrived from other processes and wait, in order, for members whose buffers are full.

The thread that receives pushes from the broker serves every member of its process, so it must never
wait for one: it offers each message without waiting, and a member with no room gets a backlog, drained
by a thread of its own that waits for room. Each message waits at most the Hub's ``timeout`` from its
arrival; a member that still has no room then, or whose backlog would outgrow its byte limit, is slow,
and the Hub's policy applies (closed with 1013, or the message skipped). Once a member has a backlog,
its later messages queue behind it, so that each member still gets its messages in order.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable

from .errors import WebSocketDisconnectedError
from .websocket import WebSocket

__all__ = ["Backlogs"]


def _size(data: str | bytes) -> int:
    """At least the bytes ``data`` takes in a message (a character takes at most 4 in UTF-8)."""
    if isinstance(data, bytes) or data.isascii():
        return len(data)
    return 4 * len(data)


class _Backlog:
    def __init__(self, websocket: WebSocket) -> None:
        self.websocket = websocket
        self.messages: deque[tuple[str | bytes, float]] = deque()  # (data, deadline)
        self.size = 0


class Backlogs:
    """The backlogs of one Hub's members.

    :param timeout: how long a message may wait for room, in seconds
    :param limit: how many bytes may wait for one member (a text message counts its UTF-8 size at most)
    :param gone: called with a member's id when it turns out to be closed
    :param slow: called with a member's id and WebSocket when it had no room in time; the message
        that did not fit is dropped either way, and the rest of its backlog too if ``slow`` returns True
        (the member was closed)
    :param count: called with what became of each message for a member: ``"sent"``, ``"gone"`` or
        ``"slow"``
    """

    def __init__(
        self,
        timeout: float,
        limit: int,
        gone: Callable[[str], None],
        slow: Callable[[str, WebSocket], bool],
        count: Callable[[str], None],
    ) -> None:
        self._timeout = timeout
        self._limit = limit
        self._gone = gone
        self._slow = slow
        self._count = count
        self._lock = threading.Lock()
        self._backlogs: dict[str, _Backlog] = {}

    def offer(self, connection_id: str, websocket: WebSocket, data: str | bytes) -> None:
        """Send ``data`` to a member now if it has room, or queue it behind the member's backlog. Never
        waits."""
        with self._lock:
            backlog = self._backlogs.get(connection_id)
            queued = backlog is not None and self._queue(backlog, data)
        if backlog is not None:
            if not queued:
                self._overflow(connection_id, backlog)
            return
        try:
            websocket.send(data, timeout=0)
        except TimeoutError:
            with self._lock:
                backlog = self._backlogs.get(connection_id)
                start = backlog is None
                if backlog is None:
                    backlog = self._backlogs[connection_id] = _Backlog(websocket)
                queued = self._queue(backlog, data)
            if start:
                threading.Thread(
                    target=self._drain, args=(connection_id, backlog), name="rolo-hub-backlog", daemon=True
                ).start()
            elif not queued:
                self._overflow(connection_id, backlog)
        except WebSocketDisconnectedError:
            self._count("gone")
            self._gone(connection_id)
        else:
            self._count("sent")

    def __len__(self) -> int:
        """How many members have a backlog now."""
        with self._lock:
            return len(self._backlogs)

    def _queue(self, backlog: _Backlog, data: str | bytes) -> bool:
        """Queue ``data`` unless the backlog would outgrow the limit (a first message always fits, so that
        a large one is not slow before it waited). Under the lock."""
        size = _size(data)
        if backlog.messages and backlog.size + size > self._limit:
            return False
        backlog.messages.append((data, time.monotonic() + self._timeout))
        backlog.size += size
        return True

    def _overflow(self, connection_id: str, backlog: _Backlog) -> None:
        # no room, and none in the backlog: slow at once, as if its time were up; the message is dropped
        self._count("slow")
        if self._slow(connection_id, backlog.websocket):
            self._drop(connection_id, backlog)

    def _drain(self, connection_id: str, backlog: _Backlog) -> None:
        while True:
            with self._lock:
                if not backlog.messages:
                    self._forget(connection_id, backlog)
                    return
                data, deadline = backlog.messages[0]
            try:
                backlog.websocket.send(data, timeout=max(0.0, deadline - time.monotonic()))
            except TimeoutError:
                self._count("slow")
                if self._slow(connection_id, backlog.websocket):
                    self._drop(connection_id, backlog)
                    return
            except WebSocketDisconnectedError:
                self._count("gone")
                self._drop(connection_id, backlog)
                self._gone(connection_id)
                return
            else:
                self._count("sent")
            with self._lock:
                if backlog.messages:  # not dropped meanwhile
                    backlog.messages.popleft()
                    backlog.size -= _size(data)

    def _drop(self, connection_id: str, backlog: _Backlog) -> None:
        with self._lock:
            backlog.messages.clear()
            backlog.size = 0
            self._forget(connection_id, backlog)

    def _forget(self, connection_id: str, backlog: _Backlog) -> None:
        # under the lock; a closed member's id is never reused, but a backlog may be dropped twice
        if self._backlogs.get(connection_id) is backlog:
            del self._backlogs[connection_id]
