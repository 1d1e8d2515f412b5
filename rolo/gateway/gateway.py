"""The Gateway: where a server hands over HTTP requests and WebSocket upgrade requests."""

from __future__ import annotations

import logging
from operator import is_
from typing import TYPE_CHECKING, Any

from rolo.counters import Tally
from rolo.request import Request
from rolo.response import Response
from rolo.routing import Router
from rolo.websocket.errors import WebSocketDisconnectedError
from rolo.websocket.frames import CloseCode
from rolo.websocket.websocket import INTERNAL_ERROR_REASON

from .chain import ExceptionHandler, Handler, HandlerChain, _is_expected
from .context import RequestContext
from .handlers import RouterHandler, WerkzeugExceptionHandler

if TYPE_CHECKING:
    from rolo.websocket import WebSocketRequest

__all__ = ["App", "Gateway", "as_gateway"]

LOG = logging.getLogger("rolo.gateway")

_HINT = ': a WebSocket route says methods=["WEBSOCKET"], and its handler calls accept() or reject(response)'
"""Ends the lines that log a handler that did not settle an upgrade request."""


class Gateway:
    """Runs each request through a :class:`HandlerChain` made of its handlers.

    The handler lists are kept by reference: handlers appended later take part in later requests.

    :param context_class: the :class:`RequestContext` subclass made for each request
    :ivar handler_errors: how many requests a handler failed with an error that is no answer (not an HTTP
        error, nor a WebSocket peer that went away), by kind: ``"http"`` or ``"websocket"``; for metrics
        (:mod:`rolo.metrics`). The servers add those of what runs after the chain: an HTTP response that
        could not be answered, or whose streamed body or ``close`` raised
    """

    _handlers_now: tuple[tuple[int, ...], list[Any], tuple[tuple[Any, ...], ...]] = ((), [], ())
    """The handlers of the chain made last, which the next shares while they stay the same: the lengths of
    the four lists, their handlers one after the other (what the next chain's are compared with), and their
    tuples; one attribute, replaced at once, whichever threads make chains."""

    def __init__(
        self,
        request_handlers: list[Handler] | None = None,
        response_handlers: list[Handler] | None = None,
        finalizers: list[Handler] | None = None,
        exception_handlers: list[ExceptionHandler] | None = None,
        context_class: type[RequestContext] | None = None,
    ) -> None:
        self.request_handlers = request_handlers if request_handlers is not None else []
        self.response_handlers = response_handlers if response_handlers is not None else []
        self.finalizers = finalizers if finalizers is not None else []
        self.exception_handlers = exception_handlers if exception_handlers is not None else []
        self.context_class = context_class or RequestContext
        self.handler_errors = Tally()

    def new_chain(self) -> HandlerChain[Any]:
        """A chain over the gateway's current handlers."""
        # the chains share the tuples of the handlers while they stay the same (a WebSocket request's chain
        # lives as long as its connection). They are compared by identity (equal ones may still differ) in
        # C alone: no call back into Python, which would deepen the handler thread's C stack; and one
        # comparison of every handler rather than a tuple of each list, then a loop over them (some 7,000
        # instructions less per request)
        lists: tuple[list[Any], ...] = (
            self.request_handlers,
            self.response_handlers,
            self.finalizers,
            self.exception_handlers,
        )
        lengths, handlers = tuple(map(len, lists)), [*lists[0], *lists[1], *lists[2], *lists[3]]
        now = self._handlers_now
        if lengths != now[0] or not all(map(is_, handlers, now[1])):
            now = self._handlers_now = (lengths, handlers, tuple(map(tuple, lists)))
        return HandlerChain(*now[2])

    def process(self, request: Request, response: Response) -> None:
        """Handle an HTTP request, filling in ``response``. Errors become error responses; nothing raises."""
        self.handle(self.context_class(request), response)

    def handle(self, context: RequestContext, response: Response) -> None:
        """Run a chain over a context made by the caller."""
        self._run_chain(context, response, "http")

    def serve(self, request: Request) -> Response:
        """Handle an HTTP request, as a server does: what :meth:`process` fills in a new response with,
        except that it may be the very response a routed endpoint returned, where nothing could tell the
        difference (see :meth:`HandlerChain.handle`). A subclass that overrides :meth:`process` or
        :meth:`handle` has it called. Errors become error responses; nothing raises.

        :returns: the response to send; the caller closes it once it is sent
        """
        if type(self).process is not Gateway.process or type(self).handle is not Gateway.handle:
            response = Response()
            self.process(request, response)
            return response
        return self._run_chain(self.context_class(request), None, "http")[1]

    def _run_chain(
        self, context: RequestContext, response: Response | None, kind: str
    ) -> tuple[HandlerChain[Any], Response]:
        """Run a new chain: it, and ``response`` filled in or (``None``) the response the chain made."""
        if kind == "http" and type(self).new_chain is Gateway.new_chain:
            # an HTTP request's chain lives only as long as its request: tuples of its own cost it less than
            # finding whether the last chain's may be shared (some 6,000 instructions a request)
            chain: HandlerChain[Any] = HandlerChain(
                self.request_handlers, self.response_handlers, self.finalizers, self.exception_handlers
            )
        else:
            chain = self.new_chain()
        if response is None and type(chain).handle is not HandlerChain.handle:
            response = Response()  # a chain of a subclass that handles requests its own way, given a response
        chain.handle(context, response)
        if chain.error is not None and not _is_expected(chain.error):
            self.handler_errors.add(kind)
        return chain, response if response is not None else chain._made_response()

    def accept(self, request: WebSocketRequest) -> None:
        """Handle a WebSocket upgrade request, in the thread the connection's handler is to run in.

        After the chain, the connection is settled whatever the handlers did. A request nobody accepted or
        rejected is rejected with the chain's response (a 500 if a handler raised, the response an HTTP
        endpoint returned for a route that does not say ``methods=["WEBSOCKET"]``). An empty success is
        replaced: with 404 when no handler stopped the chain (nothing routed it), with 500 when one did (its
        handler returned nothing, without accepting or rejecting). Each of those handlers is logged, with
        how to declare a WebSocket route. An accepted connection is closed, with 1011 if a handler raised
        and 1000 otherwise.
        """
        # the chain makes its response when a handler first needs one: a connection's handler, which runs
        # inside the chain for as long as the connection, holds none (five objects fewer per connection)
        chain, response = self._run_chain(self.context_class(request), None, "websocket")
        if not request.is_upgraded() and not request.is_rejected() and response.status_code < 300:
            if not chain.stopped:
                response = Response(status=404)
            elif response.status_code == 200 and not response.response:
                LOG.error(
                    "the handler of %s neither accepted nor rejected the WebSocket upgrade%s", request.path, _HINT
                )
                response = Response(status=500)
            else:
                status = response.status_code
                LOG.warning("the handler of %s answered a WebSocket upgrade with %s%s", request.path, status, _HINT)
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


App = Gateway | Router
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
