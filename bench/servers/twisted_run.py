"""Running a Twisted factory the way every Twisted-based server of the benchmark does."""

from __future__ import annotations

import sys

from twisted.internet import reactor
from twisted.internet.interfaces import IProtocolFactory
from twisted.logger import (
    FilteringLogObserver,
    LogLevel,
    LogLevelFilterPredicate,
    globalLogBeginner,
    textFileLogObserver,
)

from bench.servers import BACKLOG


def run(factory: IProtocolFactory, port: int) -> None:
    """Log warnings and worse to stderr, listen on 127.0.0.1:``port`` and run the reactor."""
    predicate = LogLevelFilterPredicate(defaultLogLevel=LogLevel.warn)
    globalLogBeginner.beginLoggingTo(
        [FilteringLogObserver(textFileLogObserver(sys.stderr), [predicate])], redirectStandardIO=False
    )
    reactor.listenTCP(port, factory, backlog=BACKLOG, interface="127.0.0.1")
    reactor.run()
