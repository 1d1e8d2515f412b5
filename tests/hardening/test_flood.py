"""A client floods a slow handler: the server's memory stays bounded and nothing is lost or reordered."""

from __future__ import annotations

import json

import pytest
import websocket as wsclient
from websockets.exceptions import ConnectionClosedError
from websockets.sync.client import connect as websockets_connect

MESSAGE_SIZE = 256 * 1024
MiB = 1024 * 1024


def flood(url: str, total: int) -> dict:
    """Send ``total`` bytes in binary messages numbered from 0, then ask the handler what it got."""
    ws = wsclient.create_connection(url, timeout=60)
    try:
        filler = b"x" * (MESSAGE_SIZE - 8)
        for seq in range(total // MESSAGE_SIZE):
            ws.send_binary(seq.to_bytes(8, "big") + filler)
        ws.send("done")
        return json.loads(ws.recv())
    finally:
        ws.close()


def test_flood_of_a_slow_handler_keeps_memory_bounded_and_loses_nothing(server_process, heavy):
    total = 1024 * MiB if heavy else 20 * MiB
    server = server_process()
    flood(server.ws("/flood"), MESSAGE_SIZE * 4)  # warm up: imports, pool thread, buffers
    before = server.usage()

    summary = flood(server.ws("/flood"), total)

    after = server.usage()
    growth = after["peak_rss"] - before["peak_rss"]
    print(
        f"flood {total // MiB} MiB: RSS {before['rss'] / MiB:.1f} MiB before, "
        f"peak {after['peak_rss'] / MiB:.1f} MiB"
    )
    assert summary == {"count": total // MESSAGE_SIZE, "bytes": total, "in_order": True}
    assert after["peak_rss"] < 200 * MiB
    # the handler holds at most max_queue messages (4 MiB here) and the sockets a few MiB more
    assert growth < 16 * MiB


def test_compression_bomb_is_refused_without_inflating_it(server_process):
    """A message of zeros that deflates to a few hundred KiB must not be inflated whole before the
    max_message_size check: the server closes with 1009 and its memory barely moves."""
    server = server_process()
    flood(server.ws("/flood"), MESSAGE_SIZE)  # warm up
    before = server.usage()

    with websockets_connect(server.ws("/echo"), max_size=None, open_timeout=10) as ws:
        assert "permessage-deflate" in ws.response.headers.get("Sec-WebSocket-Extensions", "")
        with pytest.raises(ConnectionClosedError) as closed:
            ws.send(bytes(64 * MiB))
            ws.recv(timeout=10)

    after = server.usage()
    print(f"compression bomb of 64 MiB: peak RSS grew {(after['peak_rss'] - before['peak_rss']) / MiB:.1f} MiB")
    assert closed.value.rcvd.code == 1009
    assert after["peak_rss"] - before["peak_rss"] < 16 * MiB
