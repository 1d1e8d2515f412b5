"""The handler chain: request handlers, then response handlers, exception handlers on error, finalizers always."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from typing import Any, Generic, TypeVar, cast

from werkzeug.datastructures import Headers
from werkzeug.exceptions import HTTPException
from werkzeug.wrappers import Response as _WerkzeugResponse

from rolo.response import Response, merges_as_itself
from rolo.websocket.errors import WebSocketDisconnectedError

from .context import RequestContext

__all__ = [
    "CompositeExceptionHandler",
    "CompositeFinalizer",
    "CompositeHandler",
    "CompositeResponseHandler",
    "ExceptionHandler",
    "Handler",
    "HandlerChain",
    "ReturningHandler",
]

LOG = logging.getLogger("rolo.gateway")

RC = TypeVar("RC", bound=RequestContext)

Handler = Callable[["HandlerChain[Any]", Any, Response], None]
"""``handler(chain, context, response)``: a request handler, response handler or finalizer."""

ExceptionHandler = Callable[["HandlerChain[Any]", Exception, Any, Response], None]
"""``handler(chain, exception, context, response)``: called when a handler raised."""


def _is_expected(error: Exception) -> bool:
    """Errors that are answers, not faults: HTTP errors, and a WebSocket peer that went away."""
    return isinstance(error, (HTTPException, WebSocketDisconnectedError))


class ReturningHandler:
    """A request handler whose answer is a response it returns (:meth:`respond_to`), which the chain merges
    into its own (:meth:`~rolo.Response.update_from`), or takes as it is where nothing could tell the two
    apart (see :meth:`HandlerChain.handle`). A subclass that overrides ``__call__`` is an ordinary handler."""

    def respond_to(self, chain: HandlerChain[Any], context: Any) -> _WerkzeugResponse | None:
        """The response to merge into the chain's, or ``None``; it may stop the chain, or respond itself.
        ``chain.response`` may be ``None`` here: the chain makes its own response only once a handler
        needs one, after this returns."""
        raise NotImplementedError

    def __call__(self, chain: HandlerChain[Any], context: Any, response: Response) -> None:
        result = self.respond_to(chain, context)
        if result is not None:
            response.update_from(result)


class HandlerChain(Generic[RC]):
    """Runs one request through the handlers.

    Request handlers run in order until one calls :meth:`stop` or :meth:`terminate` (or :meth:`respond`).
    Response handlers run next, unless the chain was terminated. When a request or response handler
    raises, the response becomes a plain 500, the error is recorded as :attr:`error` and logged, and the
    exception handlers run: they may turn the response into something better. Finalizers always run last.
    An exception handler, or a finalizer, that raises is logged and does not stop the others.

    :ivar error: the exception a request or response handler raised, or ``None``
    :ivar response: the response the handlers fill in; ``None`` until the chain has one (see :meth:`handle`)
    """

    def __init__(
        self,
        request_handlers: Iterable[Handler] | None = None,
        response_handlers: Iterable[Handler] | None = None,
        finalizers: Iterable[Handler] | None = None,
        exception_handlers: Iterable[ExceptionHandler] | None = None,
    ) -> None:
        # tuples: a chain lives as long as its request (a WebSocket one, as long as its connection), and
        # an empty tuple takes no memory of its own where an empty list takes 56 bytes
        self.request_handlers = tuple(request_handlers or ())
        self.response_handlers = tuple(response_handlers or ())
        self.finalizers = tuple(finalizers or ())
        self.exception_handlers = tuple(exception_handlers or ())
        self.stopped = False
        self.terminated = False
        self.error: Exception | None = None
        self.context: RC | None = None
        self.response: Response | None = None
        self._response: Response | None = None  # the one the chain fills in and gives: a handler may replace
        # the public attribute, as it always could, without changing what the others see

    def handle(self, context: RC, response: Response | None = None) -> None:
        """Run the handlers over ``context``, filling in ``response``.

        Handed no response, the chain makes its own, :attr:`response`, as a new :class:`~rolo.Response` when
        a handler first needs it, with one exception: when a :class:`ReturningHandler` (a
        :class:`~rolo.gateway.handlers.RouterHandler`) answers before any handler needed one and stops the
        chain, which has no response handlers nor finalizers, and the response it returned is as good as a
        new one that took it (``rolo.response.merges_as_itself``), that response becomes the chain's as it
        is: nothing could tell the difference, and the server makes one response fewer.
        """
        self.context = context
        self.response = self._response = response
        try:
            self._run(self.request_handlers, context)
            if not self.terminated and self.response_handlers:
                self._run(self.response_handlers, context, ignore_stop=True)
        finally:
            response = self._made_response()
            for finalizer in self.finalizers:
                self._isolated(finalizer, self, context, response)

    def _run(self, handlers: tuple[Handler, ...], context: RC, ignore_stop: bool = False) -> None:
        try:
            for handler in handlers:
                if self._response is None and type(handler).__call__ is ReturningHandler.__call__:
                    self._take(cast(ReturningHandler, handler).respond_to(self, context))
                else:
                    handler(self, context, self._made_response())
                if self.terminated or (self.stopped and not ignore_stop):
                    return
        except Exception as error:
            self._fail(error, context, self._made_response())

    def _made_response(self) -> Response:
        """The chain's response, made now if it has none yet: after :meth:`handle`, the one to send."""
        if self._response is None:
            self.response = self._response = Response()
        return self._response

    def _take(self, result: _WerkzeugResponse | None) -> None:
        """Make ``result``, the response a handler returned, the chain's: as it is if the chain has none yet,
        no handler after this one may change it (the handler stopped the chain, which has no response
        handlers nor finalizers) and it is as good as a response that took it; otherwise merged into the
        chain's."""
        if result is None:
            return
        if (
            self._response is None
            and (self.stopped or self.terminated)
            and not self.response_handlers
            and not self.finalizers
            and merges_as_itself(result)
        ):
            self.response = self._response = result
        else:
            self._made_response().update_from(result)

    def _fail(self, error: Exception, context: RC, response: Response) -> None:
        self.error = error
        self.stopped = True
        if isinstance(error, HTTPException) and not self.exception_handlers:
            # an answer that nothing will give: say so, or the client's 500 is a mystery to the operator
            LOG.warning(
                "%r while handling %s is answered 500: the gateway has no exception handler to answer it "
                "with its status (add rolo.gateway.handlers.WerkzeugExceptionHandler() to its "
                "exception_handlers, or serve the router through rolo.gateway.as_gateway)",
                error,
                getattr(context, "request", None),
            )
        elif _is_expected(error):
            LOG.debug("handler raised %r", error)
        else:
            LOG.exception("exception while handling %s", getattr(context, "request", None))
        # never an empty 200: without an exception handler to say more, the answer is a 500
        response.status_code = 500
        response.headers.clear()
        response.set_response(b"")
        for handler in self.exception_handlers:
            self._isolated(handler, self, error, context, response)

    @staticmethod
    def _isolated(handler: Callable[..., None], *args: Any) -> None:
        try:
            handler(*args)
        except Exception:
            LOG.exception("exception in %r", handler)

    def stop(self) -> None:
        """No more request handlers; response handlers and finalizers still run."""
        self.stopped = True

    def terminate(self) -> None:
        """No more request handlers or response handlers; finalizers still run."""
        self.stopped = True
        self.terminated = True

    def respond(self, status_code: int = 200, payload: Any = None, headers: Any = None) -> None:
        """Answer now: set the status, the body (a ``dict`` or ``list`` as JSON, ``str`` or ``bytes`` as it
        is) and headers, then :meth:`stop`."""
        assert self.context is not None, "respond() is for handlers, while the chain runs"
        response = self._made_response()
        response.status_code = status_code
        if isinstance(payload, (dict, list)):
            response.set_json(payload)
        elif payload is not None:
            response.set_response(payload)
        if headers:
            response.headers.update(Headers(headers))
        self.stop()

    def throw(self, error: Exception) -> None:
        """Fail the request with ``error``: it is raised, so the exception handlers run."""
        self.error = error
        raise error


