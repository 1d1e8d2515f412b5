"""A shutdown loses nothing a handler sent: the messages sent before the 1001 go out before it."""

from __future__ import annotations

import threading

import pytest_twisted
import websocket as wsclient
from twisted.internet import reactor

from rolo import route
from rolo.websocket import WebSocketRequest
from tests.helpers import in_thread

SENT = 200


@pytest_twisted.ensureDeferred
async def test_messages_sent_before_the_shutdown_go_out_before_its_close(serve):
    sent = threading.Event()

    @route("/burst", methods=["WEBSOCKET"])
    def burst(request: WebSocketRequest):
        with request.accept() as ws:
            # the shutdown is queued for the reactor first; the reactor then waits (blocked) until these
            # sends are queued behind it, which is what a SIGTERM amid busy handlers looks like
            reactor.callFromThread(stop_when_sent)
            try:
                for n in range(SENT):
                    ws.send(str(n))
            finally:
                sent.set()
            ws.receive()

    def stop_when_sent() -> None:
        assert sent.wait(10)
        server.app.stop()

    server = serve(burst)

    def client() -> tuple[list[str], int]:
        ws = wsclient.create_connection(server.ws("/burst"), timeout=10)
        received = []
        while True:
            opcode, frame = ws.recv_data_frame(control_frame=True)
            if opcode == wsclient.ABNF.OPCODE_CLOSE:
                return received, int.from_bytes(frame.data[:2], "big")
            received.append(frame.data.decode())

    received, code = await in_thread(client)
    print(f"shutdown amid a burst: {len(received)} of {SENT} messages before the 1001")
    assert (received, code) == ([str(n) for n in range(SENT)], 1001)
