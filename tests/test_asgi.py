"""AsgiGateway beyond the WebSocket API: HTTP through each server, the lifespan, and the servers' CLIs."""

from __future__ import annotations

import asyncio
import http.client
import os
import queue
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import urllib.error
import urllib.request
from collections.abc import Callable

import pytest
import pytest_twisted
import websocket as wsclient

from rolo import Request, Response, route
from rolo.gateway.asgi import AsgiGateway
from rolo.websocket import WEBSOCKET_KEY, WebSocketDisconnectedError
from tests.conftest import gateway_for, listening_socket, serve_asgi
from tests.helpers import Signal, in_thread, send_until_unread


@route("/hello/<name>")
def hello(request: Request, name: str):
    return Response(f"hello {name}", headers={"X-Greeting": "yes"})


@route("/upload", methods=["POST"])
def upload(request: Request):
    # read the body in pieces, as a handler streaming it somewhere would
    stream = request.stream
    total = 0
    while chunk := stream.read(65536):
        total += len(chunk)
    return Response(f"{total} bytes")


@route("/stream")
def stream(request: Request):
    return Response((f"part {i}\n".encode() for i in range(1000)), mimetype="text/plain")


@route("/broken")
def broken(request: Request):
    raise RuntimeError("broken handler")


@pytest_twisted.ensureDeferred
async def test_http_through_the_server(serve):
    server = serve(hello, upload, stream, broken)

    def client():
        results = {}
        with urllib.request.urlopen(server.http("/hello/alice"), timeout=10) as response:
            results["hello"] = (response.status, response.headers["X-Greeting"], response.read())

        # a chunked upload of 4 MiB, more than any buffer on the way holds
        connection = http.client.HTTPConnection(server.host, server.port, timeout=10)
        body = (b"x" * 65536 for _ in range(64))
        connection.request("POST", "/upload", body=body, encode_chunked=True)
        response = connection.getresponse()
        results["upload"] = (response.status, response.read())

        connection.request("GET", "/stream")
        response = connection.getresponse()
        results["stream"] = response.read().splitlines()
        connection.close()

        for path in ("/broken", "/nowhere"):
            with pytest.raises(urllib.error.HTTPError) as info:
                urllib.request.urlopen(server.http(path), timeout=10)
            results[path] = info.value.code
        return results

    results = await in_thread(client)
    assert results["hello"] == (200, "yes", b"hello alice")
    assert results["upload"] == (200, b"4194304 bytes")
    assert results["stream"] == [f"part {i}".encode() for i in range(1000)]
    assert (results["/broken"], results["/nowhere"]) == (500, 404)


@pytest.mark.servers("hypercorn", "uvicorn", reason="Twisted Web reads the whole body before a handler runs")
@pytest_twisted.ensureDeferred
async def test_request_body_is_received_only_as_fast_as_the_handler_reads(serve):
    arrived, release = Signal(), Signal()

    @route("/slow-upload", methods=["POST"])
    def slow_upload(request: Request):
        arrived.set()
        release.wait()
        total = 0
        while chunk := request.stream.read(65536):
            total += len(chunk)
        return Response(str(total))

    server = serve(slow_upload)
    chunk = b"%x\r\n%s\r\n" % (65536, b"x" * 65536)
    limit = 1024  # 64 MiB: far more than the buffers on the way hold

    def client():
        sock = socket.create_connection((server.host, server.port))
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 65536)
        sock.sendall(b"POST /slow-upload HTTP/1.1\r\nHost: test\r\nTransfer-Encoding: chunked\r\n\r\n")
        arrived.wait()
        started = 0

        def chunks():
            nonlocal started
            while started < limit:
                started += 1  # counted once it starts going out: the rest of it follows the release
                yield chunk

        _, pending = send_until_unread(sock, chunks())  # until the server stopped reading
        release.set()
        sock.settimeout(10)
        sock.sendall(pending)
        sock.sendall(b"0\r\n\r\n")
        response = http.client.HTTPResponse(sock)
        response.begin()
        body = response.read()
        sock.close()
        return started, int(body)

    started, received = await in_thread(client)
    assert started < limit, "the client could send without bound"
    assert received == started * 65536


