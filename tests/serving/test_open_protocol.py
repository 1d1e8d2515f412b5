"""What the protocol of an open, idle WebSocket connection keeps on TwistedGateway."""

from __future__ import annotations

import gc

import pytest
import pytest_twisted
import websocket as wsclient

from rolo import route
from rolo.serving.twisted.protocol import GatewayWebSocketProtocol
from rolo.websocket import WebSocketRequest
from tests.helpers import in_thread


@route("/idle", methods=["WEBSOCKET"])
def idle(request: WebSocketRequest) -> None:
    with request.accept() as websocket:
        for message in websocket:
            websocket.send(message)


@pytest.mark.servers("twisted")
@pytest_twisted.ensureDeferred
async def test_an_open_connection_holds_no_write_queue_until_autobahn_reads_one(serve):
    # rolo writes its messages itself: Autobahn's queue of chopped and synchronous writes, empty once the
    # handshake's response went out, was 80 bytes for each idle connection
    server = serve(idle)
    client = await in_thread(lambda: wsclient.create_connection(server.ws("/idle"), timeout=10))
    try:
        (protocol,) = [
            candidate
            for candidate in gc.get_objects()
            # by its type, not isinstance: a dead weak proxy among the objects raises ReferenceError on that
            if issubclass(type(candidate), GatewayWebSocketProtocol)
            and candidate.state == candidate.STATE_OPEN
            and candidate.environ["SERVER_PORT"] == str(server.port)
        ]
        assert "send_queue" not in vars(protocol)

        def talk() -> tuple[object, ...]:
            client.ping(b"p")
            pong = client.recv_data_frame(control_frame=True)
            client.send("m")
            return pong[0], pong[1].data, client.recv()

        assert await in_thread(talk) == (wsclient.ABNF.OPCODE_PONG, b"p", "m")
        assert len(protocol.send_queue) == 0  # made when read, as Autobahn reads it: empty
    finally:
        await in_thread(client.close)
