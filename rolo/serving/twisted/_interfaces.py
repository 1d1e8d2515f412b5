"""What rolo's Twisted side relies on of the reactor and of a connection's transport, as interfaces for
the type checker.

Twisted types a protocol's ``transport`` as an ``ITransport`` and a site's ``reactor`` as an
``IReactorTime``, the least any of them provides; the ones rolo serves on provide more, which these name.
Nothing declares that it provides them: they are annotations (the modules that use them import them for
the type checker only), never checked at run time.
"""

from __future__ import annotations

from twisted.internet.interfaces import (
    IConsumer,
    IPushProducer,
    IReactorCore,
    IReactorFromThreads,
    IReactorTime,
    ITCPTransport,
)

__all__ = ["IServingReactor", "IStreamTransport"]


class IStreamTransport(ITCPTransport, IPushProducer, IConsumer):
    """A server connection's transport, as Twisted's TCP, TLS and UNIX transports are: it can be aborted
    (``abortConnection``; rolo uses nothing else of ``ITCPTransport``, which a UNIX transport does not
    declare), it is the producer of what it reads (``pauseProducing``, ``resumeProducing``) and the
    consumer of what is written to it (``registerProducer``, ``unregisterProducer``)."""


class IServingReactor(IReactorCore, IReactorTime, IReactorFromThreads):
    """The reactor a server runs on, as every Twisted reactor is: it runs and shuts down, with triggers
    (``addSystemEventTrigger``), keeps time (``callLater``, ``seconds``) and takes calls from other threads
    (``callFromThread``)."""
