"""Threads, backpressure and protocol settings of WebSockets, on TwistedGateway and on AsgiGateway."""

from __future__ import annotations

import json
import logging
import queue
import re
import socket
import threading
import time
import urllib.request

import pytest
import pytest_twisted
import websocket as wsclient
from twisted.internet import reactor
from websockets.sync.client import connect as websockets_connect

import tests.conftest
from rolo import Response, route
from rolo.gateway.asgi.websocket import _EVENT_SIZE
from rolo.serving.twisted import TwistedGateway
from rolo.serving.twisted.threads import idle_within
from rolo.websocket import WEBSOCKET_KEY, WebSocketDisconnectedError, WebSocketRequest
from rolo.websocket.threaded import _QUEUED_SIZE
from tests.conftest import gateway_for, listening_socket
from tests.helpers import Signal, in_thread, send_until_unread


@route("/idle", methods=["WEBSOCKET"])
def idle(request: WebSocketRequest):
    with request.accept() as ws:
        for _ in ws:
            pass


@route("/hello")
def hello(request):
    return Response("hello")


@pytest_twisted.ensureDeferred
async def test_idle_websockets_do_not_starve_http_or_new_websockets(serve):
    server = serve(idle, hello)

    def client():
        sockets = [wsclient.create_connection(server.ws("/idle"), timeout=10) for _ in range(200)]
        try:
            with urllib.request.urlopen(server.http("/hello"), timeout=10) as response:
                body = response.read()
            extra = wsclient.create_connection(server.ws("/idle"), timeout=10)
            extra.close()
            return body
        finally:
            for ws in sockets:
                ws.close()

    assert await in_thread(client) == b"hello"


@pytest_twisted.ensureDeferred
async def test_over_capacity_gets_503_at_once_and_recovers(serve):
    server = serve(idle, max_connections=3)

    def client():
        sockets = [wsclient.create_connection(server.ws("/idle"), timeout=10) for _ in range(3)]
        with pytest.raises(wsclient.WebSocketBadStatusException) as info:
            wsclient.create_connection(server.ws("/idle"), timeout=5)
        status = info.value.status_code
        for ws in sockets:
            ws.close()
        # capacity returns once handlers end: retry until a slot is free, for 10 s at most
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                wsclient.create_connection(server.ws("/idle"), timeout=5).close()
                return status, True
            except wsclient.WebSocketBadStatusException:
                continue
        return status, False

    assert await in_thread(client) == (503, True)


@pytest_twisted.ensureDeferred
async def test_full_receive_queue_stops_reading(serve):
    adapters = queue.Queue()
    release = Signal()
    done = queue.Queue()

    @route("/slow", methods=["WEBSOCKET"])
    def slow(request: WebSocketRequest):
        adapters.put(request.environ[WEBSOCKET_KEY])
        with request.accept() as ws:
            release.wait(60)
            done.put(sum(1 for _ in ws))

    server = serve(slow, max_queue=4)
    limit = 100_000  # 100 MiB: far more than the buffers on the way hold

    def flood():
        # the timeouts are ways out only: each wait below ends on what the server did
        ws = wsclient.create_connection(server.ws("/slow"), timeout=30)
        ws.sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
        adapter = adapters.get(timeout=30)
        payload = "x" * 1024
        sent = 0
        # the server reads until its handler's queue is full: a send waits only for a moment meanwhile
        while not adapter._reading_paused and sent < limit:
            ws.send(payload)
            sent += 1
        frame = wsclient.ABNF.create_frame(payload, wsclient.ABNF.OPCODE_TEXT)

        def frames():
            nonlocal sent
            while sent < limit:
                sent += 1  # counted once it starts going out: the rest of it follows in finish()
                yield frame.format()

        # then until the buffers between them are full: the server's is once it stopped reading
        _, pending = send_until_unread(ws.sock, frames())
        return ws, adapter, sent, pending

    def finish(ws, pending):
        ws.sock.sendall(pending)  # the rest of the message the buffers had no room for
        ws.close(timeout=30)  # once the handler took every message, the server answers the close
        return done.get(timeout=30)

    ws, adapter, sent, pending = await in_thread(flood)
    # on the reactor's thread, where TwistedGateway has handled the whole of the read that filled the queue
    paused, backlog = adapter._reading_paused, adapter._inbox.qsize()
    release.set()
    assert sent < limit, "the client could send without bound"
    assert paused
    assert backlog <= 64, "a read chunk at most past the queue bound"
    assert await in_thread(finish, ws, pending) == sent


