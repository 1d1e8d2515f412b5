"""The errors a handler sees: one state error that is also a ValueError, and a disconnected error that
says who closed the connection and what each side sent, on every server."""

from __future__ import annotations

import queue

import pytest
import pytest_twisted
import websocket as wsclient
from twisted.logger import LogLevel, formatEvent, globalLogPublisher

from rolo import route
from rolo.websocket import WebSocketDisconnectedError, WebSocketProtocolError, WebSocketRequest
from rolo.websocket.errors import WebSocketStateError
from rolo.websocket.frames import Close, CloseCode, Opcode
from tests.hardening.support import client_frame, deflated, open_websocket
from tests.helpers import in_thread


def test_a_state_error_is_a_protocol_error_and_a_value_error():
    assert issubclass(WebSocketStateError, WebSocketProtocolError)
    assert issubclass(WebSocketStateError, ValueError)


def test_the_disconnected_error_says_who_closed_and_with_what():
    by_peer = WebSocketDisconnectedError(
        1000, None, received=Close(1000), sent=Close(1000), closed_by="peer"
    )
    assert str(by_peer) == (
        "WebSocket closed by the peer with 1000 (normal closure), and the server replied 1000 (normal closure)"
    )
    by_server = WebSocketDisconnectedError(
        CloseCode.ABNORMAL_CLOSURE, None, sent=Close(1001, "server shutting down"), closed_by="server"
    )
    assert str(by_server) == (
        "WebSocket closed by the server with 1001 (going away) 'server shutting down', and the peer did not reply"
    )
    assert str(WebSocketDisconnectedError(1006)) == (
        "WebSocket lost: the connection ended without a closing handshake (code 1006)"
    )
    assert str(WebSocketDisconnectedError(4000, "bye")) == "WebSocket is closed (code=4000, reason='bye')"


def waiting_route(ended: queue.Queue[WebSocketDisconnectedError | Exception]):
    """A WebSocket route at ``/wait`` that accepts, waits for a message and puts the
    :class:`WebSocketDisconnectedError` that ends its wait into ``ended``."""

    @route("/wait", methods=["WEBSOCKET"])
    def wait(request: WebSocketRequest):
        with request.accept() as websocket:
            try:
                websocket.receive()
            except WebSocketDisconnectedError as error:
                ended.put(error)

    return wait


@pytest_twisted.ensureDeferred
async def test_a_handler_learns_who_closed(serve):
    ended: queue.Queue[WebSocketDisconnectedError | Exception] = queue.Queue()
    wait = waiting_route(ended)

    @route("/twice", methods=["WEBSOCKET"])
    def twice(request: WebSocketRequest):
        request.accept()
        try:
            request.accept()
        except ValueError as error:
            ended.put(error)

    server = serve(wait, twice)

    def peer_closes():
        ws = wsclient.create_connection(server.ws("/wait"), timeout=10)
        ws.close(status=4001, reason=b"done")

    await in_thread(peer_closes)
    error = ended.get(timeout=10)
    if server.kind == "hypercorn":  # it reports a close the peer started as 1006, without its code
        assert (error.code, error.received, error.closed_by) == (1006, None, None)
    else:
        assert (error.code, error.reason, error.closed_by) == (4001, "done", "peer")
        assert error.received == Close(4001, "done")

    def peer_closes_without_a_code():  # as websocat does at the end of its input
        ws = wsclient.create_connection(server.ws("/wait"), timeout=10)
        ws.send(b"", opcode=wsclient.ABNF.OPCODE_CLOSE)
        reply = ws.recv_frame()
        ws.shutdown()
        return reply.opcode

    assert await in_thread(peer_closes_without_a_code) == wsclient.ABNF.OPCODE_CLOSE
    error = ended.get(timeout=10)
    if server.kind == "hypercorn":
        assert (error.code, error.received, error.closed_by) == (1006, None, None)
    else:  # RFC 6455 7.1.5: a close frame without a status code is reported as 1005
        assert (error.code, error.reason, error.closed_by) == (1005, None, "peer")
        assert error.received == Close(CloseCode.NO_STATUS_RCVD)

    def accept_twice():
        ws = wsclient.create_connection(server.ws("/twice"), timeout=10)
        ws.close()

    await in_thread(accept_twice)
    assert isinstance(ended.get(timeout=10), WebSocketStateError)


@pytest_twisted.ensureDeferred
async def test_after_the_loop_ends_receive_says_how_the_connection_ended(serve):
    ended: queue.Queue[tuple[list[object], WebSocketDisconnectedError]] = queue.Queue()

    @route("/loop", methods=["WEBSOCKET"])
    def loop(request: WebSocketRequest):
        with request.accept() as websocket:
            messages = list(websocket)
            try:
                websocket.receive()
            except WebSocketDisconnectedError as error:
                ended.put((messages, error))

    server = serve(loop)

    def peer_sends_then_closes():
        ws = wsclient.create_connection(server.ws("/loop"), timeout=10)
        ws.send("one")
        ws.close(status=4002, reason=b"enough")

    await in_thread(peer_sends_then_closes)
    messages, error = ended.get(timeout=10)
    assert messages == ["one"]
    if server.kind == "hypercorn":  # it reports a close the peer started as 1006, without its code
        assert (error.code, error.closed_by) == (1006, None)
    else:
        assert (error.code, error.reason, error.closed_by) == (4002, "enough", "peer")


