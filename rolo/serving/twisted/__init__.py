"""Serving a gateway on Twisted: :class:`TwistedGateway` is the site to listen with; :func:`listen` serves
a gateway on a reactor the application runs, :func:`run_in_thread` from a reactor in a background thread,
and ``twistd rolo`` (:mod:`rolo.serving.twisted.tap`) from the command line."""

from .background import ServerHandle, run_in_thread
from .embed import listen
from .service import GatewayService
from .settings import TwistedSettings
from .site import TwistedGateway

__all__ = ["GatewayService", "ServerHandle", "TwistedGateway", "TwistedSettings", "listen", "run_in_thread"]
