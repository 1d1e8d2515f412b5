"""rolo.gateway.asgi.environ.request_for: the request of an ASGI ``http`` scope, made without its WSGI
environment, is the request made from that environment, and builds it when something reads it.

The scopes are as ASGI servers pass them (uvicorn, hypercorn and the spec's optional keys left out).
"""

from __future__ import annotations

import io
from typing import Any

import pytest

from rolo.gateway.asgi.environ import environ_for, request_for
from rolo.request import RAW_HEADERS_KEY, Request, forget_request, sent_method
from rolo.target import InvalidTarget

# what uvicorn passes for GET /hello, but for the keys no request reads (type, asgi, state)
UVICORN = {
    "method": "GET", "path": "/hello", "raw_path": b"/hello", "query_string": b"", "root_path": "",
    "headers": [(b"host", b"127.0.0.1:8000")], "http_version": "1.1", "scheme": "http",
    "server": ("127.0.0.1", 8000), "client": ("127.0.0.1", 50000),
}  # fmt: skip

SCOPES = {
    "uvicorn's": UVICORN,
    "a query and repeated headers": {
        **UVICORN,
        "method": "POST",
        "query_string": b"a=1&b=caf%C3%A9&a=2",
        "headers": [(b"Host", b"example.com"), (b"X-Twice", b"one"), (b"x-twice", b"two"), (b"X-Latin", b"caf\xe9")],
    },
    "a percent-encoded path": {**UVICORN, "path": "/caf\xe9/a b", "raw_path": b"/caf%C3%A9/a%20b"},
    "doubled slashes": {**UVICORN, "path": "//a//b", "raw_path": b"//a//b"},
    "an absolute-form target": {**UVICORN, "path": "/a/b", "raw_path": b"http://example.com/a/b"},
    "no raw path": {key: value for key, value in UVICORN.items() if key != "raw_path"},
    "a mount point": {**UVICORN, "root_path": "/mount/", "path": "/mount/hello", "raw_path": b"/mount/hello"},
    "https, no server, no client": {
        key: value for key, value in {**UVICORN, "scheme": "https"}.items() if key not in ("server", "client")
    },
    "a Unix socket": {**UVICORN, "server": ("/run/app.sock", None), "client": None},
    "a lowercase method, no host": {**UVICORN, "method": "get", "headers": []},
    "HTTP/2": {**UVICORN, "http_version": "2"},
    # ASGI asks for an iterable of host and port: daphne passes lists
    "addresses as lists, no host": {
        **UVICORN, "server": ["127.0.0.1", 8000], "client": ["127.0.0.1", 50000], "headers": [], "http_version": "1.0"
    },
    "addresses as lists": {**UVICORN, "server": ["127.0.0.1", 8000], "client": ["127.0.0.1", 50000]},
    "a Unix socket as a list": {**UVICORN, "server": ["/run/app.sock", None]},
}

ATTRIBUTES = (
    "method",
    "scheme",
    "server",
    "root_path",
    "path",
    "query_string",
    "remote_addr",
    "shallow",
    "host",
    "url",
    "full_path",
    "args",
    "access_route",
    "is_secure",
)


@pytest.mark.parametrize("scope", SCOPES.values(), ids=SCOPES.keys())
def test_the_request_is_the_one_its_environment_makes(scope: dict[str, Any]):
    made = request_for(scope, io.BytesIO())
    wrapped = Request(environ_for(scope, io.BytesIO()))
    assert {name: getattr(made, name) for name in ATTRIBUTES} == {name: getattr(wrapped, name) for name in ATTRIBUTES}
    assert list(made.headers) == list(wrapped.headers)


# a method not in capitals is another method than werkzeug's method shows: made from its environment
LAZY = {name: scope for name, scope in SCOPES.items() if scope["method"].isupper()}


@pytest.mark.parametrize("scope", LAZY.values(), ids=LAZY.keys())
def test_the_environment_is_built_when_first_read(scope: dict[str, Any]):
    body = io.BytesIO(b"the body")
    request = request_for(scope, body)
    assert "environ" not in vars(request)
    environ = request.environ
    assert request.environ is environ  # built once
    expected = environ_for(scope, body)
    assert {key: value for key, value in environ.items() if key not in (RAW_HEADERS_KEY, "werkzeug.request")} == {
        key: value for key, value in expected.items() if key != RAW_HEADERS_KEY
    }
    assert environ[RAW_HEADERS_KEY] is request.headers
    assert environ["werkzeug.request"] is request
    assert request.get_data() == b"the body"
    forget_request(request)
    assert "werkzeug.request" not in environ


@pytest.mark.parametrize(("sent", "method"), [("GET", "GET"), ("head", "HEAD"), ("Get", "GET")])
def test_the_method_as_sent_is_kept_for_the_answer(sent: str, method: str):
    # methods are case-sensitive (RFC 9110 9.1): the server frames the answer to head as any other's
    request = request_for({**UVICORN, "method": sent}, io.BytesIO())
    assert (request.method, sent_method(request)) == (method, sent)


def test_a_mount_point_not_in_ascii_is_the_one_the_scope_names():
    # ASGI's root_path is text; WSGI's SCRIPT_NAME is its UTF-8 bytes as Latin-1, which werkzeug decodes
    root = "/caf\xe9/\u20ac"
    scope = {**UVICORN, "root_path": root, "path": f"{root}/a", "raw_path": b"/caf%C3%A9/%E2%82%AC/a"}
    for request in (request_for(scope, io.BytesIO()), Request(environ_for(scope, io.BytesIO()))):
        assert (request.root_path, request.path) == (root, "/a")
        assert request.url == "http://127.0.0.1:8000/caf\xe9/\u20ac/a"  # werkzeug gives an IRI


def test_a_request_whose_environment_was_never_built_has_nothing_to_forget():
    request = request_for(UVICORN, io.BytesIO())
    forget_request(request)
    assert "environ" not in vars(request)


@pytest.mark.parametrize(
    ("raw_path", "error"),
    [(b"/caf%E9", UnicodeDecodeError), (b"neither/a/path", InvalidTarget)],
    ids=["not UTF-8", "a target that does not parse"],
)
def test_a_path_that_has_no_route_is_refused_as_environ_for_refuses_it(raw_path: bytes, error: type[Exception]):
    scope = {**UVICORN, "raw_path": raw_path}
    with pytest.raises(error):
        request_for(scope, io.BytesIO())
    with pytest.raises(error):
        environ_for(scope, io.BytesIO())
