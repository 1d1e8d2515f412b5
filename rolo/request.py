"""The HTTP request object, and the WSGI environment it is built on.

Servers and tests both build requests through :func:`build_environ`, so that the environment a handler
sees has one shape whichever way the request arrived.
"""

from __future__ import annotations

import io
import sys
from collections.abc import Callable, Iterable, Mapping
from functools import lru_cache
from typing import IO, TYPE_CHECKING, Any, ClassVar

from werkzeug.datastructures import Headers
from werkzeug.sansio.utils import get_host
from werkzeug.wrappers import Request as _WerkzeugRequest

__all__ = [
    "RAW_HEADERS_KEY",
    "HeadersLike",
    "Request",
    "build_environ",
    "forget_request",
    "headers_of",
    "request_of_parts",
    "sent_method",
]

RAW_HEADERS_KEY = "rolo.raw_headers"
"""WSGI environment key holding the request headers as :class:`Headers`, names cased as the client sent
them. The ``HTTP_*`` keys of WSGI fold that casing away."""

HeadersLike = Headers | Mapping[str, str] | Iterable[tuple[str, str]]
"""What the ``headers`` argument of :func:`build_environ` and :class:`Request` accepts."""


def build_environ(
    method: str = "GET",
    path: str | bytes = "/",
    headers: HeadersLike | None = None,
    body: bytes | str | IO[bytes] | None = None,
    scheme: str = "http",
    root_path: str = "/",
    query_string: bytes | str = b"",
    remote_addr: str | None = None,
    server: tuple[str, int | None] | None = None,
    raw_uri: str | None = None,
) -> dict[str, Any]:
    """Build a WSGI environment for a request.

    :param method: the HTTP method, e.g. ``GET`` (or ``WEBSOCKET``)
    :param path: the request path, without the query string. A ``str`` is the decoded path as text; ``bytes``
        are the percent-decoded bytes of the path as they came off the wire (they need not be UTF-8).
    :param headers: the request headers; their names keep the casing given here
    :param body: the request body, as bytes, text (encoded as UTF-8) or a readable binary stream
    :param scheme: ``http`` or ``https``
    :param root_path: the mount point of the application (WSGI ``SCRIPT_NAME``)
    :param query_string: the raw query string, without ``?``
    :param remote_addr: the peer's address
    :param server: the ``(host, port)`` the request was received on
    :param raw_uri: the request target as sent, for ``RAW_URI``/``REQUEST_URI``
    """
    raw_headers = Headers()
    if isinstance(headers, list):
        # as servers pass them: added one by one, without the generic walk of Headers(headers)
        for name, value in headers:
            raw_headers.add(name, _shared(value))
    elif headers is not None:
        raw_headers.extend(headers)

    # a type tested first where most callers pass it: an isinstance() that fails looks the object's
    # __class__ up too (about 1,000 instructions each)
    if type(path) is not bytes and isinstance(path, str):
        path = path.encode("utf-8")
    if type(query_string) is not bytes and isinstance(query_string, str):
        query_string = query_string.encode("latin-1")
    data: bytes | bytearray | None  # the body, where given whole rather than as a stream
    if body is None:
        data = b""
    elif isinstance(body, io.IOBase):
        data = None
    elif isinstance(body, str):
        data = body.encode("utf-8")
    else:
        data = body if isinstance(body, (bytes, bytearray)) else None

    host, port = server if server else ("127.0.0.1", None)
    if port is None:
        port = 443 if scheme == "https" else 80
    if len(host) <= 64 and len(root_path) <= 64 and (not remote_addr or len(remote_addr) <= 64):
        connection = _remembered_connection_keys(scheme, root_path, host, port, remote_addr or "")
    else:
        connection = _connection_keys(scheme, root_path, host, port, remote_addr or "")
    path_info = path.decode("latin-1")
    # a copy of the connection's keys, then the request's: a fifth of the cost of one dict display with both
    environ: dict[str, Any] = connection.copy()
    environ["REQUEST_METHOD"] = method
    environ["PATH_INFO"] = _remembered(path_info) if len(path_info) <= 64 else path_info
    environ["QUERY_STRING"] = query_string.decode("latin-1")
    environ["wsgi.input"] = body if data is None else io.BytesIO(data)
    environ["wsgi.errors"] = sys.stderr
    environ[RAW_HEADERS_KEY] = raw_headers
    if raw_uri is not None:
        environ["RAW_URI"] = environ["REQUEST_URI"] = _shared(raw_uri)
    if data and "Content-Length" not in raw_headers and "Transfer-Encoding" not in raw_headers:
        # a body given as bytes has a known length: say so, as a client would have
        raw_headers["Content-Length"] = str(len(data))

    for name, value in raw_headers:
        key = _remembered_cgi_key(name) if len(name) <= 64 else _cgi_key(name)
        # repeated headers fold into one comma-separated value, as in CGI
        environ[key] = f"{environ[key]}, {value}" if key in environ else value

    return environ


