"""The HTTP response object."""

from __future__ import annotations

import json
from collections.abc import Iterable
from functools import lru_cache
from typing import Any, TypeGuard, cast

from werkzeug.datastructures import Headers
from werkzeug.utils import get_content_type
from werkzeug.wrappers import Response as _WerkzeugResponse

from rolo.request import _listed

__all__ = ["Response", "merges_as_itself"]


# the mimetypes of responses are few, mostly the application's own: the content types of the latest 64 of
# at most 64 characters are remembered, one copy of each for all responses
_remembered_content_type = lru_cache(maxsize=64)(get_content_type)


def _content_type(mimetype: str) -> str:
    """werkzeug's content type for ``mimetype``: with ``; charset=utf-8`` for a text one."""
    if len(mimetype) <= 64:
        return _remembered_content_type(mimetype, "utf-8")
    return get_content_type(mimetype, "utf-8")


@lru_cache(maxsize=64)
def _status_line(status_code: int) -> tuple[str, int]:
    """werkzeug's status line for ``status_code`` (``200 OK``), made once; and the code."""
    made = _WerkzeugResponse(status=status_code)
    return made.status, made.status_code


def _lay_out(
    response: _WerkzeugResponse,
    body: bytes | str | None,
    status: str,
    status_code: int,
    content_type: str | None,
    direct_passthrough: bool,
) -> None:
    """Give a new ``response`` the attributes werkzeug's constructor gives it for a body of ``None``, bytes or
    text, the status ``status_code`` (whose line is ``status``), a ``content_type`` without line breaks (what
    werkzeug's headers refuse) and no headers: where :data:`_LAID_OUT` says so, these alone. A third of the
    cost of werkzeug's (some 20,000 instructions less a response): its status setter parses the line again,
    and its headers check each value with a regular expression and look for its name before setting it."""
    if type(body) is str:
        body = body.encode()
    # fenced: werkzeug's private attributes, set only where _LAID_OUT found that its constructor sets these
    if body is None:
        response.headers = _listed([] if content_type is None else [("Content-Type", content_type)])
    elif content_type is None:
        response.headers = _listed([("Content-Length", str(len(body)))])
    else:
        response.headers = _listed([("Content-Type", content_type), ("Content-Length", str(len(body)))])
    response._status = status
    response._status_code = status_code
    response.direct_passthrough = direct_passthrough
    response._on_close = []
    response.response = [] if body is None else [cast(bytes, body)]


def _laid_out_alike() -> bool:
    """Whether werkzeug's constructor leaves what :func:`_lay_out` makes: the same attributes, with the same
    values, for a response with a body and one without (another version of werkzeug may not)."""
    for body in (b"probe", None):
        made = _WerkzeugResponse(body, 201, None, None, "text/plain")
        laid = _WerkzeugResponse.__new__(_WerkzeugResponse)
        _lay_out(laid, body, "201 CREATED", 201, "text/plain", False)
        ours, theirs = vars(laid), vars(made)
        if list(ours) != list(theirs) or vars(laid.headers).keys() != vars(made.headers).keys():
            return False
        if list(laid.headers) != list(made.headers):
            return False
        if any(ours[name] != theirs[name] for name in ours if name != "headers"):
            return False
        if (laid.status, laid.status_code, laid.get_data()) != (made.status, made.status_code, made.get_data()):
            return False
    return True


_LAID_OUT = _laid_out_alike()
"""Whether :class:`Response` makes its responses without werkzeug's constructor where it can (see
:func:`_lay_out`)."""


