"""Dispatchers: the conventions of the default one, and handler_dispatcher's return values."""

from __future__ import annotations

import json

import pytest

from rolo import Request, Response, Router, route
from rolo.routing import handler_dispatcher


def get(router: Router, path: str) -> Response:
    return router.dispatch(Request("GET", path, headers={"Host": "localhost"}))


def test_handler_with_request_alone():
    seen = []

    @route("/alone/<name>")
    def handler(request):
        seen.append(request.path)
        return "ok"

    router = Router()
    router.add(handler)
    assert get(router, "/alone/x").get_data() == b"ok"
    assert seen == ["/alone/x"]


def test_handler_with_args_dict():
    @route("/items/<item_id>/<int:n>")
    def handler(request, args):
        return {"args": dict(args)}

    router = Router()
    router.add(handler)
    assert get(router, "/items/abc/3").get_json() == {"args": {"item_id": "abc", "n": 3}}


def test_handler_with_args_dict_and_no_url_variables():
    router = Router()
    router.add("/static", lambda request, args: {"args": dict(args)})
    assert get(router, "/static").get_json() == {"args": {}}


def test_handler_with_keywords():
    # the seed's convention: the parameter is named like the URL variable
    @route("/echo/<name>")
    def handler(request, name: str):
        return f"thanks for connecting {name}"

    router = Router()
    router.add(handler)
    assert get(router, "/echo/alice").get_data(as_text=True) == "thanks for connecting alice"


def test_handler_with_several_keywords():
    router = Router()
    router.add("/<a>/<b>", lambda request, b, a: f"{a}-{b}")
    assert get(router, "/x/y").get_data(as_text=True) == "x-y"


def test_handler_with_var_keywords():
    router = Router()
    router.add("/kw/<a>/<int:b>", lambda request, **kwargs: {"kwargs": kwargs})
    assert get(router, "/kw/x/5").get_json() == {"kwargs": {"a": "x", "b": 5}}


def test_bound_method_handlers_follow_the_same_conventions():
    class Api:
        @route("/dict/<x>")
        def as_dict(self, request, args):
            return {"dict": dict(args)}

        @route("/kw/<x>")
        def as_keyword(self, request, x):
            return {"x": x}

    router = Router()
    router.add(Api())
    assert get(router, "/dict/1").get_json() == {"dict": {"x": "1"}}
    assert get(router, "/kw/1").get_json() == {"x": "1"}


def test_default_dispatcher_passes_responses_and_none_through():
    response = Response("made", 202, headers={"X-Made": "yes"})
    router = Router()
    router.add("/response", lambda request: response)
    router.add("/none", lambda request: None)
    assert get(router, "/response") is response
    assert get(router, "/none") is None


def test_default_dispatcher_makes_responses_of_values():
    router = Router()
    router.add("/str", lambda request: "text")
    router.add("/bytes", lambda request: b"\x00\x01")
    router.add("/list", lambda request: [1, 2])
    assert get(router, "/str").get_data() == b"text"
    assert get(router, "/bytes").get_data() == b"\x00\x01"
    assert get(router, "/list").get_json() == [1, 2]


def test_handler_dispatcher_calls_with_keywords():
    router = Router(dispatcher=handler_dispatcher())
    router.add("/users/<int:uid>", lambda request, uid: {"uid": uid})
    assert get(router, "/users/9").get_json() == {"uid": 9}


@pytest.mark.parametrize(
    "result, body, mimetype",
    [
        ("text", b"text", "text/plain"),
        (b"\xff\xfe", b"\xff\xfe", "text/plain"),
        ({"a": 1}, b'{"a": 1}', "application/json"),
        ([1, "two"], b'[1, "two"]', "application/json"),
        (None, b"", "text/plain"),
    ],
)
def test_handler_dispatcher_turns_values_into_responses(result, body, mimetype):
    router = Router(dispatcher=handler_dispatcher())
    router.add("/", lambda request: result)
    response = get(router, "/")
    assert (response.status_code, response.get_data(), response.mimetype) == (200, body, mimetype)


def test_handler_dispatcher_passes_a_response_through():
    response = Response("teapot", 418)
    router = Router(dispatcher=handler_dispatcher())
    router.add("/", lambda request: response)
    assert get(router, "/") is response


def test_handler_dispatcher_uses_the_json_encoder():
    class SetEncoder(json.JSONEncoder):
        def default(self, o):
            return sorted(o) if isinstance(o, set) else super().default(o)

    router = Router(dispatcher=handler_dispatcher(json_encoder=SetEncoder))
    router.add("/", lambda request: {"s": {3, 1}})
    assert get(router, "/").get_json() == {"s": [1, 3]}


def test_handler_dispatcher_refuses_other_values():
    router = Router(dispatcher=handler_dispatcher())
    router.add("/", lambda request: 42)
    with pytest.raises(TypeError):
        get(router, "/")


def test_custom_dispatcher():
    calls = []

    def dispatcher(request, endpoint, args):
        calls.append((request.path, endpoint, dict(args)))
        return Response("custom")

    def endpoint():
        raise AssertionError("the dispatcher decides how to call, and here it does not")

    router = Router(dispatcher=dispatcher)
    router.add("/c/<x>", endpoint)
    assert get(router, "/c/1").get_data() == b"custom"
    assert calls == [("/c/1", endpoint, {"x": "1"})]


def test_an_endpoint_that_cannot_be_weakly_referenced_is_still_dispatched():
    class Endpoint:
        __slots__ = ()  # no __weakref__

        def __call__(self, request, name):
            return f"hello {name}"

    router = Router()
    router.add("/hello/<name>", Endpoint())
    assert router.dispatch(Request("GET", "/hello/ana")).get_data() == b"hello ana"


def test_a_removed_endpoint_is_not_kept_alive_by_dispatch():
    import gc
    import weakref

    def endpoint(request):
        return "ok"

    router = Router()
    rule = router.add("/gone", endpoint)
    router.dispatch(Request("GET", "/gone"))
    alive = weakref.ref(endpoint)
    router.remove(rule)
    del endpoint, rule
    gc.collect()
    assert alive() is None
