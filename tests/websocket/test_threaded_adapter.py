"""ThreadedWebSocketAdapter without a server: its I/O side is a recorder, its loop a list of calls.

These pin down the hand-off rules (bounded inbox, batched outbox, ordering of close after sends) that the
end-to-end tests can only observe from outside.
"""

from __future__ import annotations

import gc
import queue
import threading
from sys import getsizeof
from typing import ClassVar

import pytest

from rolo.websocket import (
    BytesMessage,
    CreateConnection,
    TextMessage,
    WebSocket,
    WebSocketAdapter,
    WebSocketDisconnectedError,
)
from rolo.websocket.errors import WebSocketProtocolError, WebSocketStateError
from rolo.websocket.frames import Close
from rolo.websocket.threaded import _QUEUED_SIZE, ThreadedWebSocketAdapter, offer_each
from tests.helpers import Signal


class RecordingConnection:
    def __init__(self) -> None:
        self.calls: list[tuple] = []

    def accept(self, subprotocol, headers):
        self.calls.append(("accept", subprotocol, headers))

    def reject(self, status, headers, body):
        self.calls.append(("reject", status, headers, body))

    def send(self, messages):
        self.calls.append(("send", list(messages)))

    def close(self, code, reason):
        self.calls.append(("close", code, reason))

    def pause_reading(self):
        self.calls.append(("pause_reading",))

    def resume_reading(self):
        self.calls.append(("resume_reading",))


class Loop:
    """Collects what the adapter hands to the loop; ``run`` plays it, as the loop thread would."""

    def __init__(self) -> None:
        self.pending: list = []
        self._handed = threading.Condition()

    def __call__(self, fn):
        with self._handed:
            self.pending.append(fn)
            self._handed.notify_all()

    def wait_pending(self, count: int = 1, timeout: float = 5.0) -> None:
        """Wait until ``count`` calls are handed to the loop and not yet run."""
        with self._handed:
            assert self._handed.wait_for(lambda: len(self.pending) >= count, timeout), "not handed to the loop"

    def run(self) -> None:
        while self.pending:
            self.pending.pop(0)()


class BatchingConnection(RecordingConnection):
    """A server's connection that writes a broadcast's members in one call."""

    batches: ClassVar[list[tuple[list[BatchingConnection], TextMessage]]] = []

    @staticmethod
    def send_each(connections, message):
        BatchingConnection.batches.append((list(connections), message))


def open_adapter(connection_class=RecordingConnection, loop=None, **kwargs):
    connection, loop = connection_class(), loop or Loop()
    adapter = ThreadedWebSocketAdapter(connection, loop, **kwargs)
    assert adapter.receive(timeout=0) == CreateConnection()
    accepted = threading.Thread(target=adapter.accept, kwargs={"timeout": 5})
    accepted.start()
    loop.wait_pending()
    loop.run()
    adapter.on_open()
    accepted.join(5)
    assert not accepted.is_alive()
    return adapter, connection, loop


def test_a_connection_lost_right_after_opening_is_still_accepted():
    adapter = ThreadedWebSocketAdapter(RecordingConnection(), loop := Loop())
    adapter.receive(timeout=0)
    outcome = []
    accepting = threading.Thread(target=lambda: outcome.append(adapter.accept(timeout=5) or "accepted"))
    accepting.start()
    loop.wait_pending()
    loop.run()
    # the 101 went out and the peer vanished, both before the handler's thread woke up
    adapter.on_open()
    adapter.on_close(None)
    accepting.join(5)
    assert outcome == ["accepted"]
    with pytest.raises(WebSocketDisconnectedError) as info:
        adapter.receive(timeout=0)
    assert info.value.code == 1006


def test_create_connection_comes_first_and_receive_times_out():
    adapter = ThreadedWebSocketAdapter(RecordingConnection(), Loop())
    assert adapter.receive(timeout=0) == CreateConnection()
    with pytest.raises(TimeoutError):
        adapter.receive(timeout=0.01)


def test_sends_are_batched_into_one_hand_off():
    adapter, connection, loop = open_adapter()
    for i in range(5):
        adapter.send(TextMessage(str(i)))
    assert len(loop.pending) == 1
    loop.run()
    assert connection.calls[-1] == ("send", [TextMessage(str(i)) for i in range(5)])