@pytest_twisted.ensureDeferred
async def test_send_blocks_while_the_peer_does_not_read(serve):
    outcome = queue.Queue()

    @route("/push", methods=["WEBSOCKET"])
    def push(request: WebSocketRequest):
        with request.accept() as ws:
            sent = 0
            try:
                while sent < 10_000:
                    ws.send(b"x" * 65536, timeout=0.5)
                    sent += 1
                outcome.put(("never blocked", sent))
            except TimeoutError:
                outcome.put(("blocked", sent))

    server = serve(push)

    def client():
        sock = socket.create_connection((server.host, server.port))
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        ws = wsclient.WebSocket()
        ws.sock = None
        ws.connect(server.ws("/push"), socket=sock, timeout=10)
        result = outcome.get(timeout=30)  # not reading until the handler reports
        # the server's close frame is behind the megabytes never read: leave without waiting for it (3 s)
        ws.close(timeout=0)
        return result

    state, sent = await in_thread(client)
    assert state == "blocked"
    assert sent < 200  # 64 KiB each: the server held at most a few MiB between buffers


# Twisted's transport counts the frames it holds, in bytes; hypercorn made no send wait in this test
@pytest.mark.servers("uvicorn", reason="a server that makes sends wait while its peer does not read")
@pytest_twisted.ensureDeferred
async def test_empty_messages_to_a_peer_that_does_not_read_are_bounded_too(serve, monkeypatch):
    """An empty message counts for what queueing it holds, not for its zero bytes of data: the queue of
    send events the ASGI server made wait counted only the data, so empty messages sent to a peer that
    does not read piled up without bound (55,804 events for 100,000 sent; 166 to 368 now)."""
    outcome = queue.Queue()

    @route("/empties", methods=["WEBSOCKET"])
    def empties(request: WebSocketRequest):
        connection = request.environ[WEBSOCKET_KEY]._connection
        most = 0
        with request.accept() as ws:
            try:
                for _ in range(100_000):
                    ws.send(b"", timeout=0.5)
                    most = max(most, len(connection._outgoing))
            except TimeoutError:
                pass  # held for good: the kernel's buffers are full too
            outcome.put(most)

    def small_send_buffers() -> socket.socket:  # inherited by the connections it accepts
        sock = listening_socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
        return sock

    monkeypatch.setattr(tests.conftest, "listening_socket", small_send_buffers)
    server = serve(empties)

    def client():
        sockopt = [(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)]
        ws = wsclient.create_connection(server.ws("/empties"), timeout=10, sockopt=sockopt)
        most = outcome.get(timeout=60)  # not reading until the handler reports
        ws.close(timeout=0)
        return most

    most = await in_thread(client)
    print(f"{server.kind}: at most {most} send events waited for the server")
    # write_high_water over an event's size, and the outbox that crossed it (over a message's): 1,631
    high_water = 64 * 1024
    assert most <= high_water // _EVENT_SIZE + 1 + high_water // _QUEUED_SIZE + 1


@pytest_twisted.ensureDeferred
async def test_message_too_big_closes_1009(serve):
    server = serve(idle, max_message_size=1024)

    def client():
        ws = wsclient.create_connection(server.ws("/idle"), timeout=10)
        ws.send("x" * 2048)
        opcode, frame = ws.recv_data_frame(control_frame=True)
        return opcode, int.from_bytes(frame.data[:2], "big")

    assert await in_thread(client) == (wsclient.ABNF.OPCODE_CLOSE, 1009)


@route("/echo", methods=["WEBSOCKET"])
def echo(request: WebSocketRequest):
    with request.accept() as ws:
        for message in ws:
            ws.send(message)