def test_a_request_without_a_body_that_waits_for_a_thread_is_dropped_if_its_client_leaves():
    """Driven through the ASGI interface itself, which orders the client's leaving before the release of
    the only thread: a GET waiting for it is watched for its client leaving, and then never runs."""
    holding, release, runs = threading.Event(), threading.Event(), []

    @route("/hold")
    def hold(request: Request):
        holding.set()
        assert release.wait(10)
        return "held"

    @route("/fast")
    def fast(request: Request):
        runs.append(request.path)
        return "fast"

    app = AsgiGateway(gateway_for(hold, fast), http_threads=1)

    def scope(path: str) -> dict:
        return {"type": "http", "http_version": "1.1", "method": "GET", "scheme": "http", "path": path,
                "raw_path": path.encode(), "query_string": b"", "root_path": "", "headers": [(b"host", b"test")]}

    async def scenario() -> list:
        loop = asyncio.get_running_loop()
        leave, told = asyncio.Event(), asyncio.Event()
        messages = [{"type": "http.request", "body": b"", "more_body": False}]

        async def receive() -> dict:
            if messages:
                return messages.pop()
            await leave.wait()
            told.set()  # runs before whoever awaits it: once it is awaited, the receiver has the message
            return {"type": "http.disconnect"}

        sent: list = []

        async def send(message: dict) -> None:
            sent.append(message)

        async def never_leaves() -> dict:
            return await loop.create_future()

        holder = loop.create_task(app(scope("/hold"), never_leaves, send))
        await loop.run_in_executor(None, holding.wait, 10)
        waiter = loop.create_task(app(scope("/fast"), receive, send))
        await asyncio.sleep(0)  # lets the task start: it submits its job at once, and the job waits
        assert app.http.pool.waiting == 1
        leave.set()
        await asyncio.wait_for(told.wait(), 10)
        release.set()
        await asyncio.wait_for(asyncio.gather(holder, waiter), 10)
        app.http.shutdown()
        return [message.get("body") for message in sent]

    assert asyncio.run(scenario()) == [None, b"held"]  # the holder's start and body; nothing for /fast
    assert runs == []


def test_one_application_answers_http_on_one_event_loop_after_another():
    """The pool's threads hand each result to the loop that awaits it, whichever loop served the last
    request (a test suite, or a program that runs the application under ``asyncio.run`` more than once)."""

    @route("/hello")
    def hello(request: Request):
        return "hello"

    app = AsgiGateway(gateway_for(hello))
    scope = {"type": "http", "http_version": "1.1", "method": "GET", "scheme": "http", "path": "/hello",
             "raw_path": b"/hello", "query_string": b"", "root_path": "", "headers": [(b"host", b"test")]}

    async def get() -> list:
        sent: list = []

        async def receive() -> dict:
            return {"type": "http.request", "body": b"", "more_body": False}

        async def send(message: dict) -> None:
            sent.append(message)

        await asyncio.wait_for(app(dict(scope), receive, send), 10)
        return [message.get("status", message.get("body")) for message in sent]

    try:
        for _ in range(3):  # each on a new loop; the one before is closed
            assert asyncio.run(get()) == [200, b"hello"]
    finally:
        app.http.shutdown()


@route("/echo", methods=["WEBSOCKET"])
def echo(request):
    with request.accept() as ws:
        for message in ws:
            ws.send(message)


