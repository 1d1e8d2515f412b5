"""Hubs joined by a real Redis server, several in this process: each Hub is a node of its own, as a Hub in
another process would be. Their connections are real adapters whose I/O side records what would go out
(as in tests/websocket/test_hub.py), so that full buffers, closes and arrival can be watched exactly.
tests/cluster/test_processes.py runs the same over real servers in several processes.
"""

from __future__ import annotations

import logging
import queue
import sys
import threading
import time
from collections.abc import Iterator

import pytest
import redis

from rolo.websocket import BrokerError, Hub, RedisBroker, WebSocket
from rolo.websocket.frames import Close
from rolo.websocket.hub import DELIVERIES
from rolo.websocket.threaded import ThreadedWebSocketAdapter
from tests.cluster.redis_server import RedisServer

FAST = {"heartbeat": 0.1, "ttl": 0.5, "timeout": 0.5}
"""Timings that let a test see heartbeats and expiries within a second."""


class Loop:
    """An event-loop thread that runs what it is handed, in order, as a server's loop would."""

    def __init__(self) -> None:
        self._calls: queue.SimpleQueue = queue.SimpleQueue()
        threading.Thread(target=self._run, name="test-loop", daemon=True).start()

    def __call__(self, call) -> None:
        self._calls.put(call)

    def _run(self) -> None:
        while True:
            call = self._calls.get()
            try:
                call()
            except Exception:  # reported, and the loop goes on, as a server's would
                logging.getLogger(__name__).exception("a call on the test loop failed")


LOOP = Loop()


class Peer:
    """One open connection: its WebSocket, and what the server would have written to the client, in
    order, as a queue (a message's data, or ``("close", code, reason)``)."""

    def __init__(self) -> None:
        self.out: queue.Queue = queue.Queue()
        self.adapter = ThreadedWebSocketAdapter(self, LOOP)
        self.adapter.receive(timeout=0)  # the opening handshake's event
        self.adapter.accept(timeout=5)
        self.websocket = WebSocket(self.adapter)

    # the I/O side (ServerConnection)
    def accept(self, subprotocol, headers) -> None:
        LOOP(self.adapter.on_open)

    def send(self, messages) -> None:
        for message in messages:
            self.out.put(message if isinstance(message, str) else message.data)  # str: a text's text

    def close(self, code, reason) -> None:
        self.out.put(("close", code, reason))
        self.adapter.on_close(Close(code, reason or ""), Close(code, reason or ""), closed_by="server")

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass

    def next(self, timeout: float = 5.0):
        return self.out.get(timeout=timeout)

    def nothing_queued(self) -> bool:
        return self.out.empty()


class LinkLog(logging.Handler):
    """The records of the cluster link's log, every level, while in a ``with`` block."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []
        self._changed = threading.Condition()
        self._logger = logging.getLogger("rolo.websocket.cluster")
        self._level = self._logger.level

    def __enter__(self) -> LinkLog:
        self._logger.addHandler(self)
        self._logger.setLevel(logging.DEBUG)
        return self

    def __exit__(self, *exc_info) -> None:
        self._logger.removeHandler(self)
        self._logger.setLevel(self._level)

    def emit(self, record: logging.LogRecord) -> None:
        with self._changed:
            self.records.append(record)
            self._changed.notify_all()

    def matching(self, text: str, level: int | None = None) -> list[logging.LogRecord]:
        with self._changed:
            return [r for r in self.records if text in r.getMessage() and level in (None, r.levelno)]

    def wait_for(self, text: str, count: int = 1, timeout: float = 30.0) -> bool:
        """Wait until ``count`` records whose message contains ``text`` were logged; whether they were."""
        with self._changed:
            return self._changed.wait_for(lambda: sum(text in r.getMessage() for r in self.records) >= count, timeout)


@pytest.fixture
def hubs(redis_server: RedisServer) -> Iterator:
    """``hubs(n, **settings)``: n Hubs on the test's Redis, closed at the end."""
    made: list[Hub] = []

    def make(n: int = 2, broker: dict | None = None, **settings) -> list[Hub]:
        for _ in range(n):
            made.append(Hub(broker=RedisBroker(redis_server.url, **(broker or {})), **settings))
        return made[-n:]

    yield make
    for hub in made:
        hub.close()