@pytest.mark.servers("twisted", reason="an ASGI server answers an invalid close frame itself")
@pytest_twisted.ensureDeferred
async def test_an_invalid_close_frame_is_answered_with_a_close_that_says_why_before_the_connection_ends(serve):
    # the server sent its close, then took the peer's invalid one for the reply to it and reset the TCP
    # connection, dropping its close unsent: the peer saw ECONNRESET and never learnt what it did wrong
    ended: queue.Queue[WebSocketDisconnectedError | Exception] = queue.Queue()
    wait = waiting_route(ended)

    server = serve(wait)

    def close_with(payload: bytes) -> tuple[int, bytes, bytes]:
        ws = wsclient.create_connection(server.ws("/wait"), timeout=10)
        ws.send(payload, opcode=wsclient.ABNF.OPCODE_CLOSE)
        reply = ws.recv_frame()
        assert reply.opcode == wsclient.ABNF.OPCODE_CLOSE
        after = ws.sock.recv(1)  # the end of the connection, not a reset
        ws.sock.close()
        return int.from_bytes(reply.data[:2], "big"), reply.data[2:], after

    assert await in_thread(close_with, (999).to_bytes(2, "big")) == (1002, b"invalid close code 999", b"")
    error = ended.get(timeout=10)
    # the server closed, and the peer's close frame was no valid reply
    assert (error.closed_by, error.sent, error.received) == ("server", Close(1002, "invalid close code 999"), None)
    assert await in_thread(close_with, (1000).to_bytes(2, "big") + b"\xff") == (
        1007,
        b"invalid close reason (non-UTF8 payload)",
        b"",
    )
    assert ended.get(timeout=10).sent == Close(1007, "invalid close reason (non-UTF8 payload)")


@pytest.mark.servers("twisted", reason="an ASGI server answers an invalid close frame itself")
@pytest_twisted.ensureDeferred
async def test_an_invalid_reply_to_the_server_s_close_is_no_close_received_and_no_warning(serve):
    # the server's close was answered with a close no endpoint may send: the handler was told the peer
    # replied 1000, a code it never sent, and Autobahn's drop that followed was a warning any client could
    # raise at will
    ended: queue.Queue[WebSocketDisconnectedError] = queue.Queue()

    @route("/closes", methods=["WEBSOCKET"])
    def closes(request: WebSocketRequest):
        with request.accept() as websocket:
            websocket.close(4000, "bye")
            try:
                websocket.receive()
            except WebSocketDisconnectedError as error:
                ended.put(error)

    server = serve(closes)

    def reply_with(payload: bytes) -> tuple[int, bytes]:
        ws = wsclient.create_connection(server.ws("/closes"), timeout=10)
        close = ws.recv_frame()
        assert close.opcode == wsclient.ABNF.OPCODE_CLOSE
        ws.send(payload, opcode=wsclient.ABNF.OPCODE_CLOSE)
        after = ws.sock.recv(1)  # the end of the connection, not a reset
        ws.sock.close()
        return int.from_bytes(close.data[:2], "big"), after

    warnings: list[str] = []

    def observe(event: dict) -> None:
        if event.get("log_level", LogLevel.info) >= LogLevel.warn:
            warnings.append(formatEvent(event))

    globalLogPublisher.addObserver(observe)
    try:
        assert await in_thread(reply_with, (999).to_bytes(2, "big")) == (4000, b"")
        error = ended.get(timeout=10)
        assert (error.code, error.closed_by, error.sent, error.received) == (1006, "server", Close(4000, "bye"), None)
        assert await in_thread(reply_with, (1000).to_bytes(2, "big") + b"\xff") == (4000, b"")
        error = ended.get(timeout=10)
        assert (error.code, error.closed_by, error.received) == (1006, "server", None)
    finally:
        globalLogPublisher.removeObserver(observe)
    assert warnings == []


@pytest.mark.servers("twisted", reason="an ASGI server parses the frames itself")
@pytest_twisted.ensureDeferred
async def test_a_compressed_message_inside_a_fragmented_one_fails_the_connection(serve):
    # the fragments of one message must not be interleaved with another's (RFC 6455, 5.4), and
    # permessage-deflate allows no interleaving (RFC 7692). Before, a compressed message (RSV1 set) that
    # came between an uncompressed message's fragments went to Autobahn's parser, which knew nothing of the
    # message rolo's parser was gathering: both were delivered, the compressed one first
    @route("/echo", methods=["WEBSOCKET"])
    def echo(request: WebSocketRequest):
        with request.accept() as websocket:
            for message in websocket:
                websocket.send(message)

    server = serve(echo)

    def interleave() -> bytes:
        sock = open_websocket(("127.0.0.1", server.port), "/echo", "permessage-deflate")
        try:
            sock.sendall(
                client_frame(Opcode.TEXT, b"ab", fin=False)
                + client_frame(Opcode.TEXT, deflated(b"zipped"), compressed=True)
                + client_frame(Opcode.CONTINUATION, b"cd")
            )
            received = b""
            while chunk := sock.recv(65536):
                received += chunk
            return received
        finally:
            sock.close()

    received = await in_thread(interleave)
    # the server's close frame alone, with 1002 (protocol error), and no message
    assert received[0] == 0x88, received
    assert int.from_bytes(received[2:4], "big") == CloseCode.PROTOCOL_ERROR, received