def test_ascii_text_goes_to_the_server_as_its_str_and_other_data_as_messages():
    # WebSocket.send hands ASCII text over as it is (send_text): the server is given the str, in order
    # with the messages of other sends, and counts its bytes as for a TextMessage
    adapter, connection, loop = open_adapter()
    websocket = WebSocket(adapter)
    websocket.send("ascii")
    websocket.send("\u00e9t\u00e9")
    websocket.send(b"\x00\xff")
    adapter.send_text("more")
    loop.run()
    assert connection.calls[-1] == ("send", ["ascii", TextMessage("\u00e9t\u00e9"), BytesMessage(b"\x00\xff"), "more"])
    assert adapter._counters.sent_bytes == len("ascii") + len("\u00e9t\u00e9") + 2 + len("more")
    with pytest.raises(UnicodeEncodeError):
        websocket.send("\ud800")  # no UTF-8 form: refused in the handler's thread, never queued


def test_an_adapter_between_messages_holds_no_dict_and_no_empty_lists():
    # one per open connection: its attributes in slots, and no empty inbox-side or outbox list while idle
    # (56 bytes each), before and after a message each way
    adapter, connection, loop = open_adapter()
    assert not hasattr(adapter, "__dict__")
    adapter.on_message(TextMessage("in"))
    assert adapter.receive(timeout=5) == TextMessage("in")
    adapter.send(TextMessage("out"))
    loop.run()
    assert connection.calls[-1] == ("send", [TextMessage("out")])
    assert adapter._arrived is None and adapter._outbox is None


class TurnEnd:
    """Wake-ups held until ``run``, as a loop holds them until the end of its turn; records the handler
    blocking."""

    def __init__(self) -> None:
        self.woken: list = []
        self.blocked_adapters: list = []

    def wake(self, adapter) -> None:
        self.woken.append(adapter)

    def blocking(self, adapter) -> None:
        self.blocked_adapters.append(adapter)

    def run(self) -> None:
        woken, self.woken = self.woken, []
        for adapter in woken:
            adapter.deliver()


def test_wake_up_is_one_per_batch_and_wakes_every_waiting_receiver():
    turn_end = TurnEnd()
    adapter, _connection, _loop = open_adapter(wake_ups=turn_end)
    received: list = []
    receivers = [threading.Thread(target=lambda: received.append(adapter.receive(timeout=5))) for _ in range(2)]
    for receiver in receivers:
        receiver.start()
    adapter.on_message(TextMessage("a"))
    adapter.on_message(TextMessage("b"))
    assert turn_end.woken == [adapter]  # one wake-up for the batch
    turn_end.run()
    for receiver in receivers:
        receiver.join(5)
        assert not receiver.is_alive()
    assert sorted(message.data for message in received) == ["a", "b"]


def test_a_message_waiting_for_its_turn_is_held_without_a_list_and_counts_against_the_inbox():
    # in a burst over many connections each waits for its handler's turn on its own: a list per message
    # would be one more object that outlives the collector's younger generations
    turn_end = TurnEnd()
    adapter, connection, _loop = open_adapter(wake_ups=turn_end, max_queue=3)
    adapter.on_message(TextMessage("a"))
    assert adapter._arrived == TextMessage("a")
    adapter.on_message(TextMessage("b"))
    assert ("pause_reading",) not in connection.calls
    adapter.on_message(TextMessage("c"))  # three waiting, none in the inbox yet: max_queue reached
    assert connection.calls[-1] == ("pause_reading",)
    assert turn_end.woken == [adapter]
    turn_end.run()
    assert adapter._arrived is None
    assert [adapter.receive(timeout=0).data for _ in range(3)] == ["a", "b", "c"]