def _listed(pairs: list[tuple[str, str]]) -> Headers:
    """Headers holding ``pairs``, the list itself, without werkzeug's check of each value for line breaks
    and its look-up of each name; where :data:`_LISTED` says that ``Headers(pairs)`` makes the same."""
    # fenced: werkzeug's private attribute, the one Headers has, set alone only where _LISTED found it so
    headers = Headers.__new__(Headers)
    headers._list = pairs
    return headers


def _listed_alike() -> bool:
    """Whether werkzeug's ``Headers(pairs)`` holds a copy of the pairs in its one attribute, ``_list``, as
    :func:`_listed` makes it (another version of werkzeug may not)."""
    pairs = [("Host", "h"), ("X-Twice", "a"), ("x-twice", "b")]
    made, laid = Headers(pairs), _listed(list(pairs))
    return vars(made) == vars(laid) and list(made) == list(laid) and made.getlist("X-Twice") == ["a", "b"]


_LISTED = _listed_alike()
"""Whether :func:`headers_of` lists its pairs without werkzeug's checks (see :func:`_listed`)."""


def headers_of(pairs: list[tuple[str, str]]) -> Headers:
    """Headers holding ``pairs``, names and values as a server parsed them off the wire (where a line break
    ends a header, so no value holds one): the list itself where :data:`_LISTED` allows, half the cost
    of ``Headers(pairs)`` (some 2,300 instructions less a header); ``Headers(pairs)`` otherwise."""
    return _listed(pairs) if _LISTED else Headers(pairs)


def _cgi_key(name: str) -> str:
    """The CGI key of a header: ``HTTP_`` and its name in capitals with ``_`` for ``-``; ``CONTENT_TYPE``
    and ``CONTENT_LENGTH`` without the prefix."""
    key = name.upper().replace("-", "_")
    if key in ("CONTENT_TYPE", "CONTENT_LENGTH"):
        return key
    # one copy of each key for all the requests alive at once (thousands of WebSocket ones)
    return sys.intern("HTTP_" + key)


# the header names clients send are few: the latest 1,024 of at most 64 characters are remembered (some
# 200 KB at most, whatever names a client makes up)
_remembered_cgi_key = lru_cache(maxsize=1024)(_cgi_key)


def _same(value: Any) -> Any:
    return value


# Requests alive at once (thousands of WebSocket ones) hold many equal strings: the server's address, the
# path, most header values. Each short one is replaced by an equal one made before, of the latest 1,024
# remembered (some 200 KB at most, whatever values clients send), so that they hold one copy.
_remembered = lru_cache(maxsize=1024)(_same)


def _shared(text: str) -> str:
    """``text``, or an equal string a request made before (for strings of at most 64 characters)."""
    return _remembered(text) if len(text) <= 64 else text


def _connection_keys(scheme: str, root_path: str, host: str, port: int, remote_addr: str) -> dict[str, Any]:
    """The keys of a WSGI environment that every request on a connection (of a mount point) has alike."""
    return {
        "SCRIPT_NAME": root_path.rstrip("/"),
        "SERVER_NAME": _shared(host),
        "SERVER_PORT": _shared(str(port)),
        "SERVER_PROTOCOL": "HTTP/1.1",
        "REMOTE_ADDR": _shared(remote_addr),
        "wsgi.version": (1, 0),
        "wsgi.url_scheme": scheme,
        "wsgi.multithread": True,
        "wsgi.multiprocess": False,
        "wsgi.run_once": False,
    }