class Response(_WerkzeugResponse):
    """An HTTP response: a :class:`werkzeug.wrappers.Response` with helpers for JSON and for merging."""

    def __init__(
        self,
        response: Any = None,
        status: Any = None,
        headers: Any = None,
        mimetype: str | None = None,
        content_type: str | None = None,
        direct_passthrough: bool = False,
    ) -> None:
        if content_type is None:
            if mimetype is not None:
                # as werkzeug builds it from the mimetype, once for all responses of that mimetype
                content_type = _content_type(mimetype)
            elif not headers and self.default_mimetype is not None:
                # the content type werkzeug gives a response told none, without its look-up of Content-Type in
                # the empty headers, which raises and catches a KeyError: a gateway makes such a response for
                # every request; one copy of it for all (a WebSocket request's lives as long as its connection)
                content_type = _content_type(self.default_mimetype)
        if status is None and type(self.default_status) is int:
            status = self.default_status
        if type(status) is int:
            # the one copy of werkzeug's status line, as above
            line, code = _status_line(status)
            if (
                _LAID_OUT
                and type(self) is Response
                and (headers is None or not (headers or isinstance(headers, Headers)))  # werkzeug keeps its Headers
                and (response is None or type(response) is bytes or type(response) is str)
                and (content_type is None or ("\n" not in content_type and "\r" not in content_type))
                and self.automatically_set_content_length
            ):
                _lay_out(self, response, line, code, content_type, direct_passthrough)
                return
            status = line
        super().__init__(response, status, headers, mimetype, content_type, direct_passthrough)

    def update_from(self, other: _WerkzeugResponse) -> None:
        """Take the status, headers and body of ``other``; headers ``other`` lacks are kept.

        A streamed body stays streamed, and ``other``'s close callbacks run when this response closes.
        """
        self.status = other.status
        self.headers.update(other.headers)
        self.response = other.response
        self.direct_passthrough = other.direct_passthrough
        self.call_on_close(other.close)

    def set_json(self, doc: Any, cls: type[json.JSONEncoder] | None = None) -> None:
        """Make ``doc``, serialised as JSON, the body, with the ``application/json`` mimetype."""
        self.mimetype = "application/json"
        self.data = json.dumps(doc, cls=cls)

    def set_response(self, response: str | bytes | bytearray | Iterable[bytes] | None) -> None:
        """Set the body from text, bytes or an iterable of bytes (which is streamed as it is)."""
        if response is None:
            self.data = b""
        elif isinstance(response, (str, bytes, bytearray)):
            self.data = response
        else:
            self.response = response

    @classmethod
    def for_json(cls, doc: Any, *args: Any, **kwargs: Any) -> Response:
        """A response whose body is ``doc`` as JSON; other arguments go to the constructor."""
        response = cls(*args, **kwargs)
        response.set_json(doc)
        return response


_PLAIN_ATTRIBUTES = len(vars(Response()))
"""How many attributes of its own a response has until something sets more on it (an attribute of the class
set on one response, a cached property read): every response has the same ones, set by its constructor."""


def merges_as_itself(other: _WerkzeugResponse) -> TypeGuard[Response]:
    """Whether ``other`` is as good as a new :class:`Response` that took it (``Response().update_from(other)``),
    so that a server may send ``other`` itself: nothing, from its headers to the closing of its body, could tell
    them apart. So it is when ``other`` is a :class:`Response` (not a subclass, which may send itself its own
    way) with a whole body (a sequence: the merge would close a stream twice), nothing set on it beyond what
    every response has (the merge copies the status, headers and body alone), and headers that the merge keeps
    in their order: its ``Content-Type`` first (it replaces the new response's, in place) and every name once
    (the merge groups repeated names).
    """
    # werkzeug's is_sequence, without its property's call; the attributes counted rather than compared by
    # name (a third of the cost), the constructor having set those every response has
    if (
        type(other) is not Response
        or not isinstance(other.response, (tuple, list))
        or len(vars(other)) != _PLAIN_ATTRIBUTES
    ):
        return False
    headers = other.headers
    if type(headers) is not Headers:
        return False
    names = [name.lower() for name, _ in headers]
    return bool(names) and names[0] == "content-type" and len(set(names)) == len(names)
