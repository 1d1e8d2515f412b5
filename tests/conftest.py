"""Fixtures: a TwistedGateway serving routes on an ephemeral loopback port."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
import pytest_twisted
from twisted.internet import reactor

from rolo import Router
from rolo.gateway import Gateway
from rolo.gateway.handlers import RouterHandler, WerkzeugExceptionHandler
from rolo.serving.twisted import TwistedGateway


def gateway_for(*routes: Any, respond_not_found: bool = True) -> Gateway:
    """A gateway that routes to ``routes`` and (unless told not to) answers a request nothing routes with 404."""
    router = Router()
    for r in routes:
        router.add(r)
    return Gateway(
        request_handlers=[RouterHandler(router, respond_not_found=respond_not_found)],
        exception_handlers=[WerkzeugExceptionHandler()],
    )


class Server:
    """A running TwistedGateway: ``ws(path)`` and ``http(path)`` give URLs to it."""

    def __init__(self, site: TwistedGateway, port: Any) -> None:
        self.site = site
        self.port = port
        self.address = f"127.0.0.1:{port.getHost().port}"

    def ws(self, path: str) -> str:
        return f"ws://{self.address}{path}"

    def http(self, path: str) -> str:
        return f"http://{self.address}{path}"


@pytest.fixture
def serve_gateway() -> Iterator[Callable[..., Server]]:
    """``serve_gateway(gateway, **settings)`` serves a gateway on an ephemeral loopback port until the test
    ends."""
    servers: list[Server] = []

    def start(gateway: Gateway, **settings: Any) -> Server:
        site = TwistedGateway(gateway, **settings)
        server = Server(site, reactor.listenTCP(0, site, interface="127.0.0.1"))
        servers.append(server)
        return server

    yield start
    for server in servers:
        pytest_twisted.blockon(server.port.stopListening())
        pytest_twisted.blockon(server.site.stop())


@pytest.fixture
def serve(serve_gateway: Callable[..., Server]) -> Callable[..., Server]:
    """``serve(*routes, respond_not_found=True, **settings)`` serves the routes on an ephemeral loopback port
    until the test ends."""

    def start(*routes: Any, respond_not_found: bool = True, **settings: Any) -> Server:
        return serve_gateway(gateway_for(*routes, respond_not_found=respond_not_found), **settings)

    return start


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--heavy", action="store_true", help="run the hardening tests at full size (minutes)")
