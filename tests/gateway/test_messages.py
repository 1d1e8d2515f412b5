"""rolo.Request built from its parts, and the rolo.Response helpers."""

from __future__ import annotations

import gc
import io
from typing import ClassVar

import pytest
from werkzeug.datastructures import Headers
from werkzeug.exceptions import SecurityError
from werkzeug.sansio.utils import get_host
from werkzeug.test import EnvironBuilder
from werkzeug.wrappers import Request as WerkzeugRequest
from werkzeug.wrappers import Response as WerkzeugResponse

import rolo.request
import rolo.response
from rolo import Request, Response


def test_request_from_parts():
    request = Request(
        "POST",
        "/items/a b",
        headers={"Content-Type": "application/json", "X-CamelCase-Header": "v"},
        body=b'{"a": 1}',
        query_string="q=1&q=2&r=x",
        remote_addr="10.0.0.1",
        server=("example.com", 8080),
    )
    assert (request.method, request.path, request.full_path) == ("POST", "/items/a b", "/items/a b?q=1&q=2&r=x")
    assert request.args.getlist("q") == ["1", "2"]
    assert request.get_json() == {"a": 1}
    assert request.content_length == 8
    assert request.remote_addr == "10.0.0.1"
    assert request.host == "example.com:8080"
    assert request.url == "http://example.com:8080/items/a%20b?q=1&q=2&r=x"


def test_request_keeps_header_casing_and_order():
    request = Request("GET", "/", headers=[("x-lower", "1"), ("X-UPPER", "2"), ("X-MiXeD", "3"), ("x-lower", "4")])
    assert list(request.headers.keys()) == ["x-lower", "X-UPPER", "X-MiXeD", "x-lower"]
    # lookups stay case-insensitive, and repeated headers are all there
    assert request.headers["X-MIXED"] == "3"
    assert request.headers.getlist("X-Lower") == ["1", "4"]
    assert request.environ["HTTP_X_LOWER"] == "1, 4"


def test_request_host_header_wins_over_the_server():
    request = Request("GET", "/", headers={"Host": "api.example:4566"}, server=("127.0.0.1", 80))
    assert request.host == "api.example:4566"


