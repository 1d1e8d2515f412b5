"""Dispatchers: how the router calls an endpoint and turns what it returns into a response."""

from __future__ import annotations

import enum
import inspect
import json
import weakref
from collections.abc import Callable, Mapping
from typing import Any

from werkzeug.wrappers import Response as _WerkzeugResponse

from rolo.request import Request
from rolo.response import Response

__all__ = ["Dispatcher", "RequestArguments", "call_endpoint", "handler_dispatcher", "to_response"]

RequestArguments = Mapping[str, Any]
"""The URL arguments a rule matched."""

Dispatcher = Callable[[Request, Any, RequestArguments], Any]
"""``dispatcher(request, endpoint, args)``: calls the endpoint of the matched rule and returns the response."""


class _Convention(enum.Enum):
    REQUEST = "request"  # handler(request)
    DICT = "dict"  # handler(request, args)
    KEYWORDS = "keywords"  # handler(request, name=...) or handler(request, **kwargs)


Signature = tuple[bool, tuple[str, ...]]

# each endpoint's signature is read once; weakly held, so that a removed endpoint is not kept alive
_signatures: weakref.WeakKeyDictionary[Callable[..., Any], Signature] = weakref.WeakKeyDictionary()


def _signature_of(endpoint: Callable[..., Any]) -> Signature:
    """Whether the endpoint takes ``**kwargs``, and the names of its parameters after the request."""
    try:
        return _signatures[endpoint]
    except KeyError:
        pass
    except TypeError:  # neither hashable nor weakly referable: read it each time
        return _read_signature(endpoint)
    signature = _signatures[endpoint] = _read_signature(endpoint)
    return signature


def _read_signature(endpoint: Callable[..., Any]) -> Signature:
    parameters = list(inspect.signature(endpoint).parameters.values())[1:]
    takes_kwargs = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters)
    names = tuple(
        p.name
        for p in parameters
        if p.kind in (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    )
    return takes_kwargs, names


def _convention(endpoint: Callable[..., Any], args: RequestArguments) -> _Convention:
    takes_kwargs, names = _signature_of(endpoint)
    if takes_kwargs:
        return _Convention.KEYWORDS
    if not names:
        return _Convention.REQUEST
    if len(names) == 1 and names[0] not in args:
        return _Convention.DICT
    return _Convention.KEYWORDS


def to_response(result: Any, json_encoder: type[json.JSONEncoder] | None = None) -> _WerkzeugResponse:
    """A response from what an endpoint returned: a response as it is, ``str``/``bytes`` as the body,
    ``dict``/``list`` as JSON, ``None`` as an empty 200."""
    if isinstance(result, _WerkzeugResponse):
        return result
    response = Response()
    if result is None:
        return response
    if isinstance(result, (dict, list)):
        response.set_json(result, cls=json_encoder)
    elif isinstance(result, (str, bytes, bytearray)):
        response.set_response(result)
    else:
        raise TypeError(f"cannot make a response from {type(result).__name__}")
    return response


def call_endpoint(request: Request, endpoint: Callable[..., Any], args: RequestArguments) -> Any:
    """The default dispatcher: call the endpoint in the convention its signature shows.

    - ``handler(request)``: the request alone;
    - ``handler(request, args)``: one more parameter, not named like a URL variable: the arguments as a dict
      (the rolo convention);
    - ``handler(request, name)`` or ``handler(request, **kwargs)``: the arguments as keywords.

    The signature is read once per endpoint. A returned response, or ``None`` (as WebSocket handlers
    return), is passed on as it is; ``str``, ``bytes``, ``dict`` and ``list`` become responses as with
    :func:`handler_dispatcher`.
    """
    convention = _convention(endpoint, args)
    if convention is _Convention.REQUEST:
        result = endpoint(request)
    elif convention is _Convention.DICT:
        result = endpoint(request, args)
    else:
        result = endpoint(request, **args)
    return None if result is None else to_response(result)


def handler_dispatcher(json_encoder: type[json.JSONEncoder] | None = None) -> Dispatcher:
    """A dispatcher that calls ``endpoint(request, **args)`` and makes a response of what it returns
    (see :func:`to_response`)."""

    def dispatch(request: Request, endpoint: Callable[..., Any], args: RequestArguments) -> _WerkzeugResponse:
        return to_response(endpoint(request, **args), json_encoder)

    return dispatch
