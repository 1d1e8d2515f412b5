"""The Gateway: where a server hands over HTTP requests and WebSocket upgrade requests."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any, Optional, Union

from rolo.request import Request
from rolo.response import Response
from rolo.routing import Router
from rolo.websocket.errors import WebSocketDisconnectedError
from rolo.websocket.frames import CloseCode
from rolo.websocket.websocket import INTERNAL_ERROR_REASON

from .chain import ExceptionHandler, Handler, HandlerChain
from .context import RequestContext
from .handlers import RouterHandler, WerkzeugExceptionHandler

if TYPE_CHECKING:
    from rolo.websocket import WebSocketRequest

__all__ = ["App", "Gateway", "as_gateway"]

LOG = logging.getLogger("rolo.gateway")


class Gateway:
    """Runs each request through a :class:`HandlerChain` made of its handlers.

    The handler lists are kept by reference: handlers appended later take part in later requests.

    :param context_class: the :class:`RequestContext` subclass made for each request
    """

    def __init__(
        self,
        request_handlers: Optional[list[Handler]] = None,
        response_handlers: Optional[list[Handler]] = None,
        finalizers: Optional[list[Handler]] = None,
        exception_handlers: Optional[list[ExceptionHandler]] = None,
        context_class: Optional[type[RequestContext]] = None,
    ) -> None:
        self.request_handlers = request_handlers if request_handlers is not None else []
        self.response_handlers = response_handlers if response_handlers is not None else []
        self.finalizers = finalizers if finalizers is not None else []
        self.exception_handlers = exception_handlers if exception_handlers is not None else []
        self.context_class = context_class or RequestContext

    def new_chain(self) -> HandlerChain[Any]:
        """A chain over the gateway's current handlers."""
        return HandlerChain(self.request_handlers, self.response_handlers, self.finalizers, self.exception_handlers)

    def process(self, request: Request, response: Response) -> None:
        """Handle an HTTP request, filling in ``response``. Errors become error responses; nothing raises."""
        self.handle(self.context_class(request), response)

    def handle(self, context: RequestContext, response: Response) -> None:
        """Run a chain over a context made by the caller."""
        self.new_chain().handle(context, response)

    def accept(self, request: WebSocketRequest) -> None:
        """Handle a WebSocket upgrade request, in the thread the connection's handler is to run in.

        After the chain, the connection is settled whatever the handlers did. A request nobody accepted or
        rejected is rejected with the chain's response (a 500 if a handler raised); since only a 101 opens
        a WebSocket, a response still saying success is replaced: 404 when no handler stopped the chain
        (nothing routed it), 500 when one did (its handler returned without accepting or rejecting). An
        accepted connection is closed, with 1011 if a handler raised and 1000 otherwise.
        """
        response = Response()
        chain = self.new_chain()
        chain.handle(self.context_class(request), response)
        if not request.is_upgraded() and not request.is_rejected() and response.status_code < 300:
            if chain.stopped:
                LOG.error("the handler for WebSocket %s neither accepted nor rejected it", request.path)
            response = Response(status=500 if chain.stopped else 404)
        try:
            if request.is_upgraded():
                if chain.error is not None and not isinstance(chain.error, WebSocketDisconnectedError):
                    request.close(CloseCode.INTERNAL_ERROR, INTERNAL_ERROR_REASON)
                else:
                    request.close(CloseCode.NORMAL_CLOSURE)
            elif not request.is_rejected():
                request.reject(response)
        except Exception as error:
            if not isinstance(error, WebSocketDisconnectedError):
                LOG.exception("could not settle the WebSocket connection for %s", request.path)



App = Union[Gateway, Router]
"""What a rolo server serves: a gateway, or a router that :func:`as_gateway` puts in one."""


def as_gateway(app: App) -> Gateway:
    """The gateway that serves ``app``: a :class:`Gateway` as it is; a :class:`~rolo.Router` in a gateway
    that routes with it, answers what no rule matches with 404 and werkzeug's HTTP errors as JSON.

    :raises TypeError: if ``app`` is neither
    """
    if isinstance(app, Gateway):
        return app
    if isinstance(app, Router):
        return Gateway(
            request_handlers=[RouterHandler(app, respond_not_found=True)],
            exception_handlers=[WerkzeugExceptionHandler()],
        )
    raise TypeError(f"expected a rolo Gateway or Router, got {type(app).__module__}.{type(app).__qualname__}")
