"""A Hub's link to the Hubs of other processes through Redis: who is where, and pushes between them.

Each Hub with a broker is a *node* of the cluster of Hubs that share its name and broker, with a random
name of its own. Connection ids carry it (``ws-7@3f9a01c2``), so a push to an id goes straight to its
node. In Redis (keys under ``rolo:<hub name>:``):

- ``alive:<node>``, a key that lives ``ttl`` seconds unless the node's heartbeat renews it;
- ``routes:<group>``, the nodes with members in the group, and ``members:<node>:<group>``, those members;
  ``groups:<node>`` and ``nodes`` let anyone forget a node whose ``alive`` key expired;
- one pub/sub channel per node, ``node:<node>``, to which only that node subscribes.

A broadcast is one Lua script: it publishes the message to the channel of each live node in the group's
routes, so a process receives only pushes for its own members. Every command goes through Lua scripts
run by one writer thread, in order, many to a round trip; a subscriber thread reads the node's channel
and hands each push to the Hub. Neither thread is a server's event loop.

Redis pub/sub delivers what it accepted in order, once, on a connection that stays up, and drops
silently what is in flight when that connection breaks; a node whose records vanish (Redis restarted
empty, or the heartbeat lapsed) is skipped silently by broadcasts until it registers again. The link
turns both into reports:

- a push the writer could not hand to Redis in time, or that Redis published to nobody, is reported to
  its pusher as failed;
- when the subscription breaks, or the node's records are found gone, the members the node had then may
  have missed pushes: once the link is whole again, they are reported to the Hub (which by default
  closes them with 1012, so that their clients reconnect and resync).
"""

from __future__ import annotations

import json
import logging
import queue
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any, Protocol

from .broker import BrokerError, RedisBroker
from .errors import WebSocketProtocolError
from .scripts import SCRIPTS

__all__ = ["ClusterLink", "ClusterMembers", "Published"]

LOG = logging.getLogger("rolo.websocket.cluster")

UNKNOWN = "*"
"""In :attr:`Published.failed`: the broker could not be asked, so which nodes have members is unknown."""

_RETRY_FRACTIONS = (0.2, 0.5, 1.0)
"""The waits between attempts to reconnect, as fractions of the broker's ``retry_interval`` (the last
repeats): a broker that is back is in use within about ``retry_interval`` of answering again."""

_MAX_BATCH = 256
"""Commands the writer sends in one round trip at most."""

_WAKE = object()
"""Put into the writer's queue to make it look at the link's state."""

# -- what goes over a node's channel ------------------------------------------------------------------


def encode_push(kind: bytes, target: str, exclude: Iterable[str], data: str | bytes) -> bytes:
    """A push as one pub/sub message: the kind (``b"b"`` broadcast, ``b"s"`` send), a JSON header line
    (the group or id, the excluded ids, whether the data is text), and the data.

    :raises WebSocketProtocolError: if ``data`` is neither ``str`` nor ``bytes``
    :raises UnicodeEncodeError: if ``data`` is a ``str`` with no UTF-8 form
    """
    if isinstance(data, str):
        payload = data.encode()
    elif isinstance(data, (bytes, bytearray, memoryview)):
        payload = bytes(data)
    else:
        raise WebSocketProtocolError(f"can only send str or bytes, not {type(data).__name__}")
    header = json.dumps([target, list(exclude), isinstance(data, str)], separators=(",", ":")).encode()
    return b"".join((kind, header, b"\n", payload))


def decode_push(message: bytes) -> tuple[bytes, str, list[str], str | bytes]:
    """The kind, target, excluded ids and data of a message made by :func:`encode_push`."""
    end = message.index(b"\n")
    target, exclude, text = json.loads(message[1:end])
    data = message[end + 1 :]
    return message[:1], target, exclude, data.decode() if text else data


# -- the link -------------------------------------------------------------------------------------------


class ClusterMembers(Protocol):
    """What the link needs of its Hub. Each method is called from one of the link's threads."""

    def _cluster_snapshot(self, journal: Callable[[], None]) -> tuple[dict[str, list[str]], list[str]]:
        """Under the Hub's lock: call ``journal()`` (from then on, membership changes go to the link's
        journal), and return each group's member ids and every member's id."""

    def _cluster_deliver(self, kind: bytes, target: str, exclude: list[str], data: str | bytes) -> None:
        """Hand a push that came from another node to its local members, without waiting."""

    def _cluster_missed(self, connection_ids: list[str]) -> None:
        """These members may have missed pushes (see the module's docstring)."""


