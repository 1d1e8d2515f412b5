"""pytest fixtures for testing rolo applications against a real server, with real clients.

Installing rolo registers this module as a pytest plugin (through the ``pytest11`` entry point), so its
fixtures are there in every test suite without further ado::

    from myapp import router  # with /hello/<name> over HTTP and the seed's /echo/<name> WebSocket

    def test_hello(rolo_server):
        server = rolo_server(router)          # a Gateway, a Router, or anything Router.add takes
        assert server.get("/hello/ann").text == "hello ann"
        ws = server.websocket("/echo/ann")    # a connected websocket-client WebSocket
        assert ws.recv() == "thanks for connecting ann"

The server is a :class:`~rolo.serving.twisted.TwistedGateway` on an ephemeral loopback port of the global
reactor, which must run while a test's client blocks. How that happens depends on who runs the reactor:

- without pytest-twisted, the reactor runs in a thread of its own (that of
  :func:`~rolo.serving.twisted.run_in_thread`) until the process exits;
- with pytest-twisted (whose reactor runs in a greenlet of the main thread, and which runs every test on
  it), a plain ``def test_...`` that uses ``rolo_server`` is run in a worker thread instead, while the
  main thread waits and its reactor serves, so the test may block on any client it likes. Tests marked
  for pytest-twisted (``@pytest_twisted.ensureDeferred async def ...``) run on the reactor as usual, and
  must run blocking clients in a thread (``await deferToThread(server.get, "/")``).

The helpers need ``websocket-client`` for :meth:`RoloServer.websocket` (the ``testing`` extra:
``pip install '.[testing]'`` in a checkout).
"""

from __future__ import annotations

import functools
import http.client
import inspect
import json
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import pytest
from twisted.internet import threads
from twisted.internet.address import IPv4Address
from twisted.internet.defer import Deferred
from twisted.internet.threads import blockingCallFromThread
from twisted.python import threadable
from twisted.python.failure import Failure

from rolo.gateway import Gateway, as_gateway
from rolo.routing import Router
from rolo.serving.twisted import GatewayService, listen, run_in_thread

__all__ = ["HttpResponse", "RoloServer", "gateway_for", "rolo_server"]

_PYTEST_TWISTED = "twisted"  # the name pytest-twisted registers its plugin under

LOOPBACK = "tcp:0:interface=127.0.0.1"
GRACE_PERIOD = 5.0
"""How long stopping a server at the end of a test waits for its handlers, in seconds."""


@dataclass(frozen=True)
class HttpResponse:
    """A complete HTTP response: ``status``, ``headers`` (case-insensitive) and the body as ``data``."""

    status: int
    headers: http.client.HTTPMessage
    data: bytes

    @property
    def text(self) -> str:
        """The body decoded as UTF-8."""
        return self.data.decode("utf-8")

    def json(self) -> Any:
        """The body parsed as JSON."""
        return json.loads(self.data)


