"""Push from anywhere: reach open connections by id, or by the named groups they joined, from any thread.

A :class:`Hub` is a registry of open connections. A handler adds its connection (and joins groups); any
other thread (an HTTP handler, a timer, another connection's handler) then sends to one connection by its
id, or to every member of a group::

    hub = Hub()

    @route("/rooms/<room>", methods=["WEBSOCKET"])
    def chat(request: WebSocketRequest, room: str):
        with request.accept() as websocket:
            me = hub.add(websocket, room)
            for message in websocket:
                hub.broadcast(room, message, exclude=[me])

    @route("/rooms/<room>", methods=["POST"])
    def announce(request: Request, room: str):
        return {"delivered": len(hub.broadcast(room, request.get_data(as_text=True)).sent)}

Pushing never races the connection's own handler: :meth:`WebSocket.send <rolo.websocket.WebSocket.send>`
queues whole messages under the connection's lock, so messages from several threads interleave, but never
mix. Messages one thread pushes to a connection arrive in the order it pushed them.

A connection leaves the hub, and every group, when it closes, whichever side closes it. A push that finds
a connection closed drops the message and forgets the connection.

A peer that does not read cannot hold the pusher up for everyone else. Every push first offers the message
to each member without waiting, and only then waits for the members whose buffers were full, all within
one ``timeout`` for the whole push. A member that still has no room when it runs out is *slow*: by default
it is closed with 1013 (try again later), so that it reconnects rather than silently missing messages;
with ``close_slow=False`` it is only skipped (it misses this message, and stays).
"""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass

from .errors import WebSocketDisconnectedError
from .websocket import WebSocket

__all__ = ["CLOSE_CODE_TRY_AGAIN_LATER", "Delivery", "Hub"]

CLOSE_CODE_TRY_AGAIN_LATER = 1013
"""The close code a :class:`Hub` sends to a peer too slow to take a pushed message (RFC 6455, 7.4.1)."""


@dataclass(frozen=True)
class Delivery:
    """What became of one push, as connection ids.

    :param sent: the connections that took the message into their send buffers (one that breaks right
        after may still lose it, as with :meth:`WebSocket.send <rolo.websocket.WebSocket.send>`)
    :param gone: the connections that were closed (or unknown), so the message was dropped for them
    :param slow: the connections that had no room for the message within the push's timeout
    """

    sent: tuple[str, ...] = ()
    gone: tuple[str, ...] = ()
    slow: tuple[str, ...] = ()


