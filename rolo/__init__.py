"""rolo: WebSocket and HTTP servers in plain, blocking Python, served on Twisted.

The names here are the ones most applications need; the rest live in :mod:`rolo.routing`,
:mod:`rolo.gateway`, :mod:`rolo.websocket` and :mod:`rolo.serving`.
"""

from rolo.request import Request
from rolo.response import Response
from rolo.routing import Router, route

__all__ = ["Request", "Response", "Router", "__version__", "route"]

#: This release's version (PEP 440); the package's metadata (distribution ``txrolo``) and ``twistd rolo
#: --version`` give the same.
__version__ = "0.1.0.dev0"