# built once for the latest 256 connections whose strings are at most 64 characters long (some 200 KB at
# most), and copied into each of their requests' environments: some 2,000 instructions less per request
_remembered_connection_keys = lru_cache(maxsize=256)(_connection_keys)


# werkzeug's get_host checks the characters of the host (a regular expression) for each request. Without
# trusted hosts to match, its result depends on the scheme, the Host header and the server's address alone:
# the latest 1,024 results for a Host header, or a server name, of at most 64 characters are remembered
# (some 500 KB at most, whatever hosts clients send), and requests to one host share one copy of it
_remembered_host = lru_cache(maxsize=1024)(get_host)


def _host_of(scheme: str, host_header: str | None, server: tuple[str, int | None] | None) -> str:
    """werkzeug's :func:`~werkzeug.sansio.utils.get_host` without trusted hosts, remembered where the
    bound of the cache holds."""
    if host_header is not None:
        if len(host_header) <= 64:
            # the Host header wins over the server's address, which get_host then ignores: not in the key
            return _remembered_host(scheme, host_header, None)
    elif server is None or len(server[0]) <= 64:
        return _remembered_host(scheme, None, server)
    return get_host(scheme, host_header, server)


def _decoded(text: str) -> str:
    """A WSGI path's bytes (as Latin-1 text) decoded as UTF-8, as werkzeug decodes them: a byte that is
    not UTF-8 replaced."""
    return text.encode("latin-1").decode("utf-8", "replace")


def _path_of(path_info: str) -> str:
    """werkzeug's request path for a WSGI ``PATH_INFO``: decoded, with one leading slash."""
    return "/" + _decoded(path_info).lstrip("/")


# one copy of each path, of the latest 1,024 of at most 64 characters (as _remembered)
_remembered_path = lru_cache(maxsize=1024)(_path_of)


def _server_of(name: str | None, port: str | None) -> tuple[str, int | None] | None:
    """werkzeug's ``server`` of a request for WSGI's ``SERVER_NAME`` and ``SERVER_PORT``: no port where it
    is not a number (a Unix socket)."""
    if name is None:
        return None
    try:
        return name, int(port)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return name, None


# one copy of each of the latest 256 servers whose name is at most 64 characters long (as _remembered)
_remembered_server = lru_cache(maxsize=256)(_server_of)


def _set_up(request: _WerkzeugRequest, environ: dict[str, Any], headers: Headers) -> None:
    """Set the attributes werkzeug's request constructor sets from ``environ``, with ``headers`` (the
    client's casing) rather than werkzeug's view of the ``HTTP_*`` keys, which would be replaced at once;
    each value computed as werkzeug does, the strings most requests share made once (some 15,000
    instructions less a request). Only where :data:`_SET_ALIKE` says these are all it sets."""
    method = environ.get("REQUEST_METHOD", "GET")
    request.method = _shared(method if method.isupper() else method.upper())
    request.scheme = environ.get("wsgi.url_scheme", "http")
    name = environ.get("SERVER_NAME")
    port = environ.get("SERVER_PORT")
    if type(name) is str and len(name) <= 64 and (port is None or (type(port) is str and len(port) <= 64)):
        request.server = _remembered_server(name, port)
    else:
        request.server = _server_of(name, port)
    root_path = environ.get("SCRIPT_NAME")
    request.root_path = _decoded(root_path).rstrip("/") if root_path else ""
    path = environ.get("PATH_INFO") or ""
    request.path = _remembered_path(path) if len(path) <= 64 else _path_of(path)
    query = environ.get("QUERY_STRING")
    request.query_string = query.encode("latin-1") if query else b""
    request.headers = headers
    request.remote_addr = environ.get("REMOTE_ADDR")
    request.environ = environ
    request.shallow = False
    environ["werkzeug.request"] = request


def _set_alike() -> bool:
    """Whether werkzeug's request constructor sets what :func:`_set_up` sets, to the same values, with the
    headers aside, for a few environments (another version of werkzeug may set more, or otherwise)."""
    for environ in (
        build_environ("get", "/caf\xc3\xa9//a", {"Host": "h"}, root_path="/m\xc3\xa9/", query_string="q=\xe9"),
        {**build_environ(server=("h", None), remote_addr="10.0.0.1"), "SERVER_PORT": "", "SCRIPT_NAME": ""},
        {key: value for key, value in build_environ().items() if key not in ("SERVER_NAME", "PATH_INFO")},
    ):
        made = _WerkzeugRequest(dict(environ))
        ours = _WerkzeugRequest.__new__(_WerkzeugRequest)
        _set_up(ours, dict(environ), made.headers)
        theirs = vars(made)
        if list(vars(ours)) != list(theirs):
            return False
        if any(value != theirs[name] for name, value in vars(ours).items() if name != "environ"):
            return False
    return True


