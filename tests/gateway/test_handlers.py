"""RequestContext, the composite handlers, and rolo.gateway.handlers."""

from __future__ import annotations

import copy

import pytest
from werkzeug.exceptions import BadRequest, HTTPException, NotFound

from rolo import Request, Response, Router
from rolo.gateway import (
    CompositeExceptionHandler,
    CompositeFinalizer,
    CompositeHandler,
    CompositeResponseHandler,
    Gateway,
    HandlerChain,
    RequestContext,
)
from rolo.gateway.handlers import EmptyResponseHandler, RouterHandler, WerkzeugExceptionHandler


def process(gateway: Gateway, method: str = "GET", path: str = "/") -> Response:
    response = Response()
    gateway.process(Request(method, path, headers={"Host": "localhost"}), response)
    return response


def note(calls: list, name: str, action=None):
    def handler(chain, context, response):
        calls.append(name)
        if action:
            action(chain)

    return handler


def test_chains_share_the_handlers_while_they_stay_the_same_and_see_those_added_later():
    # a WebSocket request's chain lives as long as its connection: its own tuple of handlers was 48 bytes
    def answer(chain, context, response):
        response.set_response(b"first")

    gateway = Gateway(request_handlers=[answer], exception_handlers=[WerkzeugExceptionHandler()])
    first, second = gateway.new_chain(), gateway.new_chain()
    assert first.request_handlers is second.request_handlers
    assert first.exception_handlers is second.exception_handlers
    gateway.response_handlers.append(lambda chain, context, response: response.set_response(b"later"))
    assert process(gateway).get_data() == b"later"
    assert len(gateway.new_chain().response_handlers) == 1


def test_request_context():
    request = Request("GET", "/")
    context = RequestContext(request)
    assert context.request is request
    assert context.service is None
    assert context.get("service") is None
    assert context.get("service", "fallback") == "fallback"
    context.service = "s3"
    assert (context.service, context.get("service", "fallback")) == ("s3", "s3")
    assert "s3" in repr(context)
    assert RequestContext().request is None


def test_request_context_copies():
    context = RequestContext(Request("GET", "/"))
    context.thing = [1]
    clone = copy.copy(context)
    assert clone.thing == [1] and clone.request is context.request


def test_composite_handler_runs_until_stopped():
    calls = []
    composite = CompositeHandler([note(calls, "a"), note(calls, "b", lambda chain: chain.stop())])
    composite.append(note(calls, "c"))
    chain = HandlerChain([composite, note(calls, "after")])
    chain.handle(RequestContext(), Response())
    assert calls == ["a", "b"]
    composite.remove(composite.handlers[1])
    calls.clear()
    HandlerChain([composite]).handle(RequestContext(), Response())
    assert calls == ["a", "c"]


def test_composite_response_handler_runs_despite_stop_until_terminated():
    calls = []
    composite = CompositeResponseHandler(
        [note(calls, "a"), note(calls, "b", lambda chain: chain.terminate()), note(calls, "c")]
    )
    chain = HandlerChain([lambda chain, context, response: chain.stop()], [composite, note(calls, "after")])
    chain.handle(RequestContext(), Response())
    assert calls == ["a", "b"]


def test_composite_finalizer_runs_each_whatever_the_others_do():
    calls = []

    def failing(chain, context, response):
        calls.append("failing")
        raise RuntimeError("finalizer")

    composite = CompositeFinalizer([failing, note(calls, "b")])
    HandlerChain(finalizers=[composite, note(calls, "after")]).handle(RequestContext(), Response())
    assert calls == ["failing", "b", "after"]


def test_composite_exception_handler_runs_each_whatever_the_others_do():
    calls = []

    def failing(chain, exception, context, response):
        calls.append(("failing", str(exception)))
        raise RuntimeError("handler")

    def good(chain, exception, context, response):
        calls.append(("good", str(exception)))

    composite = CompositeExceptionHandler([failing])
    composite.append(good)

    def boom(chain, context, response):
        raise ValueError("boom")

    HandlerChain([boom], exception_handlers=[composite]).handle(RequestContext(), Response())
    assert calls == [("failing", "boom"), ("good", "boom")]
    composite.remove(failing)
    assert composite.handlers == [good]


def test_router_handler_routes_and_stops():
    router = Router()
    router.add("/hello/<name>", lambda request, name: Response(f"hello {name}", 201, headers={"X-A": "b"}))
    calls = []
    gateway = Gateway(request_handlers=[RouterHandler(router), note(calls, "next")])
    response = process(gateway, path="/hello/ann")
    assert (response.status_code, response.get_data(as_text=True)) == (201, "hello ann")
    assert response.headers["X-A"] == "b"
    assert calls == []


def test_router_handler_keeps_a_streamed_body_streamed():
    def stream():
        yield b"a"
        yield b"b"

    router = Router()
    router.add("/stream", lambda request: Response(stream()))
    response = process(Gateway(request_handlers=[RouterHandler(router)]), path="/stream")
    assert response.is_streamed
    assert b"".join(response.iter_encoded()) == b"ab"