class RoloServer:
    """A gateway served on a loopback port for one test, with URLs and blocking clients for it.

    The clients block the calling thread: call them from a plain test function, or from a thread, never
    on the reactor (an ``async`` pytest-twisted test), where they would stop the server they wait for.

    :ivar service: the :class:`~rolo.serving.twisted.GatewayService` serving it
    :ivar port: the port it listens on, on 127.0.0.1
    """

    def __init__(self, service: GatewayService) -> None:
        self.service = service
        address = service.ports[0].getHost()
        assert isinstance(address, IPv4Address)  # it listens on tcp:0:interface=127.0.0.1
        self.port: int = address.port
        self.address = f"127.0.0.1:{self.port}"
        self._websockets: list[Any] = []

    def url(self, path: str = "/") -> str:
        """The ``http://`` URL of ``path`` on this server."""
        return f"http://{self.address}{path}"

    def ws_url(self, path: str = "/") -> str:
        """The ``ws://`` URL of ``path`` on this server."""
        return f"ws://{self.address}{path}"

    def request(
        self,
        method: str,
        path: str = "/",
        data: bytes | str | None = None,
        headers: Mapping[str, str] | None = None,
        timeout: float = 10.0,
    ) -> HttpResponse:
        """Send one HTTP request and return the whole response, whatever its status."""
        _refuse_on_reactor("an HTTP request")
        connection = http.client.HTTPConnection(self.address, timeout=timeout)
        try:
            body = data.encode("utf-8") if isinstance(data, str) else data
            connection.request(method, path, body=body, headers=dict(headers or {}))
            response = connection.getresponse()
            return HttpResponse(response.status, response.headers, response.read())
        finally:
            connection.close()

    def get(self, path: str = "/", **kwargs: Any) -> HttpResponse:
        """``request("GET", path, ...)``."""
        return self.request("GET", path, **kwargs)

    def post(self, path: str = "/", data: bytes | str | None = None, **kwargs: Any) -> HttpResponse:
        """``request("POST", path, data, ...)``."""
        return self.request("POST", path, data, **kwargs)

    def websocket(
        self,
        path: str = "/",
        headers: Iterable[str] | Mapping[str, str] | None = None,
        subprotocols: Iterable[str] | None = None,
        timeout: float = 10.0,
    ) -> Any:
        """Open a WebSocket to ``path``: a connected ``websocket.WebSocket`` of websocket-client, whose
        ``recv`` and ``send`` wait at most ``timeout`` seconds. It is dropped at the end of the test if
        it is still open.

        :raises websocket.WebSocketBadStatusException: if the server answered with an HTTP response
            (``status_code`` and ``resp_body`` tell which)
        :raises ModuleNotFoundError: saying what to install, without websocket-client
        """
        _refuse_on_reactor("a WebSocket client")
        try:
            import websocket
        except ModuleNotFoundError as error:
            if error.name != "websocket":
                raise
            raise ModuleNotFoundError(
                "RoloServer.websocket() needs websocket-client: install rolo's testing extra "
                "(pip install '.[testing]' in rolo's checkout) or pip install websocket-client",
                name="websocket",
            ) from error

        if isinstance(headers, Mapping):
            headers = [f"{name}: {value}" for name, value in headers.items()]
        client = websocket.create_connection(
            self.ws_url(path),
            timeout=timeout,
            header=list(headers or []),
            subprotocols=list(subprotocols) if subprotocols else None,
        )
        self._websockets.append(client)
        return client

    def _drop_clients(self) -> None:
        # no closing handshake: the reactor may not be running to answer it while the fixture ends
        for client in self._websockets:
            client.shutdown()


def gateway_for(app: Any) -> Gateway:
    """The gateway that serves ``app``: a :class:`~rolo.gateway.Gateway`, a :class:`~rolo.routing.Router`
    (see :func:`~rolo.gateway.as_gateway`), or whatever :meth:`Router.add
    <rolo.routing.Router.add>` takes, in a router of its own."""
    if not isinstance(app, (Gateway, Router)):
        router = Router()
        router.add(app)
        app = router
    return as_gateway(app)


# -- the reactor -------------------------------------------------------------------------------------


def _reactor_in_main_greenlet(config: pytest.Config) -> bool:
    """Whether pytest-twisted runs the reactor in a greenlet of the main thread (its default)."""
    if not config.pluginmanager.hasplugin(_PYTEST_TWISTED):
        return False
    import pytest_twisted

    # pytest-twisted has no public way to tell; it has no greenlet when the reactor runs in a thread
    return pytest_twisted._instances.gr_twisted is not None


def _on_reactor() -> bool:
    from twisted.internet import reactor

    in_io_thread: bool = threadable.isInIOThread()
    return reactor.running and in_io_thread


def _refuse_on_reactor(what: str) -> None:
    if _on_reactor():
        raise RuntimeError(
            f"{what} would block the reactor that serves it: run it in a thread "
            "(in an async test: await twisted.internet.threads.deferToThread(...))"
        )


