"""Prometheus metrics served on an endpoint of their own, apart from the application's: ``twistd rolo
--metrics ENDPOINT``.

Needs prometheus-client, as :mod:`rolo.metrics` does: importing this module without it raises
:class:`ImportError` saying what to install.
"""

from __future__ import annotations

from typing import Any

from rolo.metrics import register  # first: without prometheus-client, its ImportError says what to install

from prometheus_client import REGISTRY, CollectorRegistry  # isort: skip
from prometheus_client.twisted import MetricsResource  # isort: skip
from twisted.internet.interfaces import IListeningPort
from twisted.python.failure import Failure
from twisted.web.http import Request
from twisted.web.server import Site

from .logs import logger
from .service import _INTERFACE, _ListeningService, _parse_endpoint, format_address, is_loopback
from .site import TwistedGateway

__all__ = ["METRICS_LINE", "MetricsService", "metrics_endpoint"]

log = logger(__name__)

METRICS_LINE = "rolo metrics at {address} ({endpoint}){reach}"
"""The log line that says where the metrics are served."""

_LOOPBACK = {"tcp": "127.0.0.1", "ssl": "127.0.0.1", "tcp6": "\\:\\:1"}
_EVERY = {"tcp": "0.0.0.0", "ssl": "0.0.0.0", "tcp6": "\\:\\:"}


def metrics_endpoint(description: str) -> str:
    """The endpoint string that ``--metrics description`` listens on: a ``tcp:``, ``tcp6:`` or ``ssl:``
    endpoint without an ``interface=`` listens on the loopback interface only (``tcp:9100`` is
    ``tcp:9100:interface=127.0.0.1``), and so does a bare port (``9100``); any other is as given.
    Metrics say much about a server: serving them to other machines takes an ``interface=``."""
    if description.isdigit():
        description = f"tcp:{description}"
    kind = description.partition(":")[0]
    if kind in _LOOPBACK and not _INTERFACE.search(description):
        return f"{description}:interface={_LOOPBACK[kind]}"
    return description


class _MetricsSite(Site):
    """A site for the scrapes, which logs none of them (Twisted Web would write an access line for each)."""

    noisy = False

    def log(self, request: Request) -> None:
        pass


class MetricsService(_ListeningService):
    """Serves the metrics of ``site`` (:func:`rolo.metrics.register`, into ``registry``) and of the process,
    with prometheus-client's :func:`~prometheus_client.twisted.MetricsResource`, on the endpoint
    :func:`metrics_endpoint` makes of ``description``, while running. Its parent starts it.

    Starting it raises the endpoint's error at once if it cannot listen there
    (:class:`~twisted.internet.error.CannotListenError` for a port in use).

    :param site: the server whose metrics to serve
    :param description: where, as an endpoint string (``tcp:9100``, ``unix:/run/app-metrics.sock``)
    :param registry: where the metrics are registered, and what is served (``None``: prometheus-client's
        ``REGISTRY``, which also holds the process's CPU, memory and garbage collection metrics)
    :raises ValueError: for an endpoint string that does not parse, or a registry that has rolo's metrics
        already
    """

    def __init__(self, site: TwistedGateway, description: str, registry: CollectorRegistry | None = None) -> None:
        endpoint = metrics_endpoint(description)
        registry = REGISTRY if registry is None else registry
        super().__init__(endpoint, _parse_endpoint(site.reactor, endpoint), _MetricsSite(MetricsResource(registry)))
        register(site, registry)

    def privilegedStartService(self) -> None:
        super().privilegedStartService()
        assert self.listening is not None
        starting = True
        failures: list[Failure] = []

        def failed(failure: Failure) -> None:
            if starting:
                failures.append(failure)
            else:
                log.failure("rolo could not serve its metrics at {endpoint}", failure, endpoint=self.description)

        self.listening.addErrback(failed)
        starting = False
        if failures:
            failures[0].raiseException()

    def _listening(self, port: IListeningPort) -> IListeningPort:
        self.port = port
        host = port.getHost()
        reach = _reach(host, self.description)
        log.info(METRICS_LINE, address=format_address(host), endpoint=self.description, reach=reach)
        return port


def _reach(address: Any, description: str) -> str:
    """What the metrics line adds for a port on a loopback address: how to serve them to other machines."""
    if not is_loopback(address):
        return ""
    kind = description.partition(":")[0]
    public = f"{_INTERFACE.sub('', description)}:interface={_EVERY.get(kind, '0.0.0.0')}"
    return f": this machine only; to serve them to other machines, use --metrics {public}"
