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

With a broker (:mod:`rolo.websocket.broker`), the Hubs of the same name in every process that uses it
act as one: ids are unique across them, ``send`` reaches an id wherever it is, ``broadcast`` every member
of the group on every process, and ``members`` and ``count`` answer for the whole cluster
(:mod:`rolo.websocket.cluster` says how, and what is guaranteed).
"""

from __future__ import annotations

import atexit
import itertools
import logging
import secrets
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from typing import Any

from rolo.counters import Tally

from .adapter import Message
from .backlog import Backlogs
from .broker import RedisBroker, broker_from, environment_broker
from .cluster import ClusterLink, encode_push
from .errors import WebSocketDisconnectedError
from .frames import CloseCode
from .websocket import WebSocket, message_for, offer_each

__all__ = ["CLOSE_CODE_TRY_AGAIN_LATER", "DELIVERIES", "Delivery", "Hub"]

LOG = logging.getLogger("rolo.websocket.hub")

CLOSE_CODE_TRY_AGAIN_LATER = CloseCode.TRY_AGAIN_LATER
"""The close code a :class:`Hub` sends to a peer too slow to take a pushed message (RFC 6455, 7.4.1)."""

DELIVERIES = Tally()
"""What the Hubs of this process did with the messages pushed to them, for metrics (:mod:`rolo.metrics`),
by ``(name, outcome)``: a Hub's ``name``, and ``"sent"``, ``"gone"`` or ``"slow"`` for each member of this
process a message was for (whichever process pushed it), ``"published"`` or ``"failed"`` for each other
process a push of this one was for (see :class:`Delivery`)."""

_FROM_ENVIRONMENT: Any = object()
"""The default ``broker`` of a Hub: the one ``ROLO_BROKER`` names, if any."""


@dataclass(frozen=True)
class Delivery:
    """What became of one push, as connection ids.

    :param sent: the connections of this process that took the message into their send buffers (one that
        breaks right after may still lose it, as with :meth:`WebSocket.send <rolo.websocket.WebSocket.send>`)
    :param gone: the connections that were closed (or unknown, or on a process that is not in the
        cluster), so the message was dropped for them
    :param slow: the connections of this process that had no room for the message within the push's
        timeout
    :param published: with a broker, the other processes (by :attr:`Hub.node`) that have the message: each
        hands it to its members as this one does (sent, or gone, or slow there)
    :param failed: with a broker, the other processes that may not have the message: the broker did not
        confirm it within its timeout (it may still arrive), or the process was not listening. ``"*"``
        stands for every process with members when the broker could not be asked at all.
    """

    sent: tuple[str, ...] = ()
    gone: tuple[str, ...] = ()
    slow: tuple[str, ...] = ()
    published: tuple[str, ...] = ()
    failed: tuple[str, ...] = ()


class Hub:
    """Open connections, each with an id and in any number of named groups, reachable from any thread.

    All methods are thread-safe. None holds the hub's lock while sending, so a push to a slow peer never
    blocks another thread's push, join or leave.

    :param timeout: how long a push may wait, in total, for members whose buffers are full (seconds)
    :param close_slow: whether a member that had no room within the timeout is closed with 1013 (the
        default) or only skipped
    :param broker: a :class:`~rolo.websocket.broker.RedisBroker` or a Redis URL, to act as one Hub with
        the Hubs of the same ``name`` in other processes; by default the one the ``ROLO_BROKER``
        environment variable names, if it is set; ``None`` for a Hub of this process only
    :param name: which Hub of the cluster this is, when an application has several (with a broker)
    :param on_missed: with a broker, called with the ids of members that may have missed pushes from
        other processes (see :mod:`rolo.websocket.cluster`), in the link's thread: keep it short. By
        default they are closed with 1012 (service restart), so that their clients reconnect and resync.
    :raises ValueError: for a broker URL that ``ROLO_BROKER`` or ``broker`` gives with bad settings
    """

    def __init__(
        self,
        *,
        timeout: float = 5.0,
        close_slow: bool = True,
        broker: RedisBroker | str | None = _FROM_ENVIRONMENT,
        name: str = "hub",
        on_missed: Callable[[list[str]], None] | None = None,
    ) -> None:
        self.timeout = timeout
        self.close_slow = close_slow
        self.broker = environment_broker() if broker is _FROM_ENVIRONMENT else broker_from(broker)
        self.name = name
        self._on_missed = on_missed
        self._lock = threading.Lock()
        self.node: str | None = None
        """This process's name in the cluster, which its ids end with (``ws-7@3f9a01c2``); ``None``
        without a broker."""
        self._link: ClusterLink | None = None
        self._link_started = threading.Event()
        self._start_lock = threading.Lock()
        if self.broker is None:
            self._ids = (f"ws-{n}" for n in itertools.count(1))
        else:
            self.node = secrets.token_hex(4)
            self._ids = (f"ws-{n}@{self.node}" for n in itertools.count(1))
            self._link = ClusterLink(self.broker, name, self.node, self)
            self._backlogs = Backlogs(timeout, self.broker.backlog, self.remove, self._slow, self._count)
        outcomes = ("sent", "gone", "slow") + (("published", "failed") if self.broker is not None else ())
        for outcome in outcomes:  # so that the metrics show each at 0 from the start
            DELIVERIES.add((name, outcome), 0)
        self._connections: dict[str, WebSocket] = {}
        self._id_of: dict[WebSocket, str] = {}
        # members as dict keys: a set that keeps the order they joined in
        self._groups: dict[str, dict[str, None]] = {}
        self._membership: dict[str, set[str]] = {}  # connection id -> its groups

    # -- membership --------------------------------------------------------------------------------

    def add(self, websocket: WebSocket, *groups: str) -> str:
        """Register an open connection and join it to ``groups``; return its id.

        Adding a connection again returns the id it has and joins the further groups. The connection
        leaves the hub when it closes. With a broker, it returns once Redis has the membership (waiting
        at most the broker's timeout), so that pushes from other processes reach the connection from
        then on.
        """
        self._start_link()
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
        if groups and self._link is not None:
            self._link.flush()
        return connection_id

    def join(self, connection: WebSocket | str, *groups: str) -> None:
        """Add a connection (a registered :class:`~rolo.websocket.WebSocket`, or its id) to ``groups``.

        With a broker, it returns once Redis has the membership, as :meth:`add` does.

        :raises KeyError: if the connection is not in the hub (never added, or closed)
        """
        self._start_link()
        with self._lock:
            self._join(self._resolve(connection), groups)
        if groups and self._link is not None:
            self._link.flush()

    def leave(self, connection: WebSocket | str, *groups: str) -> None:
        """Take a connection out of ``groups`` (of every group if none is named); it stays in the hub.
        Leaving a group it is not in does nothing. With a broker, it returns once Redis has the change,
        as :meth:`add` does."""
        with self._lock:
            connection_id = self._lookup(connection)
            if connection_id is not None:
                self._leave(connection_id, groups or tuple(self._membership[connection_id]))
        if connection_id is not None and self._link is not None and self._link_started.is_set():
            self._link.flush()

    def remove(self, connection: WebSocket | str) -> None:
        """Forget a connection: it leaves every group and can no longer be reached by its id. Called by
        itself when the connection closes; removing one that is gone does nothing. It never waits: with
        a broker, Redis learns of it soon after (pushes that other processes send it meanwhile are
        dropped here, as for any closed connection)."""
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

    def members(self, group: str, *, local: bool = False) -> list[str]:
        """The ids of the connections in ``group``; empty if nobody is in it.

        Without a broker, or with ``local=True``, those of this process, in the order they joined. With a
        broker, those of every live process, in no particular order, as Redis has them: this process's
        changes count once it has sent them (the answer waits for that), and a process that died leaves
        within the broker's ``ttl``.

        :raises BrokerError: with a broker, if it did not answer within its timeout
        """
        if self._link is not None and not local:
            self._start_link()
            return self._link.members(group)
        with self._lock:
            return list(self._groups.get(group, ()))

    def count(self, group: str, *, local: bool = False) -> int:
        """How many connections are in ``group``: ``len(members(group, local=local))``.

        :raises BrokerError: with a broker, if it did not answer within its timeout
        """
        return len(self.members(group, local=local))

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
        ``timeout`` if ``None``) for room in its buffer. An unknown id counts as gone.

        With a broker, an id of another process is published to that process, waiting at most the
        broker's ``timeout`` for Redis to confirm it (not at all while the link is down): the delivery
        says ``published`` or ``failed``, or ``gone`` if that process is not in the cluster.
        """
        websocket = self.get(connection_id)
        if websocket is not None:
            return self._push([connection_id], [websocket], data, timeout)
        node = connection_id.rpartition("@")[2]
        if self._link is None or not node or node == self.node:
            self._count("gone")
            return Delivery(gone=(connection_id,))
        self._start_link()
        published, failed, gone = self._link.send(node, encode_push(b"s", connection_id, (), data)).wait(
            self._link.broker.timeout
        )
        if gone:
            self._count("gone")
            return Delivery(gone=(connection_id,))
        self._count("published", len(published))
        self._count("failed", len(failed))
        return Delivery(published=published, failed=failed)

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

        With a broker, the message is also published to the other processes with members in the group,
        which hand it to theirs (``exclude`` may name their ids too); the push then waits, at most the
        broker's ``timeout`` from its start (not at all while the link is down), for Redis to confirm
        it: the delivery says to which processes it was ``published`` and for which it ``failed``.
        """
        exclude = list(exclude)
        remote = None
        if self._link is not None:
            self._start_link()
            deadline = time.monotonic() + self._link.broker.timeout
            excluded = [c for c in exclude if isinstance(c, str) and not c.endswith(f"@{self.node}")]
            remote = self._link.broadcast(group, encode_push(b"b", group, excluded, data))
        with self._lock:
            skipped = {self._lookup(c) for c in exclude}
            ids = [connection_id for connection_id in self._groups.get(group, ()) if connection_id not in skipped]
            connections = self._connections
            websockets = [connections[connection_id] for connection_id in ids]
        delivery = self._push(ids, websockets, data, timeout)
        if remote is None:
            return delivery
        published, failed, _ = remote.wait(deadline - time.monotonic())
        self._count("published", len(published))
        self._count("failed", len(failed))
        return replace(delivery, published=published, failed=failed)

    def _push(self, ids: list[str], websockets: list[WebSocket], data: str | bytes, timeout: float | None) -> Delivery:
        # the members' ids and connections in two lists: a pair for each would be a container each, alive
        # through the offer, which sets the garbage collector off
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        message = message_for(data)  # one message for every member: the server frames it once
        sent: list[str]
        gone: list[str] = []
        full: list[tuple[str, WebSocket]] = []
        # first offer the message to everyone without waiting, so that one full buffer delays nobody; the
        # server is handed the sends of all at once, once the offers are counted
        outcomes, hand_over = offer_each(websockets, message)
        try:
            sent = [connection_id for connection_id, outcome in zip(ids, outcomes) if outcome is True]
            if len(sent) < len(ids):
                for connection_id, websocket, outcome in zip(ids, websockets, outcomes):
                    if outcome is not True:
                        self._sort((connection_id, websocket), outcome, sent, gone, full)
        finally:
            hand_over()
        slow: list[tuple[str, WebSocket]] = []
        for target in full:
            self._offer(target, message, max(0.0, deadline - time.monotonic()), sent, gone, slow)
        for connection_id, websocket in slow:
            self._slow(connection_id, websocket)
        self._count("sent", len(sent))
        self._count("gone", len(gone))
        self._count("slow", len(slow))
        return Delivery(tuple(sent), tuple(gone), tuple(connection_id for connection_id, _ in slow))

    def _count(self, outcome: str, count: int = 1) -> None:
        if count:
            DELIVERIES.add((self.name, outcome), count)

    def _slow(self, connection_id: str, websocket: WebSocket) -> bool:
        """Apply the slow-member policy; whether the member was closed."""
        if self.close_slow:
            self._close(connection_id, websocket, CLOSE_CODE_TRY_AGAIN_LATER, "too slow to read")
        return self.close_slow

    def _close(self, connection_id: str, websocket: WebSocket, code: int, reason: str) -> None:
        self.remove(connection_id)
        try:
            # do not wait for the handshake: a peer that does not read will not answer it soon
            websocket.close(code, reason, timeout=0)
        except (TimeoutError, WebSocketDisconnectedError):
            pass

    def _offer(
        self,
        target: tuple[str, WebSocket],
        message: Message,
        timeout: float,
        sent: list[str],
        gone: list[str],
        full: list[tuple[str, WebSocket]],
    ) -> None:
        outcome: bool | WebSocketDisconnectedError = True
        try:
            target[1].send_message(message, timeout=timeout)
        except TimeoutError:
            outcome = False
        except WebSocketDisconnectedError as error:
            outcome = error
        self._sort(target, outcome, sent, gone, full)

    def _sort(
        self,
        target: tuple[str, WebSocket],
        outcome: bool | WebSocketDisconnectedError,
        sent: list[str],
        gone: list[str],
        full: list[tuple[str, WebSocket]],
    ) -> None:
        # what became of a message offered to ``target`` (as offer_each gives it): taken, no room, or gone
        if outcome is True:
            sent.append(target[0])
        elif outcome is False:
            full.append(target)
        else:
            gone.append(target[0])
            self.remove(target[0])

    # -- the cluster -----------------------------------------------------------------------------------

    def close(self) -> None:
        """With a broker, leave the cluster: this process's members leave every other process's
        ``members`` and ``count`` at once, and pushes no longer go out or come in. Without one, nothing
        happens. The link also leaves when the interpreter exits."""
        if self._link is not None and self._link_started.is_set():
            self._link.close()

    def _start_link(self) -> None:
        # at first use, not in __init__: a Hub made at import time starts no thread before a server forks
        if self._link is None or self._link_started.is_set():
            return
        with self._start_lock:
            if self._link_started.is_set():
                return
            self._link.start()  # ImportError without redis-py: raised again at the next use
            self._link_started.set()
        atexit.register(self.close)
        # the first use waits for the link once, so that a process's first pushes do not fail
        self._link.wait_up(self._link.broker.timeout)

    def _cluster_snapshot(self, journal: Callable[[], None]) -> tuple[dict[str, list[str]], list[str]]:
        # for the link: see rolo.websocket.cluster.ClusterMembers
        with self._lock:
            journal()
            return {group: list(members) for group, members in self._groups.items()}, list(self._connections)

    def _cluster_deliver(self, kind: bytes, target: str, exclude: list[str], data: str | bytes) -> None:
        with self._lock:
            if kind == b"s":
                websocket = self._connections.get(target)
                targets = [(target, websocket)] if websocket is not None else []
            else:
                skipped = set(exclude)
                targets = [
                    (connection_id, self._connections[connection_id])
                    for connection_id in self._groups.get(target, ())
                    if connection_id not in skipped
                ]
        for connection_id, websocket in targets:
            self._backlogs.offer(connection_id, websocket, data)

    def _cluster_missed(self, connection_ids: list[str]) -> None:
        if self._on_missed is not None:
            try:
                self._on_missed(connection_ids)
            except Exception:
                LOG.exception("the Hub's on_missed callback failed")
            return
        for connection_id in connection_ids:
            websocket = self.get(connection_id)
            if websocket is not None:
                # may have missed pushes from other processes: reconnect and resync (1012, service restart)
                self._close(connection_id, websocket, CloseCode.SERVICE_RESTART, "service restart")

    # -- under the lock ----------------------------------------------------------------------------

    def _join(self, connection_id: str, groups: Iterable[str]) -> None:
        for group in groups:
            members = self._groups.setdefault(group, {})
            if connection_id not in members:
                members[connection_id] = None
                self._membership[connection_id].add(group)
                if self._link is not None:
                    self._link.journal(group, connection_id, True)

    def _leave(self, connection_id: str, groups: Iterable[str]) -> None:
        for group in groups:
            self._membership[connection_id].discard(group)
            members = self._groups.get(group)
            if members is not None and connection_id in members:
                del members[connection_id]
                if self._link is not None:
                    self._link.journal(group, connection_id, False)
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
