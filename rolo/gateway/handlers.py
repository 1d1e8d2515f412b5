"""Handlers for the gateway's chain: routing, defaults for unanswered requests, HTTP errors."""

from __future__ import annotations

from typing import Any

from werkzeug.exceptions import HTTPException, NotFound
from werkzeug.wrappers import Response as _WerkzeugResponse

from rolo.response import Response
from rolo.routing import Router

from .chain import HandlerChain, ReturningHandler
from .context import RequestContext

__all__ = ["EmptyResponseHandler", "RouterHandler", "WerkzeugExceptionHandler"]


class RouterHandler(ReturningHandler):
    """A request handler that dispatches the request through a :class:`~rolo.routing.Router`.

    When a rule matched, the endpoint's response (if any: WebSocket endpoints return none) becomes the
    chain's and the chain stops. When none matched, it answers 404 if ``respond_not_found``, and otherwise
    lets the next handlers try.
    """

    def __init__(self, router: Router, respond_not_found: bool = False) -> None:
        self.router = router
        self.respond_not_found = respond_not_found

    def respond_to(self, chain: HandlerChain[Any], context: RequestContext) -> _WerkzeugResponse | None:
        assert context.request is not None, "a request handler runs for a request"
        try:
            result: _WerkzeugResponse | None = self.router.dispatch(context.request)
        except NotFound:
            if self.respond_not_found:
                chain.respond(404, {"code": 404, "message": "Not Found"})
            return None
        chain.stop()
        return result


class EmptyResponseHandler:
    """A response handler that fills in a response nobody answered (still an empty 200)."""

    def __init__(self, status_code: int = 404, body: bytes | str | None = None, headers: Any = None) -> None:
        self.status_code = status_code
        self.body = body or b""
        self.headers = headers

    def __call__(self, chain: HandlerChain[Any], context: RequestContext, response: Response) -> None:
        if response.status_code == 200 and response.response in ([], [b""], (), None) and not response.data:
            response.status_code = self.status_code
            response.set_response(self.body)
            if self.headers:
                response.headers.update(self.headers)


class WerkzeugExceptionHandler:
    """An exception handler that answers werkzeug HTTP errors (``NotFound``, ``MethodNotAllowed`` …) with
    their status, headers and a body in ``output_format``: ``"json"`` (``{"code": …, "message": …}``)
    or ``"html"`` (werkzeug's page). Other exceptions are left to the next handler."""

    def __init__(self, output_format: str = "json") -> None:
        if output_format not in ("json", "html"):
            raise ValueError(f"output_format must be 'json' or 'html', not {output_format!r}")
        self.output_format = output_format

    def __call__(
        self, chain: HandlerChain[Any], exception: Exception, context: RequestContext, response: Response
    ) -> None:
        if not isinstance(exception, HTTPException):
            return
        if exception.response is not None:
            # werkzeug types it as its sans-IO base, yet serves it as a WSGI app (HTTPException.__call__)
            response.update_from(exception.response)  # type: ignore[arg-type]
            return
        # the headers of get_response(), not get_headers(): a RequestRedirect adds its Location only there
        page = exception.get_response()
        response.status_code = exception.code or 500
        for name, value in page.headers:
            if name.lower() not in ("content-type", "content-length"):
                response.headers[name] = value
        if self.output_format == "json":
            response.set_json({"code": exception.code, "message": exception.description})
        else:
            response.mimetype = "text/html"
            response.set_response(page.get_data())