def test_receive_data_gives_what_receive_gives_the_data_of_and_text_that_came_as_utf8_decoded_or_as_str():
    adapter = ThreadedWebSocketAdapter(RecordingConnection(), Loop())
    with pytest.raises(WebSocketProtocolError):  # the handshake's event is the request's, not a message
        adapter.receive_data(timeout=0)
    adapter, _connection, _loop = open_adapter()
    # text as its UTF-8 (Twisted's protocol), as a message, or as its str (an ASGI server's)
    sent: list = [
        "caf\u00e9".encode(),
        TextMessage("t"),
        BytesMessage(b"\xff"),
        "\u00e9".encode(),
        "ok",
        "\u00e9t\u00e9",
    ]
    for message in sent:
        adapter.on_message(message)
    assert adapter._counters.received_bytes == 5 + 1 + 1 + 2 + 2 + 3  # text that came as str: its characters
    # each message counts against max_queue_bytes at its size in memory
    data = [sent[0], "t", b"\xff", sent[3], "ok", "\u00e9t\u00e9"]
    assert adapter._bytes_waiting == sum(map(getsizeof, data))
    assert adapter.receive_data(timeout=0) == "caf\u00e9"
    assert adapter.receive_data(timeout=0) == "t"
    assert adapter.receive_data(timeout=0) == b"\xff"
    assert adapter.receive(timeout=0) == TextMessage("\u00e9")
    assert adapter.receive_data(timeout=0) == "ok"
    assert adapter.receive(timeout=0) == TextMessage("\u00e9t\u00e9")
    adapter.on_message(b"x")  # the loop forgets the sizes of those taken as the next one comes
    assert adapter._bytes_waiting == getsizeof(b"x")
    assert adapter.receive_data(timeout=0) == "x"
    adapter.on_close(Close(1000))
    with pytest.raises(WebSocketDisconnectedError):
        adapter.receive_data(timeout=0)


class ScriptedAdapter(WebSocketAdapter):
    """An adapter of one's own, not threaded: it receives the events it is given, and does nothing else."""

    def __init__(self, events: list) -> None:
        self.events = events
        self.sent: list = []

    def receive(self, timeout=None):
        return self.events.pop(0)

    def accept(self, subprotocol=None, headers=(), timeout=None): ...

    def reject(self, status, headers, body): ...

    def send(self, message, timeout=None):
        self.sent.append((message, timeout))

    def close(self, code=1000, reason=None, timeout=None): ...

    def add_close_listener(self, listener): ...


def test_an_adapter_of_ones_own_gives_the_websocket_its_data_through_receive():
    websocket = WebSocket(ScriptedAdapter([TextMessage("t"), BytesMessage(b"b"), CreateConnection()]))
    assert websocket.receive() == "t"
    assert websocket.receive() == b"b"
    with pytest.raises(WebSocketProtocolError):
        websocket.receive()


def test_an_adapter_of_ones_own_is_sent_text_as_a_text_message():
    # send_text's default makes the message for the adapter's send
    adapter = ScriptedAdapter([])
    WebSocket(adapter).send("t", timeout=3)
    assert adapter.sent == [(TextMessage("t"), 3)]


def test_a_receiver_about_to_block_says_it_settled():
    turn_end = TurnEnd()
    adapter, _connection, _loop = open_adapter(wake_ups=turn_end)
    adapter.on_message(TextMessage("a"))
    turn_end.run()
    assert adapter.receive(timeout=0) == TextMessage("a")
    assert turn_end.blocked_adapters.count(adapter) == 1  # in accept only: a message was waiting
    with pytest.raises(TimeoutError):
        adapter.receive(timeout=0.01)
    assert turn_end.blocked_adapters.count(adapter) == 2


def test_full_inbox_pauses_reading_and_draining_resumes_it():
    adapter, connection, loop = open_adapter(max_queue=4)
    for i in range(3):
        adapter.on_message(BytesMessage(bytes([i])))
    # each went straight into the inbox (no turns): counted there once, not once more as just arrived
    assert ("pause_reading",) not in connection.calls
    adapter.on_message(BytesMessage(bytes([3])))
    assert connection.calls[-1] == ("pause_reading",)
    adapter.on_message(BytesMessage(b"late"))  # already read off the socket: kept, not dropped
    assert ("pause_reading",) not in connection.calls[:-1]
    got = [adapter.receive(timeout=0) for _ in range(2)]
    assert loop.pending == []  # 3 still queued: not yet below half
    got.append(adapter.receive(timeout=0))
    loop.run()
    assert connection.calls[-1] == ("resume_reading",)
    got += [adapter.receive(timeout=0) for _ in range(2)]
    assert [m.data for m in got] == [b"\x00", b"\x01", b"\x02", b"\x03", b"late"]


class InboxDrainedWhileCounted(queue.SimpleQueue):
    """An inbox that, once armed, has the handler drain it the first time it is counted (on the loop
    thread, deciding whether the inbox is full), between that count and what the loop does with it."""

    def __init__(self) -> None:
        super().__init__()
        self.armed = False
        self.counting, self.drained = Signal(), Signal()

    def qsize(self) -> int:
        size = super().qsize()
        if self.armed:
            self.armed = False
            self.counting.set()
            self.drained.wait()
        return size


