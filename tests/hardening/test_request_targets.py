"""Request targets that cannot be parsed get a 400, on plain HTTP and on upgrade requests, and never a
500 or a logged failure."""

from __future__ import annotations

from collections import Counter

import pytest
import pytest_twisted
from hypothesis import given
from hypothesis import strategies as st

from rolo import Response, route
from rolo.websocket import WebSocketRequest
from tests.helpers import in_thread

from .support import http_request, response_head, status_of, upgrade_request
from .test_fuzz import fuzz_settings

UNPARSEABLE = [
    "http://[::1/x",
    "http://[::1",
    "https://[/",
    "http://[zz::1]/x",
    "http://exa mple",
    "http://:80/x",
    "http://host:port/x",
    "x",
    "../x",
    "host:443",
]


@route("/")
@route("/x")
def hello(request):
    return Response("hello")


@route("/ws", methods=["WEBSOCKET"])
def echo(request: WebSocketRequest):
    with request.accept() as ws:
        for message in ws:
            ws.send(message)


@pytest.mark.parametrize("target", UNPARSEABLE)
@pytest.mark.parametrize("kind", ["http", "upgrade"])
@pytest_twisted.ensureDeferred
async def test_a_target_that_does_not_parse_is_a_400(serve, failures, kind, target):
    server = serve(hello, echo)
    request = http_request(target) if kind == "http" else upgrade_request(target)
    head = await in_thread(response_head, (server.host, server.port), request)
    assert status_of(head) == 400, head
    assert failures == []


@pytest.mark.parametrize(
    "target", ["/x", "http://127.0.0.1/x", "http://[::1]/x", "http://[::1]:8080/x?a=1", "HTTP://example.com/x"]
)
@pytest_twisted.ensureDeferred
async def test_targets_that_parse_still_route(serve, target):
    server = serve(hello)
    head = await in_thread(response_head, (server.host, server.port), http_request(target))
    assert status_of(head) == 200, head


@pytest_twisted.ensureDeferred
async def test_no_target_is_a_500(serve, failures, heavy):
    """Random targets (bytes other than whitespace and controls; and URIs made of the characters that
    delimit their parts) get a 2xx, 3xx or 4xx, never a 500."""
    server = serve(hello, echo)
    address = (server.host, server.port)
    statuses: list[int | None] = []
    anything = st.binary(min_size=1, max_size=64).map(
        lambda raw: bytes(b for b in raw if 0x21 <= b <= 0x7E or b >= 0x80) or b"/"
    )
    delimiters = st.text(alphabet="[]:@/?#%.-+*=x1", max_size=24).map(lambda text: text.encode())
    uris = st.tuples(st.sampled_from([b"", b"http:", b"http://", b"https://[", b"ws://", b"x+y://"]), delimiters)

    @fuzz_settings(2000 if heavy else 300)
    @given(st.one_of(anything, uris.map(b"".join).filter(bool)))
    def run(target: bytes) -> None:
        head = response_head(address, b"GET " + target + b" HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        statuses.append(status_of(head))

    await in_thread(run)
    print(f"{len(statuses)} random targets: statuses {sorted(Counter(statuses).items(), key=str)}")
    assert all(status is not None and status < 500 for status in statuses)
    assert failures == []
