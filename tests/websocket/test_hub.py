"""Hub: pushing to connections by id and by group, from other threads, with real clients over loopback.

The first tests drive a Hub over adapters without a server (as in test_threaded_adapter), where the
states a push can meet (a full buffer, a close under way) can be set up exactly; the rest use real
clients against TwistedGateway.
"""

from __future__ import annotations

import gc
import queue
import socket
import struct
import threading
from contextlib import ExitStack

import pytest
import pytest_twisted
import websocket as wsclient
from websockets.sync.client import ClientConnection
from websockets.sync.client import connect as websockets_connect

from rolo import Request, route
from rolo.websocket import Hub, TextMessage, WebSocket, WebSocketDisconnectedError, WebSocketRequest
from rolo.websocket.frames import Close
from rolo.websocket.websocket import message_for, offer_each
from tests.helpers import Signal, in_thread
from tests.websocket.test_threaded_adapter import Loop, open_adapter

LINGER_RESET = struct.pack("ii", 1, 0)
"""SO_LINGER on, with no time to linger: closing the socket resets the connection."""

# -- without a server ---------------------------------------------------------------------------------


def open_websocket(**kwargs):
    adapter, _connection, loop = open_adapter(**kwargs)
    return WebSocket(adapter), adapter, loop


def test_close_listeners_run_once_when_the_connection_closes_or_at_once_if_it_is_closed():
    websocket, adapter, _ = open_websocket()
    calls = []
    websocket.on_close(lambda: calls.append("first"))
    websocket.on_close(lambda: 1 / 0)  # a failing listener is logged; the others still run
    websocket.on_close(lambda: calls.append("second"))
    adapter.on_close(Close(1001, "bye"), closed_by="peer")
    adapter.on_close(None)
    websocket.on_close(lambda: calls.append("late"))
    assert calls == ["first", "second", "late"]


def test_send_refuses_once_close_began():
    websocket, _, _ = open_websocket()
    with pytest.raises(TimeoutError):
        websocket.close(4000, "done", timeout=0)
    with pytest.raises(WebSocketDisconnectedError) as closed:
        websocket.send("too late")
    assert closed.value.code == 4000


def test_a_send_waiting_for_room_gives_up_when_another_thread_closes():
    websocket, adapter, _ = open_websocket()
    adapter.on_pause_writing()
    outcome: queue.Queue = queue.Queue()

    def send():
        try:
            websocket.send("held", timeout=30)
        except Exception as error:
            outcome.put(error)

    sender = threading.Thread(target=send)
    sender.start()
    with pytest.raises(TimeoutError):
        websocket.close(1013, timeout=0)
    assert isinstance(outcome.get(timeout=10), WebSocketDisconnectedError)
    sender.join(10)


def test_members_join_and_leave_groups_and_are_addressed_by_id():
    hub = Hub()
    (a, _, _), (b, _, _) = open_websocket(), open_websocket()
    a_id, b_id = hub.add(a, "lobby"), hub.add(b, "lobby", "ops")
    assert hub.add(a) == a_id != b_id
    assert hub.members("lobby") == [a_id, b_id]
    assert hub.groups() == ["lobby", "ops"]
    assert hub.groups(b) == ["lobby", "ops"]
    assert hub.get(b_id) is b and a in hub and b_id in hub and len(hub) == 2
    hub.leave(b_id, "lobby")
    assert hub.members("lobby") == [a_id] and hub.groups() == ["lobby", "ops"]
    hub.leave(b)
    assert hub.groups() == ["lobby"] and b in hub  # left every group, still addressable
    hub.join(b_id, "ops")
    assert hub.members("ops") == [b_id]
    hub.remove(b)
    assert b not in hub and hub.get(b_id) is None and hub.groups() == ["lobby"]
    with pytest.raises(KeyError):
        hub.join(b_id, "lobby")


