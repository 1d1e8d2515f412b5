"""Gateway.serve, as servers call it: the response is what process() fills in, whether the chain took the
endpoint's response as it is or merged it into a new one."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from werkzeug.wrappers import Response as WerkzeugResponse

from rolo import Request, Response, Router
from rolo.gateway import Gateway, HandlerChain, RequestContext, ReturningHandler, as_gateway
from rolo.gateway.answer import answer
from rolo.gateway.handlers import RouterHandler
from rolo.routing.handler import to_response


def _without_content_type() -> Response:
    response = Response(b"bare")
    del response.headers["Content-Type"]
    return response


def _without_automatic_length() -> Response:
    response = Response(mimetype="text/plain")
    response.automatically_set_content_length = False  # on this response: a merge would not copy it
    response.set_data(b"no length")
    return response


def _a_name_thrice_apart() -> Response:
    response = Response(b"cookies")
    for name, value in [("Set-Cookie", "a=1"), ("Set-Cookie", "b=2"), ("X-Between", "1"), ("Set-Cookie", "c=3")]:
        response.headers.add(name, value)
    return response


class Stamping(Response):
    def get_wsgi_headers(self, environ):
        headers = super().get_wsgi_headers(environ)
        headers["X-Stamped"] = "1"
        return headers


def _passed_through() -> Response:
    return Response([b"raw", b" chunks"], direct_passthrough=True)


# what endpoints return, and whether the chain may send it as it is (True) or merges it (False)
RETURNS: list[tuple[str, Callable[[], object], bool]] = [
    ("text with a mimetype", lambda: Response(b"hello world", mimetype="text/plain"), True),
    ("a status and headers", lambda: Response(b"made", 201, {"Content-Type": "text/csv", "X-Id": "7"}), True),
    ("a str", lambda: "some text", True),
    ("a dict (JSON)", lambda: {"a": 1}, True),
    ("a header before Content-Type", lambda: Response(b"x", headers={"X-First": "1"}), False),
    ("no Content-Type", _without_content_type, False),
    ("an attribute set on it", _without_automatic_length, False),
    ("a name thrice, apart", _a_name_thrice_apart, False),
    ("a werkzeug Response", lambda: WerkzeugResponse(b"plain werkzeug", mimetype="text/plain"), False),
    ("a subclass", lambda: Stamping(b"sub", mimetype="text/plain"), False),
    ("a streamed body", lambda: Response(iter([b"a", b"b"]), mimetype="text/plain"), False),
    ("a passed-through sequence", _passed_through, True),
]


def gateway_of(endpoint: Callable[[], object], **handlers) -> Gateway:
    router = Router()
    router.add("/", lambda request: endpoint())
    return Gateway(request_handlers=[RouterHandler(router, respond_not_found=True)], **handlers)


def request(method: str = "GET", path: str = "/") -> Request:
    return Request(method, path, headers={"Host": "localhost"})


def wire(response: Response, method: str = "GET") -> tuple:
    """What a server sends for ``response``: status, header lines in order, and the body."""
    status, headers, body, _ = answer(response, request(method))
    return status, headers, body if isinstance(body, bytes) else b"".join(body)


@pytest.mark.parametrize(("returned", "taken"), [case[1:] for case in RETURNS], ids=[case[0] for case in RETURNS])
@pytest.mark.parametrize("method", ["GET", "HEAD"])
def test_serve_sends_what_process_fills_in(returned, taken, method):
    endpoint_responses = []

    def endpoint():
        endpoint_responses.append(to_response(returned()))  # as the dispatcher makes it of a str or a dict
        return endpoint_responses[-1]

    gateway = gateway_of(endpoint)
    filled = Response()
    gateway.process(request(method), filled)
    served = gateway.serve(request(method))
    assert wire(served, method) == wire(filled, method)
    assert (served is endpoint_responses[-1]) is taken
    assert type(served) is Response
    assert filled is not endpoint_responses[0]


def test_only_a_chain_without_response_handlers_or_finalizers_takes_the_response_as_it_is():
    # an endpoint may return the same response to every request: handlers after the router change a copy
    shared = Response(b"shared", mimetype="text/plain")

    def mark(chain, context, response):
        response.headers.add("X-Seen", "1")

    for handlers in ({"response_handlers": [mark]}, {"finalizers": [mark]}):
        gateway = gateway_of(lambda: shared, **handlers)
        for _ in range(2):
            served = gateway.serve(request())
            assert served is not shared
            assert served.headers.getlist("X-Seen") == ["1"]
        assert "X-Seen" not in shared.headers
    assert gateway_of(lambda: shared).serve(request()) is shared


def test_a_response_handler_sees_the_headers_the_endpoint_set():
    seen = []
    gateway = gateway_of(
        lambda: Response(b"x", mimetype="text/plain", headers={"X-Endpoint": "1"}),
        response_handlers=[lambda chain, context, response: seen.append(response.headers.get("X-Endpoint"))],
    )
    gateway.serve(request())
    assert seen == ["1"]


class Body:
    """A streamed body that notes when it is closed."""

    def __init__(self, closed: list[str]) -> None:
        self.closed = closed

    def __iter__(self):
        yield b"chunk"

    def close(self) -> None:
        self.closed.append("body")


@pytest.mark.parametrize("body", ["streamed", "whole"])
def test_a_body_and_the_close_callbacks_are_closed_as_process_closes_them(body):
    closed: dict[str, list[str]] = {"serve": [], "process": []}

    def endpoint(notes: list[str]) -> Response:
        response = Response(Body(notes) if body == "streamed" else b"whole", mimetype="text/plain")
        response.call_on_close(lambda: notes.append("callback"))
        return response

    served = gateway_of(lambda: endpoint(closed["serve"])).serve(request())
    filled = Response()
    gateway_of(lambda: endpoint(closed["process"])).process(request(), filled)
    for response, notes in ((served, closed["serve"]), (filled, closed["process"])):
        assert wire(response)[2] in (b"chunk", b"whole") and notes == []  # sent, not closed yet
        response.close()
    assert closed["serve"] == closed["process"] and "callback" in closed["serve"]


def test_a_handler_that_wraps_the_router_handler_changes_the_response_it_was_given():
    router_handler = RouterHandler(Router())
    router_handler.router.add("/", lambda request: Response(b"routed", mimetype="text/plain"))

    def wrapper(chain, context, response):
        router_handler(chain, context, response)
        response.headers["X-Wrapped"] = "1"

    served = Gateway(request_handlers=[wrapper]).serve(request())
    assert (served.get_data(), served.headers.get("X-Wrapped")) == (b"routed", "1")


def test_a_router_handler_subclass_that_overrides_call_is_given_a_response():
    class Marking(RouterHandler):
        def __call__(self, chain, context, response):
            super().__call__(chain, context, response)
            response.headers["X-Marked"] = "1"

    router = Router()
    router.add("/", lambda request: Response(b"routed", mimetype="text/plain"))
    served = Gateway(request_handlers=[Marking(router)]).serve(request())
    assert (served.get_data(), served.headers.get("X-Marked")) == (b"routed", "1")


def test_serve_calls_the_process_of_a_subclass():
    class Stamping(Gateway):
        def process(self, request, response):
            super().process(request, response)
            response.headers["X-Stamped"] = "1"

    gateway = Stamping(request_handlers=[RouterHandler(Router(), respond_not_found=True)])
    served = gateway.serve(request())
    assert (served.status_code, served.headers.get("X-Stamped")) == (404, "1")


def test_serve_hands_a_chain_subclass_that_overrides_handle_a_response():
    given = []

    class Noting(HandlerChain):
        def handle(self, context, response):
            given.append(response)
            super().handle(context, response)

    class NotingGateway(Gateway):
        def new_chain(self):
            return Noting(self.request_handlers)

    served = NotingGateway().serve(request())
    assert given == [served] and isinstance(served, Response)


def test_serve_answers_errors_the_chain_raised_with_a_response_it_makes():
    router = Router()
    router.add("/", lambda request: "only GET", methods=["GET"])
    served = as_gateway(router).serve(request("POST"))
    assert served.status_code == 405 and served.json == {"code": 405, "message": served.json["message"]}


def test_a_chain_handed_no_response_makes_one():
    chain = HandlerChain()
    chain.handle(RequestContext(request()))
    assert isinstance(chain.response, Response) and (chain.response.status_code, chain.response.data) == (200, b"")
    given = []
    chain = HandlerChain([lambda chain, context, response: given.append(response)])
    chain.handle(RequestContext(request()))
    assert given == [chain.response]


def test_a_returning_handler_that_does_not_stop_the_chain_has_its_response_merged():
    # the handlers after it change the chain's response: a response the endpoint shares between requests
    # must not be that one
    shared = Response(b"shared", mimetype="text/plain")

    class Static(ReturningHandler):
        def respond_to(self, chain, context):
            return shared  # and lets the chain go on

    def mark(chain, context, response):
        response.headers.add("X-Seen", "1")

    gateway = Gateway(request_handlers=[Static(), mark])
    for _ in range(3):
        served = gateway.serve(request())
        assert served is not shared and served.headers.getlist("X-Seen") == ["1"]
    assert "X-Seen" not in shared.headers


def test_a_handler_that_replaces_chain_response_changes_what_is_sent_by_neither_serve_nor_process():
    # a handler may set the public attribute, as it always could: the response the chain fills in and the
    # server sends stays the chain's own, and the handlers after it are given that one
    given = []

    def replace(chain, context, response):
        response.set_data(b"filled")
        chain.response = Response(b"swapped")

    gateway = Gateway(request_handlers=[replace, lambda chain, context, response: given.append(response)])
    served = gateway.serve(request())
    filled = Response()
    gateway.process(request(), filled)
    assert served.get_data() == filled.get_data() == b"filled"
    assert given == [served, filled]


def test_a_gateway_whose_handler_lists_are_replaced_by_equal_handlers_runs_the_new_ones():
    # chains share the tuples of handlers while they are the very same objects, not equal ones
    class Named:
        def __init__(self, name: str, ran: list[str]) -> None:
            self.name, self.ran = name, ran

        def __eq__(self, other: object) -> bool:
            return isinstance(other, Named)

        __hash__ = None  # type: ignore[assignment]

        def __call__(self, chain, context, response):
            self.ran.append(self.name)

    ran: list[str] = []
    gateway = Gateway(request_handlers=[Named("old", ran)])
    gateway.serve(request())
    gateway.request_handlers[0] = Named("new", ran)
    gateway.serve(request())
    assert ran == ["old", "new"]
