"""The ``@route`` decorator, and turning what ``Router.add`` is given into werkzeug rules."""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from werkzeug.routing import Rule, RuleFactory

__all__ = ["ANY_HOST", "HOST_VARIABLE", "RouteSpec", "route", "rules_for"]

HOST_VARIABLE = "__host__"
"""The URL variable that lets a rule without a host match any host; the router drops it from the arguments."""

ANY_HOST = f"<{HOST_VARIABLE}>"

ROUTES_ATTRIBUTE = "rolo_route"


@dataclass(frozen=True)
class RouteSpec:
    """What one ``@route`` said about a function."""

    path: str
    host: str | None = None
    methods: tuple[str, ...] | None = None
    rule_kwargs: dict[str, Any] = field(default_factory=dict)


def route(
    path: str, host: str | None = None, methods: Iterable[str] | None = None, **rule_kwargs: Any
) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Mark a function or method as the endpoint of a rule; ``Router.add`` picks the mark up.

    ``@route`` may be stacked to give one endpoint several rules. ``methods=["WEBSOCKET"]`` makes a
    WebSocket route. Other keyword arguments go to :class:`werkzeug.routing.Rule`.
    """
    spec = RouteSpec(path, host, tuple(methods) if methods is not None else None, rule_kwargs)

    def mark(fn: Callable[..., Any]) -> Callable[..., Any]:
        setattr(fn, ROUTES_ATTRIBUTE, [*getattr(fn, ROUTES_ATTRIBUTE, []), spec])
        return fn

    return mark


def make_rule(
    path: str, endpoint: Any, host: str | None = None, methods: Iterable[str] | None = None, **kwargs: Any
) -> Rule:
    """A rule for ``path`` on ``host`` (any host when ``None``)."""
    return Rule(path, endpoint=endpoint, host=host or ANY_HOST, methods=methods, **kwargs)


def rules_for(thing: Any) -> list[Rule | RuleFactory]:
    """The rules of a ``@route`` function, a ``RuleFactory`` or ``Rule``, an object with ``@route`` methods,
    or a list of any of these."""
    if isinstance(thing, (Rule, RuleFactory)):
        return [thing]
    if isinstance(thing, (list, tuple)):
        return [rule for item in thing for rule in rules_for(item)]
    specs = getattr(thing, ROUTES_ATTRIBUTE, None)
    if specs is not None and callable(thing):
        return [make_rule(s.path, thing, s.host, s.methods, **s.rule_kwargs) for s in specs]
    rules: list[Rule | RuleFactory] = []
    for _, member in inspect.getmembers(thing, predicate=inspect.ismethod):
        if hasattr(member, ROUTES_ATTRIBUTE):
            rules.extend(rules_for(member))
    if not rules:
        raise TypeError(f"{thing!r} has no routes: decorate its functions with @route")
    return rules
