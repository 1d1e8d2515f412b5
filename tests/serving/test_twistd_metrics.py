"""``twistd rolo --metrics ENDPOINT``: Prometheus metrics on a port of their own, end to end; and rolo without
prometheus-client."""

from __future__ import annotations

import socket
import subprocess
import sys
import urllib.request

import pytest
import websocket as wsclient

from rolo.serving.twisted.metrics import metrics_endpoint
from rolo.serving.twisted.tap import Options
from tests.test_metrics import samples

from .test_twistd import twistd  # noqa: F401 (the fixture)
from .twistd import REPO

LOOPBACK = "tcp:0:interface=127.0.0.1"

# twistd, as its script runs it, in an interpreter where prometheus-client cannot be imported
_WITHOUT_PROMETHEUS = (
    "import sys; sys.modules['prometheus_client'] = None; "
    "from twisted.scripts.twistd import run; sys.argv[0] = 'twistd'; run()"
)


def test_twistd_serves_the_metrics_on_the_loopback_interface_of_their_port(twistd):  # noqa: F811 (the fixture)
    server = twistd("--app", "tests.serving.apps:router", "--listen", LOOPBACK, "--metrics", "tcp:0")
    port = server.port()
    line = server.wait_for(r"rolo metrics at 127\.0\.0\.1:(\d+) \(tcp:0:interface=127\.0\.0\.1\): this machine only")
    metrics_port = int(line.group(1))
    assert metrics_port != port

    with urllib.request.urlopen(f"http://127.0.0.1:{port}/hello/bob", timeout=10) as response:
        assert response.read() == b"hello bob"
    ws = wsclient.create_connection(f"ws://127.0.0.1:{port}/echo/alice", timeout=10)
    assert ws.recv() == "thanks for connecting alice"
    ws.send("hi")
    assert ws.recv() == "echo: hi"
    ws.close()
    server.wait_for(r"WebSocket closed by the peer /echo/alice")  # logged once the server counted it

    with urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=10) as response:
        found = samples(response.read().decode())
    assert found[("rolo_http_requests_total", (("status", "200"),))] == 1
    assert found[("rolo_websocket_upgrades_total", (("status", "101"),))] == 1
    assert found[("rolo_websocket_messages_received_total", ())] == 1
    assert found[("rolo_websocket_messages_sent_total", ())] == 2
    assert found[("rolo_websocket_closes_total", (("by", "peer"), ("code", "1000")))] == 1
    assert found[("process_cpu_seconds_total", ())] > 0  # prometheus-client's default registry, as it is
    assert server.stop() == 0
    assert not any("GET /metrics" in line for line in server.lines), server.output  # scrapes are not logged