class CompositeHandler:
    """Request handlers run as one, in order, until the chain stops."""

    def __init__(self, handlers: Iterable[Handler] | None = None) -> None:
        self.handlers: list[Handler] = list(handlers or ())

    def append(self, handler: Handler) -> None:
        self.handlers.append(handler)

    def remove(self, handler: Handler) -> None:
        self.handlers.remove(handler)

    def __call__(self, chain: HandlerChain[Any], context: Any, response: Response) -> None:
        for handler in self.handlers:
            handler(chain, context, response)
            if chain.stopped:
                return


class CompositeResponseHandler(CompositeHandler):
    """Response handlers run as one, in order, until the chain is terminated."""

    def __call__(self, chain: HandlerChain[Any], context: Any, response: Response) -> None:
        for handler in self.handlers:
            handler(chain, context, response)
            if chain.terminated:
                return


class CompositeFinalizer(CompositeHandler):
    """Finalizers run as one; each runs whatever the others do."""

    def __call__(self, chain: HandlerChain[Any], context: Any, response: Response) -> None:
        for handler in self.handlers:
            HandlerChain._isolated(handler, chain, context, response)


class CompositeExceptionHandler:
    """Exception handlers run as one; each runs whatever the others do."""

    def __init__(self, handlers: Iterable[ExceptionHandler] | None = None) -> None:
        self.handlers: list[ExceptionHandler] = list(handlers or ())

    def append(self, handler: ExceptionHandler) -> None:
        self.handlers.append(handler)

    def remove(self, handler: ExceptionHandler) -> None:
        self.handlers.remove(handler)

    def __call__(self, chain: HandlerChain[Any], exception: Exception, context: Any, response: Response) -> None:
        for handler in self.handlers:
            HandlerChain._isolated(handler, chain, exception, context, response)
