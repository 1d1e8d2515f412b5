"""The WSGI environment of a Twisted Web request."""

from __future__ import annotations

import sys
from collections.abc import Iterable
from typing import Any
from urllib.parse import unquote_to_bytes

from twisted.web.server import Request

from rolo.request import build_environ
from rolo.target import split_target

from .channel import GatewayRequest

__all__ = ["environ_for", "request_headers", "request_path"]


def request_path(request: Request, target: tuple[bytes, bytes] | None = None) -> tuple[bytes, bytes]:
    """The percent-decoded path bytes and the raw query of a request (``target``: its target's path and
    query, where the caller split it already).

    An absolute-form target (``GET http://host:8080/a/b?x=1 HTTP/1.1``, as sent to proxies) routes by its
    path, as RFC 9112 3.2.2 asks of a server.

    :raises rolo.target.InvalidTarget: if the target cannot be parsed
    """
    path, query = target or split_target(request.uri, request.method)
    return unquote_to_bytes(path), query


def request_headers(request: Request) -> list[tuple[str, str]]:
    """The request's header lines, decoded from Latin-1, as the client cased them where the channel
    recorded that. The names are interned: requests alive at once (thousands of WebSocket ones) share one
    copy of each."""
    if isinstance(request, GatewayRequest) and request.raw_headers:
        lines: Iterable[tuple[bytes, bytes]] = request.raw_headers
    else:
        lines = ((name, value) for name, values in request.requestHeaders.getAllRawHeaders() for value in values)
    return [(sys.intern(name.decode("latin-1")), value.decode("latin-1")) for name, value in lines]


def environ_for(
    request: Request,
    method: str | None = None,
    headers: list[tuple[str, str]] | None = None,
    target: tuple[bytes, bytes] | None = None,
) -> dict[str, Any]:
    """A WSGI environment for ``request``, with its headers as the client cased them, and the client's
    address and scheme as a trusted proxy said they are (``request.forwarded``), if one did.

    :param method: replaces the request's method (the WebSocket side passes ``WEBSOCKET``)
    :param headers: the request's :func:`request_headers`, where the caller has them already
    :param target: the path and query of its target (:func:`rolo.target.split_target`), where the caller
        split it already
    :raises UnicodeDecodeError: if the path is not UTF-8
    :raises rolo.target.InvalidTarget: if the target cannot be parsed
    """
    path, query = request_path(request, target)
    path.decode("utf-8")  # a path that is not text has no route: refuse it here, once
    if headers is None:
        headers = request_headers(request)
    assert request.content is not None, "Twisted Web has the body (gotLength) before the request is handled"
    request.content.seek(0)
    forwarded = getattr(request, "forwarded", None)  # the client behind a trusted proxy
    if forwarded is not None:
        remote_addr, scheme = forwarded.host, forwarded.scheme
    else:
        remote_addr, scheme = getattr(request.getClientAddress(), "host", None), None
    host = request.getHost()
    environ = build_environ(
        method=method or request.method.decode("latin-1"),
        path=path,
        headers=headers,
        body=request.content,
        scheme=scheme or ("https" if request.isSecure() else "http"),
        query_string=query,
        remote_addr=remote_addr,
        server=(getattr(host, "host", "localhost"), getattr(host, "port", None)),
        raw_uri=request.uri.decode("latin-1"),
    )
    # Twisted Web has read the whole body (de-chunked if need be): it ends where the stream ends
    environ["wsgi.input_terminated"] = True
    return environ