def test_router_handler_lets_the_next_handler_try():
    calls = []
    gateway = Gateway(
        request_handlers=[
            RouterHandler(Router()),
            note(calls, "fallback", lambda chain: chain.respond(200, "fallback")),
        ]
    )
    assert process(gateway, path="/unrouted").get_data() == b"fallback"
    assert calls == ["fallback"]


def test_router_handler_responds_not_found():
    calls = []
    gateway = Gateway(request_handlers=[RouterHandler(Router(), respond_not_found=True), note(calls, "next")])
    response = process(gateway, path="/unrouted")
    assert response.status_code == 404
    assert response.get_json() == {"code": 404, "message": "Not Found"}
    assert calls == []


def test_router_handler_method_not_allowed_through_the_exception_handler():
    router = Router()
    router.add("/only-post", lambda request: "ok", methods=["POST"])
    gateway = Gateway(request_handlers=[RouterHandler(router)], exception_handlers=[WerkzeugExceptionHandler()])
    response = process(gateway, path="/only-post")
    assert response.status_code == 405
    assert "POST" in response.headers["Allow"]
    assert response.get_json()["code"] == 405


def test_router_handler_with_an_endpoint_that_returns_nothing():
    seen = []
    router = Router()
    router.add("/ws", lambda request: seen.append(request.method), methods=["WEBSOCKET"])
    calls = []
    gateway = Gateway(request_handlers=[RouterHandler(router), note(calls, "next")])
    response = process(gateway, method="WEBSOCKET", path="/ws")
    assert seen == ["WEBSOCKET"] and calls == []
    assert response.status_code == 200  # the endpoint answered the request itself


def test_empty_response_handler_fills_in_unanswered_requests():
    gateway = Gateway(response_handlers=[EmptyResponseHandler()])
    response = process(gateway)
    assert (response.status_code, response.get_data()) == (404, b"")

    gateway = Gateway(response_handlers=[EmptyResponseHandler(418, "teapot", headers={"X-Why": "tea"})])
    response = process(gateway)
    assert (response.status_code, response.get_data(), response.headers["X-Why"]) == (418, b"teapot", "tea")


@pytest.mark.parametrize(
    "answer",
    [
        lambda chain: chain.respond(200, "answered"),
        lambda chain: chain.respond(204),
        lambda chain: chain.respond(302, headers={"Location": "/"}),
    ],
)
def test_empty_response_handler_leaves_answers_alone(answer):
    def handler(chain, context, response):
        answer(chain)

    gateway = Gateway(request_handlers=[handler], response_handlers=[EmptyResponseHandler()])
    assert process(gateway).status_code != 404


def test_empty_response_handler_does_not_consume_a_streamed_body():
    def stream():
        yield b"streamed"

    def handler(chain, context, response):
        response.set_response(stream())

    gateway = Gateway(request_handlers=[handler], response_handlers=[EmptyResponseHandler()])
    response = process(gateway)
    assert response.status_code == 200
    assert b"".join(response.iter_encoded()) == b"streamed"


def werkzeug_gateway(error: Exception, output_format: str = "json") -> Gateway:
    def handler(chain, context, response):
        raise error

    return Gateway(request_handlers=[handler], exception_handlers=[WerkzeugExceptionHandler(output_format)])


def test_werkzeug_exception_handler_json():
    response = process(werkzeug_gateway(NotFound()))
    assert response.status_code == 404
    assert response.mimetype == "application/json"
    assert response.get_json() == {"code": 404, "message": NotFound.description}

    response = process(werkzeug_gateway(BadRequest("bad field")))
    assert (response.status_code, response.get_json()) == (400, {"code": 400, "message": "bad field"})


def test_werkzeug_exception_handler_html():
    response = process(werkzeug_gateway(NotFound(), "html"))
    assert response.status_code == 404
    assert response.mimetype == "text/html"
    assert "<title>404 Not Found</title>" in response.get_data(as_text=True)


@pytest.mark.parametrize("output_format", ["json", "html"])
def test_werkzeug_exception_handler_redirects(output_format):
    # werkzeug merges repeated slashes by redirecting to the canonical path
    router = Router()
    router.add("/a/b", lambda request: "ab")
    gateway = Gateway(
        request_handlers=[RouterHandler(router)], exception_handlers=[WerkzeugExceptionHandler(output_format)]
    )
    response = process(gateway, path="/a//b")
    assert (response.status_code, response.headers["Location"]) == (308, "http://localhost/a/b")


def test_werkzeug_exception_handler_uses_the_exception_response():
    error = HTTPException(response=Response("custom", 429, headers={"Retry-After": "3"}))
    response = process(werkzeug_gateway(error))
    assert (response.status_code, response.get_data(), response.headers["Retry-After"]) == (429, b"custom", "3")


def test_werkzeug_exception_handler_leaves_other_errors_alone():
    response = process(werkzeug_gateway(RuntimeError("not http")))
    assert (response.status_code, response.get_data()) == (500, b"")


def test_werkzeug_exception_handler_output_formats():
    with pytest.raises(ValueError):
        WerkzeugExceptionHandler("xml")