@pytest.mark.parametrize("kind", ["hypercorn", "uvicorn"])
def test_one_application_serves_again_after_its_server_stopped(kind):
    """The same application object served, stopped (with its lifespan's shutdown), and served again, each
    time on a new event loop (a process that restarts its server in place): both times it answers HTTP and
    echoes on a WebSocket.

    The first time, a handler outlives its server: it returns (closing its WebSocket) only once that
    server's loop is closed. Before, its calls to the closed loop left the calls of every later handler
    waiting for that loop for good, the second server never accepted a WebSocket, and the lifespan's
    shutdown had left the handler threads stopped: a 503 before that."""
    lingering, release = Signal(), Signal()

    @route("/hello")
    def hello(request: Request):
        return "hello"

    @route("/linger", methods=["WEBSOCKET"])
    def linger(request):
        with request.accept() as ws:
            lingering.set()
            with pytest.raises(WebSocketDisconnectedError):
                ws.receive()
            release.wait()

    app = AsgiGateway(gateway_for(hello, echo, linger), grace_period=0.5)
    # how long the server waits for the lingering connection's task before it cancels it, in seconds
    graceful = {"uvicorn": {"timeout_graceful_shutdown": 0.5}, "hypercorn": {"graceful_timeout": 0.5}}[kind]
    for round in ("first", "second"):
        sock, stop = serve_asgi(kind, app, graceful)
        host, port = sock.getsockname()
        try:
            with urllib.request.urlopen(f"http://{host}:{port}/hello", timeout=10) as response:
                assert response.read() == b"hello", round
            ws = wsclient.create_connection(f"ws://{host}:{port}/echo", timeout=10)
            ws.send(round)
            assert ws.recv() == round
            ws.close()
            if round == "first":
                staying = wsclient.create_connection(f"ws://{host}:{port}/linger", timeout=10)
                lingering.wait()
                pool = app.websocket.host.pool
        finally:
            stop()
        if round == "first":
            release.set()  # the loop is closed: the handler closes its WebSocket and returns
            assert pool.join(10)
            staying.close()
    # the second server counted its own handlers, from none: the one that returned late is not among them
    assert app.websocket.host.handlers.running == 0


@pytest.mark.parametrize("kind", ["hypercorn", "uvicorn"])
def test_a_shutdown_without_a_grace_period_warns_of_no_handler_when_none_runs(kind, caplog):
    # asyncio.wait_for with no time at all times out even on an event that is set: the shutdown used to
    # warn that 0 handlers were still running
    app = AsgiGateway(gateway_for(hello), grace_period=0)
    sock, stop = serve_asgi(kind, app, {})
    host, port = sock.getsockname()
    with urllib.request.urlopen(f"http://{host}:{port}/hello/alice", timeout=10) as response:
        assert response.read() == b"hello alice"
    stop()
    assert not app.websocket.host.accepting  # the shutdown ran
    assert "still running" not in caplog.text


@pytest.mark.parametrize("kind", ["hypercorn", "uvicorn"])
def test_a_shutdown_drops_a_client_that_does_not_answer_its_close_within_the_grace_period(kind, caplog):
    # close_timeout and grace_period alike, as by default: the close ran out as the grace period did, and
    # the handler, woken only then, was reported as still running
    from tests.serving.test_embed import open_without_answering_closes

    app = AsgiGateway(gateway_for(echo), grace_period=2, close_timeout=2)
    loops: list[asyncio.AbstractEventLoop] = []

    async def recording(scope, receive, send):
        loops.append(asyncio.get_running_loop())
        await app(scope, receive, send)

    sock, stop = serve_asgi(kind, recording, {})  # type: ignore[arg-type]
    client = open_without_answering_closes(sock.getsockname()[1], "/echo")
    try:
        asyncio.run_coroutine_threadsafe(app.shutdown(), loops[0]).result(10)
        assert app.websocket.host.handlers.running == 0
        assert "still running" not in caplog.text
    finally:
        client.close()
        stop()


def _serve_recording_loop(kind: str, app: AsgiGateway) -> tuple[str, int, list, Callable[[], None]]:
    """Serve ``app`` under ``kind``: its host and port, a list that gets the server's loop with the first
    request, and the server's stop."""
    loops: list[asyncio.AbstractEventLoop] = []

    async def recording(scope, receive, send):
        loops.append(asyncio.get_running_loop())
        await app(scope, receive, send)

    sock, stop = serve_asgi(kind, recording, {})  # type: ignore[arg-type]
    host, port = sock.getsockname()
    return host, port, loops, stop


