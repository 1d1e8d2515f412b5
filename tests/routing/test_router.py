"""Router: the ways rules are added and removed, host matching, converters, methods, errors."""

from __future__ import annotations

import sys

import pytest
from werkzeug.exceptions import MethodNotAllowed, NotFound
from werkzeug.routing import Rule, Submount
from werkzeug.test import Client

from rolo import Request, Response, Router, route


def get(router: Router, path: str, method: str = "GET", host: str = "localhost") -> Response:
    return router.dispatch(Request(method, path, headers={"Host": host}))


def text(response: Response) -> str:
    return response.get_data(as_text=True)


def test_add_path_and_endpoint():
    router = Router()
    rule = router.add("/items/<item_id>", lambda request, item_id: f"item {item_id}")
    assert isinstance(rule, Rule)
    assert text(get(router, "/items/42")) == "item 42"


def test_add_route_decorated_function():
    @route("/hello")
    def hello(request):
        return "hello"

    router = Router()
    assert [r.rule for r in router.add(hello)] == ["/hello"]
    assert text(get(router, "/hello")) == "hello"


def test_stacked_routes_give_one_endpoint_several_rules():
    @route("/a")
    @route("/b/<name>")
    def endpoint(request, **kwargs):
        return f"{request.path} {kwargs}"

    router = Router()
    assert sorted(r.rule for r in router.add(endpoint)) == ["/a", "/b/<name>"]
    assert text(get(router, "/a")) == "/a {}"
    assert text(get(router, "/b/x")) == "/b/x {'name': 'x'}"


def test_add_object_with_route_methods():
    class Api:
        def __init__(self, greeting: str) -> None:
            self.greeting = greeting

        @route("/greet/<name>")
        def greet(self, request, name):
            return f"{self.greeting} {name}"

        @route("/count", methods=["POST"])
        def count(self, request):
            return {"count": 1}

        def not_a_route(self, request):
            raise AssertionError("never routed")

    router = Router()
    rules = router.add(Api("hi"))
    assert sorted(r.rule for r in rules) == ["/count", "/greet/<name>"]
    assert text(get(router, "/greet/bob")) == "hi bob"
    assert get(router, "/count", method="POST").get_json() == {"count": 1}


def test_add_object_without_routes_is_an_error():
    with pytest.raises(TypeError):
        Router().add(object())


def test_add_werkzeug_rule_factory_and_rule():
    router = Router()
    rules = router.add(
        Submount("/api", [Rule("/users/<int:uid>", endpoint=lambda request, uid: f"user {uid!r}")])
    )
    assert [r.rule for r in rules] == ["/api/users/<int:uid>"]
    router.add(Rule("/plain", endpoint=lambda request: "plain"))
    # a werkzeug rule without a host matches any host, like a rule added by path
    assert text(get(router, "/api/users/7", host="example.com:8080")) == "user 7"
    assert text(get(router, "/plain", host="other.example")) == "plain"


def test_add_list_of_anything():
    @route("/one")
    def one(request):
        return "one"

    class Two:
        @route("/two")
        def two(self, request):
            return "two"

    router = Router()
    rules = router.add([one, Two(), Rule("/three", endpoint=lambda request: "three")])
    assert sorted(r.rule for r in rules) == ["/one", "/three", "/two"]
    assert [text(get(router, p)) for p in ("/one", "/two", "/three")] == ["one", "two", "three"]


def test_remove_rules():
    router = Router()
    kept = router.add("/kept", lambda request: "kept")
    single = router.add("/single", lambda request: "single")

    @route("/x")
    @route("/y")
    def many(request):
        return "many"

    several = router.add(many)
    assert text(get(router, "/x")) == "many"

    router.remove(single)
    with pytest.raises(NotFound):
        get(router, "/single")
    router.remove(several)
    for path in ("/x", "/y"):
        with pytest.raises(NotFound):
            get(router, path)
    assert text(get(router, "/kept")) == "kept"
    router.remove([kept])
    with pytest.raises(NotFound):
        get(router, "/kept")


def test_host_matching():
    router = Router()
    router.add("/", lambda request: "a", host="a.example")
    router.add("/", lambda request: "b", host="b.example")
    router.add("/any", lambda request: "any")
    assert text(get(router, "/", host="a.example")) == "a"
    assert text(get(router, "/", host="b.example")) == "b"
    with pytest.raises(NotFound):
        get(router, "/", host="c.example")
    for host in ("a.example", "c.example", "localhost:4566", "127.0.0.1"):
        assert text(get(router, "/any", host=host)) == "any"


def test_host_variables_reach_the_endpoint():
    router = Router()
    router.add("/", lambda request, bucket: bucket, host="<bucket>.s3.example")
    assert text(get(router, "/", host="photos.s3.example")) == "photos"


def test_port_converter():
    router = Router()
    router.add("/", lambda request, port: repr(port), host="localhost<port:port>")
    assert text(get(router, "/", host="localhost")) == "None"
    assert text(get(router, "/", host="localhost:4566")) == "4566"
    with pytest.raises(NotFound):
        get(router, "/", host="otherhost:4566")


def test_regex_converter():
    router = Router()
    router.add("/files/<regex('[a-z]+'):name>", lambda request, name: f"word {name}")
    router.add("/deep/<regex('.*'):rest>", lambda request, rest: f"rest {rest}")
    assert text(get(router, "/files/abc")) == "word abc"
    with pytest.raises(NotFound):
        get(router, "/files/abc1")
    assert text(get(router, "/deep/a/b/c")) == "rest a/b/c"


def test_custom_converter():
    from werkzeug.routing import BaseConverter

    class Upper(BaseConverter):
        def to_python(self, value: str) -> str:
            return value.upper()

    router = Router(converters={"upper": Upper})
    router.add("/<upper:word>", lambda request, word: word)
    assert text(get(router, "/shout")) == "SHOUT"


