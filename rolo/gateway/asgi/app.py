"""AsgiGateway: an ASGI 3 application serving a gateway's HTTP and WebSockets, and the lifespan."""

from __future__ import annotations

import asyncio
import logging
from typing import Any, Protocol

from rolo.gateway.gateway import App, as_gateway
from rolo.settings import ServerSettings, refuse_unknown
from rolo.websocket import WebSocketRequest

from .http import HttpApp, Receive, Send
from .websocket import WebSocketApp

__all__ = ["AsgiGateway", "LifespanListener"]

LOG = logging.getLogger(__name__)


class LifespanListener(Protocol):
    """Told when the ASGI server starts and stops the application. Both methods run in a thread of their
    own, so they may block; an exception in ``on_startup`` makes the server refuse to start."""

    def on_startup(self) -> None: ...

    def on_shutdown(self) -> None: ...


class AsgiGateway:
    """An ASGI 3 application that serves a gateway: HTTP requests through
    :meth:`~rolo.gateway.Gateway.serve`, WebSocket upgrade requests through
    :meth:`~rolo.gateway.Gateway.accept`, under any asyncio ASGI server::

        app = AsgiGateway(gateway)    # in myapp.py, then: hypercorn myapp:app, or uvicorn myapp:app

    Nothing here touches an event loop before the server calls the application, so it may be made at
    import time. HTTP handlers run in a pool of ``http_threads`` threads; WebSocket handlers in threads of
    their own, at most ``max_connections`` of them. Neither can starve the other.

    On the lifespan's shutdown it refuses new WebSockets, closes the open ones with 1001, waits for their
    handlers (at most ``grace_period`` seconds) and stops the HTTP pool: until the next startup, an HTTP
    request is answered ``503``, with ``Connection: close``.

    The protocol itself (message size limit, pings, compression) is the ASGI server's: configure it there.

    :param gateway: the gateway to serve, or a router (served as :func:`~rolo.gateway.as_gateway` makes it
        a gateway)
    :param lifespan_listener: told of the lifespan's startup and shutdown
    :param settings: the fields of :class:`~rolo.settings.ServerSettings` (``http_threads``,
        ``max_connections``, ``max_queue``, ``grace_period`` …)
    :raises ValueError: for a setting's bad value
    :raises TypeError: for a keyword that is not one of those settings, saying whether it is one of
        TwistedGateway's alone (see :func:`~rolo.settings.refuse_unknown`)
    """

    def __init__(self, gateway: App, *, lifespan_listener: LifespanListener | None = None, **settings: Any) -> None:
        self.gateway = gateway = as_gateway(gateway)
        self.lifespan_listener = lifespan_listener
        refuse_unknown(settings, "AsgiGateway")
        self.settings = ServerSettings(**settings)
        self.http = HttpApp(gateway, self.settings)
        self.websocket = WebSocketApp(WebSocketRequest.listener(gateway.accept), self.settings)

    async def __call__(self, scope: dict[str, Any], receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "http":
            await self.http(scope, receive, send)
        elif kind == "websocket":
            await self.websocket(scope, receive, send)
        elif kind == "lifespan":
            await self._lifespan(receive, send)
        else:
            raise ValueError(f"unknown ASGI scope type {kind!r}")

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        phases = {"lifespan.startup": self._start, "lifespan.shutdown": self._stop}
        while True:
            event = (await receive())["type"]
            try:
                await phases[event]()
            except Exception as error:
                LOG.exception("%s failed", event)
                await send({"type": f"{event}.failed", "message": f"{type(error).__name__}: {error}"})
                return
            await send({"type": f"{event}.complete"})
            if event == "lifespan.shutdown":
                return

    async def _start(self) -> None:
        if self.lifespan_listener is not None:
            await asyncio.to_thread(self.lifespan_listener.on_startup)
        # after a shutdown: take WebSockets and HTTP requests again, in new pools
        self.websocket.host.start()
        self.http.start()

    async def _stop(self) -> None:
        await self.shutdown()
        if self.lifespan_listener is not None:
            await asyncio.to_thread(self.lifespan_listener.on_shutdown)

    async def shutdown(self) -> None:
        """Refuse new WebSockets, close the open ones with 1001, wait for their handlers (at most
        ``grace_period`` seconds), and stop the HTTP pool. The lifespan's shutdown does this; under a server
        that runs no lifespan, await it on the server's loop before it stops."""
        await self.websocket.shutdown(self.settings.grace_period)
        self.http.shutdown()