def test_ids_name_their_process_and_pushes_reach_any_process(hubs):
    one, two, three = hubs(3)
    a, b, c, d = Peer(), Peer(), Peer(), Peer()
    a_id, b_id = one.add(a.websocket, "room"), two.add(b.websocket, "room")
    c_id, d_id = three.add(c.websocket, "room"), three.add(d.websocket)
    assert a_id.endswith(f"@{one.node}") and c_id.endswith(f"@{three.node}") and len({a_id, b_id, c_id}) == 3
    assert sorted(one.members("room")) == sorted([a_id, b_id, c_id]) and three.count("room") == 3

    delivery = one.broadcast("room", "hi", exclude=[c_id])
    assert delivery.sent == (a_id,) and sorted(delivery.published) == sorted([two.node, three.node])
    assert delivery.failed == () and (a.next(), b.next()) == ("hi", "hi")
    # the excluded member's process got the message too (the group has d's neighbour c there), and
    # dropped it for c: the next message c gets is the one after
    assert two.send(d_id, b"\x00binary").published == (three.node,)
    assert d.next() == b"\x00binary"
    three.broadcast("room", "second")
    assert (a.next(), b.next(), c.next()) == ("second",) * 3

    assert two.send(f"ws-1@{'0' * 8}", "nobody").gone == (f"ws-1@{'0' * 8}",)  # no such process


def test_a_process_receives_only_pushes_for_its_own_members(hubs, redis_server):
    one, two, three = hubs(3)
    b = Peer()
    b_id = two.add(b.websocket, "room")
    three.add(Peer().websocket, "elsewhere")
    spy = redis.Redis.from_url(redis_server.url).pubsub(ignore_subscribe_messages=True)
    spy.subscribe(f"rolo:hub:node:{three.node}")  # three's channel, as three reads it
    spy.get_message(timeout=5)  # the subscription's confirmation
    assert one.broadcast("room", "for two").published == (two.node,)
    assert one.send(b_id, "for two too").published == (two.node,)
    assert (b.next(), b.next()) == ("for two", "for two too")
    redis.Redis.from_url(redis_server.url).publish(f"rolo:hub:node:{three.node}", b"marker")
    assert spy.get_message(timeout=5)["data"] == b"marker"  # the first three's channel carried


def test_membership_changes_reach_every_count_and_a_closed_hub_leaves_at_once(hubs):
    one, two = hubs(2)
    a, b = Peer(), Peer()
    a_id, b_id = one.add(a.websocket, "x", "y"), two.add(b.websocket, "x")
    assert sorted(two.members("x")) == sorted([a_id, b_id])
    one.leave(a_id, "x")
    assert two.members("x") == [b_id] and one.members("y") == [a_id]
    assert one.members("x", local=True) == [] and one.count("y", local=True) == 1
    a.adapter.on_close(Close(1000), closed_by="peer")  # the connection closes: it leaves every group
    assert one.count("y") == 0
    two.close()
    assert one.members("x") == []


def test_ten_thousand_pushes_arrive_in_order_once(hubs):
    one, two = hubs(2)
    a, b = Peer(), Peer()
    one.add(a.websocket, "room")
    b_id = two.add(b.websocket, "room")
    deliveries = [one.broadcast("room", str(n)) if n % 2 else one.send(b_id, str(n)) for n in range(10_000)]
    assert all(d.published == (two.node,) for d in deliveries)
    assert [b.next() for _ in range(10_000)] == [str(n) for n in range(10_000)]
    assert b.out.empty()  # no duplicates: nothing more


def test_a_slow_member_on_the_receiving_side_delays_nobody_and_is_closed_1013(hubs):
    one, two = hubs(2, timeout=1.0)
    fast, slow = Peer(), Peer()
    one.add(Peer().websocket, "room")
    two.add(fast.websocket, "room")
    slow_id = two.add(slow.websocket, "room")
    slow.adapter.on_pause_writing()  # its transport's buffer is full
    for n in range(3):
        one.broadcast("room", str(n))
    assert [fast.next() for _ in range(3)] == ["0", "1", "2"]
    assert slow.nothing_queued(), "the fast member waited for the slow one's time to run out"
    assert slow.next() == ("close", 1013, "too slow to read")
    assert slow_id not in two.members("room")


def test_a_slow_member_that_is_only_skipped_gets_what_fits_in_order(hubs):
    one, two = hubs(2, timeout=5, close_slow=False, broker={"backlog": 10})
    slow, marker = Peer(), Peer()
    two.add(slow.websocket, "room")
    two.add(marker.websocket, "marker")
    one.add(Peer().websocket, "room")
    slow.adapter.on_pause_writing()
    one.broadcast("room", "first")  # waits in the backlog (5 of 10 bytes)
    one.broadcast("room", "second")  # 6 more bytes than the backlog holds: skipped at once
    one.broadcast("room", "3rd")  # fits again
    one.broadcast("marker", "done")
    assert marker.next() == "done"  # the receiving side has handled every push before it
    slow.adapter.on_resume_writing()
    assert [slow.next() for _ in range(2)] == ["first", "3rd"] and two.count("room", local=True) == 1