def test_a_closed_connection_leaves_the_hub_and_an_added_closed_one_never_stays():
    hub = Hub()
    websocket, adapter, _ = open_websocket()
    connection_id = hub.add(websocket, "lobby")
    adapter.on_close(Close(1000), closed_by="peer")
    assert connection_id not in hub and hub.members("lobby") == []
    hub.add(websocket, "lobby")  # closed already: the close listener runs at once
    assert len(hub) == 0 and hub.groups() == []


def test_a_push_to_a_closing_connection_is_dropped_and_forgets_it():
    hub = Hub()
    (open_one, _, _loop), (closing, _closing_adapter, _) = open_websocket(), open_websocket()
    open_id, closing_id = hub.add(open_one, "lobby"), hub.add(closing, "lobby")
    with pytest.raises(TimeoutError):
        closing.close(timeout=0)  # the handshake started, the server has not confirmed it yet
    delivery = hub.broadcast("lobby", "hello")
    assert delivery.sent == (open_id,) and delivery.gone == (closing_id,) and delivery.slow == ()
    assert hub.members("lobby") == [open_id]
    assert hub.send("ws-nobody", "hi").gone == ("ws-nobody",)


def test_a_full_peer_is_offered_the_message_last_and_closed_with_1013_when_the_time_is_up():
    hub = Hub(timeout=0.05)
    (first, first_adapter, first_loop), (second, _, _second_loop) = open_websocket(), open_websocket()
    first_id, second_id = hub.add(first, "lobby"), hub.add(second, "lobby")
    first_adapter.on_pause_writing()  # its transport's buffer is full
    delivery = hub.broadcast("lobby", "hello")
    assert delivery.sent == (second_id,) and delivery.slow == (first_id,)
    assert hub.members("lobby") == [second_id]
    first_loop.run()
    # nothing was queued for the slow peer; its close frame is on its way
    assert first_adapter._connection.calls[-1] == ("close", 1013, "too slow to read")


def test_a_full_peer_is_only_skipped_when_the_hub_does_not_close_slow_peers():
    hub = Hub(timeout=0.05, close_slow=False)
    websocket, adapter, _ = open_websocket()
    connection_id = hub.add(websocket, "lobby")
    adapter.on_pause_writing()
    assert hub.send(connection_id, "hello").slow == (connection_id,)
    assert hub.members("lobby") == [connection_id]
    adapter.on_resume_writing()
    assert hub.send(connection_id, "again").sent == (connection_id,)
    assert adapter._outbox == TextMessage("again")  # the one message waiting, kept as it is


def test_a_broadcast_leaves_no_container_per_member_for_the_garbage_collector():
    # from the offer to the loop's flush, nothing per member is alive that the collector counts (see
    # test_threaded_adapter): neither a pair of id and connection nor a list in its outbox
    hub, loop = Hub(), Loop()  # one loop for all, as on one server
    websockets = [open_websocket(loop=loop)[0] for _ in range(1_000)]
    for websocket in websockets:
        hub.add(websocket, "all")
    gc.collect()
    gc.disable()
    try:
        allocated = gc.get_count()[0]
        delivery = hub.broadcast("all", "to everyone")
        assert gc.get_count()[0] - allocated < 50  # the lists of ids and outcomes and such
    finally:
        gc.enable()
    assert len(delivery.sent) == 1_000


# -- against a server -----------------------------------------------------------------------------


def room_routes(hub: Hub, joined: queue.Queue):
    """A room where every message is broadcast to the others, and an HTTP endpoint that pushes to one
    connection by id."""

    @route("/room", methods=["WEBSOCKET"])
    def room(request: WebSocketRequest):
        with request.accept() as websocket:
            connection_id = hub.add(websocket, "room")
            joined.put(connection_id)
            websocket.send(connection_id)
            for message in websocket:
                hub.broadcast("room", message, exclude=[websocket])

    @route("/push/<connection_id>", methods=["POST"])
    def push(request: Request, connection_id: str):
        delivery = hub.send(connection_id, request.get_data(as_text=True))
        return {"sent": list(delivery.sent), "gone": list(delivery.gone)}

    return room, push