class Published:
    """What becomes of a push to other nodes, once Redis answers: the nodes it was published to, those it
    failed for (:data:`UNKNOWN` when Redis could not be asked at all), and whether the one node a send
    went to is gone."""

    __slots__ = ("_done", "_failed_unanswered", "failed", "gone", "published")

    def __init__(self, failed_unanswered: tuple[str, ...] = (UNKNOWN,)) -> None:
        self.published: tuple[str, ...] = ()
        self.failed: tuple[str, ...] = ()
        self.gone = False
        self._failed_unanswered = failed_unanswered
        self._done = threading.Lock()
        self._done.acquire()

    def answered(self) -> None:
        """Called once the fields hold Redis's answer."""
        self._done.release()

    def unanswered(self) -> None:
        """Called when Redis was not asked, or gave no answer."""
        self.failed = self._failed_unanswered
        self._done.release()

    def wait(self, timeout: float) -> tuple[tuple[str, ...], tuple[str, ...], bool]:
        """``(published, failed, gone)`` once Redis answered, or after ``timeout`` seconds without an
        answer, ``((), failed, False)``: the push is then not known to have gone out (it may still)."""
        if not self._done.acquire(timeout=max(0.0, timeout)):
            return (), self._failed_unanswered, False
        return self.published, self.failed, self.gone


class _Op:
    """One script call in the writer's queue, and what to do with its answer."""

    __slots__ = ("args", "on_error", "on_result", "size")

    def __init__(
        self,
        args: tuple[Any, ...],
        on_result: Callable[[Any], None],
        on_error: Callable[[], None],
        size: int = 0,
    ) -> None:
        self.args = args
        self.on_result = on_result
        self.on_error = on_error
        self.size = size