@pytest.mark.parametrize("kind", ["hypercorn", "uvicorn"])
def test_a_request_after_the_shutdown_is_answered_503_and_starts_no_threads(kind):
    """Once the application was shut down, a request on a connection kept alive from before is answered 503
    and the connection closed, as Twisted's server does; no handler thread is started for it, which nothing
    would stop. Before, it ran in a new pool of threads that outlived the shutdown."""
    app = AsgiGateway(gateway_for(hello))
    host, port, loops, stop = _serve_recording_loop(kind, app)
    connection = http.client.HTTPConnection(host, port, timeout=10)
    try:
        connection.request("GET", "/hello/alice")
        assert connection.getresponse().read() == b"hello alice"
        pool = app.http.pool
        asyncio.run_coroutine_threadsafe(app.shutdown(), loops[0]).result(10)
        connection.request("GET", "/hello/bob")
        response = connection.getresponse()
        assert (response.status, response.read()) == (503, b"server shutting down\n")
        assert response.getheader("Connection") == "close"
        assert app.http.pool is None
        assert pool is not None and pool.join(10)
    finally:
        connection.close()
        stop()


@pytest.mark.parametrize("kind", ["hypercorn", "uvicorn"])
def test_a_streamed_response_going_out_at_the_shutdown_is_cut(kind, caplog):
    """The rest of a streamed body is not taken once the application was shut down: the connection is cut
    (the client sees the body incomplete) and the cut logged. Before, its next chunk started a new pool of
    threads that outlived the shutdown."""
    release = Signal()

    @route("/stream")
    def stream(request: Request):
        def chunks():
            yield b"first"
            release.wait()
            yield b"second"
            yield b"third"

        return Response(chunks())

    app = AsgiGateway(gateway_for(stream))
    host, port, loops, stop = _serve_recording_loop(kind, app)
    connection = http.client.HTTPConnection(host, port, timeout=10)
    try:
        connection.request("GET", "/stream")
        response = connection.getresponse()
        assert response.read(5) == b"first"  # the iteration now waits for the release, in the pool's thread
        pool = app.http.pool
        asyncio.run_coroutine_threadsafe(app.shutdown(), loops[0]).result(10)
        release.set()
        with pytest.raises(http.client.IncompleteRead):
            response.read()
        assert app.http.pool is None
        assert pool is not None and pool.join(10)
        assert "server shutting down: the rest of the response to /stream cut" in caplog.text
    finally:
        connection.close()
        stop()


class Listener:
    def __init__(self) -> None:
        self.events: queue.Queue[str] = queue.Queue()

    def on_startup(self) -> None:
        self.events.put("startup")

    def on_shutdown(self) -> None:
        self.events.put("shutdown")


@pytest.mark.servers("hypercorn", "uvicorn", reason="the lifespan is ASGI's")
@pytest_twisted.ensureDeferred
async def test_lifespan_starts_and_stops_the_application(serve):
    listener = Listener()
    opened, ended = Signal(), queue.Queue()

    @route("/stay", methods=["WEBSOCKET"])
    def stay(request):
        with request.accept() as ws:
            opened.set()
            try:
                ws.receive()
            except WebSocketDisconnectedError as error:
                ended.put(error.code)

    server = serve(echo, hello, stay, lifespan_listener=listener)

    def client():
        assert listener.events.get(timeout=10) == "startup"
        ws = wsclient.create_connection(server.ws("/echo"), timeout=10)
        ws.send("hi")
        echoed = ws.recv()
        ws.close()
        with urllib.request.urlopen(server.http("/hello/bob"), timeout=10) as response:
            greeting = response.read()
        staying = wsclient.create_connection(server.ws("/stay"), timeout=10)
        opened.wait()
        server.stop()  # with a WebSocket still open: its handler is told, and the server stops
        staying.shutdown()
        return echoed, greeting, ended.get(timeout=10), listener.events.get(timeout=10)

    echoed, greeting, code, last_event = await in_thread(client)
    assert (echoed, greeting, last_event) == ("hi", b"hello bob", "shutdown")
    # uvicorn closes open WebSockets itself with 1012 (service restart) before the lifespan shutdown;
    # hypercorn cancels the application after its graceful timeout, which drops the connection
    assert code == {"uvicorn": 1012, "hypercorn": 1006}[server.kind]
    # the HTTP pool is gone, and new WebSockets would be refused until the next startup
    assert server.app.http._pool is None
    assert not server.app.websocket.host.accepting