def connect(url: str) -> tuple[wsclient.WebSocket, str]:
    ws = wsclient.create_connection(url, timeout=10)
    return ws, ws.recv()


def connect_fast(stack: ExitStack, url: str) -> tuple[ClientConnection, str]:
    """A client that keeps up with large messages (websockets parses frames in C), closed with ``stack``."""
    ws = stack.enter_context(websockets_connect(url, max_size=None, compression=None, open_timeout=10))
    return ws, ws.recv(timeout=10)


def with_exit_stack(fn):
    with ExitStack() as stack:
        return fn(stack)


def left(websocket: WebSocket) -> Signal:
    """A signal set once ``websocket`` closed and (its listeners running in order) left the hub."""
    signal = Signal()
    websocket.on_close(signal.set)
    return signal


@pytest_twisted.ensureDeferred
async def test_broadcast_reaches_the_others_and_an_http_handler_pushes_to_one(serve):
    hub, joined = Hub(), queue.Queue()
    server = serve(*room_routes(hub, joined))

    def clients():
        (a, _a_id), (b, b_id), (c, _c_id) = (connect(server.ws("/room")) for _ in range(3))
        a.send("hi all")
        heard = [b.recv(), c.recv()]
        request = urllib_post(server.http(f"/push/{b_id}"), b"just you")
        heard.append(b.recv())
        for ws in (a, b, c):
            ws.close()
        return heard, request, b_id

    heard, answer, b_id = await in_thread(clients)
    assert heard == ["hi all", "hi all", "just you"]
    assert answer == {"sent": [b_id], "gone": []}


def urllib_post(url: str, body: bytes) -> dict:
    import json
    import urllib.request

    with urllib.request.urlopen(urllib.request.Request(url, data=body, method="POST"), timeout=10) as r:
        return json.loads(r.read())


@pytest_twisted.ensureDeferred
async def test_concurrent_pushers_interleave_whole_messages_in_each_pushers_order(serve):
    hub = Hub()
    joined: queue.Queue = queue.Queue()

    @route("/listen", methods=["WEBSOCKET"])
    def listen(request: WebSocketRequest):
        with request.accept() as websocket:
            joined.put(hub.add(websocket, "all"))
            for message in websocket:
                websocket.send(f"own {message}")  # the handler's own sends go on meanwhile

    server = serve(listen)
    pushers, count = 4, 200

    def run():
        clients = []
        for _ in range(3):
            clients.append(wsclient.create_connection(server.ws("/listen"), timeout=10))
            joined.get(timeout=10)
        threads = [
            threading.Thread(target=lambda p=p: [hub.broadcast("all", f"{p}:{i}") for i in range(count)])
            for p in range(pushers)
        ]
        for t in threads:
            t.start()
        for ws in clients:
            ws.send("ping")
        for t in threads:
            t.join(10)
        received = [[ws.recv() for _ in range(pushers * count + 1)] for ws in clients]
        for ws in clients:
            ws.close()
        return received

    for messages in await in_thread(run):
        assert "own ping" in messages
        pushed = [m for m in messages if m != "own ping"]
        for p in range(pushers):
            assert [m for m in pushed if m.startswith(f"{p}:")] == [f"{p}:{i}" for i in range(count)]


