"""What ``twistd rolo`` logs: when a peer breaks the protocol, one line, the connection's close line with
the server's reason, and no warning a client could raise at will to flood the log; and the application's
own records, where nothing else takes them, as lines of Twisted's log."""

from __future__ import annotations

import re
import urllib.request

import pytest
import websocket as wsclient

from .test_twistd import LOOPBACK, close_frame, twistd  # noqa: F401 (a fixture)
from .test_twistd_messages import failing


def test_a_peer_fault_is_the_close_line_with_its_reason_not_a_warning(twistd):  # noqa: F811
    server = twistd("--app", "tests.serving.apps:router", "--listen", LOOPBACK, "--max-message-size", "1024")
    port = server.port()

    ws = wsclient.create_connection(f"ws://127.0.0.1:{port}/echo/pong", timeout=10)
    assert ws.recv() == "thanks for connecting pong"
    ws.pong(b"unsolicited")  # allowed: a unidirectional heartbeat (RFC 6455, section 5.5.3)
    ws.send("still here")
    assert ws.recv() == "echo: still here"
    ws.close()

    ws = wsclient.create_connection(f"ws://127.0.0.1:{port}/echo/big", timeout=10)
    assert ws.recv() == "thanks for connecting big"
    ws.send("x" * 2000)
    code, reason = close_frame(ws)
    assert code == 1009
    ws.close()

    server.wait_for(
        r"WebSocket closed by the server /echo/big from tcp4:127\.0\.0\.1:\d+: code 1009 after \d+\.\d{3}s: "
        + re.escape(reason.decode())
    )
    server.wait_for(r"WebSocket closed by the peer /echo/pong")
    assert server.stop() == 0
    warnings = [line for line in server.lines if "#warn]" in line or "#error]" in line]
    # the old code logged 2 warnings for each such connection (Autobahn's 'failing WebSocket connection' and
    # 'dropping connection'), and its close line gave no reason
    assert warnings == []


def test_the_application_s_own_unconfigured_warnings_are_lines_of_twisted_s_log(twistd):  # noqa: F811
    server = twistd("--app", "tests.serving.apps:router", "--listen", LOOPBACK)
    port = server.port()
    for level in ("info", "warning", "error", "debug"):
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/note/{level}", timeout=10) as response:
            assert response.read() == b"noted"
    server.wait_for(r"GET /note/debug from ")
    assert server.stop() == 0
    notes = [line.split(" ", 1)[1] for line in server.lines if "a note at" in line]
    # the records Python shows when nothing is configured (warnings and errors, whatever a logger's own
    # level), with the logger's name and level, where a program's other lines are; not as lines of
    # standard error
    assert notes == [
        "[tests.serving.apps.warning#warn] a note at warning",
        "[tests.serving.apps.error#error] a note at error",
    ]


def test_an_application_that_warns_then_fails_to_start_still_shows_its_warning(tmp_path):
    (tmp_path / "warns.py").write_text(
        "import logging\n\nlogging.getLogger('warns').warning('DATABASE_URL is not set')\n"
        "raise RuntimeError('no database')\n"
    )
    # twistd's log never begins: the warning goes to standard error, as Python shows it
    printed = failing("--app", "warns:router", cwd=tmp_path)
    assert printed[0] == "DATABASE_URL is not set"
    assert printed[1].startswith("rolo: --app 'warns:router': cannot import warns: RuntimeError: no database")


def test_what_the_server_gave_up_on_stays_a_warning(twistd):  # noqa: F811
    server = twistd(
        "--app", "tests.serving.apps:router", "--listen", LOOPBACK, "--open-timeout", "0.3", "--grace-period", "0.3"
    )
    port = server.port()
    with pytest.raises((wsclient.WebSocketException, ConnectionError)):
        wsclient.create_connection(f"ws://127.0.0.1:{port}/never-accepts", timeout=10)
    # not a peer's fault: Autobahn's warning says that the handler did not accept in time
    server.wait_for(r"#warn\] dropping connection to peer tcp4:127\.0\.0\.1:\d+ .*opening handshake timeout")


def test_an_ipv6_peer_is_named_with_its_address_in_brackets(twistd):  # noqa: F811 (the fixture)
    # the lines said "from tcp6:::1:34062", where the reader had to tell the port from the address
    server = twistd("--app", "tests.serving.apps:router", "--listen", r"tcp6:0:interface=\:\:1")
    port = int(server.wait_for(r"rolo listening at \[::1\]:(\d+)").group(1))
    with urllib.request.urlopen(f"http://[::1]:{port}/hello/bob", timeout=10) as response:
        assert response.read() == b"hello bob"
    ws = wsclient.create_connection(f"ws://[::1]:{port}/echo/six", timeout=10)
    assert ws.recv() == "thanks for connecting six"
    ws.close()

    server.wait_for(r"GET /hello/bob from tcp6:\[::1\]:\d+: 200 in \d+\.\d{3}s$")
    server.wait_for(r"WebSocket open /echo/six from tcp6:\[::1\]:\d+$")
    server.wait_for(r"WebSocket closed by the peer /echo/six from tcp6:\[::1\]:\d+: code 1000 after ")
    assert server.stop() == 0
