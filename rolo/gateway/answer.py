"""A response as a server sends it: status code, header lines in bytes, and the body, whole or streamed."""

from __future__ import annotations

from collections.abc import Iterator
from typing import NamedTuple

from rolo.request import Request, sent_method
from rolo.response import Response

__all__ = ["Answer", "answer"]

_GET_APP_ITER = Response.get_app_iter
"""werkzeug's: a response class with a body of its own making (its own ``get_app_iter``) is asked for it."""

_GET_WSGI_HEADERS = Response.get_wsgi_headers
"""werkzeug's: a response class with headers of its own making (its own ``get_wsgi_headers``) is asked for
them."""

_GET_DATA = Response.get_data
_ITER_ENCODED = Response.iter_encoded
"""werkzeug's: a response class with a body of its own encoding (its own ``get_data`` or ``iter_encoded``) is
asked for it."""

_ADJUSTED = frozenset({"location", "content-location"})
"""The headers werkzeug's ``get_wsgi_headers`` may rewrite (as URIs)."""


_made = tuple.__new__
"""Makes an :class:`Answer` of its four fields at once, without the named tuple's ``__new__``, a Python
function (some 1,000 instructions less a response)."""


class Answer(NamedTuple):
    """What a server writes for a response, once the handlers are done with it."""

    status: int
    headers: list[tuple[bytes, bytes]]
    body: bytes | Iterator[bytes]
    """The whole body (the response's body is a sequence), or a streamed body's iterator."""
    response: Response
    """The response, for the server to close once a streamed body is spent (a whole body was taken out of
    it already, and the response may be closed at once)."""


def answer(response: Response, request: Request) -> Answer:
    """What to send for ``response`` to ``request``, as werkzeug makes a response for WSGI
    (:meth:`~werkzeug.wrappers.Response.get_wsgi_headers` and
    :meth:`~werkzeug.wrappers.Response.get_app_iter`): no body for ``HEAD``, 204 and 304, and a
    ``Content-Length`` where the body is a sequence. The header lines are encoded here, in the handler's
    thread, so that one that is not Latin-1 fails the request (a 500) before anything is sent. Most responses
    are answered without the request's WSGI environment, which werkzeug's methods take: one that needs them
    has it built (see :func:`~rolo.request.request_of_parts`).

    :raises ValueError: if the status is not a final one (below 200): a 1xx response is interim, and a
        client waits for the final response after it (RFC 9110 15.2)
    :raises UnicodeEncodeError: if a header name or value is not Latin-1
    :raises Exception: what joining a sequence body raised
    """
    status = response.status_code
    if status < 200:
        raise ValueError(f"a handler's response must be final, not interim: status {status} is below 200")
    sequence = response.is_sequence
    encoded = _encoded_headers(response, status, sequence, request)
    kind = type(response)
    if sequence and not response.direct_passthrough and kind.get_app_iter is _GET_APP_ITER:
        # what get_app_iter gives, joined, without the closing iterator it makes (a third of the cost of
        # answering a small response): nothing for HEAD and the statuses without content (RFC 9110 6.4.1)
        if status in (204, 304) or sent_method(request) == "HEAD":
            return _made(Answer, (status, encoded, b"", response))
        body = response.response
        if (
            type(body) is list
            and len(body) == 1
            and type(body[0]) is bytes
            and kind.get_data is _GET_DATA
            and kind.iter_encoded is _ITER_ENCODED
        ):
            # what set_data leaves, one bytes chunk: what get_data would join, without its generator (some
            # 5,000 instructions a response)
            return _made(Answer, (status, encoded, body[0], response))
        return Answer(status, encoded, response.get_data(), response)
    chunks = response.get_app_iter(request.environ)
    if sequence:
        return Answer(status, encoded, b"".join(chunks), response)
    return Answer(status, encoded, iter(chunks), response)


def _encoded_headers(
    response: Response, status: int, sequence: bool, request: Request
) -> list[tuple[bytes, bytes]]:
    """The header lines of werkzeug's :meth:`~werkzeug.wrappers.Response.get_wsgi_headers`, encoded, for a
    response whose body is a ``sequence`` or not. Most responses it would leave as they are (a status with
    content, a ``Content-Length`` or a stream, no ``Location``): their own headers are encoded, without the
    copy it makes of them."""
    if type(response).get_wsgi_headers is _GET_WSGI_HEADERS and status not in (204, 304):
        encoded = []
        sized = not (sequence and response.automatically_set_content_length)
        for name, value in response.headers:
            lower = name.lower()
            if lower in _ADJUSTED:
                break
            if lower == "content-length":
                sized = True
            encoded.append((name.encode("latin-1"), value.encode("latin-1")))
        else:
            if sized:
                return encoded
    headers = response.get_wsgi_headers(request.environ)
    return [(name.encode("latin-1"), value.encode("latin-1")) for name, value in headers]