@pytest_twisted.ensureDeferred
async def test_connections_leave_on_clean_close_abrupt_drop_and_handler_exit(serve):
    hub = Hub()
    websockets: queue.Queue = queue.Queue()
    release = Signal()

    @route("/stay", methods=["WEBSOCKET"])
    def stay(request: WebSocketRequest):
        with request.accept() as websocket:
            hub.add(websocket, "room")
            websockets.put(websocket)
            if request.args.get("mode") == "busy":
                release.wait()  # not reading: only the server can tell that the peer went away
            elif request.args.get("mode") == "leave":
                return  # the with block closes
            for _ in websocket:
                pass

    server = serve(stay)

    def run():
        outcomes = {}
        clean = wsclient.create_connection(server.ws("/stay"), timeout=10)
        gone = left(websockets.get(timeout=10))
        clean.close()
        gone.wait()
        outcomes["clean"] = len(hub)

        abrupt = wsclient.create_connection(server.ws("/stay?mode=busy"), timeout=10)
        gone = left(websockets.get(timeout=10))
        abrupt.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, LINGER_RESET)
        abrupt.sock.close()  # a reset, no close frame
        gone.wait()
        outcomes["abrupt"] = len(hub)
        release.set()

        leaving = wsclient.create_connection(server.ws("/stay?mode=leave"), timeout=10)
        gone = left(websockets.get(timeout=10))
        leaving.recv()  # the close frame, which the client answers
        gone.wait()
        outcomes["handler exit"] = (len(hub), hub.groups())
        return outcomes

    assert await in_thread(run) == {"clean": 0, "abrupt": 0, "handler exit": (0, [])}


SLOW_PEER_SETTINGS = {"write_high_water": 16 * 1024}
LARGE = "x" * (128 * 1024)


def connect_slow_and_fast(server, stack: ExitStack, fast_count: int):
    """One client that never reads (with a small receive buffer), and ``fast_count`` that keep up."""
    slow = wsclient.create_connection(
        server.ws("/room"), timeout=10, sockopt=[(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)]
    )
    slow_id = slow.recv()
    return slow, slow_id, [connect_fast(stack, server.ws("/room")) for _ in range(fast_count)]


def push_until_slow(hub: Hub, fast: list, times_in_a_row: int) -> list:
    """Push large messages until the slow peer had no room ``times_in_a_row`` pushes in a row (its
    buffers are full); every push must reach the fast peers meanwhile. The deliveries, in order."""
    deliveries, in_a_row = [], 0
    for _ in range(200):
        deliveries.append(hub.broadcast("room", LARGE))
        assert all(ws.recv(timeout=10) == LARGE for ws, _ in fast)
        in_a_row = in_a_row + 1 if deliveries[-1].slow else 0
        if in_a_row == times_in_a_row:
            return deliveries
    raise AssertionError("the slow peer never filled up")


@pytest_twisted.ensureDeferred
async def test_a_peer_that_does_not_read_delays_nobody_else_and_is_closed_1013(serve):
    hub = Hub(timeout=0.2)
    server = serve(*room_routes(hub, queue.Queue()), **SLOW_PEER_SETTINGS)

    def run(stack: ExitStack):
        slow, slow_id, fast = connect_slow_and_fast(server, stack, 2)
        deliveries = push_until_slow(hub, fast, 1)
        members = hub.members("room")
        # the slow peer, reading at last, finds the messages that fitted and then the close frame
        while True:
            opcode, frame = slow.recv_data_frame(control_frame=True)
            if opcode == wsclient.ABNF.OPCODE_CLOSE:
                code = int.from_bytes(frame.data[:2], "big")
                break
        return slow_id, [i for _, i in fast], deliveries, members, code

    slow_id, fast_ids, deliveries, members, code = await in_thread(with_exit_stack, run)
    assert len(deliveries) > 1 and deliveries[-1].slow == (slow_id,)
    assert all(set(fast_ids) <= set(delivery.sent) for delivery in deliveries)
    assert members == fast_ids
    assert code == 1013


