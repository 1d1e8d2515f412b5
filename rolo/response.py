"""The HTTP response object."""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

from werkzeug.utils import get_content_type
from werkzeug.wrappers import Response as _WerkzeugResponse

__all__ = ["Response"]


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
        if content_type is None and mimetype is None and not headers and self.default_mimetype is not None:
            # the content type werkzeug gives a response told none, without its look-up of Content-Type in
            # the empty headers, which raises and catches a KeyError: a gateway makes such a response for
            # every request
            content_type = get_content_type(self.default_mimetype, "utf-8")
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
