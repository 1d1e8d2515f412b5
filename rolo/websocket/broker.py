"""The broker that joins the Hubs of several processes: where Redis is, and the link's timings.

A :class:`~rolo.websocket.Hub` given a broker reaches the connections of every process whose Hub of the
same name uses the same broker::

    hub = Hub(broker="redis://redis.internal:6379/0")
    hub = Hub(broker=RedisBroker("unix:///run/redis.sock", timeout=0.5))

``Hub()`` with no ``broker`` argument uses the broker named by the environment variable ``ROLO_BROKER``
when it is set (``twistd rolo --broker URL`` sets it before loading the application), and is in-process
otherwise; ``Hub(broker=None)`` is always in-process.

The client is redis-py, an optional dependency (the ``redis`` extra: from a checkout, ``pip install '.[redis]'``),
imported only when a Hub first uses its broker.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from urllib.parse import urlsplit

__all__ = ["BROKER_ENVIRONMENT_VARIABLE", "BrokerError", "RedisBroker", "broker_from"]

_SCHEMES = ("redis", "rediss", "unix")
"""The schemes of the URLs redis-py connects to."""

BROKER_ENVIRONMENT_VARIABLE = "ROLO_BROKER"
"""The environment variable whose Redis URL a ``Hub()`` made without a ``broker`` argument uses."""


class BrokerError(Exception):
    """The broker did not answer in time, or cannot be reached: the question (``Hub.members``,
    ``Hub.count``) has no answer now."""


@dataclass(frozen=True)
class RedisBroker:
    """A Redis server (one instance, or a primary) that carries pushes between processes, and the timings
    of a Hub's link to it.

    :param url: a redis-py URL: ``redis://[[user]:password@]host[:port][/db]``, ``rediss://...`` (TLS), or
        ``unix:///path/to/redis.sock[?db=0]``
    :param timeout: the longest a push, ``members`` or ``count`` waits for Redis, in seconds; also the
        connect and read timeout of the link's connections. While the link is down, pushes fail at once.
    :param heartbeat: how often the link refreshes this process's record and pings its subscription, in
        seconds
    :param ttl: how long this process's record lives without a heartbeat, in seconds: the members of a
        process that died leave every ``members`` and ``count`` within ``ttl``
    :param retry_interval: how often the link tries to reconnect while Redis cannot be reached, in seconds
        (the first tries come sooner: a fifth and a half of it after a break): a broker that answers again
        is in use within about this long
    :param max_pending: how many bytes of pushes may wait for Redis; a push beyond it fails at once
    :param backlog: how many bytes of pushes from other processes may wait for one member whose buffer is
        full, on the receiving side, before the member counts as slow
    :raises ValueError: for a URL redis-py would refuse (a scheme other than ``redis``, ``rediss`` or
        ``unix``, a port that is not a number from 0 to 65535), timings that are not positive, or a ``ttl``
        not above ``heartbeat``
    """

    url: str
    timeout: float = 1.0
    heartbeat: float = 1.0
    ttl: float = 5.0
    retry_interval: float = 0.1
    max_pending: int = 16 * 1024 * 1024
    backlog: int = 1024 * 1024

    def __post_init__(self) -> None:
        # checked here, without redis-py (imported only when a Hub first uses its broker), so that a bad URL
        # fails where it is given rather than in the first handler that pushes; the message leaves the URL
        # out, since it may hold a password
        parts = urlsplit(self.url)
        if parts.scheme not in _SCHEMES:
            found = f"its scheme is {parts.scheme}:" if parts.scheme else "it has none"
            raise ValueError(f"a broker URL needs the scheme redis://, rediss:// or unix://: {found}")
        try:
            parts.port  # noqa: B018 (read for its check)
        except ValueError as error:
            raise ValueError(f"a broker URL's port is a number from 0 to 65535: {error}") from None
        timings = (self.timeout, self.heartbeat, self.ttl, self.retry_interval)
        if min(timings) <= 0 or min(self.max_pending, self.backlog) < 1:
            raise ValueError("the broker's timings and sizes must be positive")
        if self.ttl <= self.heartbeat:
            raise ValueError(f"ttl ({self.ttl} s) must be longer than the heartbeat ({self.heartbeat} s)")


def broker_from(broker: RedisBroker | str | None) -> RedisBroker | None:
    """A :class:`RedisBroker` for a Hub's ``broker`` argument: one as is, a URL with the default timings,
    ``None`` for none."""
    if broker is None or isinstance(broker, RedisBroker):
        return broker
    if isinstance(broker, str):
        return RedisBroker(broker)
    raise TypeError(f"a broker is a RedisBroker or a Redis URL, not {type(broker).__name__}")


def environment_broker() -> RedisBroker | None:
    """The broker ``ROLO_BROKER`` names, if it is set and not empty."""
    return broker_from(os.environ.get(BROKER_ENVIRONMENT_VARIABLE) or None)
