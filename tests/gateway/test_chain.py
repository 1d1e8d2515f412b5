"""HandlerChain control flow: stop, terminate, respond, throw; response handlers, exception handlers and
finalizers; and the Gateway that makes the chains."""

from __future__ import annotations

import logging

import pytest
from werkzeug.exceptions import BadRequest

from rolo import Request, Response
from rolo.gateway import Gateway, HandlerChain, RequestContext


class Recorder:
    """Makes handlers that note, in order, that they ran."""

    def __init__(self) -> None:
        self.calls: list[str] = []

    def handler(self, name: str, action=None):
        def handle(chain, context, response):
            self.calls.append(name)
            if action:
                action(chain, context, response)

        return handle

    def exception_handler(self, name: str, action=None):
        def handle(chain, exception, context, response):
            self.calls.append(f"{name}:{exception}")
            if action:
                action(chain, exception, context, response)

        return handle


def raises(error: Exception):
    def action(*args):
        raise error

    return action


def run(chain: HandlerChain, request: Request | None = None) -> Response:
    response = Response()
    chain.handle(RequestContext(request or Request("GET", "/")), response)
    return response


def test_all_handlers_run_in_order():
    r = Recorder()
    chain = HandlerChain(
        [r.handler("req1"), r.handler("req2")],
        [r.handler("resp1"), r.handler("resp2")],
        [r.handler("fin1"), r.handler("fin2")],
        [r.exception_handler("exc")],
    )
    run(chain)
    assert r.calls == ["req1", "req2", "resp1", "resp2", "fin1", "fin2"]
    assert (chain.stopped, chain.terminated, chain.error) == (False, False, None)


def test_stop_skips_the_remaining_request_handlers_only():
    r = Recorder()
    chain = HandlerChain(
        [r.handler("req1", lambda chain, *_: chain.stop()), r.handler("req2")],
        [r.handler("resp1"), r.handler("resp2")],
        [r.handler("fin")],
    )
    run(chain)
    assert r.calls == ["req1", "resp1", "resp2", "fin"]
    assert chain.stopped and not chain.terminated


def test_terminate_skips_response_handlers_but_not_finalizers():
    r = Recorder()
    chain = HandlerChain(
        [r.handler("req1", lambda chain, *_: chain.terminate()), r.handler("req2")],
        [r.handler("resp")],
        [r.handler("fin")],
    )
    run(chain)
    assert r.calls == ["req1", "fin"]
    assert chain.stopped and chain.terminated


def test_terminate_in_a_response_handler_skips_the_rest():
    r = Recorder()
    chain = HandlerChain(
        [],
        [r.handler("resp1", lambda chain, *_: chain.terminate()), r.handler("resp2")],
        [r.handler("fin")],
    )
    run(chain)
    assert r.calls == ["resp1", "fin"]


def test_respond_sets_the_response_and_stops():
    r = Recorder()

    def respond(chain, context, response):
        chain.respond(201, {"created": True}, headers={"X-Thing": "1"})

    chain = HandlerChain([r.handler("req1", respond), r.handler("req2")], [r.handler("resp")])
    response = run(chain)
    assert r.calls == ["req1", "resp"]
    assert response.status_code == 201
    assert response.get_json() == {"created": True}
    assert response.headers["X-Thing"] == "1"


@pytest.mark.parametrize("payload, body", [("text", b"text"), (b"\x00bin", b"\x00bin"), ([1], b"[1]"), (None, b"")])
def test_respond_payloads(payload, body):
    chain = HandlerChain([lambda chain, context, response: chain.respond(202, payload)])
    response = run(chain)
    assert (response.status_code, response.get_data()) == (202, body)


def test_throw_runs_the_exception_handlers_with_the_error():
    r = Recorder()
    error = ValueError("thrown")
    chain = HandlerChain(
        [r.handler("req1", lambda chain, *_: chain.throw(error)), r.handler("req2")],
        [r.handler("resp")],
        [r.handler("fin")],
        [r.exception_handler("exc")],
    )
    response = run(chain)
    assert chain.error is error
    assert r.calls == ["req1", "exc:thrown", "resp", "fin"]
    assert response.status_code == 500


def test_a_raising_handler_never_yields_an_empty_200(caplog):
    def half_done(chain, context, response):
        response.status_code = 200
        response.headers["X-Partial"] = "yes"
        response.set_response("partial")
        raise RuntimeError("boom")

    chain = HandlerChain([half_done])
    with caplog.at_level(logging.ERROR, logger="rolo.gateway"):
        response = run(chain)
    assert response.status_code == 500
    assert response.get_data() == b""
    assert "X-Partial" not in response.headers
    assert isinstance(chain.error, RuntimeError)
    assert "boom" in caplog.text