@pytest_twisted.ensureDeferred
async def test_permessage_deflate_is_negotiated(serve):
    server = serve(echo)

    def client():
        with websockets_connect(server.ws("/echo"), open_timeout=10) as ws:
            extensions = ws.response.headers.get("Sec-WebSocket-Extensions")
            ws.send("compress me " * 100)
            return extensions, ws.recv(timeout=10)

    extensions, echoed = await in_thread(client)
    assert extensions and "permessage-deflate" in extensions
    assert echoed == "compress me " * 100


@route("/sizes", methods=["WEBSOCKET"])
def sizes(request: WebSocketRequest):
    """Sends a text and a binary message of each size the client asks for."""
    with request.accept() as ws:
        for size in ws:
            ws.send("t" * int(size))
            ws.send(b"b" * int(size))


# each length encoding of a frame's header (RFC 6455, 5.2) and its edges
FRAME_SIZES = [0, 125, 126, 65535, 65536, 100_000]


@pytest_twisted.ensureDeferred
async def test_messages_of_every_header_size_arrive_whole(serve):
    server = serve(sizes, max_message_size=1024)  # a limit on what the server receives, not sends

    def without_compression():
        ws = wsclient.create_connection(server.ws("/sizes"), timeout=10)
        received = []
        for size in FRAME_SIZES:
            ws.send(str(size))
            received.append((ws.recv(), ws.recv()))
        ws.close()
        return received

    def with_compression():
        with websockets_connect(server.ws("/sizes"), open_timeout=10, max_size=None) as ws:
            received = []
            for size in FRAME_SIZES:
                ws.send(str(size))
                received.append((ws.recv(timeout=10), ws.recv(timeout=10)))
            return received

    expected = [("t" * size, b"b" * size) for size in FRAME_SIZES]
    assert await in_thread(without_compression) == expected
    assert await in_thread(with_compression) == expected


# a payload unmasked in Python, one unmasked in C but parsed whole, one parsed as it comes, one over the
# size the server reads at once from the socket
PAYLOAD_SIZES = [2048, 3001, 65_537, 1024 * 1024 + 3]