def test_a_converter_of_the_routers_own_runs_for_every_request():
    """A custom converter may look things up: its matches are never remembered."""
    from werkzeug.routing import BaseConverter

    converted = []

    class Recorded(BaseConverter):
        def to_python(self, value: str) -> str:
            converted.append(value)
            return value

    router = Router(converters={"recorded": Recorded})
    router.add("/<recorded:word>", lambda request, word: word)
    assert [text(get(router, "/same")) for _ in range(3)] == ["same"] * 3
    assert converted == ["same"] * 3


def test_a_remembered_match_gives_each_request_arguments_of_its_own():
    def endpoint(request, args):
        taken = dict(args)
        args.clear()  # an endpoint may change what it is given
        return str(sorted(taken.items()))

    router = Router()
    router.add("/items/<int:number>/<name>", endpoint)
    answers = [text(get(router, "/items/7/x")) for _ in range(3)]
    assert answers == ["[('name', 'x'), ('number', 7)]"] * 3


def test_a_running_endpoint_is_given_arguments_without_a_table_and_no_lookup_key_stays_on_the_stack():
    # a WebSocket endpoint runs as long as its connection: what finding its rule took (the key, the map's
    # state: 136 bytes) is gone by then, and its empty arguments, remembered or not, are a dict of 64 bytes
    # (the host's argument, removed from a copy, left a table of 120 more)
    held = []

    def endpoint(request, args):
        frame = sys._getframe(1)
        while frame.f_code.co_name != "dispatch":
            frame = frame.f_back
        held.append((sorted(frame.f_locals), sys.getsizeof(args)))
        return "ok"

    router = Router()
    router.add("/plain", endpoint)
    for _ in range(2):  # found, then remembered
        assert text(get(router, "/plain")) == "ok"
    assert held == [(["args", "request", "rule", "self"], sys.getsizeof({}))] * 2


def test_rules_added_after_a_match_take_part_in_the_next():
    """A path matched by a variable rule, then given a rule of its own, through the router and through its
    werkzeug map; then the rule removed again."""
    router = Router()
    router.add("/items/<name>", lambda request, name: f"item {name}")
    assert text(get(router, "/items/special")) == "item special"
    special = router.add("/items/special", lambda request: "special")
    assert text(get(router, "/items/special")) == "special"
    assert text(get(router, "/items/other")) == "item other"
    router.url_map.add(Rule("/items/other", endpoint=lambda request: "other", host="<__host__>"))
    assert text(get(router, "/items/other")) == "other"
    router.remove(special)
    assert text(get(router, "/items/special")) == "item special"


def test_matches_remembered_are_bounded_in_number_and_length(monkeypatch):
    from rolo.routing import router as router_module

    monkeypatch.setattr(router_module, "MATCHES_REMEMBERED", 8)
    router = Router()
    router.add("/items/<name>", lambda request, name: name)
    for n in range(20):
        assert text(get(router, f"/items/{n}")) == str(n)
        assert text(get(router, f"/items/{n}", host=f"host{n}")) == str(n)
    assert len(router._matches) == 8
    # nor is a long path or host remembered: what is stays small whatever requests come
    router = Router()
    router.add("/items/<name>", lambda request, name: name)
    assert text(get(router, "/items/" + "x" * 300)) == "x" * 300
    assert text(get(router, "/items/y", host=".".join(["h" * 50] * 6))) == "y"
    assert text(get(router, "/items/z", method="X" * 300)) == "z"  # a rule without methods takes any
    assert len(router._matches) == 0


def test_websocket_method():
    router = Router()
    router.add("/ws", lambda request: "upgrade", methods=["WEBSOCKET"])
    router.add("/both", lambda request: request.method, methods=["GET", "WEBSOCKET"])
    assert text(get(router, "/ws", method="WEBSOCKET")) == "upgrade"
    with pytest.raises(MethodNotAllowed) as info:
        get(router, "/ws")
    assert info.value.valid_methods == ["WEBSOCKET"]
    assert text(get(router, "/both", method="WEBSOCKET")) == "WEBSOCKET"
    assert text(get(router, "/both")) == "GET"


def test_strict_slashes_off():
    router = Router()
    router.add("/no-slash", lambda request: "no-slash")
    router.add("/slash/", lambda request: "slash")
    assert text(get(router, "/no-slash")) == "no-slash"
    assert text(get(router, "/no-slash/")) == "no-slash"
    # no redirect to the canonical URL: the request is answered where it is
    assert text(get(router, "/slash")) == "slash"
    assert text(get(router, "/slash/")) == "slash"


def test_not_found_and_method_not_allowed():
    router = Router()
    router.add("/only-post", lambda request: "posted", methods=["POST"])
    with pytest.raises(NotFound):
        get(router, "/nowhere")
    with pytest.raises(MethodNotAllowed) as info:
        get(router, "/only-post", method="PUT")
    assert "POST" in info.value.valid_methods


def test_wsgi():
    router = Router()
    router.add("/hello/<name>", lambda request, name: Response(f"hi {name}", 201))
    router.add("/json", lambda request: {"ok": True})
    router.add("/nothing", lambda request: None)
    router.add("/post", lambda request: "posted", methods=["POST"])
    client = Client(router.wsgi())

    response = client.get("/hello/ann")
    assert (response.status_code, response.get_data(as_text=True)) == (201, "hi ann")
    assert client.get("/json").get_json() == {"ok": True}
    response = client.get("/nothing")
    assert (response.status_code, response.data) == (200, b"")
    assert client.get("/missing").status_code == 404
    response = client.get("/post")
    assert response.status_code == 405
    assert "POST" in response.headers["Allow"]
