"""The per-request attribute bag that handlers share."""

from __future__ import annotations

from typing import Any

from rolo.request import Request

__all__ = ["RequestContext"]


class RequestContext:
    """What handlers know about one request: ``request``, and whatever attributes they set.

    An attribute nobody set reads as ``None``, so handlers can test for each other's results freely.
    """

    request: Request | None

    def __init__(self, request: Request | None = None) -> None:
        self.request = request

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):  # keep copy, pickle and friends from mistaking None for a protocol
            raise AttributeError(name)
        return None

    def get(self, key: str, default: Any = None) -> Any:
        """The attribute ``key``, or ``default`` if it was never set."""
        return self.__dict__.get(key, default)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.__dict__!r}>"