def test_a_push_that_runs_out_of_time_for_a_member_kept_open_counts_as_slow_and_not_sent(hubs):
    # it was counted as both: a "sent" for a message the member never got
    one, two = hubs(2, timeout=0.2, close_slow=False, name="kept-open")
    slow = Peer()
    two.add(slow.websocket, "room")
    slow.adapter.on_pause_writing()
    one.broadcast("room", "late")  # waits in the receiving side's backlog, and runs out of time there
    deadline = time.monotonic() + 10  # polled: the backlog has no event for a message it skipped
    while DELIVERIES.counts().get(("kept-open", "slow"), 0) < 1:
        assert time.monotonic() < deadline, "the push never ran out of time"
        time.sleep(0.001)
    slow.adapter.on_resume_writing()
    one.broadcast("room", "on time")
    assert slow.next() == "on time"
    counts = DELIVERIES.counts()
    assert (counts.get(("kept-open", "slow")), counts.get(("kept-open", "sent"))) == (1, 1)


def test_a_broker_that_is_down_or_stopped_fails_pushes_within_the_timeout(hubs, redis_server):
    one, two = hubs(2, broker={"timeout": 0.3, "heartbeat": 5, "ttl": 10})
    a = Peer()
    one.add(a.websocket, "room")
    two.add(Peer().websocket, "room")
    redis_server.pause()  # connections stay up; nothing answers
    started = time.monotonic()
    delivery = one.broadcast("room", "stuck")
    stuck_for = time.monotonic() - started
    assert delivery.sent == (one.members("room", local=True)[0],) and delivery.failed == ("*",)
    assert 0.3 <= stuck_for < 1.5  # the timeout, and room for a busy machine
    with pytest.raises(BrokerError):
        one.members("room")
    redis_server.resume()
    redis_server.kill()
    started = time.monotonic()
    for _ in range(100):  # a broker that is gone: each push fails at once, without waiting
        assert one.broadcast("room", "down").failed == ("*",)
    assert time.monotonic() - started < 1.0  # 100 timeouts would take 30 s; a loaded machine, a few 100 ms


def test_pushes_waiting_for_redis_are_bounded_in_bytes(hubs, redis_server):
    [hub] = hubs(1, broker={"timeout": 2, "max_pending": 100, "heartbeat": 5, "ttl": 10})
    hub.add(Peer().websocket, "room")
    redis_server.pause()
    first = hub._link.broadcast("room", b"x" * 60)  # published, not waited for: Redis does not answer
    assert hub.broadcast("room", "y" * 60).failed == ("*",)  # 120 bytes would wait: fails at once
    assert first.wait(0) == ((), ("*",), False), "the first push was answered: Redis was not stopped"
    redis_server.resume()
    assert first.wait(5)[0] == ()  # answered once Redis is back: no other process has members


def test_after_a_broker_restart_members_that_may_have_missed_pushes_are_closed_1012(hubs, redis_server):
    one, two = hubs(2)
    a, b = Peer(), Peer()
    one.add(a.websocket, "room")
    two.add(b.websocket, "room")
    redis_server.kill()
    redis_server.start()
    # the link is back, subscribed and registered, within a second of Redis answering again
    assert one._link.wait_up(1.0) and two._link.wait_up(max(0.0, 1.0 - (time.monotonic() - redis_server.ready_at)))
    assert a.next() == ("close", 1012, "service restart") and b.next() == ("close", 1012, "service restart")
    c, d = Peer(), Peer()
    one.add(c.websocket, "room")
    two.add(d.websocket, "room")
    assert one.broadcast("room", "again").published == (two.node,) and d.next() == "again"


def test_a_broker_that_stops_answering_is_let_go_and_members_told_once_it_answers(hubs, redis_server):
    [hub] = hubs(1, broker=FAST)
    a = Peer()
    hub.add(a.websocket, "room")
    lost = threading.Event()
    handler = logging.Handler()
    handler.emit = lambda record: "lost its link" in record.getMessage() and lost.set()  # type: ignore[method-assign]
    logging.getLogger("rolo.websocket.cluster").addHandler(handler)
    try:
        redis_server.pause()  # connections stay open; pings and commands go unanswered
        assert lost.wait(5)
        assert a.nothing_queued()  # told once the link is whole again, not before
        redis_server.resume()
        assert a.next() == ("close", 1012, "service restart")
    finally:
        logging.getLogger("rolo.websocket.cluster").removeHandler(handler)


