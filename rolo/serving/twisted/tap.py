"""``twistd rolo``: serve an application from the command line.

::

    twistd -n rolo --app myapp.server:gateway --listen tcp:8000 --listen unix:/run/myapp.sock
    twistd -n rolo --app myapp.server:gateway --listen tcp:8000 --workers auto

The plugin (``twisted/plugins/rolo_plugin.py``) points ``twistd`` here, at :class:`Options` and
:func:`makeService`.
"""

from __future__ import annotations

import atexit
import os
import sys
from collections.abc import Callable, Sequence
from dataclasses import MISSING, Field, fields
from typing import Any, ClassVar

from twisted.application.service import IService
from twisted.internet.error import CannotListenError
from twisted.python import usage

from ...websocket.broker import BROKER_ENVIRONMENT_VARIABLE, RedisBroker
from ._twisted import forget_exit_signal
from .app import AppError, load_app
from .logs import show_unhandled_logs
from .service import DEFAULT_ENDPOINT, GatewayService
from .settings import TwistedSettings
from .site import TwistedGateway
from .workers import WorkerError, WorkerSupervisor, cpu_count, worker_endpoints

__all__ = ["Options", "makeService"]


def _option(declared: Field[Any]) -> str:
    """The name of a setting's option: ``--max-queue`` for ``max_queue``, unless it declares another."""
    return declared.metadata["option"] or declared.name.replace("_", "-")


def _help(declared: Field[Any]) -> str:
    text = declared.metadata["help"]
    if declared.metadata["optional"]:
        text = text.replace("None: ", "0: ")  # what None means, 0 means on the command line (see _parser)
    unit = declared.metadata["unit"]
    return f"{text} ({unit})" if unit else text


def _parser(declared: Field[Any]) -> Callable[[str], Any]:
    """What turns an option's text into the setting's value (``0`` into ``None`` for a timeout that may
    have no limit), checked as the setting checks it.

    :raises ValueError: saying what is wrong, which ``twistd`` prints with the option's name
    """
    assert declared.default is not MISSING, "every setting has a default"
    number = type(declared.default)
    option = _option(declared)

    convert = declared.metadata["parse"] or number

    def parse(text: str) -> Any:
        try:
            value = convert(text)
        except ValueError as error:
            if convert not in (int, float):
                raise ValueError(f"--{option}: {error}") from None
            kind = "an integer" if convert is int else "a number"
            raise ValueError(f"--{option} must be {kind}, not {text!r}") from None
        if declared.metadata["optional"] and value == 0:
            return None
        problem = declared.metadata["check"](value)
        if problem is not None:
            raise ValueError(f"--{option} {problem}")
        return value

    return parse


def _setting_options() -> tuple[list[list[Any]], list[list[Any]]]:
    """``twistd rolo``'s options for the settings, made from :class:`TwistedSettings`: ``--max-queue N``
    for ``max_queue``, a flag that turns off a setting on by default (``--no-compression``); the repeated
    ``--allowed-origin`` is a method of :class:`Options`."""
    parameters: list[list[Any]] = []
    flags: list[list[Any]] = []
    for declared in fields(TwistedSettings):
        if declared.name == "allowed_origins":
            continue
        if isinstance(declared.default, bool):
            flags.append([_option(declared), None, declared.metadata["off_help"]])
        else:
            parameters.append([_option(declared), None, declared.default, _help(declared), _parser(declared)])
    return parameters, flags


_PARAMETERS, _FLAGS = _setting_options()


def _worker_count(text: str) -> int:
    if text == "auto":
        return cpu_count()
    try:
        number = int(text)
    except ValueError:
        number = 0
    if number < 1:
        raise ValueError(f"--workers must be a positive integer or auto, not {text!r}")
    return number


