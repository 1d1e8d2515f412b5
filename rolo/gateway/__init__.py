"""The gateway: a chain of handlers that every request, HTTP or WebSocket, runs through.

Servers hand requests to :meth:`Gateway.serve` (HTTP) and :meth:`Gateway.accept` (WebSockets);
``rolo.gateway.wsgi``, ``rolo.gateway.asgi`` and ``rolo.serving.twisted`` are such servers.
"""

from .chain import (
    CompositeExceptionHandler,
    CompositeFinalizer,
    CompositeHandler,
    CompositeResponseHandler,
    ExceptionHandler,
    Handler,
    HandlerChain,
    ReturningHandler,
)
from .context import RequestContext
from .gateway import App, Gateway, as_gateway

__all__ = [
    "App",
    "CompositeExceptionHandler",
    "CompositeFinalizer",
    "CompositeHandler",
    "CompositeResponseHandler",
    "ExceptionHandler",
    "Gateway",
    "Handler",
    "HandlerChain",
    "RequestContext",
    "ReturningHandler",
    "as_gateway",
]