def test_an_outage_longer_than_a_hundred_attempts_ends_with_the_nodes_linked_and_members_told(hubs, redis_server):
    # each failed attempt to subscribe used to take a new connection from redis-py's pool, never given
    # back: after 100 the pool refused (MaxConnectionsError), the subscriber thread died, and the node
    # stayed unlinked for good, its members never told
    one, two = hubs(2, broker={"retry_interval": 0.002})
    a, b = Peer(), Peer()
    one.add(a.websocket, "room")
    two.add(b.websocket, "room")
    with LinkLog() as log:
        redis_server.kill()
        for hub in (one, two):
            assert log.wait_for(f"hub node {hub.node}: could not subscribe", 150), "a subscriber stopped trying"
            assert log.wait_for(f"hub node {hub.node} lost its link")
        redis_server.start()
        # linked again within about the retry interval of Redis answering (and room for a busy machine)
        assert one._link.wait_up(1.0)
        assert two._link.wait_up(max(0.0, 1.0 - (time.monotonic() - redis_server.ready_at)))
    for hub in (one, two):  # the outage is logged once a node, not at every attempt
        warnings = [r.getMessage() for r in log.matching(f"hub node {hub.node} ", logging.WARNING)]
        assert len(warnings) == 1 and "lost its link" in warnings[0], warnings
    assert a.next() == ("close", 1012, "service restart") and b.next() == ("close", 1012, "service restart")
    c, d = Peer(), Peer()
    one.add(c.websocket, "room")
    d_id = two.add(d.websocket, "room")
    assert one.broadcast("room", "again").published == (two.node,) and d.next() == "again"
    assert one.send(d_id, "and again").published == (two.node,) and d.next() == "and again"


def test_a_broker_unreachable_at_start_is_reported_once_and_used_once_it_answers(hubs, redis_server):
    redis_server.kill()
    with LinkLog() as log:
        [hub] = hubs(1, broker={"retry_interval": 0.002, "timeout": 0.3})
        a = Peer()
        a_id = hub.add(a.websocket, "room")  # waits for the link at most the timeout
        assert log.wait_for(f"hub node {hub.node}: the broker is not back yet", 150)
        started = time.monotonic()
        with pytest.raises(BrokerError, match=r"^the link to the broker is down"):
            hub.members("room")
        assert time.monotonic() - started < 0.3  # at once: no timeout waited for
        assert len(log.matching(f"hub node {hub.node} cannot reach its broker", logging.WARNING)) == 1
        assert not log.matching("linked to the broker")
        redis_server.start()
        assert hub._link.wait_up(5)
        assert log.wait_for(f"hub node {hub.node} linked to the broker with 1 members")
    assert hub.members("room") == [a_id] and a.nothing_queued()  # registered; it missed nothing
    assert len(log.matching("cannot reach its broker")) == 1


def test_the_callback_hears_of_members_that_may_have_missed_pushes_instead(hubs, redis_server):
    told: queue.Queue = queue.Queue()
    [hub] = hubs(1, on_missed=told.put)
    a = Peer()
    a_id = hub.add(a.websocket, "room")
    redis_server.kill()
    redis_server.start()
    assert told.get(timeout=5) == [a_id]
    assert a.nothing_queued() and hub.members("room") == [a_id]  # left open, and registered again


def test_a_process_that_finds_its_records_expired_registers_again_and_tells_its_members(hubs, redis_server):
    [hub] = hubs(1, broker=FAST)
    a = Peer()
    hub.add(a.websocket, "room")
    redis.Redis.from_url(redis_server.url).delete(f"rolo:hub:alive:{hub.node}")  # as if the heartbeat lapsed
    assert a.next() == ("close", 1012, "service restart")
    assert hub.count("room") == 0


def test_hub_takes_the_broker_from_rolo_broker_unless_told_none(monkeypatch, redis_server):
    monkeypatch.setenv("ROLO_BROKER", redis_server.url)
    assert Hub().broker == RedisBroker(redis_server.url)
    assert Hub(broker=None).broker is None
    monkeypatch.delenv("ROLO_BROKER")
    assert Hub().broker is None and Hub().node is None


def test_without_redis_py_the_error_names_the_extra(monkeypatch, redis_server):
    monkeypatch.setitem(sys.modules, "redis", None)  # as if it were not installed
    hub = Hub(broker=redis_server.url)
    for _ in range(2):  # every time: a Hub never goes on as if it were linked
        with pytest.raises(ImportError, match=r"the redis extra: from a checkout, pip install '\.\[redis\]'"):
            hub.add(Peer().websocket)


def test_broker_settings_are_checked():
    with pytest.raises(ValueError, match="ttl"):
        RedisBroker("redis://localhost", heartbeat=1.0, ttl=1.0)
    with pytest.raises(ValueError):
        RedisBroker("redis://localhost", timeout=0)
    with pytest.raises(TypeError):
        Hub(broker=6379)  # type: ignore[arg-type]
    # a URL redis-py cannot parse fails where it is given, not at the first push; without its password
    for url, message in [
        ("redis//user:secret@localhost", "needs the scheme redis://, rediss:// or unix://: it has none"),
        ("http://user:secret@localhost", "its scheme is http:"),
        ("redis://user:secret@localhost:abc", "port is a number from 0 to 65535"),
    ]:
        with pytest.raises(ValueError, match=message) as raised:
            Hub(broker=url)
        assert "secret" not in str(raised.value)
