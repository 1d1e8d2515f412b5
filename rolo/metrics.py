"""Prometheus metrics of a rolo server, through prometheus-client: :func:`register` a server in a registry.

::

    from rolo.metrics import register

    register(site)                # a TwistedGateway, or an AsgiGateway; into prometheus-client's REGISTRY

The application exposes the registry as it likes (prometheus-client's ``start_http_server``,
``make_asgi_app``, Twisted ``MetricsResource`` …); ``twistd rolo --metrics ENDPOINT`` does it for
``twistd``. This module needs ``prometheus-client`` (rolo's ``metrics`` extra); nothing else in rolo imports
it. A server counts what it does in plain integers (:mod:`rolo.counters`) whether or not it is registered;
the :class:`ServerCollector` reads them when the registry is scraped, so the messages a server handles cost
no call into prometheus-client. Only the HTTP latency histogram is observed as each response ends, once
the server is registered.

Every metric and what it means: :ref:`metrics`.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterator
from typing import Any

try:
    from prometheus_client import REGISTRY, CollectorRegistry, Histogram
    from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
except ImportError as error:  # not installed (or its import is blocked)
    raise ImportError(
        "rolo.metrics needs prometheus-client: pip install prometheus-client "
        "(or rolo's metrics extra: pip install '.[metrics]' in its checkout)"
    ) from error

from rolo.counters import Tally
from rolo.websocket.hub import DELIVERIES

__all__ = ["ServerCollector", "register"]

_PUBLICATIONS = ("published", "failed")


def register(server: Any, registry: CollectorRegistry | None = None) -> ServerCollector:
    """Report ``server``'s metrics, and those of every :class:`~rolo.websocket.Hub` of the process, in
    ``registry`` (prometheus-client's default one, which also holds the process's CPU, memory and garbage
    collection metrics), and observe its HTTP latencies from now on.

    Register one server per registry. The application exposes the registry itself: see the module.

    :param server: a :class:`~rolo.serving.twisted.TwistedGateway` (for :func:`~rolo.serving.twisted.listen`,
        ``service.site``; for :func:`~rolo.serving.twisted.run_in_thread`, ``server.service.site``) or an
        :class:`~rolo.gateway.asgi.AsgiGateway`
    :param registry: where to register it (``None``: prometheus-client's ``REGISTRY``)
    :return: the collector registered
    :raises ValueError: if ``registry`` has rolo's metrics already (another server registered there)
    """
    collector = ServerCollector(server)
    (REGISTRY if registry is None else registry).register(collector)
    server.http.counters.observe = collector.duration.observe
    return collector


def _family(
    kind: type[CounterMetricFamily] | type[GaugeMetricFamily], name: str, documentation: str, value: float
) -> Metric:
    return kind(name, documentation, value=value)


def _labelled(name: str, documentation: str, labels: list[str], counts: dict[Hashable, int]) -> Metric:
    family = CounterMetricFamily(name, documentation, labels=labels)
    for key, count in sorted(counts.items(), key=lambda item: str(item[0])):
        values = key if isinstance(key, tuple) else (key,)
        family.add_metric([str(int(v)) if isinstance(v, int) else str(v) for v in values], count)
    return family


def _seeded(tally: Tally, *keys: Hashable) -> dict[Hashable, int]:
    """The counts of ``tally``, with ``keys`` at 0 where nothing was counted yet."""
    counts = tally.counts()
    for key in keys:
        counts.setdefault(key, 0)
    return counts


class ServerCollector:
    """A prometheus-client collector of one server's metrics (see the module), read from its counters each
    time it is collected. :func:`register` makes one.

    :param server: a :class:`~rolo.serving.twisted.TwistedGateway` or an
        :class:`~rolo.gateway.asgi.AsgiGateway`
    :ivar duration: the histogram of HTTP response durations, in seconds, which the server observes once
        the collector is registered
    """

    def __init__(self, server: Any) -> None:
        self.server = server
        self.duration = Histogram(
            "rolo_http_request_duration_seconds",
            "HTTP responses by the time from the request's arrival to the response's end, in seconds.",
            registry=None,
        )

    def collect(self) -> Iterator[Metric]:
        """The metrics as they are now."""
        host = self.server.websocket.host
        websocket = host.counters
        yield _family(
            GaugeMetricFamily,
            "rolo_websocket_connections",
            "WebSocket connections open: upgrade requests taken and not yet closed.",
            len(host.connections),
        )
        yield _family(
            GaugeMetricFamily, "rolo_websocket_handlers", "WebSocket handlers running.", host.handlers.running
        )
        yield _labelled(
            "rolo_websocket_upgrades",
            "WebSocket upgrade requests answered, by HTTP status: 101 accepted, others refused.",
            ["status"],
            _seeded(websocket.upgrades, 101),
        )
        yield _family(
            CounterMetricFamily,
            "rolo_websocket_messages_received",
            "WebSocket messages handed to handlers.",
            websocket.messages_received,
        )
        yield _family(
            CounterMetricFamily,
            "rolo_websocket_received_bytes",
            "Size of the WebSocket messages handed to handlers.",
            websocket.received_bytes,
        )
        yield _family(
            CounterMetricFamily,
            "rolo_websocket_messages_sent",
            "WebSocket messages handlers sent.",
            websocket.messages_sent,
        )
        yield _family(
            CounterMetricFamily,
            "rolo_websocket_sent_bytes",
            "Size of the WebSocket messages handlers sent.",
            websocket.sent_bytes,
        )
        yield _labelled(
            "rolo_websocket_closes",
            "Open WebSocket connections closed, by the code of the first close frame and who sent it "
            "(none: lost without one, 1006).",
            ["code", "by"],
            websocket.closes.counts(),
        )
        yield _labelled(
            "rolo_handler_errors",
            "Requests whose handler, or streamed HTTP body, raised an error that is no answer, by kind "
            "(http, websocket).",
            ["kind"],
            _seeded(self.server.gateway.handler_errors, "http", "websocket"),
        )
        http = self.server.http
        yield _labelled(
            "rolo_http_requests", "HTTP responses, by status.", ["status"], http.counters.responses.counts()
        )
        yield from self.duration.collect()
        pool = http.pool
        yield _family(
            GaugeMetricFamily,
            "rolo_http_threads_busy",
            "HTTP handler threads running a handler.",
            pool.busy if pool is not None else 0,
        )
        yield _family(
            GaugeMetricFamily,
            "rolo_http_requests_queued",
            "HTTP requests waiting for a handler thread.",
            pool.waiting if pool is not None else 0,
        )
        hubs = DELIVERIES.counts()
        yield _labelled(
            "rolo_hub_deliveries",
            "Messages for the members in this process of each Hub, by what became of them (sent, gone, slow).",
            ["hub", "outcome"],
            {key: count for key, count in hubs.items() if key[1] not in _PUBLICATIONS},  # type: ignore[index]
        )
        yield _labelled(
            "rolo_hub_publications",
            "Processes the pushes of this one were for, through a Hub's broker, by outcome (published, failed).",
            ["hub", "outcome"],
            {key: count for key, count in hubs.items() if key[1] in _PUBLICATIONS},  # type: ignore[index]
        )
