"""rolo.gateway.answer: a response as both servers send it, as werkzeug's WSGI rules shape it."""

from __future__ import annotations

import pytest

from rolo import Request, Response
from rolo.gateway.answer import answer


def test_a_sequence_body_is_sent_whole_with_its_length():
    response = Response(b"hello world", 201, headers={"X-Name": "caf\xe9"}, mimetype="text/plain")
    status, headers, body, same = answer(response, Request("GET", "/"))
    assert (status, body, same) == (201, b"hello world", response)
    assert (b"Content-Length", b"11") in headers
    assert (b"X-Name", b"caf\xe9") in headers  # Latin-1, as HTTP/1.1 sends it


@pytest.mark.parametrize(("method", "status"), [("HEAD", 200), ("GET", 204), ("GET", 304)])
def test_no_body_where_http_has_none(method, status):
    response = Response(b"not sent", status)
    assert answer(response, Request(method, "/")).body == b""


@pytest.mark.parametrize("method", ["GET", "HEAD", "POST", "head"])  # head: another method (RFC 9110 9.1)
@pytest.mark.parametrize("status", [200, 201, 204, 205, 206, 299, 304, 404, 500])
@pytest.mark.parametrize("body", [[b"whole"], [b"in ", "two"], (b"a", b"tuple")])
def test_a_whole_body_is_what_werkzeugs_wsgi_iterable_gives(method, status, body):
    response = Response(body, status)
    request = Request(method, "/")
    assert answer(response, request).body == b"".join(response.get_app_iter(request.environ))


@pytest.mark.parametrize("status", [100, 101, 103, 199])
def test_an_interim_status_is_not_a_response(status):
    with pytest.raises(ValueError, match=f"status {status} is below 200"):
        answer(Response(b"", status), Request("GET", "/"))


def test_a_whole_body_passed_through_is_sent_as_it_is():
    response = Response([b"raw ", b"chunks"], direct_passthrough=True)
    assert answer(response, Request("GET", "/")).body == b"raw chunks"


def test_a_streamed_body_stays_an_iterator():
    produced = []

    def stream():
        produced.append("first")
        yield b"first"

    body = answer(Response(stream()), Request("GET", "/")).body
    assert not isinstance(body, bytes)
    assert produced == []  # nothing read yet
    assert list(body) == [b"first"]


def test_a_header_that_is_not_latin1_fails_before_anything_is_sent():
    with pytest.raises(UnicodeEncodeError):
        answer(Response(b"", headers={"X-Name": "\u2603"}), Request("GET", "/"))


def test_a_response_class_with_its_own_app_iter_is_asked_for_the_body():
    class Overriding(Response):
        def get_app_iter(self, environ):
            return [b"OVERRIDDEN"]

    request = Request("GET", "/", headers={"Host": "localhost"})
    assert answer(Overriding(b"body"), request).body == b"OVERRIDDEN"