def drain_while_counted(adapter: ThreadedWebSocketAdapter, total: int):
    """Give ``adapter`` an :class:`InboxDrainedWhileCounted` and a handler thread that drains it as it is
    counted, then takes messages until it has ``total``: the inbox (to arm), the thread (started) and the
    data of what it took."""
    inbox = InboxDrainedWhileCounted()
    adapter._inbox = inbox  # empty: open_adapter took CreateConnection
    got: list = []

    def handler() -> None:
        inbox.counting.wait()
        while not inbox.empty():
            got.append(adapter.receive_data(timeout=0))
        inbox.drained.set()
        while len(got) < total:
            got.append(adapter.receive_data(timeout=5))

    taking = threading.Thread(target=handler)
    taking.start()
    return inbox, taking, got


def test_a_handler_that_drains_the_inbox_as_reading_pauses_resumes_it():
    """Without turns (a server that passes no WakeUps), a message goes into the inbox as it arrives. A
    handler that takes every message while the loop decides to pause reading, before it says so, asks for no
    resume; the pause must then be said before the message is in the inbox, so that the handler's taking
    it sees the pause and resumes reading. Before, reading stayed paused with the inbox empty: the
    connection stalled."""
    adapter, connection, loop = open_adapter(max_queue=2)
    inbox, taking, got = drain_while_counted(adapter, 2)
    adapter.on_message(BytesMessage(b"1"))
    inbox.armed = True
    adapter.on_message(BytesMessage(b"2"))  # fills the inbox: reading pauses, as the handler drains it
    taking.join(10)
    assert not taking.is_alive()
    assert got == [b"1", b"2"]
    loop.run()
    assert [call for call in connection.calls if "reading" in call[0]] == [("pause_reading",), ("resume_reading",)]


def test_the_inbox_bound_in_bytes_pauses_reading_and_the_loop_resumes_it_below_half():
    size = getsizeof(b"x" * 1000)
    adapter, connection, loop = open_adapter(max_queue=100, max_queue_bytes=4 * size)
    for _ in range(3):
        adapter.on_message(BytesMessage(b"x" * 1000))
    assert ("pause_reading",) not in connection.calls
    adapter.on_message(BytesMessage(b"x" * 1000))  # 4 × size: the bound
    assert connection.calls[-1] == ("pause_reading",)
    for left in (3, 2):
        adapter.receive(timeout=0)
        # few enough by count: each take asks the loop, which forgets the sizes of those taken
        assert len(loop.pending) == 1
        loop.run()
        assert connection.calls[-1] == ("pause_reading",)  # left × size: not below half
        assert adapter._bytes_waiting == left * size
    adapter.receive(timeout=0)
    loop.run()
    assert connection.calls[-1] == ("resume_reading",)
    assert adapter._bytes_waiting == size


def test_the_loop_counts_a_message_the_handler_takes_as_it_counts_the_inbox_until_the_next_count():
    """The handler counts nothing as it takes a message: the loop forgets the sizes of those taken from how
    many the inbox still holds. A handler taking while the loop counts makes that count stale, by more
    messages than the inbox holds, never fewer: the loop's bytes are over until its next count, not under."""
    adapter, _connection, _loop = open_adapter(max_queue=100)
    inbox, taking, got = drain_while_counted(adapter, 3)
    size = getsizeof(b"1")
    adapter.on_message(b"1")
    adapter.on_message(b"2")
    inbox.armed = True
    adapter.on_message(b"3")  # counted 2 in the inbox, which the handler empties meanwhile
    assert adapter._bytes_waiting == 3 * size  # the two taken still counted: over, not under
    taking.join(10)
    assert not taking.is_alive()
    assert got == ["1", "2", "3"]
    adapter.on_message(b"4")  # counted again: none of the three is waiting
    assert adapter._bytes_waiting == size


def test_send_blocks_past_high_water_until_the_loop_flushes():
    adapter, _connection, loop = open_adapter(write_high_water=10)
    adapter.send(BytesMessage(b"x" * 100))  # an empty outbox always takes one message
    with pytest.raises(TimeoutError):
        adapter.send(BytesMessage(b"y"), timeout=0.01)
    loop.run()
    adapter.send(BytesMessage(b"y"), timeout=0.01)


