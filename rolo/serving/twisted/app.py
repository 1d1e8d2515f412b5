"""Finding the application to serve by its import path, such as ``myapp.server:gateway``."""

from __future__ import annotations

import importlib
import os
import sys
import traceback
from typing import Any

from rolo.gateway import Gateway, as_gateway
from rolo.routing import Router

__all__ = ["AppError", "load_app"]


class AppError(Exception):
    """The application named could not be loaded; the message says why on its first line, and where, when
    the application's own code failed, on the next ones (the last frames of the traceback)."""


_FRAMES_SHOWN = 3
_IMPORT_MACHINERY = ("<frozen importlib", os.path.dirname(importlib.__file__) + os.sep)


def _described(error: BaseException) -> str:
    """``NameError: name 'x' is not defined``, then where it was raised: the last frames of its traceback
    that are not the import machinery's or this module's, or the line a ``SyntaxError`` points at."""
    lines = traceback.format_exception_only(type(error), error)
    where = [line.rstrip("\n") for line in lines[:-1]]  # a SyntaxError's file, line and caret
    if not where:
        frames = [
            frame
            for frame in traceback.extract_tb(error.__traceback__)
            if not frame.filename.startswith(_IMPORT_MACHINERY) and frame.filename != __file__
        ]
        where = "".join(traceback.format_list(frames[-_FRAMES_SHOWN:])).rstrip("\n").split("\n")
    summary = lines[-1].strip()
    return "\n".join([summary, *where]) if any(where) else summary


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
    except ModuleNotFoundError as error:
        if error.name is not None and (module_name + ".").startswith(error.name + "."):
            # the module named, or a package it is in, does not exist: nothing of the application ran
            raise AppError(f"--app {spec!r}: cannot import {module_name}: ModuleNotFoundError: {error}") from None
        raise AppError(f"--app {spec!r}: cannot import {module_name}: {_described(error)}") from None
    except Exception as error:
        raise AppError(f"--app {spec!r}: cannot import {module_name}: {_described(error)}") from None
    for name in attribute.split("."):
        try:
            target = getattr(target, name)
        except AttributeError:
            raise AppError(f"--app {spec!r}: {module_name} has no attribute {attribute}") from None
    if callable(target) and not isinstance(target, (Gateway, Router)):
        try:
            target = target()
        except Exception as error:
            raise AppError(f"--app {spec!r}: calling {attribute}() raised {_described(error)}") from None
    try:
        return as_gateway(target)
    except TypeError as error:
        raise AppError(f"--app {spec!r}: {error}") from None