_SET_ALIKE = _set_alike()
"""Whether :class:`Request` sets itself up without werkzeug's constructor where it can (see
:func:`_set_up`)."""


class _EnvironOnFirstRead:
    """The ``environ`` of a request made by :func:`request_of_parts`: built when first read, then the
    request's own attribute, as werkzeug's constructor sets it (the descriptor has no ``__set__``, so the
    attribute hides it from then on)."""

    def __get__(self, request: Request | None, owner: type | None = None) -> Any:
        if request is None:
            return self
        source = request._environ_of
        if source is None:  # a request whose constructor did not run, nor request_of_parts
            raise AttributeError("environ")
        environ = source[0](*source[1])
        # the request's own headers, as a request made from the environment has them
        environ[RAW_HEADERS_KEY] = request.headers
        environ["werkzeug.request"] = request
        request.environ = environ
        request._environ_of = None
        return environ


class Request(_WerkzeugRequest):
    """An HTTP request: a :class:`werkzeug.wrappers.Request` that can also be built from its parts.

    ``Request(environ)`` wraps a WSGI environment; ``Request("POST", "/items", headers=..., body=...)``
    builds one with :func:`build_environ`. ``headers`` keeps the casing of header names as the client sent
    them when the server recorded it.
    """

    def __init__(
        self,
        method: str | dict[str, Any] = "GET",
        path: str | bytes = "/",
        headers: HeadersLike | None = None,
        body: bytes | str | IO[bytes] | None = None,
        scheme: str = "http",
        root_path: str = "/",
        query_string: bytes | str = b"",
        remote_addr: str | None = None,
        server: tuple[str, int | None] | None = None,
        raw_uri: str | None = None,
    ) -> None:
        if isinstance(method, dict):
            environ = method
        else:
            environ = build_environ(
                method=method,
                path=path,
                headers=headers,
                body=body,
                scheme=scheme,
                root_path=root_path,
                query_string=query_string,
                remote_addr=remote_addr,
                server=server,
                raw_uri=raw_uri,
            )
        raw_headers = environ.get(RAW_HEADERS_KEY)
        if raw_headers is not None and self._sets_itself_up:
            _set_up(self, environ, raw_headers)
            return
        super().__init__(environ)
        # werkzeug makes its own copy of the method (in capitals) and the path (with its leading slash)
        self.method = _shared(self.method)
        self.path = _shared(self.path)
        if self.server is not None and len(self.server[0]) <= 64:  # as _shared: the cache's bound holds
            self.server = _remembered(self.server)
        # werkzeug's constructor sets ``headers`` from the HTTP_* keys, which fold the client's casing away
        if raw_headers is not None:
            self.headers = raw_headers

    _sets_itself_up: ClassVar[bool] = _SET_ALIKE
    """Whether a request of this class with rolo's raw headers is set up by :func:`_set_up` rather than by
    werkzeug's constructor: not where a base of a subclass puts a constructor of its own (a mixin's) between
    this one and werkzeug's, which would not run otherwise."""

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        cls._sets_itself_up = _SET_ALIKE and super().__init__ is _WerkzeugRequest.__init__

    _environ_of: tuple[Callable[..., dict[str, Any]], tuple[Any, ...]] | None = None
    """What builds the WSGI environment of a request made by :func:`request_of_parts` (a function and its
    arguments), until it is built."""

    if not TYPE_CHECKING:  # werkzeug's environ, an attribute for type checkers
        environ = _EnvironOnFirstRead()

    _host: str | None = None

    # werkzeug's host is a cached_property, which caches in the request's __dict__: reading it made the
    # dictionary of the request's attributes (64 bytes), which Python does not make otherwise, for as long
    # as the request lives (a WebSocket one, as long as its connection), and the router reads it for each
    @property
    def host(self) -> str:
        """The host the request was made to, with the port if it is not the scheme's: werkzeug's
        :func:`~werkzeug.sansio.utils.get_host`, validated with :attr:`trusted_hosts`, computed once.
        Setting it sets the value; deleting it has it computed again."""
        host = self._host
        if host is None:
            trusted_hosts = self.trusted_hosts
            if trusted_hosts:
                host = _shared(get_host(self.scheme, self.headers.get("host"), self.server, trusted_hosts))
            else:
                host = _host_of(self.scheme, self.headers.get("host"), self.server)
            self._host = host
        return host

    @host.setter
    def host(self, value: str) -> None:
        self._host = value

    @host.deleter
    def host(self) -> None:
        self._host = None


