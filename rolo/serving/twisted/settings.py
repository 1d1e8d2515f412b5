"""The settings of :class:`~rolo.serving.twisted.TwistedGateway`: every server's, and those of the
protocols it speaks itself (WebSocket through Autobahn, HTTP through Twisted Web)."""

from __future__ import annotations

from dataclasses import dataclass

from rolo.settings import ServerSettings, at_least, is_bool, non_negative, setting

__all__ = ["TwistedSettings"]


@dataclass(frozen=True, kw_only=True)
class TwistedSettings(ServerSettings):
    """The keyword settings of :class:`~rolo.serving.twisted.TwistedGateway`: those of
    :class:`~rolo.settings.ServerSettings`, and these.

    :raises ValueError: naming the setting, for a value it does not allow
    """

    max_message_size: int = setting(
        1024 * 1024,
        "Largest WebSocket message accepted; a larger one closes the connection with 1009 (0: no limit).",
        at_least(0),
        unit="bytes",
    )
    compression: bool = setting(
        True,
        "Accept the permessage-deflate extension (RFC 7692) when a client offers it.",
        is_bool,
        option="no-compression",
    )
    ping_interval: float = setting(
        20.0, "Between the pings sent to a WebSocket the peer is silent on (0: none).", non_negative, unit="seconds"
    )
    ping_timeout: float = setting(
        20.0, "How long a peer may take to answer a ping before it is dropped.", non_negative, unit="seconds"
    )
    header_timeout: float | None = setting(
        10.0,
        "For a request's line and headers to arrive; slower clients get 408 (slowloris). None: no limit.",
        non_negative,
        unit="seconds",
        optional=True,
    )
    write_timeout: float | None = setting(
        60.0,
        "How long a streamed HTTP response waits for a client that reads nothing before the connection is "
        "cut. None: no limit.",
        non_negative,
        unit="seconds",
        optional=True,
    )
