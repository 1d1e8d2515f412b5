"""What ``twistd rolo`` logs when a peer breaks the protocol: one line, the connection's close line with the
server's reason, and no warning a client could raise at will to flood the log."""

from __future__ import annotations

import re

import websocket as wsclient

from .test_twistd import LOOPBACK, close_frame, twistd  # noqa: F401 (a fixture)


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
    assert warnings == []