class Options(usage.Options):
    """The options of ``twistd rolo``."""

    synopsis = "--app package.module:attribute [--listen ENDPOINT ...] [options]"
    longdesc = (
        "Serve a rolo application over HTTP and WebSockets. The attribute is a Gateway, a Router, or a "
        "callable that returns one. ENDPOINT is a Twisted endpoint string: tcp:8000, "
        "tcp:8000:interface=127.0.0.1, ssl:8443:privateKey=key.pem:certKey=cert.pem, unix:/run/app.sock; "
        "--listen may be given more than once (default tcp:8000:interface=127.0.0.1, this machine only; "
        "tcp:8000 listens on every interface). On SIGTERM or SIGINT the server stops "
        "listening, closes WebSockets with 1001, gives running handlers --grace-period seconds to return, "
        "and exits with status 0. With --workers, a supervisor serves every endpoint from that many worker "
        "processes, each with these options."
    )

    optFlags: ClassVar[list[list[Any]]] = [
        *_FLAGS,
        ["pin-workers", None, "Run worker i on the i-th CPU only (with --workers)."],
    ]
    optParameters: ClassVar[list[list[Any]]] = [
        ["app", "a", None, "The application, as package.module:attribute."],
        ["broker", None, None, "Redis URL of the broker for the app's Hubs (sets ROLO_BROKER): redis://host:6379/0."],
        [
            "metrics",
            None,
            None,
            "Serve Prometheus metrics on this endpoint, apart from --listen (needs prometheus-client): tcp:9100 "
            "listens on this machine only, unless interface= is given.",
        ],
        [
            "workers",
            None,
            None,
            "Serve from this many worker processes (auto: one per CPU), started and restarted by a supervisor.",
            _worker_count,
        ],
        *_PARAMETERS,
    ]

    def __init__(self) -> None:
        super().__init__()
        self["listen"] = []
        self["allowed-origin"] = []
        self.arguments: list[str] = []

    def opt_listen(self, endpoint: str) -> None:
        """Where to listen, as a Twisted endpoint string; may be repeated (default
        tcp:8000:interface=127.0.0.1, this machine only)."""
        self["listen"].append(endpoint)

    opt_l = opt_listen

    def opt_version(self) -> None:
        """Print the versions of rolo, Twisted and Autobahn, and exit."""
        import autobahn
        import twisted

        import rolo

        # autobahn.__version__ is imported into the package without being exported (no __all__)
        autobahn_version = autobahn.__version__  # type: ignore[attr-defined]
        print(f"rolo {rolo.__version__}\nTwisted {twisted.__version__}\nAutobahn {autobahn_version}")
        raise SystemExit(0)

    def opt_allowed_origin(self, pattern: str) -> None:
        self["allowed-origin"].append(pattern)

    opt_allowed_origin.__doc__ = next(
        _help(declared) for declared in fields(TwistedSettings) if declared.name == "allowed_origins"
    ).replace("None: any origin.", "May be repeated (default: any origin).")

    def parseOptions(self, options: Sequence[str] | None = None) -> None:
        """Parse the command line, and keep it as given (:attr:`arguments`) for the workers, each started
        with the same options. A mistake ends ``twistd`` with one line saying what is wrong, and a hint,
        rather than ``twistd``'s whole usage followed by the error.

        :raises SystemExit: with that line, for an unknown option, a bad value or a missing ``--app``
        """
        self.arguments = list(sys.argv[1:] if options is None else options)
        try:
            super().parseOptions(options)
        except usage.UsageError as error:
            problem = str(error).removeprefix("Parameter type enforcement failed: ")
            raise SystemExit(f"rolo: {problem} (twistd rolo --help lists the options)") from None

    def postOptions(self) -> None:
        if not self["app"]:
            raise usage.UsageError("--app is required: the application to serve, as package.module:attribute")
        if not self["listen"]:
            self["listen"] = [DEFAULT_ENDPOINT]
        if self["pin-workers"] and not self["workers"]:
            raise usage.UsageError("--pin-workers needs --workers")
        if self["metrics"] and self["workers"]:
            raise usage.UsageError("--metrics serves one process's metrics: it does not go with --workers")

    def settings(self) -> dict[str, Any]:
        """The keyword settings of :class:`TwistedGateway` these options give."""
        settings: dict[str, Any] = {}
        for declared in fields(TwistedSettings):
            value = self[_option(declared)]
            if declared.name == "allowed_origins":
                value = value or None
            elif isinstance(declared.default, bool):
                value = not value  # the flag turns it off
            settings[declared.name] = value
        return settings


