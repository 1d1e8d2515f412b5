"""Serving a gateway on a reactor that the application runs itself."""

from __future__ import annotations

from typing import Any

from twisted.internet.defer import Deferred, ensureDeferred, gatherResults

from rolo.gateway import App

from .service import DEFAULT_ENDPOINT, Endpoint, GatewayService
from .site import TwistedGateway

__all__ = ["listen"]


def listen(app: App, *endpoints: Endpoint, reactor: Any = None, **settings: Any) -> Deferred[GatewayService]:
    """Serve ``app`` on ``endpoints`` (``"tcp:8000:interface=127.0.0.1"``,
    :data:`~rolo.serving.twisted.service.DEFAULT_ENDPOINT`, if none are given: this machine only) on a reactor
    the caller runs.

    Call it on the reactor thread, before or after the reactor starts running. It fires with the running
    :class:`GatewayService` once every endpoint listens; its :attr:`~GatewayService.ports` are the
    listening ports (``service.ports[0].getHost().port`` is the port ``"tcp:0"`` bound)::

        service = await listen(gateway, "tcp:0:interface=127.0.0.1")
        ...
        await service.stopService()  # stop listening, close WebSockets with 1001, stop the thread pools

    If the reactor stops first, the service stops gracefully as part of the reactor's shutdown.

    :param app: a :class:`~rolo.gateway.Gateway`, or a :class:`~rolo.Router` (see
        :func:`~rolo.gateway.as_gateway`)
    :param endpoints: Twisted endpoint strings (``tcp:8000``, ``tcp:8000:interface=127.0.0.1``,
        ``ssl:8443:privateKey=key.pem:certKey=cert.pem``, ``unix:/run/app.sock``) or endpoint objects
    :param reactor: the reactor (the global one by default)
    :param settings: the fields of :class:`~rolo.serving.twisted.TwistedSettings` (``grace_period``:
        how long stopping waits for running handlers, ``http_threads`` …)
    :raises ValueError: (in the Deferred) for an endpoint string that does not parse, or a bad setting
    :raises twisted.internet.error.CannotListenError: (in the Deferred) if an endpoint cannot listen; the
        others are closed again
    """

    async def start() -> GatewayService:
        site = TwistedGateway(app, reactor=reactor, **settings)
        service = GatewayService(site, endpoints or (DEFAULT_ENDPOINT,))
        try:
            service.startService()
            assert service.listening is not None, "starting the service set it"
            await service.listening
        except BaseException:
            if service.running:
                await service.stopService()
            else:  # an endpoint failed at once, before the service ran: close the ports that did listen
                await gatherResults([listener.stopService() for listener in service])
            raise
        return service

    return ensureDeferred(start())