@pytest_twisted.ensureDeferred
async def test_a_push_waiting_on_a_slow_peer_has_already_reached_the_others(serve):
    hub = Hub(timeout=0.2, close_slow=False)
    server = serve(*room_routes(hub, queue.Queue()), **SLOW_PEER_SETTINGS)

    def run(stack: ExitStack):
        slow, slow_id, [(fast, fast_id)] = connect_slow_and_fast(server, stack, 1)
        push_until_slow(hub, [(fast, fast_id)], 3)
        # now a push that would wait a minute for the slow peer
        outcome: queue.Queue = queue.Queue()
        pusher = threading.Thread(target=lambda: outcome.put(hub.broadcast("room", "news", timeout=60)))
        pusher.start()
        got = fast.recv(timeout=10)
        waiting = outcome.empty()
        # the slow peer goes away: the push stops waiting for it
        slow_left = left(hub.get(slow_id))
        slow.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, LINGER_RESET)
        slow.sock.close()
        delivery = outcome.get(timeout=10)
        slow_left.wait()
        return got, waiting, delivery, slow_id, fast_id, hub.members("room")

    got, waiting, delivery, slow_id, fast_id, members = await in_thread(with_exit_stack, run)
    assert got == "news" and waiting
    assert fast_id in delivery.sent and delivery.slow == ()
    # the reset either stopped the wait (gone) or released it just before the close was reported (sent,
    # into a buffer that the close discards)
    assert slow_id in delivery.gone + delivery.sent
    assert members == [fast_id]


@pytest_twisted.ensureDeferred
async def test_what_a_handler_sends_before_closing_goes_out_while_a_broadcast_is_being_offered(serve):
    # a broadcast queues its message on each member first and hands the server the sends of all at once:
    # meanwhile a member's handler that sends and closes must not have its close frame overtake its
    # message (nor the broadcast's, which the hub counts as sent)
    opened: queue.Queue = queue.Queue()
    go = Signal()

    @route("/last-words", methods=["WEBSOCKET"])
    def last_words(request: WebSocketRequest):
        websocket = request.accept()
        opened.put(websocket)
        go.wait()
        websocket.send("bye")
        websocket.close()

    server = serve(last_words)

    def run():
        client = wsclient.create_connection(server.ws("/last-words"), timeout=10)
        outcomes, hand_over = offer_each([opened.get(timeout=10)], message_for("news"))
        go.set()
        frames = [client.recv_data(control_frame=True)]  # before the hand-over: what the close sent first
        hand_over()
        while frames[-1][0] != wsclient.ABNF.OPCODE_CLOSE:
            frames.append(client.recv_data(control_frame=True))
        client.close()
        return outcomes, [
            (opcode, data[:2] if opcode == wsclient.ABNF.OPCODE_CLOSE else data) for opcode, data in frames
        ]

    outcomes, frames = await in_thread(run)
    assert outcomes == [True]
    assert frames == [(1, b"news"), (1, b"bye"), (8, (1000).to_bytes(2, "big"))]


@pytest.mark.servers("twisted", "uvicorn", reason="hypercorn offers no permessage-deflate setting")
@pytest_twisted.ensureDeferred
async def test_a_large_broadcast_reaches_plain_and_deflate_members_whole_and_in_order(serve):
    # the members that compress nothing share one frame of each message, which every one of them gets
    # whole and in order; a member that negotiated permessage-deflate gets its own (a partial write of a
    # shared frame is tested apart, with small socket buffers: test_fences)
    hub, joined = Hub(), queue.Queue()

    @route("/members", methods=["WEBSOCKET"])
    def members(request: WebSocketRequest):
        with request.accept() as websocket:
            joined.put(hub.add(websocket, "all"))
            for _ in websocket:
                pass

    server = serve(members, compression=True)
    messages: list[str | bytes] = [bytes([n]) * (768 * 1024) for n in range(3)]
    messages.insert(1, "small, between two large ones")

    def run(stack: ExitStack):
        *plain, deflate = [
            stack.enter_context(
                websockets_connect(server.ws("/members"), max_size=None, compression=compression, open_timeout=10)
            )
            for compression in (None, None, None, "deflate")
        ]
        ids = sorted(joined.get(timeout=10) for _ in range(4))
        assert deflate.protocol.extensions, "the deflate member negotiated permessage-deflate"
        deliveries = [hub.broadcast("all", message, timeout=10) for message in messages]
        received = [[ws.recv(timeout=10) for _ in messages] for ws in (*plain, deflate)]
        return ids, deliveries, received

    ids, deliveries, received = await in_thread(lambda: with_exit_stack(run))
    assert [sorted(delivery.sent) for delivery in deliveries] == [ids] * len(messages)
    for member in received:
        assert member == messages