def test_a_raising_response_handler_becomes_a_500():
    r = Recorder()
    chain = HandlerChain(
        [lambda chain, context, response: chain.respond(200, "fine")],
        [r.handler("resp1", raises(RuntimeError("late"))), r.handler("resp2")],
        [r.handler("fin")],
        [r.exception_handler("exc")],
    )
    response = run(chain)
    assert r.calls == ["resp1", "exc:late", "fin"]
    assert response.status_code == 500


def test_exception_handlers_can_answer():
    def answer(chain, exception, context, response):
        chain.respond(503, {"error": str(exception)})

    chain = HandlerChain([raises(RuntimeError("down"))], exception_handlers=[answer])
    response = run(chain)
    assert (response.status_code, response.get_json()) == (503, {"error": "down"})


def test_a_raising_exception_handler_does_not_stop_the_others():
    r = Recorder()
    chain = HandlerChain(
        [raises(RuntimeError("first"))],
        finalizers=[r.handler("fin")],
        exception_handlers=[
            r.exception_handler("exc1", raises(RuntimeError("second"))),
            r.exception_handler("exc2"),
        ],
    )
    response = run(chain)
    assert r.calls == ["exc1:first", "exc2:first", "fin"]
    assert response.status_code == 500


def test_a_raising_finalizer_does_not_stop_the_others():
    r = Recorder()
    chain = HandlerChain(
        [lambda chain, context, response: chain.respond(200, "ok")],
        finalizers=[r.handler("fin1", raises(RuntimeError("fin"))), r.handler("fin2")],
        exception_handlers=[r.exception_handler("exc")],
    )
    response = run(chain)
    assert r.calls == ["fin1", "fin2"]
    # a finalizer runs after the answer: its failure does not change it
    assert (response.status_code, response.get_data()) == (200, b"ok")


def test_finalizers_run_after_errors_and_terminate():
    r = Recorder()
    chain = HandlerChain([raises(RuntimeError("x"))], finalizers=[r.handler("fin")])
    run(chain)
    assert r.calls == ["fin"]


def test_http_exceptions_are_not_logged_as_faults(caplog):
    chain = HandlerChain([raises(BadRequest())])
    with caplog.at_level(logging.ERROR, logger="rolo.gateway"):
        run(chain)
    assert not caplog.records


def test_handlers_see_the_chain_context_and_response():
    seen = []
    context = RequestContext(Request("GET", "/x"))
    response = Response()
    chain = HandlerChain([lambda c, ctx, resp: seen.append((c, ctx, resp))])
    chain.handle(context, response)
    assert seen == [(chain, context, response)]
    assert (chain.context, chain.response) == (context, response)


def test_gateway_process_runs_a_fresh_chain_per_request():
    seen = []

    def handler(chain, context, response):
        assert not chain.stopped  # a new chain each time
        seen.append(context.request.path)
        chain.respond(200, context.request.path)

    gateway = Gateway(request_handlers=[handler])
    for path in ("/a", "/b"):
        response = Response()
        gateway.process(Request("GET", path), response)
        assert response.get_data(as_text=True) == path
    assert seen == ["/a", "/b"]


def test_gateway_keeps_its_handler_lists_by_reference():
    handlers = []
    gateway = Gateway(request_handlers=handlers)
    handlers.append(lambda chain, context, response: chain.respond(204))
    response = Response()
    gateway.process(Request("GET", "/"), response)
    assert response.status_code == 204


def test_gateway_context_class():
    class MyContext(RequestContext):
        service = "default"

    seen = []
    gateway = Gateway(request_handlers=[lambda chain, context, response: seen.append(context)], context_class=MyContext)
    gateway.process(Request("GET", "/"), Response())
    assert isinstance(seen[0], MyContext)
    assert seen[0].service == "default"


def test_gateway_process_does_not_raise():
    r = Recorder()
    gateway = Gateway(
        request_handlers=[raises(RuntimeError("x"))],
        response_handlers=[r.handler("resp")],
        finalizers=[r.handler("fin")],
        exception_handlers=[r.exception_handler("exc")],
    )
    response = Response()
    gateway.process(Request("GET", "/"), response)
    assert response.status_code == 500
    assert r.calls == ["exc:x", "resp", "fin"]
