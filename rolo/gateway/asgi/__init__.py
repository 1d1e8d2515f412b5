"""Serving a gateway from any asyncio ASGI server (hypercorn, uvicorn …): :class:`AsgiGateway`.

The application holds no event loop until the server calls it; handlers run in threads, and everything that
touches ASGI ``receive`` and ``send`` runs on the server's loop.
"""

from .app import AsgiGateway, LifespanListener

__all__ = ["AsgiGateway", "LifespanListener"]
