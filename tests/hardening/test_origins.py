"""Cross-site WebSocket hijacking: with an allow-list, other origins get 403 and never reach a handler."""

from __future__ import annotations

import pytest
import pytest_twisted

from rolo import route
from rolo.websocket import WebSocketRequest
from tests.helpers import in_thread

from .support import response_head, status_of, upgrade_request
from .test_handshake import GOOD

calls: list[str] = []


@route("/ws", methods=["WEBSOCKET"])
def recorded(request: WebSocketRequest):
    calls.append(request.headers.get("Origin", "(none)"))
    with request.accept():
        pass


def with_origins(*origins: str) -> bytes:
    return upgrade_request(headers=GOOD + [("Origin", origin) for origin in origins])


ALLOWED = ["https://app.example", "https://*.example.org"]

REFUSED = {
    "another site": with_origins("https://evil.example"),
    "allowed name as a prefix": with_origins("https://app.example.evil.net"),
    "other scheme": with_origins("http://app.example"),
    "other port": with_origins("https://app.example:8443"),
    "wildcard does not cover the bare domain": with_origins("https://example.org"),
    "wildcard suffix trick": with_origins("https://a.example.org.evil.net"),
    "null (sandboxed page)": with_origins("null"),
    "allowed then another": with_origins("https://app.example", "https://evil.example"),
    "another then allowed": with_origins("https://evil.example", "https://app.example"),
}

ACCEPTED = {
    "exact": with_origins("https://app.example"),
    "case-insensitive": with_origins("HTTPS://APP.EXAMPLE"),
    "wildcard subdomain": with_origins("https://eu.example.org"),
    "no Origin (not a browser)": upgrade_request(headers=GOOD),
}


async def status(server, request: bytes) -> int | None:
    address = (server.host, server.port)
    return status_of(await in_thread(response_head, address, request))


@pytest.mark.parametrize("request_bytes", REFUSED.values(), ids=REFUSED.keys())
@pytest_twisted.ensureDeferred
async def test_origin_not_allowed_is_refused(serve, request_bytes):
    calls.clear()
    server = serve(recorded, allowed_origins=ALLOWED)
    # two Origin headers are refused as malformed (400) or for the foreign one (403)
    expected = {400, 403} if request_bytes.count(b"Origin:") > 1 else {403}
    assert await status(server, request_bytes) in expected
    assert calls == []


@pytest.mark.parametrize("request_bytes", ACCEPTED.values(), ids=ACCEPTED.keys())
@pytest_twisted.ensureDeferred
async def test_allowed_origin_connects(serve, request_bytes):
    calls.clear()
    server = serve(recorded, allowed_origins=ALLOWED)
    assert await status(server, request_bytes) == 101
    assert len(calls) == 1


@pytest_twisted.ensureDeferred
async def test_default_allows_any_origin(serve):
    """Without allowed_origins (the documented default) every origin, and none, may connect."""
    calls.clear()
    server = serve(recorded)
    for request_bytes in [*REFUSED.values(), *ACCEPTED.values()]:
        if request_bytes.count(b"Origin:") <= 1:
            assert await status(server, request_bytes) == 101
    assert len(calls) == len(REFUSED) + len(ACCEPTED) - 2


@pytest_twisted.ensureDeferred
async def test_null_origin_allowed_when_listed(serve):
    calls.clear()
    server = serve(recorded, allowed_origins=["null"])
    assert await status(server, with_origins("null")) == 101
    assert await status(server, with_origins("https://app.example")) == 403
    assert calls == ["null"]
