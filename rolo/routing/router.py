"""The Router: werkzeug URL matching with host matching on, dispatching to endpoints."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from werkzeug.exceptions import HTTPException, MethodNotAllowed
from werkzeug.routing import (
    AnyConverter,
    BaseConverter,
    FloatConverter,
    IntegerConverter,
    Map,
    PathConverter,
    Rule,
    RuleFactory,
    UnicodeConverter,
    UUIDConverter,
)

from rolo.request import Request

from .converters import PortConverter, RegexConverter
from .handler import Dispatcher, call_endpoint, to_response
from .rules import ANY_HOST, HOST_VARIABLE, make_rule, rules_for

__all__ = ["Router", "UpgradeRequired"]

WsgiApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]

MATCHES_REMEMBERED = 1024
"""How many matches a router remembers (the first ones go first)."""

_REMEMBERED_LENGTH = 256
"""The longest path, host or method whose match is remembered (all three come from the client; a URL
argument is part of the path): what a router remembers stays within about a megabyte, whatever requests
come."""

_PURE_CONVERTERS = frozenset(
    {
        UnicodeConverter,
        PathConverter,
        AnyConverter,
        IntegerConverter,
        FloatConverter,
        UUIDConverter,
        RegexConverter,
        PortConverter,
    }
)
"""Converters whose value depends on the matched text alone (not their subclasses, which may look things
up): a match on a map that has only these is the same for the same host, path and method."""


class _Map(Map):
    """A werkzeug map that counts the rules added to it, ``added``: a router forgets its matches when the
    count changes, whoever added the rules."""

    added = 0

    def add(self, rulefactory: RuleFactory) -> None:
        super().add(rulefactory)
        self.added += 1


def _may_remember(url_map: Map) -> bool:
    """Whether matches on ``url_map`` may be remembered: it counts the rules added to it, and each of its
    converters gives a value from the matched text alone."""
    return isinstance(url_map, _Map) and all(
        converter in _PURE_CONVERTERS for converter in url_map.converters.values()
    )


def _copy_for_map(rule: Rule) -> Rule:
    """A copy of ``rule`` to add to a map (a rule binds to one map, and remove() builds a new one).

    A werkzeug rule made without a host would match only an empty host once host matching is on; like a
    rule added by path, it matches any host instead.
    """
    copy = rule.empty()
    if copy.host is None:
        copy.host = ANY_HOST
    return copy


class UpgradeRequired(MethodNotAllowed):
    """426 Upgrade Required (RFC 9110 section 15.5.22): a plain HTTP request to a route that serves only
    WebSockets, answered with ``Upgrade: websocket`` (and ``Connection: Upgrade``, which RFC 9110 section
    7.8 asks of a sender of ``Upgrade``). A :class:`~werkzeug.exceptions.MethodNotAllowed` whose valid
    method is ``WEBSOCKET``, so that code catching that still catches it."""

    code = 426
    description = "This URL serves WebSocket connections only: open one with an upgrade request."

    def __init__(self) -> None:
        super().__init__(valid_methods=["WEBSOCKET"])

    def get_headers(self, environ: Any = None, scope: Any = None) -> list[tuple[str, str]]:
        # no Allow: WEBSOCKET is not a method a client could send instead
        headers = HTTPException.get_headers(self, environ, scope)
        return [*headers, ("Upgrade", "websocket"), ("Connection", "Upgrade")]


class Router:
    """Routes requests to endpoints by path, method and host.

    It wraps a werkzeug :class:`~werkzeug.routing.Map` with host matching on and strict slashes off; a rule
    without a host matches any host. The converters ``regex`` and ``port`` are built in, beside werkzeug's.

    It remembers its last 1,024 matches (host, path and method to rule and URL arguments) of hosts, paths
    and methods up to 256 characters long, so that a request like one before it is not matched again, which
    takes werkzeug tens of microseconds. A router with converters of its own beyond werkzeug's and
    ``regex`` and ``port`` remembers none (their ``to_python`` runs for every request); no error is
    remembered; adding or removing rules (also on its werkzeug map, ``url_map``, itself) forgets them all.

    :param dispatcher: calls the matched endpoint, ``dispatcher(request, endpoint, args)``; by default
        :func:`~rolo.routing.handler.call_endpoint`
    :param converters: further URL converters by name
    """

    def __init__(
        self,
        dispatcher: Dispatcher | None = None,
        converters: Mapping[str, type[BaseConverter]] | None = None,
    ) -> None:
        self.dispatcher: Dispatcher = dispatcher or call_endpoint
        self._converters: dict[str, type[BaseConverter]] = {
            "regex": RegexConverter,
            "port": PortConverter,
            **(converters or {}),
        }
        self._rules: list[Rule] = []
        # werkzeug maps are not safe to change while another thread matches against them
        self._lock = threading.RLock()
        self.url_map = self._new_map()
        # (host, root path, scheme, path, method) -> (rule, arguments), for _matches_of's map and count
        self._matches: dict[tuple[str, str, str, str, str], tuple[Rule, dict[str, Any]]] = {}
        self._matches_of: tuple[Map, int] | None = None
        self._remembering = False

    def _new_map(self) -> Map:
        return _Map(host_matching=True, strict_slashes=False, converters=self._converters)

    def add(
        self,
        path: Any,
        endpoint: Any = None,
        host: str | None = None,
        methods: Iterable[str] | None = None,
        **kwargs: Any,
    ) -> Rule | list[Rule]:
        """Add rules, and return them (one rule for a path, a list otherwise).

        - ``add("/items/<id>", endpoint, host=None, methods=None, **rule_kwargs)``: one rule;
        - ``add(fn)``: the rules of a function decorated with ``@route``;
        - ``add(obj)``: the rules of every ``@route`` method of an object;
        - ``add(rule_factory)``: the rules of a werkzeug ``Rule`` or ``RuleFactory``;
        - ``add([...])``: any mix of these.
        """
        if isinstance(path, str):
            rule = make_rule(path, endpoint, host, methods, **kwargs)
            self._add_rules([rule])
            return rule
        rules: list[Rule] = []
        for item in rules_for(path):
            rules.extend(item.get_rules(self.url_map) if isinstance(item, RuleFactory) else [item])
        self._add_rules(rules)
        return rules

    def _add_rules(self, rules: list[Rule]) -> None:
        with self._lock:
            for rule in rules:
                self.url_map.add(_copy_for_map(rule))
                self._rules.append(rule)

    def remove(self, rules: Rule | Iterable[Rule]) -> None:
        """Remove rules that :meth:`add` returned."""
        doomed = {id(rule) for rule in ([rules] if isinstance(rules, Rule) else rules)}
        with self._lock:
            self._rules = [rule for rule in self._rules if id(rule) not in doomed]
            url_map = self._new_map()
            for rule in self._rules:
                url_map.add(_copy_for_map(rule))
            self.url_map = url_map
            # at once: a removed rule's endpoint is not kept alive by a match, nor by the map it was on
            self._matches.clear()
            self._matches_of = None

    def dispatch(self, request: Request) -> Any:
        """Match the request and call its endpoint through the dispatcher.

        :raises werkzeug.exceptions.NotFound: no rule matches the path and host
        :raises werkzeug.exceptions.MethodNotAllowed: rules match, but not for the request's method
        :raises UpgradeRequired: (a ``MethodNotAllowed``) the rules that match serve only WebSockets, and
            the request is not an upgrade request
        """
        # the match is looked up in a call of its own: what the lookup makes (its key, the map's state) is not
        # kept on the stack while the endpoint runs, which a WebSocket one does for as long as its connection
        rule, args = self._rule_and_args(request)
        return self.dispatcher(request, rule.endpoint, args)

    def _rule_and_args(self, request: Request) -> tuple[Rule, dict[str, Any]]:
        key = (request.host, request.root_path, request.scheme, request.path, request.method)
        with self._lock:
            state = (self.url_map, getattr(self.url_map, "added", 0))
            if state != self._matches_of:  # rules came or went
                self._matches.clear()
                self._matches_of = state
                self._remembering = _may_remember(self.url_map)
            remembered = self._matches.get(key)
            if remembered is not None:
                rule, args = remembered[0], dict(remembered[1])
            else:
                rule, matched = self._match(request)
                # without the host's, in a dict of their own size (an empty one has no table of its own)
                args = {name: value for name, value in matched.items() if name != HOST_VARIABLE}
                if self._remembering and max(map(len, key)) <= _REMEMBERED_LENGTH:
                    if len(self._matches) >= MATCHES_REMEMBERED:
                        del self._matches[next(iter(self._matches))]
                    self._matches[key] = (rule, dict(args))
        return rule, args

    def _match(self, request: Request) -> tuple[Rule, dict[str, Any]]:
        # the bound map is not kept (as a local) while the endpoint runs: a WebSocket one runs for as long
        # as its connection lives. The query string goes into the Location of a redirect werkzeug raises (to
        # merge doubled slashes, say): decoded as werkzeug's own bind_to_environ decodes it
        try:
            return self.url_map.bind(  # type: ignore[return-value]  # werkzeug: a fresh dict, typed Mapping
                request.host,
                script_name=request.root_path or None,
                url_scheme=request.scheme,
                path_info=request.path,
                query_args=request.query_string.decode("utf-8", "replace"),
            ).match(method=request.method, return_rule=True)
        except MethodNotAllowed as error:
            if set(error.valid_methods or ()) == {"WEBSOCKET"}:
                raise UpgradeRequired() from None
            raise

    def wsgi(self) -> WsgiApp:
        """This router as a WSGI application; werkzeug HTTP errors are answered as such, and an endpoint that
        returns nothing with an empty 200."""

        def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
            request = Request(environ)
            try:
                response = to_response(self.dispatch(request))
            except HTTPException as e:
                return e(environ, start_response)
            return response(environ, start_response)

        return app
