"""What every example does to run: serve a router on the port given on the command line."""

import sys

from twisted.internet import reactor
from twisted.logger import globalLogBeginner, textFileLogObserver

from rolo import Router
from rolo.gateway import Gateway
from rolo.gateway.handlers import RouterHandler
from rolo.serving.twisted import TwistedGateway


def serve(router: Router, *urls: str) -> None:
    """Serve ``router`` on ``python examples/X.py [PORT]`` (8000 by default; 0 picks a free one), print
    ``urls`` with ``{port}`` filled in, and run until interrupted."""
    port = int(sys.argv[1]) if len(sys.argv) > 1 else 8000
    gateway = Gateway(request_handlers=[RouterHandler(router, respond_not_found=True)])

    globalLogBeginner.beginLoggingTo([textFileLogObserver(sys.stdout)], redirectStandardIO=False)
    listening = reactor.listenTCP(port, TwistedGateway(gateway))
    for url in urls:
        print(url.format(port=listening.getHost().port), flush=True)
    reactor.run()
