"""Fixtures: a gateway serving routes on an ephemeral loopback port, through Twisted or an ASGI server.

``serve`` is parametrised over the servers: ``twisted`` (TwistedGateway on the test's reactor) and
``hypercorn`` and ``uvicorn`` (AsgiGateway, each on an event loop of its own in a background thread). A test
that holds only for some of them says so with ``@pytest.mark.servers("twisted", reason=...)``.
"""

from __future__ import annotations

import asyncio
import os
import socket
import threading
from collections.abc import Callable, Iterator
from dataclasses import fields
from typing import Any

import pytest
import pytest_twisted
from twisted.internet import reactor

from rolo import Router
from rolo.gateway import Gateway
from rolo.gateway.asgi import AsgiGateway
from rolo.gateway.handlers import RouterHandler, WerkzeugExceptionHandler
from rolo.serving.twisted import TwistedGateway
from rolo.settings import ServerSettings

# a test that runs long says so, and where it is, while it runs
pytest_plugins = ["tests.progress"]

SERVERS = ["twisted", "hypercorn", "uvicorn"]

# what the ASGI application itself takes; the rest are the protocol's, which the ASGI server owns
_APP_SETTINGS = {f.name for f in fields(ServerSettings)} | {"lifespan_listener"}


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "servers(*names, reason): run the test only against these servers of the serve fixture"
    )


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
    """A running server: ``ws(path)`` and ``http(path)`` give URLs to it.

    :param kind: which server it is (one of :data:`SERVERS`)
    :param app: the TwistedGateway or AsgiGateway it serves
    """

    def __init__(self, kind: str, app: Any, host: str, port: int, stop: Callable[[], None]) -> None:
        self.kind = kind
        self.app = app
        self.host = host
        self.port = port
        self.address = f"{host}:{port}"
        self.stop = stop

    def ws(self, path: str) -> str:
        return f"ws://{self.address}{path}"

    def http(self, path: str) -> str:
        return f"http://{self.address}{path}"


def listening_socket() -> socket.socket:
    """A TCP socket listening on an ephemeral loopback port: clients may connect before a server serves
    it (the kernel queues them), so no test waits for a server to be ready."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    sock.listen(1024)
    return sock


def _asgi_server_config(kind: str, settings: dict[str, Any]) -> dict[str, Any]:
    """Map rolo's protocol settings onto the ASGI server's configuration, or skip the test."""
    names = {
        "uvicorn": {
            "max_message_size": "ws_max_size",
            "ping_interval": "ws_ping_interval",
            "ping_timeout": "ws_ping_timeout",
            "compression": "ws_per_message_deflate",
        },
        "hypercorn": {"max_message_size": "websocket_max_message_size", "ping_interval": "websocket_ping_interval"},
    }[kind]
    config = {}
    for name, value in settings.items():
        if name not in names:
            raise LookupError(f"{kind} has no setting for {name}: mark the test @pytest.mark.servers(...) without it")
        config[names[name]] = value
    return config


def serve_asgi(kind: str, app: AsgiGateway, config: dict[str, Any]) -> tuple[socket.socket, Callable[[], None]]:
    """Run ``app`` under the ASGI server ``kind`` in a thread of its own; return its socket and a stop."""
    sock = listening_socket()
    loop = asyncio.new_event_loop()
    stopping = asyncio.Event()
    failure: list[BaseException] = []

    if kind == "uvicorn":
        import uvicorn

        server = uvicorn.Server(uvicorn.Config(app, lifespan="on", log_level="warning", **config))

        async def run() -> None:
            serving = asyncio.ensure_future(server.serve(sockets=[sock]))
            await stopping.wait()
            server.should_exit = True
            await serving

    else:
        from hypercorn.asyncio import serve
        from hypercorn.config import Config

        hypercorn_config = Config()
        # hypercorn takes the descriptor over and closes it: give it a copy
        hypercorn_config.bind = [f"fd://{os.dup(sock.fileno())}"]
        hypercorn_config.graceful_timeout = 1
        for name, value in config.items():
            setattr(hypercorn_config, name, value)

        async def run() -> None:
            await serve(app, hypercorn_config, shutdown_trigger=stopping.wait)  # type: ignore[arg-type]

    def main() -> None:
        try:
            loop.run_until_complete(run())
        except BaseException as error:  # reported by stop()
            failure.append(error)
        finally:
            loop.close()

    thread = threading.Thread(target=main, name=f"{kind}-server", daemon=True)
    thread.start()

    def stop() -> None:
        if not loop.is_closed():
            try:
                loop.call_soon_threadsafe(stopping.set)
            except RuntimeError:
                pass  # the loop closed meanwhile
        thread.join(20)
        sock.close()
        assert not thread.is_alive(), f"{kind} did not stop"
        if failure:
            raise failure[0]

    return sock, stop


@pytest.fixture(params=SERVERS)
def server_kind(request: pytest.FixtureRequest) -> str:
    """Which server the test runs against."""
    return request.param


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """A test marked ``servers(...)`` is not collected for the other servers (rather than skipped there)."""
    kept, dropped = [], []
    for item in items:
        marker = item.get_closest_marker("servers")
        callspec = getattr(item, "callspec", None)
        kind = callspec.params.get("server_kind") if callspec is not None else None
        (dropped if marker is not None and kind is not None and kind not in marker.args else kept).append(item)
    if dropped:
        config.hook.pytest_deselected(items=dropped)
        items[:] = kept


@pytest.fixture
def serve_gateway(server_kind: str) -> Iterator[Callable[..., Server]]:
    """``serve_gateway(gateway, **settings)`` serves a gateway on an ephemeral loopback port until the test
    ends.

    Under an ASGI server, the settings AsgiGateway takes go to it, and the protocol settings
    (``max_message_size``, ``ping_interval`` …) to the server's configuration; a test that needs one the
    server has not is marked to run without it.
    """
    servers: list[Server] = []

    def start(gateway: Gateway, **settings: Any) -> Server:
        if server_kind == "twisted":
            site = TwistedGateway(gateway, **settings)
            port = reactor.listenTCP(0, site, interface="127.0.0.1")

            def stop() -> None:
                pytest_twisted.blockon(port.stopListening())
                pytest_twisted.blockon(site.stop())

            server = Server(server_kind, site, "127.0.0.1", port.getHost().port, stop)
        else:
            app_settings = {k: v for k, v in settings.items() if k in _APP_SETTINGS}
            config = _asgi_server_config(server_kind, {k: v for k, v in settings.items() if k not in _APP_SETTINGS})
            app = AsgiGateway(gateway, **app_settings)
            sock, stop = serve_asgi(server_kind, app, config)
            server = Server(server_kind, app, *sock.getsockname(), stop)
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()


@pytest.fixture
def serve(serve_gateway: Callable[..., Server]) -> Callable[..., Server]:
    """``serve(*routes, respond_not_found=True, **settings)`` serves the routes on an ephemeral loopback port
    until the test ends."""

    def start(*routes: Any, respond_not_found: bool = True, **settings: Any) -> Server:
        return serve_gateway(gateway_for(*routes, respond_not_found=respond_not_found), **settings)

    return start


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--heavy", action="store_true", help="run the hardening tests at full size (minutes)")
