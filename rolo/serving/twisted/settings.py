"""The settings of :class:`~rolo.serving.twisted.TwistedGateway`: every server's, and those of the
protocols it speaks itself (WebSocket through Autobahn, HTTP through Twisted Web)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from rolo.settings import ServerSettings, at_least, is_bool, non_negative, setting

from .forwarded import TrustedProxies

__all__ = ["TwistedSettings"]


def _proxies(value: Any) -> str | None:
    if isinstance(value, str) or not all(isinstance(entry, str) for entry in value):
        return f"must be a list of addresses and networks, not {value!r}"
    try:
        TrustedProxies(value)
    except ValueError as error:
        return f"lists {error}"
    return None


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
        off_help="Decline the permessage-deflate extension (RFC 7692) a client offers: messages go uncompressed.",
    )
    freeze_heap: bool = setting(
        True,
        "Leave the objects alive when the first port starts listening out of later garbage collections "
        "(gc.freeze): shorter collector pauses; an object frozen then is never freed.",
        is_bool,
        option="no-freeze-heap",
        off_help="Leave every object to the garbage collector (no gc.freeze when the first port starts "
        "listening): longer collector pauses, but an object alive then can be freed later.",
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
    max_body_size: int | None = setting(
        16 * 1024 * 1024,
        "Largest HTTP request body; a larger one gets 413 before it is read (at once when Content-Length says "
        "so, else as soon as it passes the limit). None: no limit.",
        at_least(0),
        unit="bytes",
        optional=True,
    )
    keep_alive_timeout: float | None = setting(
        15.0,
        "How long a connection may stay idle between HTTP requests before it is closed. None: no limit.",
        non_negative,
        unit="seconds",
        optional=True,
    )
    write_timeout: float | None = setting(
        60.0,
        "How long a client may take to read 64 KiB of the response bytes waiting for it before the connection "
        "is cut. None: no limit.",
        non_negative,
        unit="seconds",
        optional=True,
    )
    forwarded_allow_ips: Sequence[str] | None = setting(
        None,
        "The proxies (IP addresses and networks, unix for UNIX sockets, * for any peer; comma-separated on "
        "the command line) whose Forwarded, or X-Forwarded-For and X-Forwarded-Proto, headers say the "
        "client's address and scheme. By default none.",
        _proxies,
        optional=True,
        parse=lambda text: tuple(entry.strip() for entry in text.split(",") if entry.strip()),
    )

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.forwarded_allow_ips is not None:
            object.__setattr__(self, "forwarded_allow_ips", tuple(self.forwarded_allow_ips))

