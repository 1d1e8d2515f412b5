"""Serving a :class:`TwistedGateway` on endpoints as a Twisted service, with a graceful stop."""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Sequence
from typing import Any

import autobahn
import twisted
from twisted.application.service import MultiService, Service
from twisted.internet.address import IPv4Address, IPv6Address, UNIXAddress
from twisted.internet.defer import Deferred, FirstError, gatherResults, succeed
from twisted.internet.endpoints import serverFromString
from twisted.internet.interfaces import IAddress, IListeningPort, IStreamServerEndpoint
from twisted.python.failure import Failure
from twisted.web.server import Site

import rolo

from ._twisted import without_port_line
from .logs import logger
from .site import TwistedGateway

__all__ = [
    "DEFAULT_ENDPOINT",
    "LISTENING",
    "STARTING",
    "Endpoint",
    "GatewayService",
    "format_address",
    "is_loopback",
    "listening_reach",
    "log_listening",
    "log_start",
]

log = logger(__name__)

STARTING = "rolo {version} starting, on Twisted {twisted} and Autobahn {autobahn}"
"""The log line a server starts with (a supervisor leaves out its workers')."""

LISTENING = "rolo listening at {address} ({endpoint}){reach}"
"""The log line that says where a server listens (a supervisor reads its workers' lines by it)."""

Endpoint = str | IStreamServerEndpoint
"""Where to listen: a Twisted endpoint string (``tcp:8000``, ``tcp:8000:interface=127.0.0.1``,
``ssl:8443:privateKey=key.pem:certKey=cert.pem``, ``unix:/run/app.sock``) or an endpoint object."""

DEFAULT_ENDPOINT = "tcp:8000:interface=127.0.0.1"
"""Where a server listens when told nowhere: port 8000 of the loopback interface, reachable from this
machine only (as uvicorn's default). ``tcp:8000`` listens on every interface."""

_INTERFACE = re.compile(r":interface=(?:\\.|[^:])*")


def format_address(address: IAddress) -> str:
    """``127.0.0.1:8000``, ``[::1]:8000`` or ``unix:/run/app.sock``: where a port listens, for humans."""
    if isinstance(address, IPv6Address):
        return f"[{address.host}]:{address.port}"
    if isinstance(address, IPv4Address):
        return f"{address.host}:{address.port}"
    if isinstance(address, UNIXAddress):
        name = address.name.decode() if isinstance(address.name, bytes) else address.name
        return f"unix:{name}"
    return str(address)


def log_start() -> None:
    """Log the line a server starts with, :data:`STARTING`: the versions of rolo, Twisted and Autobahn."""
    # autobahn.__version__ is imported into the package without being exported (no __all__)
    autobahn_version = autobahn.__version__  # type: ignore[attr-defined]
    log.info(STARTING, version=rolo.__version__, twisted=twisted.__version__, autobahn=autobahn_version)


def is_loopback(address: IAddress) -> bool:
    """Whether ``address`` is a TCP address on a loopback interface, which other machines cannot reach."""
    try:
        return isinstance(address, (IPv4Address, IPv6Address)) and ipaddress.ip_address(address.host).is_loopback
    except ValueError:
        return False


def listening_reach(address: IAddress, description: str) -> str:
    """What the listening line adds for a port on a loopback address: that other machines cannot connect,
    and the endpoint that listens on every interface (the same without ``interface=``), as ``twistd rolo``'s
    ``--listen`` takes it."""
    if not is_loopback(address):
        return ""
    public = _INTERFACE.sub("", description)
    if public == description:
        return ": this machine only"
    # the examples and ./dev echo take a port alone: the hint says where the command line takes an endpoint
    every = f"use the endpoint {public} (twistd rolo --listen {public})"
    return f": this machine only; to listen on every interface, {every}"


def log_listening(address: IAddress, description: str) -> None:
    """Log the :data:`LISTENING` line for a port of endpoint ``description`` bound to ``address``."""
    log.info(
        LISTENING,
        address=format_address(address),
        endpoint=description,
        reach=listening_reach(address, description),
    )


def _parse_endpoint(reactor: Any, description: str) -> IStreamServerEndpoint:
    try:
        endpoint: IStreamServerEndpoint = serverFromString(reactor, description)
        return endpoint
    except Exception as error:  # the parsers raise ValueError, KeyError, OSError (a missing key file) …
        raise ValueError(f"bad endpoint {description!r}: {type(error).__name__}: {error}") from error


