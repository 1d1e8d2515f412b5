"""Finding the application to serve by its import path, such as ``myapp.server:gateway``."""

from __future__ import annotations

import importlib
import os
import sys
from typing import Any

from rolo.gateway import Gateway, as_gateway
from rolo.routing import Router

__all__ = ["AppError", "load_app"]


class AppError(Exception):
    """The application named could not be loaded; the message says why, on one line."""


def load_app(spec: str) -> Gateway:
    """Import the application named by ``spec``, ``package.module:attribute``, and return its gateway.

    The attribute (a dotted path within the module, such as ``server.gateway``) is a :class:`Gateway`, a
    :class:`Router`, or a callable that takes no arguments and returns one of them. The current directory
    is put on ``sys.path`` first, so that a module beside the command is found.

    :raises AppError: if the module cannot be imported, has no such attribute, or holds something else
    """
    module_name, colon, attribute = spec.partition(":")
    if not colon or not module_name or not attribute:
        raise AppError(f"--app {spec!r}: expected package.module:attribute")
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        target: Any = importlib.import_module(module_name)
    except Exception as error:
        raise AppError(f"--app {spec!r}: cannot import {module_name}: {type(error).__name__}: {error}") from None
    for name in attribute.split("."):
        try:
            target = getattr(target, name)
        except AttributeError:
            raise AppError(f"--app {spec!r}: {module_name} has no attribute {attribute}") from None
    if callable(target) and not isinstance(target, (Gateway, Router)):
        try:
            target = target()
        except Exception as error:
            raise AppError(f"--app {spec!r}: calling {attribute}() raised {type(error).__name__}: {error}") from None
    try:
        return as_gateway(target)
    except TypeError as error:
        raise AppError(f"--app {spec!r}: {error}") from None