def test_request_body_forms():
    assert Request("PUT", "/", body="text ü").get_data() == "text ü".encode()
    stream = io.BytesIO(b"streamed")
    assert Request("PUT", "/", body=stream, headers={"Content-Length": "8"}).get_data() == b"streamed"
    form = Request("POST", "/", body="a=1&b=2", headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert form.form.to_dict() == {"a": "1", "b": "2"}
    assert Request("GET", "/").get_data() == b""


def test_request_scheme_and_root_path():
    request = Request("GET", "/x", scheme="https", root_path="/app", headers={"Host": "h"})
    assert (request.scheme, request.root_path, request.url) == ("https", "/app", "https://h/app/x")


def test_request_from_an_environ():
    environ = EnvironBuilder("/p", query_string="a=1", headers={"x-custom": "1"}).get_environ()
    request = Request(environ)
    assert (request.path, request.args["a"]) == ("/p", "1")
    # without recorded casing, names come out as WSGI leaves them
    assert request.headers["X-Custom"] == "1"


def test_requests_alive_at_once_hold_one_copy_of_their_equal_short_strings():
    # thousands of WebSocket requests with the same path, server, client and most header values: each held
    # its own copies (about 0.6 KB a connection); a long value, or one that differs, is the request's own
    def made(key: str) -> Request:
        headers = [("Host", "example.com:8080"), ("Upgrade", "websocket"), ("Sec-WebSocket-Key", key)]
        headers.append(("X-Long", "x" * 65))
        return Request(
            "websocket".upper(),
            b"/echo",
            headers=[(name, "".join(value)) for name, value in headers],
            remote_addr="".join("10.0.0.1"),
            server=("".join("example.com"), 8080),
            raw_uri="".join("/echo?x"),
        )

    first, second = made("a" * 24), made("b" * 24)
    for key in ("PATH_INFO", "SERVER_NAME", "SERVER_PORT", "REMOTE_ADDR", "RAW_URI", "HTTP_HOST", "HTTP_UPGRADE"):
        assert first.environ[key] is second.environ[key], key
    assert first.headers["Upgrade"] is second.headers["Upgrade"]
    assert (first.method, first.path, first.server) == ("WEBSOCKET", "/echo", ("example.com", 8080))
    assert first.method is second.method and first.path is second.path and first.server is second.server
    assert first.environ["HTTP_SEC_WEBSOCKET_KEY"] != second.environ["HTTP_SEC_WEBSOCKET_KEY"]
    assert first.environ["HTTP_X_LONG"] == second.environ["HTTP_X_LONG"]
    assert first.environ["HTTP_X_LONG"] is not second.environ["HTTP_X_LONG"]


def test_request_host_is_computed_once_set_and_cleared_as_werkzeug_has_it_without_a_dict_of_attributes():
    # werkzeug's cached_property made the request's dict of attributes (64 bytes) to keep the host in
    request = Request("GET", "/", headers={"Host": "api.example:4566"})
    assert request.host == "api.example:4566"
    assert request.host is Request("GET", "/x", headers={"Host": "".join("api.example:4566")}).host
    assert not any(isinstance(referent, dict) and "environ" in referent for referent in gc.get_referents(request))
    request.host = "elsewhere"
    assert request.host == "elsewhere"
    del request.host
    assert request.host == "api.example:4566"


HOSTS = [
    # scheme, Host header, server, host
    ("http", None, ("example.com", 80), "example.com"),
    ("http", None, ("example.com", 443), "example.com:443"),
    ("https", None, ("example.com", 443), "example.com"),
    ("https", None, ("example.com", 80), "example.com:80"),
    ("http", None, ("::1", 8080), "[::1]:8080"),
    ("http", None, ("/run/rolo.sock", None), ""),  # a Unix socket: no host
    ("http", "api.example:80", ("example.com", 8080), "api.example"),
    ("https", "api.example:80", ("example.com", 8080), "api.example:80"),
    ("https", "api.example:443", ("example.com", 8080), "api.example"),
    ("http", "api.example:443", ("example.com", 8080), "api.example:443"),
    ("http", "api.example:4566", ("other.example", 80), "api.example:4566"),
    ("http", "bad host", ("example.com", 80), ""),  # a character a host has not
]


def test_request_host_of_each_scheme_port_host_header_and_server_as_werkzeug_has_it():
    # the host of each request is remembered by what it depends on: asked again, in another order, each
    # request still has its own
    for scheme, header, server, host in HOSTS + HOSTS[::-1]:
        request = Request("GET", "/", headers={"Host": header} if header else None, scheme=scheme, server=server)
        assert request.host == host == get_host(scheme, header, server), (scheme, header, server)


def test_request_host_longer_than_64_characters_is_right_and_the_request_own():
    name = "a" * 60 + ".example"
    for header, server, host in [
        (f"{name}:8080", ("example.com", 80), f"{name}:8080"),
        (None, (name, 8080), f"{name}:8080"),
        (f"{name}:80", ("example.com", 80), name),
    ]:
        first, second = (
            Request("GET", "/", headers={"Host": "".join(header)} if header else None, server=server) for _ in "12"
        )
        assert first.host == second.host == host
        assert first.host is not second.host  # not remembered: the bound of the cache is for shorter ones


class _TrustingRequest(Request):
    trusted_hosts: ClassVar[list[str]] = ["api.example"]


def test_request_host_is_still_checked_against_trusted_hosts():
    assert Request("GET", "/", headers={"Host": "evil.example"}).host == "evil.example"  # remembered now
    with pytest.raises(SecurityError):
        _ = _TrustingRequest("GET", "/", headers={"Host": "evil.example"}).host
    assert _TrustingRequest("GET", "/", headers={"Host": "api.example:8080"}).host == "api.example:8080"
    request = Request("GET", "/", headers={"Host": "evil.example"})
    request.trusted_hosts = ["api.example"]
    with pytest.raises(SecurityError):
        _ = request.host


def test_request_bytes_path():
    request = Request("GET", "/caf\xc3\xa9".encode("latin-1"))
    assert request.path == "/café"


def test_responses_share_their_default_status_line_and_content_type():
    # a gateway makes a Response for each request, which a WebSocket one keeps as long as its connection:
    # its status line and content type were 130 bytes of its own
    first, second = Response(), Response()
    assert (first.status, first.headers["Content-Type"]) == ("200 OK", "text/plain; charset=utf-8")
    assert first.status is second.status
    assert first.headers["Content-Type"] is second.headers["Content-Type"]
    assert (Response(status=404).status, Response(mimetype="application/json").content_type) == (
        "404 NOT FOUND",
        "application/json",
    )


@pytest.mark.parametrize(
    "environ",
    [
        {},
        {"method": "post", "path": "/caf\xc3\xa9//x", "root_path": "/m\xc3\xa9/", "query_string": "q=\xe9&r"},
        {"path": b"/\xff", "server": ("example.com", None), "remote_addr": "10.0.0.1", "scheme": "https"},
        {"headers": [("Host", "a.example:8080"), ("X-Mixed-Case", "v")], "server": ("x" * 70, 8080)},
    ],
)
def test_a_request_is_what_werkzeug_makes(environ):
    # rolo sets most requests up itself (rolo.request._set_up): nothing but the headers' casing may differ
    built = Request(**environ).environ
    ours, theirs = Request(dict(built)), WerkzeugRequest(dict(built))
    assert rolo.request._SET_ALIKE
    assert vars(ours).keys() == vars(theirs).keys()
    for name in ("method", "scheme", "server", "root_path", "path", "query_string", "remote_addr", "shallow"):
        assert getattr(ours, name) == getattr(theirs, name), name
    assert list(ours.headers) == list(Headers(environ.get("headers", [])))
    assert (ours.url, ours.host) == (theirs.url, theirs.host)
    assert ours.environ["werkzeug.request"] is ours


class _Stamped(WerkzeugRequest):
    """A werkzeug request subclass with a constructor of its own, as a mixin of an application's may be."""

    def __init__(self, environ, *args, **kwargs):
        super().__init__(environ, *args, **kwargs)
        self.stamp = environ["PATH_INFO"]


def test_a_request_subclass_runs_the_constructor_its_bases_put_before_werkzeugs():
    # rolo sets a request up itself only where werkzeug's constructor is the next one; a mixin's runs
    class StampedRequest(Request, _Stamped):
        pass

    request = StampedRequest("GET", "/stamped", headers={"Host": "h"})
    assert request.stamp == "/stamped"
    assert (request.path, request.host, list(request.headers)) == ("/stamped", "h", [("Host", "h")])


@pytest.mark.parametrize(
    "args",
    [
        {},
        {"response": b"hello"},
        {"response": "caf\xe9", "status": 201},
        {"response": b"", "mimetype": "application/json"},
        {"response": b"x", "content_type": "text/csv; header=present", "direct_passthrough": True},
        {"status": 404},
        {"response": b"x", "status": 299},
        {"response": b"x", "headers": {"X-A": "1"}},
        {"response": b"x", "status": "201 MADE"},
        {"response": [b"a", b"b"]},
    ],
)
def test_a_response_is_what_werkzeug_makes(args):
    # rolo lays most responses out itself (rolo.response._lay_out): nothing may tell them apart
    ours, theirs = Response(**args), WerkzeugResponse(**args)
    assert rolo.response._LAID_OUT
    assert vars(ours).keys() == vars(theirs).keys()
    assert list(ours.headers) == list(theirs.headers)
    assert (ours.status, ours.status_code, ours.response, ours.direct_passthrough) == (
        theirs.status,
        theirs.status_code,
        theirs.response,
        theirs.direct_passthrough,
    )
    assert ours.get_wsgi_headers({}) == theirs.get_wsgi_headers({})


def test_a_response_keeps_the_headers_object_it_is_given_even_empty():
    headers = Headers()
    response = Response(b"x", headers=headers)
    assert response.headers is headers
    assert list(headers) == [("Content-Type", "text/plain; charset=utf-8"), ("Content-Length", "1")]


def test_a_content_type_with_a_line_break_is_refused_as_werkzeug_refuses_it():
    with pytest.raises(ValueError):
        Response(b"x", content_type="text/plain\r\nX-Evil: 1")
    with pytest.raises(ValueError):
        Response(b"x", mimetype="text/plain\nX-Evil: 1")


def test_responses_of_a_mimetype_share_its_content_type_as_werkzeug_builds_it():
    first, second = Response("hello", mimetype="text/html"), Response("hello", mimetype="".join("text/html"))
    assert first.headers["Content-Type"] == "text/html; charset=utf-8"
    assert first.headers["Content-Type"] is second.headers["Content-Type"]
    assert Response(mimetype="application/json").content_type == "application/json"
    assert Response(mimetype="image/svg+xml").content_type == "image/svg+xml; charset=utf-8"
    # the mimetype wins over a Content-Type among the headers, and the content type over the mimetype
    assert Response(headers={"Content-Type": "a/b"}, mimetype="text/csv").content_type == "text/csv; charset=utf-8"
    assert Response(mimetype="text/csv", content_type="text/csv; header=present").content_type == (
        "text/csv; header=present"
    )
    long = "text/x-" + "a" * 60
    assert Response(mimetype=long).content_type == f"{long}; charset=utf-8"
    assert Response(mimetype=long).content_type is not Response(mimetype=long).content_type  # not remembered


def test_set_json():
    response = Response()
    response.set_json({"a": [1, 2]})
    assert (response.mimetype, response.get_json()) == ("application/json", {"a": [1, 2]})


def test_for_json():
    response = Response.for_json({"ok": True}, status=201, headers={"X-A": "1"})
    assert isinstance(response, Response)
    assert (response.status_code, response.get_json(), response.headers["X-A"]) == (201, {"ok": True}, "1")
    assert response.mimetype == "application/json"


def test_set_response():
    response = Response()
    response.set_response("text")
    assert response.get_data() == b"text"
    response.set_response(b"bytes")
    assert response.get_data() == b"bytes"
    response.set_response(None)
    assert response.get_data() == b""
    chunks = iter([b"a", b"b"])
    response.set_response(chunks)
    assert response.is_streamed
    assert b"".join(response.iter_encoded()) == b"ab"


def test_update_from():
    closed = []
    other = Response("other body", 418, headers={"X-Other": "1", "Content-Type": "text/x-other"})
    other.call_on_close(lambda: closed.append("other"))
    response = Response(headers={"X-Kept": "1"})
    response.update_from(other)
    assert (response.status_code, response.get_data()) == (418, b"other body")
    assert (response.headers["X-Other"], response.headers["X-Kept"]) == ("1", "1")
    assert response.headers["Content-Type"] == "text/x-other"
    response.close()
    assert closed == ["other"]


@pytest.mark.parametrize(
    ("mine", "theirs"),
    [
        ([("X-A", "1"), ("x-a", "2"), ("X-B", "3")], [("x-A", "4"), ("X-C", "5")]),
        ([("X-A", "1")], [("X-B", "2"), ("X-A", "3"), ("x-b", "4")]),  # a name repeated in the other
        ([], [("Set-Cookie", "a=1"), ("Set-Cookie", "b=2")]),
        ([("X-A", "1")], []),
    ],
)
def test_update_from_merges_headers_as_werkzeugs_update(mine, theirs):
    response, other = Response(headers=Headers(mine)), Response(headers=Headers(theirs))
    expected = Headers(list(response.headers))
    expected.update(other.headers)
    response.update_from(other)
    assert list(response.headers) == list(expected)


def test_update_from_keeps_a_stream_streamed():
    produced = []

    def stream():
        produced.append("first")
        yield b"first"
        produced.append("second")
        yield b"second"

    response = Response()
    response.update_from(Response(stream()))
    assert produced == []  # nothing was read to copy it
    assert b"".join(response.iter_encoded()) == b"firstsecond"


def test_a_long_server_name_is_the_request_own_not_remembered():
    # the server's name may come from the client (a WSGI server fills it from Host): a long one is not kept
    # in the cache of shared strings, whose bound is for strings of at most 64 characters
    long_name = "h" * 8000
    first = Request("GET", b"/", server=("".join(long_name), 80))
    second = Request("GET", b"/", server=("".join(long_name), 80))
    assert first.server == second.server and first.server is not second.server