class _ListeningService(Service):
    """Listens with the site on one endpoint while running (its parent starts the privileged step)."""

    def __init__(self, description: str, endpoint: IStreamServerEndpoint, site: Site) -> None:
        self.description = description
        self.endpoint = endpoint
        self.site = site
        self.port: IListeningPort | None = None
        self.listening: Deferred[IListeningPort] | None = None

    def privilegedStartService(self) -> None:
        # listen before twistd sheds privileges, so that ports below 1024 work
        super().privilegedStartService()
        self.listening = without_port_line(lambda: self.endpoint.listen(self.site))
        self.listening.addCallback(self._listening)

    def _listening(self, port: IListeningPort) -> IListeningPort:
        self.port = port
        log_listening(port.getHost(), self.description)
        return port

    def stopService(self) -> Deferred[None]:
        super().stopService()
        port, self.port, self.listening = self.port, None, None
        if port is None:
            return succeed(None)
        stopped = port.stopListening()  # IListeningPort's "may return a Deferred"
        return stopped if stopped is not None else succeed(None)


class GatewayService(MultiService):
    """Serves a :class:`TwistedGateway` on one or more endpoints while running, as a Twisted service.

    Starting it listens on every endpoint; :attr:`listening` fires with the ports once all listen.
    Stopping it (:meth:`stopService`, which ``twistd`` calls on SIGTERM or SIGINT) is graceful: it stops
    listening, closes every open WebSocket with 1001, waits up to ``grace_period`` seconds for the
    handlers still running, and stops the site's thread pools (see :meth:`TwistedGateway.stop`). A running
    service also stops so when the reactor shuts down (a ``before shutdown`` trigger), however it was
    started. A stopped service does not start again: make a new one.

    :param site: the site to serve
    :param endpoints: where to listen
    :param grace_period: how long a stop waits for running handlers, in seconds (the site's
        ``grace_period`` setting if ``None``)
    :raises ValueError: for an endpoint string that does not parse
    :ivar listening: a :class:`~twisted.internet.defer.Deferred` that fires with the ports once every
        endpoint listens (``None`` until the service starts)
    """

    def __init__(
        self, site: TwistedGateway, endpoints: Sequence[Endpoint], grace_period: float | None = None
    ) -> None:
        super().__init__()
        if not endpoints:
            raise ValueError("at least one endpoint is needed")
        self.site = site
        self.grace_period = site.settings.grace_period if grace_period is None else grace_period
        self._listeners: list[_ListeningService] = []
        for endpoint in endpoints:
            if isinstance(endpoint, str):
                listener = _ListeningService(endpoint, _parse_endpoint(site.reactor, endpoint), site)
            else:
                listener = _ListeningService(repr(endpoint), endpoint, site)
            listener.setServiceParent(self)
            self._listeners.append(listener)
        self.listening: Deferred[list[IListeningPort]] | None = None
        self._shutdown_trigger: Any = None

    @property
    def ports(self) -> list[IListeningPort]:
        """The ports listening now, in the order of the endpoints."""
        return [listener.port for listener in self._listeners if listener.port is not None]

    def privilegedStartService(self) -> None:
        """Start listening on every endpoint.

        :raises twisted.internet.error.CannotListenError: (or the endpoint's error) at once, if an endpoint
            fails synchronously, as TCP, SSL and UNIX endpoints do when the address is taken
        """
        log_start()
        super().privilegedStartService()
        listening = []
        for listener in self._listeners:
            assert listener.listening is not None, "its privilegedStartService has run"
            listening.append(listener.listening)
        self.listening = gatherResults(listening, consumeErrors=True)
        failed: list[Failure] = []

        def note(failure: Failure) -> Failure:
            error = failure.value
            assert isinstance(error, FirstError), "gatherResults fails with the first of its Deferreds to fail"
            failed.append(error.subFailure)  # it wraps the endpoint's failure
            return failure

        self.listening.addErrback(note)
        if failed:  # it failed at once
            self.listening.addErrback(lambda _: None)  # raised here rather than through the Deferred
            failed[0].raiseException()

    def startService(self) -> None:
        if self.listening is None:  # started without the privileged step (not by twistd)
            self.privilegedStartService()
        super().startService()
        self._shutdown_trigger = self.site.reactor.addSystemEventTrigger("before", "shutdown", self.stopService)

    def stopService(self) -> Deferred[None]:
        """Stop listening, then stop the site gracefully (see the class). Fires when done; stopping a
        service that is not running fires at once."""
        if not self.running:
            return succeed(None)
        if self._shutdown_trigger is not None:
            try:
                self.site.reactor.removeSystemEventTrigger(self._shutdown_trigger)
            except ValueError:
                pass  # it fired: this is the shutdown
            self._shutdown_trigger = None
        stopped: Deferred[Any] = super().stopService()
        stopped.addCallback(lambda _: self.site.stop(self.grace_period))
        return stopped
