"""Serving a gateway's HTTP side from any WSGI server."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from rolo.request import Request

from .gateway import Gateway

__all__ = ["WsgiGateway"]


class WsgiGateway:
    """A WSGI application that serves ``gateway``'s HTTP requests (WebSockets need an ASGI or Twisted
    server)."""

    def __init__(self, gateway: Gateway) -> None:
        self.gateway = gateway

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        return self.gateway.serve(Request(environ))(environ, start_response)
