"""The HTTP connection and request of Twisted Web, keeping header names as the client cased them."""

from __future__ import annotations

from typing import Any

from twisted.web.http import HTTPChannel
from twisted.web.server import Request

__all__ = ["GatewayRequest", "RawHeadersChannel"]


class GatewayRequest(Request):
    """A Twisted Web request that also holds its headers as sent, ``raw_headers`` in order, when its
    request line arrived, ``received_at`` (by the site's reactor clock), and whether its response has
    been ``logged``."""

    logged = False

    def __init__(self, channel: HTTPChannel, *args: Any, **kwargs: Any) -> None:
        super().__init__(channel, *args, **kwargs)
        self.raw_headers: list[tuple[bytes, bytes]] = []
        self.received_at: float = channel.site.reactor.seconds()


class RawHeadersChannel(HTTPChannel):
    """Records each header line's name before Twisted canonicalises it."""

    def headerReceived(self, line: bytes) -> bool:
        accepted = super().headerReceived(line)
        if accepted:
            name, _, value = line.partition(b":")
            request = self.requests[-1]
            if isinstance(request, GatewayRequest):
                request.raw_headers.append((name, value.strip(b" \t")))
        return accepted
