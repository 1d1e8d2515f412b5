"""What every example does to run: serve its router on the port given on the command line."""

import sys

from twisted.internet import reactor
from twisted.internet.address import IPv4Address
from twisted.logger import globalLogBeginner, textFileLogObserver
from twisted.python.failure import Failure

from rolo import Router
from rolo.serving.twisted import GatewayService, listen


def port_argument() -> int:
    """The port given on the command line, ``python examples/X.py [PORT]``: 8000 if none is. A port that is
    not a number ends the program (``SystemExit``, status 1) with a one-line usage error rather than
    ``int()``'s traceback."""
    try:
        return int(sys.argv[1]) if len(sys.argv) > 1 else 8000
    except ValueError:
        sys.exit(f"usage: python {sys.argv[0]} [PORT]: the port is a number (0 picks a free one), not {sys.argv[1]!r}")


def serve(router: Router, *urls: str) -> None:
    """Serve ``router`` on ``python examples/X.py [PORT]`` (8000 by default; 0 picks a free one) of the
    loopback interface, print ``urls`` with ``{port}`` filled in, and run until interrupted (then shut down
    gracefully). To reach it from other machines, serve the router with ``twistd rolo --listen tcp:PORT``.
    A port that is not a number ends the program with a one-line usage error (see :func:`port_argument`)."""
    port = port_argument()
    globalLogBeginner.beginLoggingTo([textFileLogObserver(sys.stdout)], redirectStandardIO=False)

    def listening(service: GatewayService) -> None:
        address = service.ports[0].getHost()
        assert isinstance(address, IPv4Address)  # a tcp: endpoint on 127.0.0.1
        for url in urls:
            print(url.format(port=address.port), flush=True)

    def failed(failure: Failure) -> None:
        errors.append(failure.getErrorMessage())
        reactor.callWhenRunning(reactor.stop)  # listening may fail before the reactor runs

    errors: list[str] = []
    listen(router, f"tcp:{port}:interface=127.0.0.1").addCallbacks(listening, failed)
    reactor.run()
    if errors:
        sys.exit(f"cannot serve: {errors[0]}")