def echo_large_messages(ws: wsclient.WebSocket) -> bool:
    """Send an echo server messages of ``PAYLOAD_SIZES`` bytes, each whole and in fragments of odd sizes
    (each masked with a key of its own); whether all came back as sent. Closes ``ws``."""
    payloads = [bytes(range(256)) * (size // 256) + b"\xa5" * (size % 256) for size in PAYLOAD_SIZES]
    echoed = []
    for payload in payloads:
        ws.send_binary(payload)
        echoed.append(ws.recv())
        pieces = [payload[start : start + 70_001] for start in range(0, len(payload), 70_001)]
        for n, piece in enumerate(pieces):
            opcode = wsclient.ABNF.OPCODE_BINARY if n == 0 else wsclient.ABNF.OPCODE_CONT
            ws.send_frame(wsclient.ABNF.create_frame(piece, opcode, fin=n == len(pieces) - 1))
        echoed.append(ws.recv())
    ws.close()
    return echoed == [payload for payload in payloads for _ in range(2)]


@pytest_twisted.ensureDeferred
async def test_large_messages_the_peer_sends_arrive_unmasked_whole_or_in_fragments(serve):
    server = serve(echo, max_message_size=2 * 1024 * 1024)
    assert await in_thread(lambda: echo_large_messages(wsclient.create_connection(server.ws("/echo"), timeout=10)))


@pytest_twisted.ensureDeferred
async def test_large_messages_arrive_whole_over_a_unix_socket(tmp_path):
    # Twisted's UNIX server connection is a TCP one underneath: the server reads the rest of a large frame
    # straight into its buffer there too (see test_tls for TLS, where it reads as usual)
    site = TwistedGateway(gateway_for(echo), max_message_size=2 * 1024 * 1024)
    path = str(tmp_path / "rolo.sock")
    port = reactor.listenUNIX(path, site)

    def client() -> bool:
        sock = socket.socket(socket.AF_UNIX)
        sock.settimeout(10)
        sock.connect(path)
        return echo_large_messages(wsclient.create_connection("ws://localhost/echo", socket=sock, timeout=10))

    try:
        assert await in_thread(client)
    finally:
        await port.stopListening()
        await site.stop()


@pytest_twisted.ensureDeferred
async def test_server_pings_idle_connections(serve):
    server = serve(idle, ping_interval=0.2)

    def client():
        ws = wsclient.create_connection(server.ws("/idle"), timeout=10)
        opcode, _ = ws.recv_data_frame(control_frame=True)
        ws.close()
        return opcode

    assert await in_thread(client) == wsclient.ABNF.OPCODE_PING


@pytest.mark.servers("twisted", "uvicorn", reason="hypercorn has no ping timeout")
@pytest_twisted.ensureDeferred
async def test_peer_that_never_answers_pings_is_dropped(serve):
    errors = queue.Queue()

    @route("/watch", methods=["WEBSOCKET"])
    def watch(request: WebSocketRequest):
        with request.accept() as ws:
            try:
                ws.receive()
            except WebSocketDisconnectedError as e:
                errors.put(e.code)

    server = serve(watch, ping_interval=0.2, ping_timeout=0.3)

    def client():
        # a raw client that completes the handshake and then never answers anything
        ws = wsclient.WebSocket(skip_utf8_validation=True)
        ws.connect(server.ws("/watch"), timeout=10)
        code = errors.get(timeout=10)
        ws.shutdown()
        return code

    # uvicorn reports a connection it dropped after the handshake as 1005 (no status), not 1006
    assert await in_thread(client) == (1005 if server.kind == "uvicorn" else 1006)


@pytest_twisted.ensureDeferred
async def test_handler_too_slow_to_accept_hits_open_timeout(serve):
    release = Signal()

    @route("/dawdle", methods=["WEBSOCKET"])
    def dawdle(request: WebSocketRequest):
        release.wait()
        with pytest.raises(WebSocketDisconnectedError):
            request.accept()

    server = serve(dawdle, open_timeout=0.3)

    def client():
        try:
            with pytest.raises((wsclient.WebSocketException, ConnectionError, socket.timeout)):
                wsclient.create_connection(server.ws("/dawdle"), timeout=10)
        finally:
            release.set()

    await in_thread(client)


@pytest_twisted.ensureDeferred
async def test_allowed_origins(serve, caplog):
    server = serve(echo, allowed_origins=["https://good.example"])
    caplog.set_level(logging.INFO, logger="rolo")

    def client():
        ok = wsclient.create_connection(server.ws("/echo"), origin="https://good.example", timeout=10)
        ok.close()
        with pytest.raises(wsclient.WebSocketBadStatusException) as info:
            wsclient.create_connection(server.ws("/echo"), origin="https://evil.example", timeout=10)
        return info.value.status_code

    assert await in_thread(client) == 403
    # logged before the response went out, on every server, with why
    assert any("403 (origin not allowed)" in record.getMessage() for record in caplog.records)


@pytest_twisted.ensureDeferred
async def test_json_roundtrip_many_messages(serve):
    server = serve(echo)

    def client():
        ws = wsclient.create_connection(server.ws("/echo"), timeout=10)
        out = []
        for i in range(500):
            ws.send(json.dumps({"i": i}))
        for _ in range(500):
            out.append(json.loads(ws.recv())["i"])
        ws.close()
        return out

    assert await in_thread(client) == list(range(500))


@pytest_twisted.ensureDeferred
async def test_a_handler_blocked_outside_rolo_holds_up_nobody(serve):
    # the server waits for the handlers it woke to block in rolo again (TwistedGateway's handler turns):
    # one that blocks elsewhere, every time it is woken, must only bound that wait
    got_message, release = Signal(), threading.Event()

    @route("/stuck", methods=["WEBSOCKET"])
    def stuck(request: WebSocketRequest):
        with request.accept() as ws:
            for _ in ws:
                got_message.set()
                release.wait(30)

    server = serve(stuck, echo, hello)

    def client():
        blocked = wsclient.create_connection(server.ws("/stuck"), timeout=10)
        try:
            blocked.send("block")
            got_message.wait()
            ws = wsclient.create_connection(server.ws("/echo"), timeout=10)
            for i in range(100):
                blocked.send(str(i))  # wakes nobody: the stuck handler is still busy with the first
                ws.send(str(i))
                assert ws.recv() == str(i)
            ws.close()
            with urllib.request.urlopen(server.http("/hello"), timeout=10) as response:
                return response.read()
        finally:
            release.set()
            blocked.close()

    assert await in_thread(client) == b"hello"


@pytest.mark.servers("twisted", "hypercorn", reason="uvicorn waits a fixed 10 s for the peer's close reply")
@pytest_twisted.ensureDeferred
async def test_peer_that_never_answers_the_close_is_dropped_after_close_timeout(serve, caplog):
    closed = queue.Queue()

    @route("/leave", methods=["WEBSOCKET"])
    def leave(request: WebSocketRequest):
        ws = request.accept()
        ws.close(4000, "leaving")  # returns once the connection is closed, handshake or not
        closed.put("closed")

    server = serve(leave, close_timeout=0.5)

    def client():
        ws = wsclient.create_connection(server.ws("/leave"), timeout=10)
        # read raw bytes, so that nothing answers the server's close frame, until the server drops us
        received = b""
        try:
            while chunk := ws.sock.recv(4096):
                received += chunk
        except ConnectionResetError:
            pass
        outcome = closed.get(timeout=10)
        ws.sock.close()
        return received, outcome

    with caplog.at_level(logging.INFO, logger="rolo.serving.twisted.protocol"):
        received, outcome = await in_thread(client)
    assert outcome == "closed"
    # the close frame went out before the drop; a reset may discard it unread, so look only if it came
    if received:
        assert received[0] == 0x88 and int.from_bytes(received[2:4], "big") == 4000
    if server.kind == "twisted":
        # its line says it was dropped, unanswered, where it said "closed by the server" as after a closing
        # handshake
        dropped = re.search(
            r"WebSocket dropped by the server /leave from tcp4:127\.0\.0\.1:\d+: code 4000 after \d+\.\d{3}s: "
            r"leaving; the client did not answer the close in (\d+\.\d{3})s$",
            caplog.text,
            re.MULTILINE,
        )
        assert dropped is not None, caplog.text
        assert 0.4 < float(dropped[1]) < 5  # close_timeout, as Autobahn's timer keeps it


def refused_then_served(server) -> tuple[int, str]:
    """The status of a first upgrade to /echo that is refused, and the echo of a second one."""
    with pytest.raises(wsclient.WebSocketBadStatusException) as info:
        wsclient.create_connection(server.ws("/echo"), timeout=10)
    ws = wsclient.create_connection(server.ws("/echo"), timeout=10)
    ws.send("still here")
    echoed = ws.recv()
    ws.close()
    return info.value.status_code, echoed


@pytest.mark.servers("twisted", reason="makes TwistedGateway's handler threads fail to start")
@pytest_twisted.ensureDeferred
async def test_a_handler_thread_that_cannot_start_is_a_503_and_holds_no_slot(serve, monkeypatch):
    server = serve(echo, max_connections=1)
    threads = server.app.websocket.host.pool
    refusals = []
    start = threads._thread_class.start

    def out_of_threads_once(thread):
        if not refusals:
            refusals.append(thread)
            raise RuntimeError("can't start new thread")
        start(thread)

    monkeypatch.setattr(threads._thread_class, "start", out_of_threads_once)

    # the only slot is still free: the next connection is served
    assert await in_thread(refused_then_served, server) == (503, "still here")
    assert await idle_within(server.app.websocket.host.handlers, 10, reactor)
    assert refusals[0] not in threads.threads  # forgotten, so that stopping never joins an unstarted thread


@pytest.mark.servers("twisted", reason="the large frame read straight into its buffer is TwistedGateway's")
@pytest_twisted.ensureDeferred
async def test_a_large_frame_that_ends_after_the_server_closed_is_not_delivered(serve):
    # a message the peer finishes after the server's close frame went out has nobody to read it (RFC 6455,
    # 5.5.1: the server reads on only for the peer's close): it is dropped, whatever its size, and the
    # handler's receive after close finds the connection closed, not the message
    outcome: queue.Queue[str] = queue.Queue()

    @route("/close-first", methods=["WEBSOCKET"])
    def close_first(request: WebSocketRequest):
        with request.accept() as ws:
            ws.receive()
            ws.close()
            try:
                ws.receive(timeout=10)
                outcome.put("delivered")
            except WebSocketDisconnectedError as error:
                # the peer's close was read after the frame, so the frame ended where it said it would
                outcome.put("dropped" if error.received is not None else f"dropped: {error}")

    server = serve(close_first, max_message_size=2 * 1024 * 1024)
    frame = wsclient.ABNF.create_frame(b"x" * 1024 * 1024, wsclient.ABNF.OPCODE_BINARY).format()

    def client() -> str:
        ws = wsclient.create_connection(server.ws("/close-first"), timeout=10)
        # one write, so one read on the server: the message that makes the handler close, and the start
        # of a large frame, whose rest the server then awaits
        go = wsclient.ABNF.create_frame("go", wsclient.ABNF.OPCODE_TEXT).format()
        ws.sock.sendall(go + frame[:100])
        # recv_frame, not recv_data_frame: that answers a close with one of its own, which would land inside
        # the large frame's payload (and the frame's last bytes then parse as a header of their own)
        assert ws.recv_frame().opcode == wsclient.ABNF.OPCODE_CLOSE
        ws.sock.sendall(frame[100:])
        ws.send_close()
        return outcome.get(timeout=10)

    assert await in_thread(client) == "dropped"


@pytest_twisted.ensureDeferred
async def test_messages_a_peer_floods_after_the_servers_close_are_dropped_not_queued(serve):
    # the server reads on after its close only to find the peer's (RFC 6455, 5.5.1), and stops reading
    # into a full inbox no longer: what comes before that close is dropped, so that it cannot grow the
    # inbox past its bounds however long the peer keeps sending. Under hypercorn it went into the inbox:
    # thousands of messages (megabytes) against max_queue=4
    left: queue.Queue[int] = queue.Queue()

    @route("/bye", methods=["WEBSOCKET"])
    def bye(request: WebSocketRequest):
        ws = request.accept()
        ws.close(4000, "bye", timeout=30)
        left.put(sum(1 for _ in ws))  # what is still in the inbox once the close is over

    server = serve(bye, max_queue=4)
    count = 4000  # 4 MiB of 1 KiB messages: far past the inbox's bounds (512 KiB, 4 messages)
    frame = wsclient.ABNF.create_frame("x" * 1024, wsclient.ABNF.OPCODE_TEXT).format()

    def client() -> tuple[int, int]:
        ws = wsclient.create_connection(server.ws("/bye"), timeout=30)
        # recv_frame, not recv_data_frame: that would answer the close at once
        assert ws.recv_frame().opcode == wsclient.ABNF.OPCODE_CLOSE
        sent, _ = send_until_unread(ws.sock, (frame for _ in range(count)))
        ws.send_close()
        return sent, left.get(timeout=30)

    assert await in_thread(client) == (count * len(frame), 0)


@pytest_twisted.ensureDeferred
async def test_an_inbox_bound_of_one_byte_still_takes_one_message_at_a_time(serve):
    # max_queue_bytes=1 (the least the setting takes) pauses reading at every message; reading must resume
    # once the handler took it. Below half of one byte, floored, was below 0 bytes: never, and the
    # connection stalled at its second message
    server = serve(echo, max_queue_bytes=1)

    def client() -> list[str]:
        ws = wsclient.create_connection(server.ws("/echo"), timeout=10)
        echoed = []
        for text in ("a", "b", "c"):
            ws.send(text)
            echoed.append(ws.recv())
        ws.close()
        return echoed

    assert await in_thread(client) == ["a", "b", "c"]


@pytest.mark.servers("twisted", reason="breaks TwistedGateway's host on purpose")
@pytest_twisted.ensureDeferred
async def test_an_upgrade_the_server_fails_to_take_is_a_500_and_the_next_is_served(serve, monkeypatch):
    # a bug in rolo between the handshake and the handler (here, the host's open raising) answers 500, as
    # Autobahn answers an onConnect that raised, and leaves the server serving
    server = serve(echo)
    host = server.app.websocket.host
    open_connection = host.open
    failures = []

    def broken_once(connection, environ):
        if not failures:
            failures.append(environ["PATH_INFO"])
            raise ValueError("broken on purpose")
        return open_connection(connection, environ)

    monkeypatch.setattr(host, "open", broken_once)

    assert await in_thread(refused_then_served, server) == (500, "still here")
    assert failures == ["/echo"]
