"""Whatever a WebSocket peer sends, and whatever it fails to read, what it can make the server hold is
bounded in bytes: replies it never reads, compressed messages past the inbox's bound, many large messages
to a handler that does not read, a message in tiny fragments.

Each test attacks a server in a process of its own (tests/hardening/server.py) over raw sockets and
measures the growth of the server's peak resident memory, against the worst case docs/hardening.rst gives.
"""

from __future__ import annotations

import os
import queue
import socket
import threading
import time

import pytest
import pytest_twisted

from rolo import route
from rolo.websocket import WebSocketDisconnectedError, WebSocketRequest
from rolo.websocket.frames import Close
from rolo.websocket.host import SPARE_THREADS
from tests.helpers import in_thread

from .support import client_frame, deflated, open_websocket, send_until_stalled

MiB = 1024 * 1024
OPCODE_CONTINUATION, OPCODE_TEXT, OPCODE_BINARY, OPCODE_CLOSE, OPCODE_PING = 0x0, 0x1, 0x2, 0x8, 0x9

WORST_CASE_PER_CONNECTION = 4 * MiB
"""docs/hardening.rst's worst case for one connection with the default settings."""


def warmed_up(server_process):
    """A server that has served a WebSocket already (imports, threads, buffers) and started its spare
    handler threads, and its usage then."""
    server = server_process()
    sock = open_websocket(server.address, "/echo")
    sock.sendall(client_frame(OPCODE_TEXT, b"warm"))
    sock.recv(64)
    sock.close()
    deadline = time.monotonic() + 10
    while server.stats()["pool_threads"] < SPARE_THREADS and time.monotonic() < deadline:
        time.sleep(0.01)  # polled: the spares start on a thread of their own, with nothing to wait on
    return server, server.usage()


def flood_all(socks: list[socket.socket], message: bytes, limit: int) -> None:
    """Send ``message`` over and over on every socket at once, each until ``limit`` bytes or a stall."""
    floods = [threading.Thread(target=send_until_stalled, args=(sock, message, limit)) for sock in socks]
    for thread in floods:
        thread.start()
    for thread in floods:
        thread.join(60)


def pong_within(sock: socket.socket, timeout: float) -> bool:
    """Send a ping and say whether its pong came back within ``timeout`` seconds: whether the server
    still parses what this connection sends."""
    sock.sendall(client_frame(OPCODE_PING, b"probe"))
    sock.settimeout(timeout)
    received = b""
    try:
        while b"probe" not in received:
            chunk = sock.recv(65536)
            if not chunk:
                return False
            received += chunk
    except TimeoutError:
        return False
    finally:
        sock.settimeout(10)
    return True


def test_pongs_the_peer_never_reads_stop_the_server_reading(server_process, heavy):
    limit = (512 if heavy else 32) * MiB
    server, before = warmed_up(server_process)
    sock = open_websocket(server.address, "/echo")
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # and never read: its pongs pile up
    pings = client_frame(OPCODE_PING, b"p" * 125) * 512

    sent = send_until_stalled(sock, pings, limit)

    after = server.usage()
    growth = after["peak_rss"] - before["peak_rss"]
    print(
        f"pings never read: {sent / MiB:.1f} MiB of pings sent before the server stopped reading; "
        f"RSS grew {growth / MiB:.1f} MiB"
    )
    sock.close()
    assert sent < limit, "the server never stopped reading"
    assert growth < WORST_CASE_PER_CONNECTION


def test_compressed_messages_past_the_inbox_bound_are_left_unparsed(server_process):
    server, before = warmed_up(server_process)
    sock = open_websocket(server.address, "/stuck", "permessage-deflate")
    one_mib_of_zeros = client_frame(OPCODE_BINARY, deflated(bytes(MiB - 64)), compressed=True)
    sock.sendall(one_mib_of_zeros * 64)  # about 1 KiB each on the wire, in one write

    parsed_all = pong_within(sock, 2.0)

    after = server.usage()
    growth = after["peak_rss"] - before["peak_rss"]
    print(
        f"64 deflated MiB of zeros ({len(one_mib_of_zeros) * 64 / 1024:.0f} KiB on the wire) to a handler "
        f"that does not read: RSS grew {growth / MiB:.1f} MiB"
    )
    sock.close()
    assert not parsed_all, "the server parsed past the inbox's bound"
    assert growth < WORST_CASE_PER_CONNECTION


def test_large_messages_to_handlers_that_do_not_read_are_bounded_in_bytes(server_process):
    connections = 8
    server, before = warmed_up(server_process)
    message = client_frame(OPCODE_BINARY, b"m" * (MiB - 64))
    socks = [open_websocket(server.address, "/stuck") for _ in range(connections)]

    flood_all(socks, message, 16 * len(message))

    after = server.usage()
    per_connection = (after["peak_rss"] - before["peak_rss"]) / connections
    print(
        f"16 messages of 1 MiB to each of {connections} handlers that do not read: "
        f"RSS grew {per_connection / MiB:.1f} MiB per connection"
    )
    for sock in socks:
        sock.close()
    assert per_connection < WORST_CASE_PER_CONNECTION


