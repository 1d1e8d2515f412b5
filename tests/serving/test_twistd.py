"""``twistd rolo`` as its users run it: a real twistd process, real clients, real signals."""

from __future__ import annotations

import signal
import socket
import ssl
import subprocess
import threading
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import pytest
import websocket as wsclient

from rolo.serving.twisted.tap import Options
from tests.helpers import self_signed_certificate

from .twistd import REPO, Twistd, twistd_command

LOOPBACK = "tcp:0:interface=127.0.0.1"


@pytest.fixture
def twistd() -> Iterator[Callable[..., Twistd]]:
    """``twistd(*args)`` starts ``twistd -n rolo *args``; a process the test left running is killed."""
    started: list[Twistd] = []

    def start(*args: str) -> Twistd:
        process = Twistd(*args)
        started.append(process)
        return process

    yield start
    for process in started:
        process.kill()


def close_frame(ws: wsclient.WebSocket) -> tuple[int, bytes]:
    """Read until the peer's close frame: its status code and reason."""
    while True:
        opcode, frame = ws.recv_data_frame(control_frame=True)
        if opcode == wsclient.ABNF.OPCODE_CLOSE:
            return int.from_bytes(frame.data[:2], "big"), frame.data[2:]


def test_twistd_help_lists_rolo():
    result = subprocess.run([twistd_command(), "--help"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0
    assert any(line.split()[:1] == ["rolo"] for line in result.stdout.splitlines()), result.stdout


def test_serves_http_and_websockets_and_logs_each(twistd):
    server = twistd("--app", "tests.serving.apps:router", "--listen", LOOPBACK)
    port = server.port()

    with urllib.request.urlopen(f"http://127.0.0.1:{port}/hello/bob", timeout=10) as response:
        assert (response.status, response.read()) == (200, b"hello bob")
    ws = wsclient.create_connection(f"ws://127.0.0.1:{port}/echo/alice", timeout=10)
    assert ws.recv() == "thanks for connecting alice"
    ws.send("hi")
    assert ws.recv() == "echo: hi"
    ws.close()

    server.wait_for(r"GET /hello/bob from tcp4:127\.0\.0\.1:\d+: 200 in \d+\.\d{3}s")
    server.wait_for(r"WebSocket open /echo/alice from tcp4:127\.0\.0\.1:\d+")
    server.wait_for(
        r"WebSocket closed by the peer /echo/alice from tcp4:127\.0\.0\.1:\d+: code 1000 after \d+\.\d{3}s"
    )
    assert server.stop() == 0
    # one line per request: Twisted Web's own access log stays off
    assert sum("/hello/bob" in line for line in server.lines) == 1


def test_app_may_be_a_gateway_factory_and_listen_repeats(twistd, tmp_path):
    path = tmp_path / "rolo.sock"
    server = twistd("--app", "tests.serving.apps:make_gateway", "--listen", LOOPBACK, "--listen", f"unix:{path}")
    port = server.port()
    server.wait_for(rf"rolo listening at unix:{path}")
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/hello/tcp", timeout=10) as response:
        assert response.read() == b"hello tcp"
    with socket.socket(socket.AF_UNIX) as client:
        client.settimeout(10)
        client.connect(str(path))
        client.sendall(b"GET /hello/unix HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        reply = b"".join(iter(lambda: client.recv(4096), b""))
    assert reply.startswith(b"HTTP/1.1 200 ") and reply.endswith(b"hello unix")
    assert server.stop() == 0


@contextmanager
def sigint_ignored() -> Iterator[None]:
    """Meanwhile this process ignores SIGINT, as a command that a shell without job control (a script, a
    CI runner) starts in the background does: the processes it starts inherit that."""
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_signal_closes_websockets_with_1001_and_exits_0(twistd, signum):
    # whether the test run ignores SIGINT or not (./dev test &), twistd starts with its default action, as
    # at a terminal; it ignored SIGINT, and the reader below got no close frame in 10 s, when it inherited
    with sigint_ignored():
        server = twistd("--app", "tests.serving.apps:router", "--listen", LOOPBACK, "--grace-period", "5")
    port = server.port()
    ws = wsclient.create_connection(f"ws://127.0.0.1:{port}/echo/carol", timeout=10)
    assert ws.recv() == "thanks for connecting carol"

    closed: list[tuple[int, bytes]] = []
    reader = threading.Thread(target=lambda: closed.append(close_frame(ws)))
    reader.start()
    server.process.send_signal(signum)
    reader.join(10)
    assert closed == [(1001, b"server shutting down")]
    ws.close()  # answer the close, as a client does

    assert server.wait(timeout=5) == 0
    assert "Traceback" not in server.output
    server.wait_for(r"WebSocket closed by the server /echo/carol from tcp4:127\.0\.0\.1:\d+: code 1001")


def test_a_handler_that_never_returns_does_not_outlive_the_grace_period(twistd):
    server = twistd("--app", "tests.serving.apps:router", "--listen", LOOPBACK, "--grace-period", "0.5")
    port = server.port()
    ws = wsclient.create_connection(f"ws://127.0.0.1:{port}/stuck", timeout=10)
    assert ws.recv() == "stuck"

    server.process.send_signal(signal.SIGTERM)
    assert close_frame(ws)[0] == 1001
    ws.close()
    # the bound: the grace period, plus the time a process takes to wind down
    assert server.wait(timeout=10) == 0
    server.wait_for(r"1 WebSocket and 0 HTTP handlers still running 0\.5s after shutdown began")
    assert "Traceback" not in server.output


def test_options_reach_the_websocket_settings(twistd):
    server = twistd("--app", "tests.serving.apps:router", "--listen", LOOPBACK, "--max-connections", "1")
    port = server.port()
    first = wsclient.create_connection(f"ws://127.0.0.1:{port}/echo/one", timeout=10)
    assert first.recv() == "thanks for connecting one"
    with pytest.raises(wsclient.WebSocketBadStatusException) as refused:
        wsclient.create_connection(f"ws://127.0.0.1:{port}/echo/two", timeout=10)
    assert refused.value.status_code == 503
    first.close()
    assert server.stop() == 0


def test_options_parse_into_settings():
    options = Options()
    options.parseOptions(
        ["--app", "m:a", "-l", "tcp:1", "--listen", "unix:/s", "--max-message-size", "10", "--ping-interval",
         "0", "--http-threads", "4", "--no-compression", "--allowed-origin", "https://*.example.com",
         "--header-timeout", "0"]
    )
    assert options["listen"] == ["tcp:1", "unix:/s"]
    settings = options.settings()
    assert settings["max_message_size"] == 10
    assert settings["ping_interval"] == 0.0
    assert settings["http_threads"] == 4
    assert settings["compression"] is False
    assert settings["allowed_origins"] == ["https://*.example.com"]
    assert settings["header_timeout"] is None

    defaults = Options()
    defaults.parseOptions(["--app", "m:a"])
    assert defaults["listen"] == ["tcp:8000:interface=127.0.0.1"]  # this machine only, unless told
    assert defaults.settings()["allowed_origins"] is None
    assert defaults.settings()["header_timeout"] == 10.0
    assert defaults.settings()["write_timeout"] == 60.0


def one_line_error(*args: str) -> str:
    """Run ``twistd -n rolo *args``, which must fail at once (exit status 1): its whole output, a single line."""
    result = subprocess.run(
        [twistd_command(), "-n", "--pidfile=", "rolo", *args], cwd=REPO, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 1
    output = (result.stdout + result.stderr).strip()
    assert "Traceback" not in output
    assert len(output.splitlines()) == 1, output
    return output


@pytest.mark.parametrize(
    "app, message",
    [
        ("tests.serving.nosuch:router", "cannot import tests.serving.nosuch: ModuleNotFoundError"),
        ("tests.serving.apps:nosuch", "tests.serving.apps has no attribute nosuch"),
        ("tests.serving.apps:not_an_app", "expected a rolo Gateway or Router, got builtins.int"),
        ("tests.serving.apps", "expected package.module:attribute"),
    ],
)
def test_a_bad_app_is_a_one_line_error(app, message):
    output = one_line_error("--app", app)
    assert output.startswith("rolo: --app ")
    assert message in output


@pytest.mark.parametrize(
    "endpoint, message",
    [("tcp:abc", "bad endpoint 'tcp:abc'"), ("nosuch:80", "Unknown endpoint type: 'nosuch'")],
)
def test_a_bad_endpoint_is_a_one_line_error(endpoint, message):
    output = one_line_error("--app", "tests.serving.apps:router", "--listen", endpoint)
    assert output.startswith("rolo: --listen: ")
    assert message in output


@pytest.mark.parametrize("workers", [(), ("--workers", "2")])
def test_a_broker_url_redis_py_cannot_parse_is_a_one_line_error(workers):
    output = one_line_error("--app", "tests.serving.apps:router", "--broker", "redis//localhost", *workers)
    assert output == "rolo: --broker: a broker URL needs the scheme redis://, rediss:// or unix://: it has none"


def test_a_port_in_use_is_a_one_line_error():
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = subprocess.run(
            [twistd_command(), "-n", "--pidfile=", "rolo", "--app", "tests.serving.apps:router",
             "--listen", f"tcp:{port}:interface=127.0.0.1"],
            cwd=REPO, capture_output=True, text=True, timeout=60,
        )
    # twistd has started logging by the time it listens: the error is one line of its log
    assert result.returncode == 1
    output = result.stdout + result.stderr
    assert "Traceback" not in output
    assert next(line for line in output.splitlines() if "rolo:" in line).endswith(
        f"rolo: Couldn't listen on 127.0.0.1:{port}: [Errno 98] Address already in use."
    )


def test_serves_https_and_wss_on_an_ssl_endpoint(twistd, tmp_path):
    key, certificate = self_signed_certificate(tmp_path)
    server = twistd(
        "--app", "tests.serving.apps:router",
        "--listen", f"ssl:0:interface=127.0.0.1:privateKey={key}:certKey={certificate}",
    )
    port = server.port()
    context = ssl.create_default_context(cafile=str(certificate))
    context.check_hostname = False
    with urllib.request.urlopen(f"https://127.0.0.1:{port}/hello/tls", timeout=10, context=context) as response:
        assert response.read() == b"hello tls"
    ws = wsclient.create_connection(
        f"wss://127.0.0.1:{port}/echo/tls", timeout=10, sslopt={"context": context}
    )
    assert ws.recv() == "thanks for connecting tls"
    ws.close()
    assert server.stop() == 0
