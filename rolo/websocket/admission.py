"""Whether a server takes a WebSocket upgrade request at all, before any handler sees it."""

from __future__ import annotations

from http import HTTPStatus

from .origins import OriginPolicy

__all__ = ["Refusal", "refusal"]

Refusal = tuple[HTTPStatus, bytes]
"""The status and plain-text body a refused upgrade request is answered with."""


def refusal(
    origin: str | None,
    origins: OriginPolicy | None,
    accepting: bool,
    running: int,
    max_connections: int,
) -> Refusal | None:
    """Why an upgrade request is refused, or ``None`` to take it.

    A forbidden origin is refused first, whatever the load: ``403``. Then a server that is shutting down
    (``accepting`` false) or already runs ``max_connections`` handlers answers ``503``, at once.
    """
    if origins is not None and not origins.allows(origin):
        return HTTPStatus.FORBIDDEN, b"origin not allowed\n"
    if not accepting:
        return HTTPStatus.SERVICE_UNAVAILABLE, b"server shutting down\n"
    if running >= max_connections:
        return HTTPStatus.SERVICE_UNAVAILABLE, b"too many WebSocket connections\n"
    return None
