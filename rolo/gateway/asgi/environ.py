"""The WSGI environment of an ASGI connection scope."""

from __future__ import annotations

from typing import IO, Any
from urllib.parse import unquote_to_bytes

from rolo.request import Request, build_environ, headers_of, request_of_parts
from rolo.target import split_target

__all__ = ["environ_for", "request_for"]

# a WebSocket scope names its scheme ws/wss; the request a handler sees is the HTTP request that upgraded
_HTTP_SCHEMES = {"ws": "http", "wss": "https"}


def _path_of(scope: dict[str, Any]) -> bytes:
    """The percent-decoded path bytes, below the application's mount point.

    :raises rolo.target.InvalidTarget: if the request target cannot be parsed
    """
    path: bytes
    raw_path = scope.get("raw_path")
    if raw_path is None:  # optional in ASGI; path is decoded already
        path = scope["path"].encode("utf-8")
    elif raw_path[:1] == b"/":  # origin-form (most): its path, decoded where it has anything to decode
        path = raw_path.partition(b"?")[0]
        if b"%" in path:
            path = unquote_to_bytes(path)
    else:
        # an absolute-form target (GET http://host/a/b, as sent to proxies), which servers pass on as the
        # path, routes by its path, as RFC 9112 3.2.2 asks of a server
        raw_path, _ = split_target(raw_path, scope.get("method", "GET"))
        path = unquote_to_bytes(raw_path)
    # servers disagree on whether path includes root_path (the spec now says it does): take it off if so
    root_path = scope.get("root_path")
    if root_path:
        root = root_path.encode("utf-8")
        if path.startswith(root):
            path = path[len(root) :] or b"/"
    return path


def environ_for(scope: dict[str, Any], body: IO[bytes] | None = None, method: str | None = None) -> dict[str, Any]:
    """A WSGI environment for an ``http`` or ``websocket`` scope.

    Header names are as the server passed them (ASGI servers usually lowercase them).

    :param body: the request body stream, read by the handler
    :param method: replaces the scope's method (the WebSocket side passes ``WEBSOCKET``)
    :raises UnicodeDecodeError: if the path is not UTF-8
    :raises rolo.target.InvalidTarget: if the request target cannot be parsed
    """
    path = _path_of(scope)
    path.decode("utf-8")  # a path that is not text has no route: refuse it here, once
    query = scope.get("query_string", b"")
    client = scope.get("client")
    server = scope.get("server")
    raw_target = scope.get("raw_path") or scope["path"].encode("utf-8")
    scheme = scope.get("scheme", "http")
    environ = build_environ(
        method=method or scope.get("method", "GET"),
        path=path,
        headers=[(name.decode("latin-1"), value.decode("latin-1")) for name, value in scope.get("headers", ())],
        body=body,
        scheme=_HTTP_SCHEMES.get(scheme, scheme),
        # ASGI's root_path is text; SCRIPT_NAME, as WSGI's strings, its UTF-8 bytes as Latin-1
        root_path=(scope.get("root_path") or "/").encode("utf-8").decode("latin-1"),
        query_string=query,
        remote_addr=client[0] if client else None,
        server=server or None,
        raw_uri=(raw_target + (b"?" + query if query else b"")).decode("latin-1"),
    )
    version = scope.get("http_version", "1.1")
    if version != "1.1":  # build_environ's
        environ["SERVER_PROTOCOL"] = f"HTTP/{version}"
    if body is not None:
        # the stream ends where the body ends, whatever the framing
        environ["wsgi.input_terminated"] = True
    return environ


def request_for(scope: dict[str, Any], body: IO[bytes]) -> Request:
    """The request of an ``http`` scope, as ``Request(environ_for(scope, body))`` makes it, but for its WSGI
    environment, which :func:`environ_for` builds only when the request's ``environ`` is first read (see
    :func:`~rolo.request.request_of_parts`).

    :param body: the request body stream, read by the handler
    :raises UnicodeDecodeError: if the path is not UTF-8
    :raises rolo.target.InvalidTarget: if the request target cannot be parsed
    """
    # each attribute as werkzeug's constructor computes it from what environ_for and build_environ make
    path = _path_of(scope).decode("utf-8")
    if path[:1] != "/" or path[1:2] == "/":
        path = "/" + path.lstrip("/")
    scheme = scope.get("scheme", "http")
    server = scope.get("server")
    if not server:
        server = ("127.0.0.1", 443 if scheme == "https" else 80)
    elif server[1] is None:
        server = (server[0], 443 if scheme == "https" else 80)
    elif type(server) is not tuple:  # any iterable of host and port, to ASGI (a list, from daphne)
        server = (server[0], server[1])
    root_path = (scope.get("root_path") or "").rstrip("/")  # as werkzeug decodes SCRIPT_NAME
    method = scope.get("method", "GET")
    if not method.isupper():
        # another method than its capitals (RFC 9110 9.1), which werkzeug's method shows: one made from its
        # environment, which keeps the method as sent for answer()
        return Request(environ_for(scope, body))
    client = scope.get("client")
    return request_of_parts(
        environ_for,
        (scope, body),
        method,
        scheme,
        server,
        root_path,
        path,
        scope.get("query_string") or b"",
        headers_of([(name.decode("latin-1"), value.decode("latin-1")) for name, value in scope.get("headers", ())]),
        (client[0] if client else None) or "",
    )
