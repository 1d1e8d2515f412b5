"""Serving a gateway on Twisted: :class:`TwistedGateway` is the site to listen with."""

from .site import TwistedGateway
from .websocket import WebSocketSettings

__all__ = ["TwistedGateway", "WebSocketSettings"]