def refused_status(port: int, request: bytes) -> int:
    """Send ``request`` on a connection of its own: the status the server answers before it closes."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as client:
        client.sendall(request)
        answer = b""
        while chunk := client.recv(65536):
            answer += chunk
    return int(answer.split(b" ", 2)[1])


def test_a_request_refused_before_its_handler_is_counted_and_logged_as_a_response_is(twistd):  # noqa: F811
    # 408 and 413 were written as bytes, neither logged nor counted in rolo_http_requests
    server = twistd(
        "--app", "tests.serving.apps:router", "--listen", LOOPBACK, "--metrics", "tcp:0",
        "--max-body-size", "10", "--body-timeout", "1", "--header-timeout", "1",
    )  # fmt: skip
    port = server.port()
    metrics_port = int(server.wait_for(r"rolo metrics at 127\.0\.0\.1:(\d+)").group(1))
    head = b"POST /hello/bob?x=1 HTTP/1.1\r\nHost: 127.0.0.1\r\n"

    assert refused_status(port, head + b"Content-Length: 11\r\n\r\n" + bytes(11)) == 413
    server.wait_for(
        r"POST /hello/bob from tcp4:127\.0\.0\.1:\d+: 413 in \d+\.\d{3}s \(Content-Length over max_body_size\)$"
    )
    chunked = b"Transfer-Encoding: chunked\r\n\r\n8\r\n12345678\r\n8\r\n12345678\r\n"
    assert refused_status(port, head + chunked) == 413
    server.wait_for(r"POST /hello/bob from tcp4:127\.0\.0\.1:\d+: 413 in \d+\.\d{3}s \(body over max_body_size\)$")
    assert refused_status(port, head + b"Content-Length: 5\r\n\r\n") == 408  # the body never comes
    server.wait_for(
        r"POST /hello/bob from tcp4:127\.0\.0\.1:\d+: 408 in \d+\.\d{3}s \(body not received within body_timeout\)$"
    )
    assert refused_status(port, b"GET /hello/b") == 408  # no request line: no method or path to log
    server.wait_for(
        r"- - from tcp4:127\.0\.0\.1:\d+: 408 in \d+\.\d{3}s "
        r"\(request line and headers not received within header_timeout\)$"
    )
    # a connection on which no request began (a browser's preconnect) is closed, neither logged nor counted
    # (28aed49 gave each one a '- - from ...: 408' line and a count: 2 lines and 3 counts here, not 1 and 2)
    assert refused_status(port, b"") == 408

    with urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=10) as response:
        found = samples(response.read().decode())
    assert found[("rolo_http_requests_total", (("status", "413"),))] == 2
    assert found[("rolo_http_requests_total", (("status", "408"),))] == 2
    assert found[("rolo_http_request_duration_seconds_count", ())] == 4
    assert server.stop() == 0
    assert sum("] - - from " in line for line in server.lines) == 1


def test_a_400_twisted_web_answers_by_itself_is_counted_and_logged_with_its_reason(twistd):  # noqa: F811
    # Twisted Web's parser wrote these 400s itself: no line in the log, nothing in rolo_http_requests
    server = twistd("--app", "tests.serving.apps:router", "--listen", LOOPBACK, "--metrics", "tcp:0")
    port = server.port()
    metrics_port = int(server.wait_for(r"rolo metrics at 127\.0\.0\.1:(\d+)").group(1))
    head = b"POST /hello/bob?x=1 HTTP/1.1\r\nHost: 127.0.0.1\r\n"
    line = r"from tcp4:127\.0\.0\.1:\d+: 400 in \d+\.\d{3}s"
    refusals = [
        (b"GARBAGE\r\n\r\n", rf"- - {line} \(malformed request line\)$"),
        (head + b"NoColon\r\n\r\n", rf"POST /hello/bob {line} \(malformed header, or a bad Content-Length or "),
        (head + b"Content-Length: many\r\n\r\n", rf"POST /hello/bob {line} \(malformed header, or a bad "),
        (
            head + b"".join(b"X-%d: y\r\n" % i for i in range(501)) + b"\r\n",
            rf"POST /hello/bob {line} \(more than 500 headers\)$",
        ),
        (
            head + b"".join(b"X-%d: %s\r\n" % (i, b"y" * 1000) for i in range(20)) + b"\r\n",
            rf"POST /hello/bob {line} \(request line and headers over 16384 bytes\)$",
        ),
        (head + b"Transfer-Encoding: chunked\r\n\r\nzz\r\n", rf"POST /hello/bob {line} \(malformed chunked body\)$"),
    ]
    for request, logged in refusals:
        assert refused_status(port, request) == 400
        server.wait_for(logged)

    with urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=10) as response:
        found = samples(response.read().decode())
    assert found[("rolo_http_requests_total", (("status", "400"),))] == len(refusals)
    assert server.stop() == 0
    assert sum(": 400 in " in line for line in server.lines) == len(refusals)  # one line each


def test_a_400_the_server_answers_without_a_handler_says_why_in_its_line(twistd):  # noqa: F811
    # the response's body said why, the line did not: "GET foo from tcp4:…: 400 in 0.000s"
    server = twistd("--app", "tests.serving.apps:router", "--listen", LOOPBACK)
    port = server.port()
    line = r"from tcp4:127\.0\.0\.1:\d+: 400 in \d+\.\d{3}s"
    refusals = [
        (b"GET foo HTTP/1.1\r\nHost: a\r\n", rf"GET foo {line} \(.*target.*\)$"),
        (
            b"GET /hello/bob HTTP/1.1\r\nHost: a\r\nHost: b\r\n",
            rf"GET /hello/bob {line} \(more than one Host header\)$",
        ),
    ]
    for request, logged in refusals:
        assert refused_status(port, request + b"Connection: close\r\n\r\n") == 400
        server.wait_for(logged)
    assert server.stop() == 0


def test_a_metrics_port_in_use_ends_twistd_with_one_line(twistd):  # noqa: F811 (the fixture)
    server = twistd("--app", "tests.serving.apps:router", "--listen", LOOPBACK, "--metrics", "tcp:0")
    server.port()
    taken = server.wait_for(r"rolo metrics at 127\.0\.0\.1:(\d+)").group(1)
    second = twistd("--app", "tests.serving.apps:router", "--listen", LOOPBACK, "--metrics", f"tcp:{taken}")
    # twistd has started logging by the time it listens: the error is one line of its log
    assert second.wait() == 1
    assert "Traceback" not in second.output
    in_use = f"rolo: Couldn't listen on 127.0.0.1:{taken}: [Errno 98] Address already in use."
    assert second.lines[-1].endswith(in_use)


def test_without_prometheus_client_twistd_says_what_to_install():
    done = subprocess.run(
        [sys.executable, "-c", _WITHOUT_PROMETHEUS, "-n", "--pidfile=", "rolo", "--app", "tests.serving.apps:router",
         "--listen", LOOPBACK, "--metrics", "tcp:0"],
        cwd=REPO, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 1
    assert (done.stdout + done.stderr).splitlines() == [
        "rolo: --metrics: rolo.metrics needs prometheus-client: pip install prometheus-client "
        "(or rolo's metrics extra: pip install '.[metrics]' in its checkout)"
    ]


def test_rolo_serves_without_importing_prometheus_client_and_rolo_metrics_says_what_to_install():
    program = (
        "import sys, urllib.request\n"
        "import rolo.serving.twisted.tap, rolo.gateway.asgi\n"
        "from rolo.serving.twisted import run_in_thread\n"
        "from tests.serving.apps import router\n"
        "with run_in_thread(router, 'tcp:0:interface=127.0.0.1') as server:\n"
        "    with urllib.request.urlopen(f'http://127.0.0.1:{server.port}/hello/ann', timeout=10) as response:\n"
        "        assert response.read() == b'hello ann'\n"
        "assert 'prometheus_client' not in sys.modules\n"
        "sys.modules['prometheus_client'] = None  # as if it were not installed\n"
        "try:\n"
        "    import rolo.metrics\n"
        "except ImportError as error:\n"
        "    print(error)\n"
    )
    done = subprocess.run([sys.executable, "-c", program], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("rolo.metrics needs prometheus-client: pip install prometheus-client")


def test_metrics_do_not_go_with_workers():
    with pytest.raises(SystemExit, match=r"^rolo: --metrics serves one process's metrics: it does not go with"):
        Options().parseOptions(["--app", "m:a", "--metrics", "tcp:9100", "--workers", "2"])


@pytest.mark.parametrize(
    ("given", "endpoint"),
    [
        ("tcp:9100", "tcp:9100:interface=127.0.0.1"),
        ("9100", "tcp:9100:interface=127.0.0.1"),
        ("tcp6:9100", "tcp6:9100:interface=\\:\\:1"),
        ("ssl:9100:privateKey=key.pem", "ssl:9100:privateKey=key.pem:interface=127.0.0.1"),
        ("tcp:9100:interface=0.0.0.0", "tcp:9100:interface=0.0.0.0"),
        ("tcp:port=9100:interface=10.0.0.5", "tcp:port=9100:interface=10.0.0.5"),
        ("unix:/run/metrics.sock", "unix:/run/metrics.sock"),
    ],
)
def test_a_metrics_endpoint_is_on_the_loopback_interface_unless_it_says_otherwise(given, endpoint):
    assert metrics_endpoint(given) == endpoint