def test_empty_messages_fill_the_outbox_too():
    """Each message counts for itself as well as its data: empty ones counted 0 bytes, so a handler could
    queue any number of them while the loop was busy (10,000 here, never held)."""
    adapter, connection, loop = open_adapter(write_high_water=1024)
    queued = 0
    with pytest.raises(TimeoutError):
        while queued < 10_000:
            adapter.send(BytesMessage(b""), timeout=0.01)
            queued += 1
    assert queued == 1024 // _QUEUED_SIZE + 1  # 22: 1,024 bytes of about 48 each, and the one that crosses
    loop.run()
    assert connection.calls[-1] == ("send", [BytesMessage(b"")] * queued)
    assert adapter._counters.sent_bytes == 0


def test_messages_a_close_drops_are_not_counted_as_sent():
    """The outbox's bytes went into ``sent_bytes`` by the flush already asked for, after the close had
    dropped its messages (480 bytes for 10 empty messages, none written)."""
    adapter, connection, loop = open_adapter()
    for _ in range(10):
        adapter.send(BytesMessage(b""))
    adapter.on_close(None)
    loop.run()
    assert ("send", [BytesMessage(b"")] * 10) not in connection.calls
    assert (adapter._counters.messages_sent, adapter._counters.sent_bytes) == (0, 0)


def test_send_blocks_while_the_transport_is_paused():
    adapter, _connection, _loop = open_adapter()
    adapter.on_pause_writing()
    with pytest.raises(TimeoutError):
        adapter.send(TextMessage("held"), timeout=0.01)
    adapter.on_resume_writing()
    adapter.send(TextMessage("free"), timeout=0.01)


def test_messages_received_before_close_are_delivered_then_the_close():
    adapter, _connection, _loop = open_adapter()
    adapter.on_message(TextMessage("last words"))
    adapter.on_close(Close(4002, "bye"), closed_by="peer")
    assert adapter.receive(timeout=0) == TextMessage("last words")
    with pytest.raises(WebSocketDisconnectedError) as info:
        adapter.receive(timeout=0)
    assert (info.value.code, info.value.reason) == (4002, "bye")
    with pytest.raises(WebSocketDisconnectedError):
        adapter.send(TextMessage("too late"))


def test_close_goes_out_after_pending_sends_and_waits_for_the_handshake():
    adapter, connection, loop = open_adapter()
    adapter.send(TextMessage("first"))
    closer = threading.Thread(target=adapter.close, args=(1000, None, 5))
    closer.start()
    loop.wait_pending(2)
    loop.run()
    assert [c[0] for c in connection.calls[-2:]] == ["send", "close"]
    assert closer.is_alive()  # waits for the peer's close
    adapter.on_close(Close(1000), closed_by="peer")
    closer.join(5)
    assert not closer.is_alive()
    adapter.close()  # closing twice is a no-op


def test_a_lost_connection_reports_1006_and_wakes_a_blocked_sender():
    adapter, _connection, _loop = open_adapter()
    adapter.on_pause_writing()
    errors = []

    def blocked_send():
        try:
            adapter.send(TextMessage("stuck"))
        except WebSocketDisconnectedError as e:
            errors.append(e.code)

    sender = threading.Thread(target=blocked_send)
    sender.start()
    adapter.on_close(None)
    sender.join(5)
    assert errors == [1006]


def test_accept_after_the_peer_left_raises_disconnected():
    connection, loop = RecordingConnection(), Loop()
    adapter = ThreadedWebSocketAdapter(connection, loop)
    adapter.on_close(None)
    adapter.receive(timeout=0)  # CreateConnection is still delivered
    with pytest.raises(WebSocketDisconnectedError):
        adapter.accept(timeout=1)


def test_send_before_accept_is_a_protocol_error():
    adapter = ThreadedWebSocketAdapter(RecordingConnection(), Loop())
    with pytest.raises(WebSocketProtocolError):
        adapter.send(TextMessage("early"))


def test_reject_hands_the_response_to_the_loop():
    connection, loop = RecordingConnection(), Loop()
    adapter = ThreadedWebSocketAdapter(connection, loop)
    adapter.reject(403, [("X-A", "1")], b"no")
    loop.run()
    assert connection.calls == [("reject", 403, [("X-A", "1")], b"no")]
    adapter.close()  # nothing to close after a reject


