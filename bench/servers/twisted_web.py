"""A plain Twisted Web resource answering ``GET /hello`` on the reactor thread: what Twisted itself costs
an HTTP request, on the same Twisted as rolo."""

from __future__ import annotations

from twisted.web.resource import Resource
from twisted.web.server import Site

from bench.servers import HELLO, twisted_run


class Hello(Resource):
    isLeaf = True

    def render_GET(self, request) -> bytes:
        request.setHeader(b"content-type", b"text/plain")
        return HELLO


def serve(port: int, deflate: bool) -> None:
    twisted_run.run(Site(Hello()), port)