class ClusterLink:
    """One node's link to Redis: a writer thread and a subscriber thread, started by :meth:`start`.

    :param broker: where Redis is, and the timings
    :param name: the Hub's name: the nodes of one cluster share it
    :param node: this node's name, unique in the cluster
    :param hub: the Hub the link serves
    """

    def __init__(self, broker: RedisBroker, name: str, node: str, hub: ClusterMembers) -> None:
        self.broker = broker
        self.node = node
        self._hub = hub
        self._prefix = f"rolo:{name}:"
        self._channel = f"{self._prefix}node:{node}".encode()
        self._redis: Any = None  # the redis module, imported by start()
        self._pool: Any = None
        self._shas: dict[str, str] = {}

        self._lock = threading.Lock()
        self._ops: queue.SimpleQueue[_Op | object] = queue.SimpleQueue()
        self._pending_bytes = 0
        self._up = False  # registered, subscribed, and the writer's connection working
        self._subscriptions = 0  # counts the subscriber's successful subscriptions
        self._subscribed = threading.Event()
        self._linked = threading.Event()  # set while _up
        self._at_risk: set[str] = set()  # members that may have missed pushes while the link was down
        self._down_logged = False  # the link being down was logged since it was last up: once is enough
        self._journaling = False
        self._journal: dict[str, dict[str, bool]] = {}  # group -> id -> joined (True) or left
        self._closing = threading.Event()
        self._threads: list[threading.Thread] = []

    # -- the Hub's side ------------------------------------------------------------------------------

    def start(self) -> None:
        """Import redis-py and start the link's threads.

        :raises ImportError: naming the ``redis`` extra, if redis-py is not installed
        """
        try:
            import redis
            from redis.backoff import NoBackoff
            from redis.retry import Retry
        except ImportError as error:
            raise ImportError(
                "a Hub with a broker needs redis-py, the redis extra: from a checkout, pip install '.[redis]' "
                "(or pip install redis)"
            ) from error
        self._redis = redis
        self._pool = redis.ConnectionPool.from_url(
            self.broker.url,
            socket_timeout=self.broker.timeout,
            socket_connect_timeout=self.broker.timeout,
            retry=Retry(NoBackoff(), 0),  # the link reconnects itself, and reports what it lost
            protocol=2,  # RESP2: a pushed message is a reply the subscriber reads, not a callback's
        )
        for target, name in ((self._write, "rolo-hub-writer"), (self._subscribe, "rolo-hub-subscriber")):
            thread = threading.Thread(target=target, name=f"{name} {self.node}", daemon=True)
            thread.start()
            self._threads.append(thread)

    def wait_up(self, timeout: float) -> bool:
        """Wait up to ``timeout`` seconds for the node to be registered and subscribed, so that pushes go
        out; whether it is."""
        return self._linked.wait(timeout)

    def journal(self, group: str, connection_id: str, joined: bool) -> None:
        """Record that a member joined or left a group. The Hub calls it under its lock."""
        with self._lock:
            if self._journaling:
                self._journal.setdefault(group, {})[connection_id] = joined

    def broadcast(self, group: str, message: bytes) -> Published:
        """Publish a broadcast to the other nodes with members in ``group``, without waiting: the result
        says what became of it."""
        published = Published()

        def done(result: list[Any]) -> None:
            nodes = [node.decode() for node in result[::2]]
            published.published = tuple(node for node, n in zip(nodes, result[1::2]) if n)
            published.failed = tuple(node for node, n in zip(nodes, result[1::2]) if not n)

        self._call("broadcast", (group, message), published, done, len(message))
        return published

    def send(self, node: str, message: bytes) -> Published:
        """Publish a push to one member of ``node``, without waiting: the result says what became of
        it."""
        published = Published(failed_unanswered=(node,))

        def done(result: int) -> None:
            published.gone = result < 0
            if result > 0:
                published.published = (node,)
            elif result == 0:
                published.failed = (node,)

        self._call("send", (node, message), published, done, len(message))
        return published

    def flush(self) -> None:
        """Wait until the membership changes recorded so far are in Redis, at most the broker's timeout
        (not at all while the link is down)."""
        published = Published()
        self._call(None, (), published, lambda _: None)
        published.wait(self.broker.timeout)

    def members(self, group: str) -> list[str]:
        """The ids of ``group``'s members on every live node.

        :raises BrokerError: at once if the link is down, or if Redis did not answer within the broker's
            timeout (the message says which)
        """
        answer: list[list[str]] = []
        published = Published()
        asked = self._call("members", (group,), published, lambda ids: answer.append([i.decode() for i in ids]))
        published.wait(self.broker.timeout)
        if answer:
            return answer[0]
        if not asked or not self._linked.is_set():
            raise BrokerError("the link to the broker is down (it is reconnecting): no answer until it is back")
        raise BrokerError(f"no answer from the broker within {self.broker.timeout} s")

    def close(self, timeout: float | None = None) -> None:
        """Leave the cluster (this node's members leave every count at once) and stop the threads."""
        if self._closing.is_set():
            return
        self._closing.set()
        self._ops.put(_WAKE)
        for thread in self._threads:
            thread.join(self.broker.timeout * 2 if timeout is None else timeout)

    def _call(
        self,
        script: str | None,
        args: tuple[Any, ...],
        published: Published,
        on_result: Callable[[Any], None],
        size: int = 0,
    ) -> bool:
        """Queue a script call (``None``: a ``PING``) for the writer; whether it was queued (if not,
        ``published`` is unanswered already: the link is down, or ``max_pending`` is reached)."""

        def result(value: Any) -> None:
            on_result(value)
            published.answered()

        command = ("EVALSHA", script, 0, self._prefix, self.node, *args) if script else ("PING",)
        with self._lock:
            # queued under the lock: a writer going down either finds it in the queue, or it is refused
            accepted = self._up and self._pending_bytes + size <= self.broker.max_pending
            if accepted:
                self._pending_bytes += size
                self._ops.put(_Op(command, result, published.unanswered, size))
        if not accepted:
            published.unanswered()
        return accepted

    # -- the writer ------------------------------------------------------------------------------------

    def _write(self) -> None:
        connection = self._pool.make_connection()
        registered_with = 0  # the subscription the node last registered with
        beat_due = 0.0
        while not self._closing.is_set():
            # the subscriber wakes the writer when its subscription breaks and when it is back
            if not self._up or not self._subscribed.is_set() or registered_with != self._subscriptions:
                registered_with = self._recover(connection, "the subscription broke" if self._up else "down")
                beat_due = time.monotonic() + self.broker.heartbeat
                continue
            batch = self._take_batch(max(0.0, beat_due - time.monotonic()))
            beat = time.monotonic() >= beat_due
            commands = self._journal_commands()
            if beat:
                commands.append(self._command("heartbeat", int(self.broker.ttl * 1000)))
            commands.extend(self._script(op.args) for op in batch)
            try:
                results = self._round_trip(connection, commands)
            except Exception as error:  # the connection, Redis, or a script cache emptied by a restart
                self._fail(batch)
                self._go_down(f"the writer's connection failed: {error!r}")
                continue
            if beat:
                beat_due = time.monotonic() + self.broker.heartbeat
            self._finish(batch, results[len(results) - len(batch) :])
            if beat and results[len(results) - len(batch) - 1] == 0:
                self._go_down("this node's records had expired")
        self._leave(connection)

    def _take_batch(self, timeout: float) -> list[_Op]:
        batch: list[_Op] = []
        try:
            first = self._ops.get(timeout=timeout)
        except queue.Empty:
            return batch
        while True:
            if isinstance(first, _Op):
                batch.append(first)
            if len(batch) >= _MAX_BATCH:
                return batch
            try:
                first = self._ops.get_nowait()
            except queue.Empty:
                return batch

    def _journal_commands(self) -> list[tuple[Any, ...]]:
        with self._lock:
            journal, self._journal = self._journal, {}
        if not journal:
            return []
        args: list[Any] = []
        for group, changes in journal.items():
            joined = [i for i, j in changes.items() if j]
            left = [i for i, j in changes.items() if not j]
            args.extend((group, len(joined), len(left), *joined, *left))
        return [self._command("apply", *args)]

    def _command(self, script: str, *args: Any) -> tuple[Any, ...]:
        return ("EVALSHA", self._shas[script], 0, self._prefix, self.node, *args)

    def _script(self, args: tuple[Any, ...]) -> tuple[Any, ...]:
        if args[0] != "EVALSHA":
            return args
        return (args[0], self._shas[args[1]], *args[2:])

    def _round_trip(self, connection: Any, commands: list[tuple[Any, ...]]) -> list[Any]:
        if not commands:
            return []
        connection.send_packed_command(connection.pack_commands(commands))
        results = []
        error = None
        for _ in commands:
            try:
                results.append(connection.read_response())
            except self._redis.ResponseError as failure:  # read the other answers before raising
                error = error or failure
                results.append(None)
        if error is not None:
            raise error
        return results

    def _finish(self, batch: list[_Op], results: list[Any]) -> None:
        with self._lock:
            self._pending_bytes -= sum(op.size for op in batch)
        for op, result in zip(batch, results):
            op.on_result(result)

    def _fail(self, batch: list[_Op]) -> None:
        with self._lock:
            self._pending_bytes -= sum(op.size for op in batch)
        for op in batch:
            op.on_error()

    def _go_down(self, why: str) -> None:
        """The link broke: fail what waits, stop journaling, and remember who may miss pushes."""
        at_risk: list[str] = []
        with self._lock:
            was_up, self._up = self._up, False
            self._linked.clear()
            self._journaling = False
            self._journal = {}
        if was_up:
            _, at_risk = self._hub._cluster_snapshot(lambda: None)
            LOG.warning("hub node %s lost its link to the broker (%s)", self.node, why)
            self._down_logged = True
        self._at_risk.update(at_risk)
        self._fail(list(self._drain_ops()))

    def _drain_ops(self) -> Iterable[_Op]:
        while True:
            try:
                op = self._ops.get_nowait()
            except queue.Empty:
                return
            if isinstance(op, _Op):
                yield op

    def _recover(self, connection: Any, why: str) -> int:
        """Reconnect, load the scripts, wait for the subscription, and register every member; then report
        the members that may have missed pushes. Returns the subscription registered with."""
        self._go_down(why)
        attempt = 0
        while not self._closing.wait(self._retry_delay(attempt)):
            attempt += 1
            try:
                connection.disconnect()
                connection.connect()
                shas = self._round_trip(connection, [("SCRIPT", "LOAD", s) for s in SCRIPTS.values()])
                self._shas = {name: sha.decode() for name, sha in zip(SCRIPTS, shas)}
                if not self._subscribed.wait(self.broker.timeout):
                    continue
                subscription = self._subscriptions
                groups, members = self._hub._cluster_snapshot(self._start_journal)
                args: list[Any] = []
                for group, ids in groups.items():
                    args.extend((group, len(ids), *ids))
                self._round_trip(connection, [self._command("register", int(self.broker.ttl * 1000), *args)])
            except Exception as error:
                with self._lock:
                    self._journaling = False
                if not self._down_logged:  # a broker unreachable at start, or after the records expired
                    self._down_logged = True
                    LOG.warning(
                        "hub node %s cannot reach its broker (%r); it tries again every %s s",
                        self.node,
                        error,
                        self.broker.retry_interval,
                    )
                LOG.debug("hub node %s: the broker is not back yet (%r)", self.node, error)
                continue
            with self._lock:
                self._up = True
            self._linked.set()
            self._down_logged = False
            at_risk = [i for i in self._at_risk if i in set(members)]
            self._at_risk.clear()
            LOG.info(
                "hub node %s linked to the broker with %d members (%d told they may have missed pushes)",
                self.node,
                len(members),
                len(at_risk),
            )
            if at_risk:
                self._hub._cluster_missed(at_risk)
            return subscription
        return 0

    def _retry_delay(self, failures: int) -> float:
        """Seconds to wait before the next attempt to reconnect, after ``failures`` attempts in a row
        failed (none before the first)."""
        if not failures:
            return 0.0
        return self.broker.retry_interval * _RETRY_FRACTIONS[min(failures, len(_RETRY_FRACTIONS)) - 1]

    def _start_journal(self) -> None:
        with self._lock:
            self._journaling = True
            self._journal = {}

    def _leave(self, connection: Any) -> None:
        with self._lock:
            up, self._up = self._up, False
        self._linked.clear()
        self._fail(list(self._drain_ops()))
        if up:
            try:
                self._round_trip(connection, [self._command("leave")])
            except Exception as error:
                LOG.debug("hub node %s could not leave the broker cleanly (%r)", self.node, error)
        connection.disconnect()

    # -- the subscriber --------------------------------------------------------------------------------

    def _subscribe(self) -> None:
        """Subscribe to the node's channel and read it until the link closes, reconnecting after every
        failure. One connection serves every attempt (redis-py's pool makes at most 100), and no exception
        ends the thread: a subscriber that died would leave the node unlinked for good."""
        connection = self._pool.make_connection()
        failures = 0
        while not self._closing.is_set():
            try:
                connection.connect()
                connection.send_command("SUBSCRIBE", self._channel)
                connection.read_response()  # the confirmation
                failures = 0
                with self._lock:
                    self._subscriptions += 1
                self._subscribed.set()
                self._ops.put(_WAKE)
                self._read(connection)
            except Exception as error:
                if self._subscribed.is_set():
                    LOG.debug("hub node %s: the subscription broke (%r)", self.node, error)
                else:
                    LOG.debug("hub node %s: could not subscribe (%r)", self.node, error)
            if self._subscribed.is_set():  # the writer takes the link down (one wake a break, not an attempt)
                self._subscribed.clear()
                self._ops.put(_WAKE)
            try:
                connection.disconnect()
            except Exception as error:
                LOG.debug("hub node %s: could not close the subscriber's connection (%r)", self.node, error)
            failures += 1
            self._closing.wait(self._retry_delay(failures))

    def _read(self, connection: Any) -> None:
        """Hand each push on the channel to the Hub; ping every heartbeat, and give up on a connection
        whose ping went unanswered for the broker's timeout."""
        ping_sent = None
        next_ping = time.monotonic() + self.broker.heartbeat
        poll = min(0.25, self.broker.heartbeat)
        while not self._closing.is_set():
            now = time.monotonic()
            if ping_sent is None and now >= next_ping:
                connection.send_command("PING")
                ping_sent = now
            elif ping_sent is not None and now - ping_sent > self.broker.timeout:
                raise TimeoutError(f"no answer to a ping within {self.broker.timeout} s")
            if not connection.can_read(timeout=poll):
                continue
            reply = connection.read_response()
            if reply[0] == b"message":
                try:
                    self._hub._cluster_deliver(*decode_push(reply[2]))
                except Exception:
                    LOG.exception("hub node %s could not deliver a push", self.node)
            elif reply[0] == b"pong":
                ping_sent = None
                next_ping = time.monotonic() + self.broker.heartbeat