class _Twistd:
    """A service as ``twistd`` runs it: an endpoint that cannot listen ends ``twistd`` with a one-line error,
    and a graceful stop on SIGTERM or SIGINT exits with status 0."""

    def privilegedStartService(self) -> None:
        try:
            super().privilegedStartService()  # type: ignore[misc]
        except CannotListenError as error:
            raise SystemExit(f"rolo: {error}") from None

    def stopService(self) -> Any:
        from twisted.internet import reactor

        stopped = super().stopService()  # type: ignore[misc]
        # twistd ends by re-sending itself the signal it stopped on (exit status -15 for SIGTERM); a
        # graceful stop is a success: forget the signal, so that twistd exits with 0
        stopped.addCallback(lambda _: forget_exit_signal(reactor))
        return stopped


class _TwistdService(_Twistd, GatewayService):
    """The service of ``twistd rolo``, and of each of its workers."""


class _TwistdSupervisor(_Twistd, WorkerSupervisor):
    """The supervisor of ``twistd rolo --workers``: if it gives up, ``twistd`` exits with status 1."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.listening.addErrback(lambda _: None)  # what went wrong is logged, and ends the process
        self.ended.addErrback(self._exit_1)

    def privilegedStartService(self) -> None:
        try:
            super().privilegedStartService()
        except ValueError as error:
            raise SystemExit(f"rolo: --listen: {error}") from None

    def _exit_1(self, failure: Any) -> None:
        failure.trap(WorkerError)
        from twisted.internet import reactor

        # twistd has no exit status but the signal it stopped on: once it has cleaned up and the
        # interpreter exits, leave with status 1
        atexit.register(_exit, 1)
        reactor.stop()


def _exit(status: int) -> None:
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(status)


def makeService(options: Options) -> IService:
    """The ``twistd rolo`` service for ``options``: with ``--workers``, a supervisor that does not load the
    application (each worker does).

    :raises SystemExit: with a one-line message, for an ``--app`` that does not load, an endpoint or a
        ``--broker`` URL that does not parse, or ``--metrics`` without prometheus-client
    """
    show_unhandled_logs()  # the program's log is Twisted's: the application's own warnings go there too
    if options["broker"]:
        try:
            RedisBroker(options["broker"])
        except ValueError as error:
            raise SystemExit(f"rolo: --broker: {error}") from None
        # before the app loads: Hub() reads it when made, often at import time
        os.environ[BROKER_ENVIRONMENT_VARIABLE] = options["broker"]
    from twisted.internet import reactor

    try:
        endpoints = worker_endpoints(reactor)  # in a worker: those its supervisor reserved
    except ValueError as error:
        raise SystemExit(f"rolo: --listen: {error}") from None
    if options["workers"] and endpoints is None:
        return _TwistdSupervisor(
            options.arguments,
            options["listen"],
            options["workers"],
            pin_workers=options["pin-workers"],
            grace_period=options["grace-period"],
        )
    try:
        gateway = load_app(options["app"])
    except AppError as error:
        raise SystemExit(f"rolo: {error}") from None
    site = TwistedGateway(gateway, **options.settings())
    try:
        service = _TwistdService(site, endpoints or options["listen"])
    except ValueError as error:
        raise SystemExit(f"rolo: --listen: {error}") from None
    if options["metrics"]:
        try:
            from .metrics import MetricsService

            MetricsService(site, options["metrics"]).setServiceParent(service)
        except (ImportError, ValueError) as error:
            raise SystemExit(f"rolo: --metrics: {error}") from None
    return service