# uvicorn's own parser (websockets') keeps each connection's last frame until the next one
@pytest.mark.servers("hypercorn", reason="a server that keeps no message it handed over")
@pytest_twisted.ensureDeferred
async def test_a_message_its_handler_took_is_held_by_the_handler_alone(serve):
    """The reader used to keep each connection's last ASGI event until the next message came, so an idle
    connection held the last message it received (1 MiB here; up to ``max_message_size``) after its
    handler was done with it."""

    @route("/holders", methods=["WEBSOCKET"])
    def holders(request):
        adapter = request.environ[WEBSOCKET_KEY]
        with request.accept() as ws:
            data = ws.receive()
            # the reader hands a message over from within its step on the loop, and lets go of it as the step
            # ends: once a call of ours has run on the loop after it, the reader waits for the next message
            reader_moved_on = threading.Event()
            adapter._call_in_loop(reader_moved_on.set)
            assert reader_moved_on.wait(10)
            ws.send(str(sys.getrefcount(data) - 1))  # less getrefcount's own argument
            for _ in ws:
                pass

    server = serve(holders)

    def client():
        ws = wsclient.create_connection(server.ws("/holders"), timeout=10)
        try:
            ws.send_binary(b"x" * 1024 * 1024)
            return ws.recv()
        finally:
            ws.close()

    assert await in_thread(client) == "1"  # the handler's own name for it


APP_MODULE = """
from rolo import Response, Router, route
from rolo.gateway import Gateway
from rolo.gateway.asgi import AsgiGateway
from rolo.gateway.handlers import RouterHandler


@route("/hello")
def hello(request):
    return Response("hello")


@route("/echo/<name>", methods=["WEBSOCKET"])
def echo(request, name: str):
    with request.accept() as websocket:
        websocket.send(f"thanks for connecting {name}")
        for line in websocket:
            websocket.send(f"echo: {line}")


class Lifespan:
    def on_startup(self):
        print("lifespan startup", flush=True)

    def on_shutdown(self):
        print("lifespan shutdown", flush=True)


router = Router()
router.add([hello, echo])
app = AsgiGateway(Gateway(request_handlers=[RouterHandler(router, respond_not_found=True)]),
                  lifespan_listener=Lifespan())
"""


@pytest.mark.parametrize("kind", ["hypercorn", "uvicorn"])
def test_module_level_app_runs_under_the_server_cli(kind, tmp_path):
    """``app = AsgiGateway(gateway)`` at import time, then the server's own command: the way a user runs it."""
    (tmp_path / "myapp.py").write_text(textwrap.dedent(APP_MODULE))
    sock = listening_socket()
    fd = sock.fileno()
    command = {
        "hypercorn": [sys.executable, "-m", "hypercorn", "--bind", f"fd://{fd}", "myapp:app"],
        "uvicorn": [sys.executable, "-m", "uvicorn", "--fd", str(fd), "myapp:app"],
    }[kind]
    process = subprocess.Popen(
        command,
        cwd=tmp_path,
        pass_fds=[fd],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env={**os.environ, "PYTHONPATH": str(tmp_path)},
    )
    host, port = sock.getsockname()
    try:
        with urllib.request.urlopen(f"http://{host}:{port}/hello", timeout=10) as response:
            assert response.read() == b"hello"
        ws = wsclient.create_connection(f"ws://{host}:{port}/echo/alice", timeout=10)
        assert ws.recv() == "thanks for connecting alice"
        ws.send("hi")
        assert ws.recv() == "echo: hi"
        ws.close()
    finally:
        process.send_signal(signal.SIGINT)
        output, _ = process.communicate(timeout=20)
        sock.close()
    text = output.decode()
    assert "lifespan startup" in text and "lifespan shutdown" in text, text
    assert "Traceback" not in text, text