class Hub:
    """Open connections, each with an id and in any number of named groups, reachable from any thread.

    All methods are thread-safe. None holds the hub's lock while sending, so a push to a slow peer never
    blocks another thread's push, join or leave.

    :param timeout: how long a push may wait, in total, for members whose buffers are full (seconds)
    :param close_slow: whether a member that had no room within the timeout is closed with 1013 (the
        default) or only skipped
    """

    def __init__(self, *, timeout: float = 5.0, close_slow: bool = True) -> None:
        self.timeout = timeout
        self.close_slow = close_slow
        self._lock = threading.Lock()
        self._ids = (f"ws-{n}" for n in itertools.count(1))
        self._connections: dict[str, WebSocket] = {}
        self._id_of: dict[WebSocket, str] = {}
        # members as dict keys: a set that keeps the order they joined in
        self._groups: dict[str, dict[str, None]] = {}
        self._membership: dict[str, set[str]] = {}  # connection id -> its groups

    # -- membership --------------------------------------------------------------------------------

    def add(self, websocket: WebSocket, *groups: str) -> str:
        """Register an open connection and join it to ``groups``; return its id.

        Adding a connection again returns the id it has and joins the further groups. The connection
        leaves the hub when it closes.
        """
        with self._lock:
            connection_id = self._id_of.get(websocket)
            new = connection_id is None
            if connection_id is None:
                connection_id = next(self._ids)
                self._connections[connection_id] = websocket
                self._id_of[websocket] = connection_id
                self._membership[connection_id] = set()
            self._join(connection_id, groups)
        if new:
            # outside the lock: on a connection closed already, the listener runs (and removes) at once
            websocket.on_close(lambda: self.remove(connection_id))
        return connection_id

    def join(self, connection: WebSocket | str, *groups: str) -> None:
        """Add a connection (a registered :class:`~rolo.websocket.WebSocket`, or its id) to ``groups``.

        :raises KeyError: if the connection is not in the hub (never added, or closed)
        """
        with self._lock:
            self._join(self._resolve(connection), groups)

    def leave(self, connection: WebSocket | str, *groups: str) -> None:
        """Take a connection out of ``groups`` (of every group if none is named); it stays in the hub.
        Leaving a group it is not in does nothing."""
        with self._lock:
            connection_id = self._lookup(connection)
            if connection_id is not None:
                self._leave(connection_id, groups or tuple(self._membership[connection_id]))

    def remove(self, connection: WebSocket | str) -> None:
        """Forget a connection: it leaves every group and can no longer be reached by its id. Called by
        itself when the connection closes; removing one that is gone does nothing."""
        with self._lock:
            connection_id = self._lookup(connection)
            if connection_id is not None:
                self._leave(connection_id, tuple(self._membership[connection_id]))
                del self._id_of[self._connections.pop(connection_id)]
                del self._membership[connection_id]

    def get(self, connection_id: str) -> WebSocket | None:
        """The connection with this id, or ``None`` if there is none (any more)."""
        with self._lock:
            return self._connections.get(connection_id)

    def members(self, group: str) -> list[str]:
        """The ids of the connections in ``group``, in the order they joined; empty if nobody is in it."""
        with self._lock:
            return list(self._groups.get(group, ()))

    def groups(self, connection: WebSocket | str | None = None) -> list[str]:
        """The groups with at least one member, or those ``connection`` is in, sorted by name."""
        with self._lock:
            if connection is None:
                return sorted(self._groups)
            connection_id = self._lookup(connection)
            return sorted(self._membership[connection_id]) if connection_id is not None else []

    def __len__(self) -> int:
        with self._lock:
            return len(self._connections)

    def __contains__(self, connection: object) -> bool:
        if not isinstance(connection, (WebSocket, str)):
            return False
        with self._lock:
            return self._lookup(connection) is not None

    # -- pushing -----------------------------------------------------------------------------------

    def send(self, connection_id: str, data: str | bytes, *, timeout: float | None = None) -> Delivery:
        """Push ``data`` to the connection with this id, waiting at most ``timeout`` seconds (the hub's
        ``timeout`` if ``None``) for room in its buffer. An unknown id counts as gone."""
        websocket = self.get(connection_id)
        if websocket is None:
            return Delivery(gone=(connection_id,))
        return self._push([(connection_id, websocket)], data, timeout)

    def broadcast(
        self,
        group: str,
        data: str | bytes,
        *,
        exclude: Iterable[WebSocket | str] = (),
        timeout: float | None = None,
    ) -> Delivery:
        """Push ``data`` to every member of ``group`` except those in ``exclude``, waiting at most
        ``timeout`` seconds in all (the hub's ``timeout`` if ``None``) for members whose buffers are full.

        The members are those in the group when the push starts; a connection joining meanwhile does not
        get this message.
        """
        with self._lock:
            skipped = {self._lookup(c) for c in exclude}
            targets = [
                (connection_id, self._connections[connection_id])
                for connection_id in self._groups.get(group, ())
                if connection_id not in skipped
            ]
        return self._push(targets, data, timeout)

    def _push(
        self, targets: list[tuple[str, WebSocket]], data: str | bytes, timeout: float | None
    ) -> Delivery:
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        sent: list[str] = []
        gone: list[str] = []
        full: list[tuple[str, WebSocket]] = []
        # first offer the message to everyone without waiting, so that one full buffer delays nobody
        for target in targets:
            self._offer(target, data, 0, sent, gone, full)
        slow: list[tuple[str, WebSocket]] = []
        for target in full:
            self._offer(target, data, max(0.0, deadline - time.monotonic()), sent, gone, slow)
        for connection_id, websocket in slow:
            if self.close_slow:
                self.remove(connection_id)
                try:
                    # do not wait for the handshake: a peer that does not read will not answer it soon
                    websocket.close(CLOSE_CODE_TRY_AGAIN_LATER, "too slow to read", timeout=0)
                except (TimeoutError, WebSocketDisconnectedError):
                    pass
        return Delivery(tuple(sent), tuple(gone), tuple(connection_id for connection_id, _ in slow))

    def _offer(
        self,
        target: tuple[str, WebSocket],
        data: str | bytes,
        timeout: float,
        sent: list[str],
        gone: list[str],
        full: list[tuple[str, WebSocket]],
    ) -> None:
        connection_id, websocket = target
        try:
            websocket.send(data, timeout=timeout)
        except TimeoutError:
            full.append(target)
        except WebSocketDisconnectedError:
            gone.append(connection_id)
            self.remove(connection_id)
        else:
            sent.append(connection_id)

    # -- under the lock ----------------------------------------------------------------------------

    def _join(self, connection_id: str, groups: Iterable[str]) -> None:
        for group in groups:
            self._groups.setdefault(group, {})[connection_id] = None
            self._membership[connection_id].add(group)

    def _leave(self, connection_id: str, groups: Iterable[str]) -> None:
        for group in groups:
            self._membership[connection_id].discard(group)
            members = self._groups.get(group)
            if members is not None:
                members.pop(connection_id, None)
                if not members:
                    del self._groups[group]

    def _lookup(self, connection: WebSocket | str | None) -> str | None:
        if isinstance(connection, str):
            return connection if connection in self._connections else None
        return self._id_of.get(connection) if connection is not None else None

    def _resolve(self, connection: WebSocket | str) -> str:
        connection_id = self._lookup(connection)
        if connection_id is None:
            raise KeyError(f"{connection!r} is not in the hub")
        return connection_id