def request_of_parts(
    make_environ: Callable[..., dict[str, Any]],
    environ_args: tuple[Any, ...],
    method: str,
    scheme: str,
    server: tuple[str, int | None],
    root_path: str,
    path: str,
    query_string: bytes,
    headers: Headers,
    remote_addr: str,
) -> Request:
    """A :class:`Request` with the attributes ``Request(make_environ(*environ_args))`` would have, given here
    as werkzeug's constructor computes them from that environment (the caller's to get right), without the
    environment: it is built when the request's ``environ`` is first read (werkzeug reads it for the body,
    the form, the WSGI flags), with ``headers`` as its :data:`RAW_HEADERS_KEY`. A server whose handlers
    mostly read the method, path, query and headers alone builds no environment for most requests (some
    30,000 instructions less a request under ASGI). Where :data:`_SET_ALIKE` says werkzeug's constructor
    would set more, the environment is built now, and the request made from it.

    The strings are not replaced by equal ones made before, as they are in a request made from an
    environment: such a request is an HTTP request's, answered at once, not a WebSocket's, which lives as
    long as its connection.

    :param method: the method as the client sent it, which must be in capitals (werkzeug's ``method`` is
        always; :func:`sent_method` takes it for the one sent)
    :param server: the server's host and port
    :param root_path: the mount point, decoded, without a trailing slash
    :param path: the path, decoded, with one leading slash
    :param headers: the request headers, names cased as the client sent them
    """
    if not _SET_ALIKE:
        return Request(make_environ(*environ_args))
    request = Request.__new__(Request)
    # in the order of werkzeug's constructor, and of _set_up
    request.method = method
    request.scheme = scheme
    request.server = server
    request.root_path = root_path
    request.path = path
    request.query_string = query_string
    request.headers = headers
    request.remote_addr = remote_addr
    request.shallow = False
    request._environ_of = (make_environ, environ_args)
    return request


def forget_request(where: dict[str, Any] | Request) -> None:
    """Take the request out of its WSGI environment (``werkzeug.request``, where werkzeug's constructor
    puts it, a debugging aid) once it has been answered: request and environment refer to each other, a
    cycle that only the garbage collector would free. Freed at once instead, a server's requests leave the
    collector nothing to do (each left 8 objects, which cost about 5 µs per request in its collections).

    :param where: the environment; or the request, whose environment may never have been built (see
        :func:`request_of_parts`): then there is no cycle
    """
    if not isinstance(where, dict):
        if where._environ_of is not None:  # its environment was never built
            return
        where = where.environ
    where.pop("werkzeug.request", None)


def sent_method(request: Request) -> str:
    """The method of ``request`` as the client sent it, by which a server frames the answer: werkzeug's
    ``method`` is in capitals, but methods are case-sensitive (RFC 9110 9.1), and the answer to ``head`` has
    its body where the answer to ``HEAD`` has none. It is the WSGI environment's; for a request whose
    environment is not built yet (see :func:`request_of_parts`), its ``method``."""
    if request._environ_of is not None:
        return request.method
    method: str = request.environ["REQUEST_METHOD"]
    return method


def _share_attribute_names() -> None:
    """Have the names of the attributes rolo sets on a :class:`Request` among those its instances share.

    CPython keeps an instance's attributes in an array laid out by names its class's instances share, at
    most 30 of them, taken as instances first set them, werkzeug's cached properties' included; an
    instance that sets a name past those has a dictionary of its own made (64 bytes more, for as long as it
    lives). Set here first, a request's own names are among them whatever else an application reads."""
    request = Request(build_environ())
    request._host = request._environ_of = None


_share_attribute_names()
