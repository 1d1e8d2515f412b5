"""Plain Autobahn on Twisted: an ``onMessage`` that echoes, or sends to the room, on the reactor thread,
with no threads at all. rolo's natural ceiling."""

from __future__ import annotations

from autobahn.twisted.websocket import WebSocketServerFactory, WebSocketServerProtocol
from autobahn.websocket.compress import PerMessageDeflateOffer, PerMessageDeflateOfferAccept

from bench.servers import MAX_MESSAGE_SIZE, twisted_run

ROOM: set[WebSocketServerProtocol] = set()


class BenchProtocol(WebSocketServerProtocol):
    path = ""

    def onConnect(self, request) -> None:
        self.path = request.path

    def onOpen(self) -> None:
        if self.path == "/room":
            ROOM.add(self)
            self.sendMessage(b"joined")

    def onMessage(self, payload: bytes, isBinary: bool) -> None:
        if self.path == "/echo":
            self.sendMessage(payload, isBinary)
        elif self.path == "/publish":
            for member in ROOM:
                member.sendMessage(payload, isBinary)

    def onClose(self, wasClean: bool, code: int | None, reason: str | None) -> None:
        ROOM.discard(self)


def _accept_deflate(offers):
    for offer in offers:
        if isinstance(offer, PerMessageDeflateOffer):
            return PerMessageDeflateOfferAccept(offer)
    return None


def serve(port: int, deflate: bool) -> None:
    factory = WebSocketServerFactory()
    factory.protocol = BenchProtocol
    # what rolo's factory is given (Autobahn validates UTF-8 by default)
    factory.setProtocolOptions(
        maxMessagePayloadSize=MAX_MESSAGE_SIZE,
        maxFramePayloadSize=MAX_MESSAGE_SIZE,
        autoPingInterval=0,
        openHandshakeTimeout=10,
        closeHandshakeTimeout=10,
        perMessageCompressionAccept=_accept_deflate if deflate else lambda offers: None,
    )
    twisted_run.run(factory, port)
