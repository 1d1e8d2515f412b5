"""Routing: rules made with ``@route`` or ``Router.add``, matched by werkzeug, dispatched to endpoints."""

from .converters import PortConverter, RegexConverter
from .handler import Dispatcher, RequestArguments, call_endpoint, handler_dispatcher, to_response
from .router import Router, UpgradeRequired
from .rules import route

__all__ = [
    "Dispatcher",
    "PortConverter",
    "RegexConverter",
    "RequestArguments",
    "Router",
    "UpgradeRequired",
    "call_endpoint",
    "handler_dispatcher",
    "route",
    "to_response",
]