def test_an_unfinished_message_in_tiny_fragments_costs_what_it_holds(server_process, heavy):
    connections = 4
    server, before = warmed_up(server_process)
    fragments = (256 if heavy else 64) * 1024  # 512 or 128 KiB of payload, 2 bytes a frame, 4 times that sent
    socks = [open_websocket(server.address, "/stuck") for _ in range(connections)]
    opening = client_frame(OPCODE_BINARY, b"ab", fin=False)
    continuation = client_frame(OPCODE_CONTINUATION, b"cd", fin=False) * 1024

    for sock in socks:
        sock.sendall(opening + continuation * (fragments // 1024 - 1))
    for sock in socks:
        assert pong_within(sock, 60), "the server stopped reading an unfinished message"

    after = server.usage()
    per_connection = (after["peak_rss"] - before["peak_rss"]) / connections
    print(
        f"an unfinished message of {fragments * 2 / MiB:.1f} MiB in 2-byte fragments on each of {connections} "
        f"connections: RSS grew {per_connection / MiB:.1f} MiB per connection"
    )
    for sock in socks:
        sock.close()
    assert per_connection < 2 * fragments * 2



@pytest_twisted.ensureDeferred
async def test_a_handler_that_closes_with_its_inbox_full_hears_the_reply_at_once(serve):
    """Reading stops while the inbox is full; the peer's close reply is behind what was left unread, so
    closing reads on (dropping those messages) rather than waiting out the close timeout."""
    inbox_full = threading.Event()
    outcome: queue.Queue[object] = queue.Queue()

    @route("/full", methods=["WEBSOCKET"])
    def full(request: WebSocketRequest):
        with request.accept() as ws:
            assert inbox_full.wait(10)
            ws.close(4000)
            try:
                while True:
                    ws.receive()  # the messages read before the close, then how it ended
            except WebSocketDisconnectedError as error:
                outcome.put(error.received)

    server = serve(full, max_queue=4, close_timeout=2)

    def client() -> None:
        sock = open_websocket((server.host, server.port), "/full")
        sock.sendall(client_frame(OPCODE_TEXT, b"unread") * 64)
        inbox_full.set()
        close = b""
        while len(close) < 4:  # the server's close frame, the only one it sends: 0x88 0x02 and 4000
            close += sock.recv(4 - len(close))
        assert close == b"\x88\x02" + (4000).to_bytes(2, "big")
        sock.sendall(client_frame(OPCODE_CLOSE, close[2:]))
        sock.close()

    await in_thread(client)
    # the peer's reply, not the close timeout, ended it
    assert await in_thread(outcome.get, timeout=10) == Close(4000)


@pytest.mark.parametrize("payload", ["zeros", "random"])
def test_the_worst_a_peer_can_do_to_an_echo_stays_within_the_bound(server_process, payload):
    """Everything at once: deflated messages of the largest size to a handler that echoes them, which
    the peer never reads, so that the inbox, the message being gathered, the handler's message, its
    echo and the server's write buffer all fill."""
    connections = 4
    server, before = warmed_up(server_process)
    socks = [open_websocket(server.address, "/echo", "permessage-deflate") for _ in range(connections)]
    # random bytes deflate to a little more than they are: a little less than the limit, so that they pass
    data = bytes(MiB - 64) if payload == "zeros" else os.urandom(MiB - 4096)
    message = client_frame(OPCODE_BINARY, deflated(data), compressed=True)
    for sock in socks:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # and never read

    flood_all(socks, message, 64 * len(message))

    after = server.usage()
    per_connection = (after["peak_rss"] - before["peak_rss"]) / connections
    print(
        f"deflated 1 MiB messages of {payload} to an echo that is never read, on {connections} connections: "
        f"RSS grew {per_connection / MiB:.1f} MiB per connection"
    )
    for sock in socks:
        sock.close()
    assert per_connection < WORST_CASE_PER_CONNECTION



def test_a_failed_connection_keeps_nothing_of_what_follows(server_process):
    """A compressed frame over the size limit fails the connection (1009); what the peer sends after it
    is not kept while the server would wait for its close reply."""
    server, before = warmed_up(server_process)
    sock = open_websocket(server.address, "/echo", "permessage-deflate")
    too_big = client_frame(OPCODE_BINARY, deflated(os.urandom(MiB)), compressed=True)  # over 1 MiB deflated

    sent = send_until_stalled(sock, too_big, 32 * MiB)
    after = server.usage()
    growth = after["peak_rss"] - before["peak_rss"]
    print(f"a compressed frame over the limit, then more: {sent / MiB:.1f} MiB taken, RSS grew {growth / MiB:.1f} MiB")
    sock.close()
    assert growth < WORST_CASE_PER_CONNECTION