def test_a_close_reason_is_cut_to_fit_a_close_frame_at_a_character_boundary():
    adapter, connection, loop = open_adapter()
    closer = threading.Thread(target=adapter.close, args=(4000, "é" * 100, 5))
    closer.start()
    loop.wait_pending()
    loop.run()
    _, code, reason = connection.calls[-1]
    assert code == 4000
    assert reason == "é" * 61  # 122 bytes: a 62nd "é" would make 124
    adapter.on_close(Close(4000, reason), closed_by="peer")
    closer.join(5)


def test_offer_each_queues_where_there_is_room_and_hands_the_loop_one_call_for_all():
    adapters = [open_adapter(write_high_water=100) for _ in range(4)]
    (roomy, _, loop), (full, _, full_loop), (closed, _, closed_loop), (busy, busy_connection, busy_loop) = adapters
    for other in (full_loop, closed_loop, busy_loop):
        other.pending = loop.pending  # one loop for all four, as on one server
    full.send(BytesMessage(b"x" * 100))  # over the high-water mark: no room until the loop flushes
    loop.run()
    full.on_pause_writing()
    closed.on_close(Close(1000))
    busy.send(TextMessage("first"))  # a flush is pending already: the message joins it
    message = TextMessage("to everyone")

    outcomes, hand_over = offer_each([roomy, full, closed, busy], message)

    assert outcomes[:2] == [True, False] and outcomes[3] is True
    assert isinstance(outcomes[2], WebSocketDisconnectedError) and outcomes[2].code == 1000
    assert len(loop.pending) == 1  # busy's own flush; nothing for the offer until it is handed over
    hand_over()
    assert len(loop.pending) == 2
    loop.run()
    assert adapters[0][1].calls[-1] == ("send", [message])
    assert busy_connection.calls[-1] == ("send", [TextMessage("first"), message])  # in order, in one flush
    assert ("send", [message]) not in adapters[1][1].calls


def test_the_loop_writes_in_one_call_the_members_whose_outbox_holds_the_broadcast_alone(monkeypatch):
    monkeypatch.setattr(BatchingConnection, "batches", [])
    loop = Loop()  # one for all, as on one server
    adapters = [open_adapter(BatchingConnection, loop) for _ in range(3)] + [open_adapter(loop=loop)]
    (first, first_connection, _), (second, second_connection, _), (own, own_connection, _) = adapters[:3]
    plain, plain_connection, _ = adapters[3]
    message = TextMessage("to everyone")

    outcomes, hand_over = offer_each([first, second, own, plain], message)
    hand_over()
    own.send(TextMessage("mine"))  # its handler sent too: behind the broadcast, in the same flush
    loop.run()

    assert outcomes == [True] * 4
    assert BatchingConnection.batches == [([first_connection, second_connection], message)]
    assert own_connection.calls[-1] == ("send", [message, TextMessage("mine")])
    assert plain_connection.calls[-1] == ("send", [message])  # a connection without send_each
    assert ("send", [message]) not in first_connection.calls + second_connection.calls
    assert all(adapter._counters.messages_sent == 1 for adapter, _, _ in adapters[:2])


def test_a_broadcast_leaves_no_container_per_member_for_the_garbage_collector():
    # each member's outbox holds the message itself: 1,000 lists alive until the loop flushed them set off
    # a young collection every 700, and with the promotions those made, a full one every hundred or so
    loop = Loop()
    adapters = [open_adapter(loop=loop)[0] for _ in range(1_000)]
    message = TextMessage("to everyone")
    gc.collect()
    gc.disable()
    try:
        allocated = gc.get_count()[0]
        outcomes, hand_over = offer_each(adapters, message)
        assert gc.get_count()[0] - allocated < 50  # the outcomes, the loop's group and such: none per member
    finally:
        gc.enable()
    assert outcomes == [True] * 1_000
    hand_over()
    loop.run()
    assert all(adapter._outbox is None for adapter in adapters)


def test_offer_each_hands_over_what_it_queued_before_a_connection_not_open_stops_it():
    adapter, connection, loop = open_adapter()
    unaccepted = ThreadedWebSocketAdapter(RecordingConnection(), loop)
    message = TextMessage("to everyone")
    with pytest.raises(WebSocketStateError):
        offer_each([adapter, unaccepted], message)
    loop.run()
    assert connection.calls[-1] == ("send", [message])
    adapter.send(TextMessage("later"))  # and the connection's own sends are flushed as before
    loop.run()
    assert connection.calls[-1] == ("send", [TextMessage("later")])
