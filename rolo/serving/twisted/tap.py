"""``twistd rolo``: serve an application from the command line.

::

    twistd -n rolo --app myapp.server:gateway --listen tcp:8000 --listen unix:/run/myapp.sock

The plugin (``twisted/plugins/rolo_plugin.py``) points ``twistd`` here, at :class:`Options` and
:func:`makeService`.
"""

from __future__ import annotations

import os
from typing import Any

from twisted.application.service import IService
from twisted.internet.error import CannotListenError
from twisted.python import usage

from ...websocket.broker import BROKER_ENVIRONMENT_VARIABLE
from .app import AppError, load_app
from .service import GatewayService
from .site import TwistedGateway
from .websocket import WebSocketSettings

__all__ = ["Options", "makeService"]

_DEFAULTS = WebSocketSettings()


def _positive_int(value: str) -> int:
    number = int(value)
    if number < 1:
        raise ValueError(f"{value} is not a positive integer")
    return number


def _non_negative_float(value: str) -> float:
    number = float(value)
    if number < 0:
        raise ValueError(f"{value} is negative")
    return number


class Options(usage.Options):
    """The options of ``twistd rolo``."""

    synopsis = "--app package.module:attribute [--listen ENDPOINT ...] [options]"
    longdesc = (
        "Serve a rolo application over HTTP and WebSockets. The attribute is a Gateway, a Router, or a "
        "callable that returns one. ENDPOINT is a Twisted endpoint string: tcp:8000, "
        "tcp:8000:interface=127.0.0.1, ssl:8443:privateKey=key.pem:certKey=cert.pem, unix:/run/app.sock; "
        "--listen may be given more than once (default tcp:8000). On SIGTERM or SIGINT the server stops "
        "listening, closes WebSockets with 1001, gives running handlers --grace-period seconds to return, "
        "and exits with status 0."
    )

    optFlags = [["no-compression", None, "Do not accept the permessage-deflate extension."]]

    optParameters = [
        ["app", "a", None, "The application, as package.module:attribute."],
        ["broker", None, None, "Redis URL of the broker for the app's Hubs (sets ROLO_BROKER): redis://host:6379/0."],
        ["grace-period", None, 10.0, "Seconds a shutdown waits for running handlers.", _non_negative_float],
        ["http-threads", None, 32, "Threads for plain HTTP handlers.", _positive_int],
        [
            "max-connections",
            None,
            _DEFAULTS.max_connections,
            "Concurrent WebSocket handlers (each in a thread); more are answered 503.",
            _positive_int,
        ],
        [
            "max-message-size",
            None,
            _DEFAULTS.max_message_size,
            "Largest WebSocket message in bytes; larger ones close with 1009 (0: no limit).",
            int,
        ],
        [
            "max-queue",
            None,
            _DEFAULTS.max_queue,
            "Received messages waiting for a handler before the server stops reading.",
            _positive_int,
        ],
        [
            "write-high-water",
            None,
            _DEFAULTS.write_high_water,
            "Bytes sent but not yet written before a handler's send blocks.",
            _positive_int,
        ],
        [
            "ping-interval",
            None,
            _DEFAULTS.ping_interval,
            "Seconds between pings to idle WebSockets (0: none).",
            _non_negative_float,
        ],
        [
            "ping-timeout",
            None,
            _DEFAULTS.ping_timeout,
            "Seconds a peer may take to answer a ping.",
            _non_negative_float,
        ],
        [
            "header-timeout",
            None,
            10.0,
            "Seconds a client may take to send a request's line and headers; slower ones get 408 (0: no limit).",
            _non_negative_float,
        ],
        [
            "write-timeout",
            None,
            60.0,
            "Seconds a streamed HTTP response waits for a client that reads nothing before cutting it (0: no limit).",
            _non_negative_float,
        ],
        [
            "open-timeout",
            None,
            _DEFAULTS.open_timeout,
            "Seconds from an upgrade request to its handler's accept.",
            _non_negative_float,
        ],
        [
            "close-timeout",
            None,
            _DEFAULTS.close_timeout,
            "Seconds the closing handshake may take.",
            _non_negative_float,
        ],
        [
            "thread-stack-size",
            None,
            _DEFAULTS.thread_stack_size,
            "Stack size of WebSocket handler threads, in bytes.",
            _positive_int,
        ],
    ]

    def __init__(self) -> None:
        super().__init__()
        self["listen"] = []
        self["allowed-origins"] = []

    def opt_listen(self, endpoint: str) -> None:
        """Where to listen, as a Twisted endpoint string; may be repeated (default tcp:8000)."""
        self["listen"].append(endpoint)

    opt_l = opt_listen

    def opt_allowed_origin(self, pattern: str) -> None:
        """An Origin allowed to open WebSockets, * as wildcard (https://*.example.com); may be repeated
        (default: any origin)."""
        self["allowed-origins"].append(pattern)

    def postOptions(self) -> None:
        if not self["app"]:
            raise usage.UsageError("--app package.module:attribute is required")
        if not self["listen"]:
            self["listen"] = ["tcp:8000"]

    def settings(self) -> dict[str, Any]:
        """The keyword settings of :class:`TwistedGateway` these options give."""
        return dict(
            http_threads=self["http-threads"],
            max_connections=self["max-connections"],
            max_message_size=self["max-message-size"],
            max_queue=self["max-queue"],
            write_high_water=self["write-high-water"],
            ping_interval=self["ping-interval"],
            ping_timeout=self["ping-timeout"],
            header_timeout=self["header-timeout"] or None,
            write_timeout=self["write-timeout"] or None,
            open_timeout=self["open-timeout"],
            close_timeout=self["close-timeout"],
            thread_stack_size=self["thread-stack-size"],
            compression=not self["no-compression"],
            allowed_origins=self["allowed-origins"] or None,
        )


class _TwistdService(GatewayService):
    """The service as ``twistd`` runs it: a port that cannot listen ends ``twistd`` with a one-line error,
    and a graceful stop on SIGTERM or SIGINT exits with status 0."""

    def privilegedStartService(self) -> None:
        try:
            super().privilegedStartService()
        except CannotListenError as error:
            raise SystemExit(f"rolo: {error}") from None

    def stopService(self) -> Any:
        stopped = super().stopService()
        # twistd ends by re-sending itself the signal it stopped on (exit status -15 for SIGTERM); a
        # graceful stop is a success: forget the signal, so that twistd exits with 0
        stopped.addCallback(lambda _: setattr(self.site.reactor, "_exitSignal", None))
        return stopped


def makeService(options: Options) -> IService:
    """The ``twistd rolo`` service for ``options``.

    :raises SystemExit: with a one-line message, for an ``--app`` that does not load or an endpoint that
        does not parse
    """
    if options["broker"]:
        # before the app loads: Hub() reads it when made, often at import time
        os.environ[BROKER_ENVIRONMENT_VARIABLE] = options["broker"]
    try:
        gateway = load_app(options["app"])
    except AppError as error:
        raise SystemExit(f"rolo: {error}") from None
    site = TwistedGateway(gateway, **options.settings())
    try:
        return _TwistdService(site, options["listen"], grace_period=options["grace-period"])
    except ValueError as error:
        raise SystemExit(f"rolo: --listen: {error}") from None