def _in_reactor_greenlet() -> bool:
    import greenlet
    import pytest_twisted

    return greenlet.getcurrent() is pytest_twisted._instances.gr_twisted


def _wait_on_reactor(call: Callable[[], Deferred[Any]]) -> Any:
    """Call ``call`` on the reactor thread and wait for the Deferred it returns, from the main thread that
    pytest-twisted's reactor greenlet runs in."""
    from twisted.internet import reactor

    if reactor.running and not threadable.isInIOThread():
        # the global reactor's type (Twisted's make-believe one) lacks IReactorFromThreads, which every reactor
        # provides
        return blockingCallFromThread(reactor, call)  # type: ignore[arg-type]
    import pytest_twisted

    waiting = call()
    if not _in_reactor_greenlet():
        return pytest_twisted.blockon(waiting)
    # on the reactor itself nothing can wait: only what is done already (listening on TCP) can be had
    outcome: list[Any] = []
    waiting.addBoth(outcome.append)
    if not outcome:
        raise RuntimeError("cannot wait on the reactor's own greenlet")
    if isinstance(outcome[0], Failure):
        outcome[0].raiseException()
    return outcome[0]


# -- fixtures and hooks ------------------------------------------------------------------------------


@pytest.fixture
def rolo_server(pytestconfig: pytest.Config) -> Iterator[Callable[..., RoloServer]]:
    """``rolo_server(app, **settings)`` serves ``app`` (a Gateway, a Router, or what ``Router.add`` takes)
    on an ephemeral loopback port until the test ends, and returns a :class:`RoloServer`. ``settings``
    go to :class:`~rolo.serving.twisted.TwistedGateway` (``http_threads``, ``max_connections``,
    ``ping_interval`` …)."""
    servers: list[RoloServer] = []

    def serve(app: Any, **settings: Any) -> RoloServer:
        gateway = gateway_for(app)
        if _reactor_in_main_greenlet(pytestconfig) and threading.current_thread() is threading.main_thread():
            # a user's fixture, or an async test: the reactor runs (or will) in this very thread
            start = functools.partial(listen, gateway, LOOPBACK, grace_period=GRACE_PERIOD, **settings)
            service = _wait_on_reactor(start)
        else:
            # the reactor runs in another thread, or in none yet: run_in_thread starts one if need be
            service = run_in_thread(gateway, LOOPBACK, grace_period=GRACE_PERIOD, **settings).service
        servers.append(RoloServer(service))
        return servers[-1]

    yield serve
    for server in servers:
        server._drop_clients()
        _wait_on_reactor(server.service.stopService)


@pytest.hookimpl(tryfirst=True)
def pytest_pyfunc_call(pyfuncitem: pytest.Function) -> bool | None:
    """Run a plain test function that uses ``rolo_server`` off the reactor, so that it may block on
    clients while the reactor serves."""
    test = pyfuncitem.obj
    if "rolo_server" not in pyfuncitem.fixturenames or _runs_on_the_reactor(test):
        return None
    kwargs = {name: pyfuncitem.funcargs[name] for name in pyfuncitem._fixtureinfo.argnames}
    if not _reactor_in_main_greenlet(pyfuncitem.config):
        test(**kwargs)  # the reactor, if any, runs in another thread
    else:
        import pytest_twisted

        # pytest-twisted would call the test on the reactor: call it in a thread, and let the reactor
        # run in the main thread until the test is over
        pytest_twisted.blockon(threads.deferToThread(test, **kwargs))
    return True


def _runs_on_the_reactor(test: Callable[..., Any]) -> bool:
    """Whether pytest-twisted must run this test: a coroutine, or one it decorated."""
    return (
        inspect.iscoroutinefunction(test)
        or inspect.isgeneratorfunction(test)
        or getattr(test, "_pytest_twisted_mark", None) is not None
        or getattr(test, "hypothesis", None) is not None
    )
