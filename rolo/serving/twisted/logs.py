"""rolo's log on Twisted: every line a record of the standard :mod:`logging` module, shown in Twisted's log.

rolo's transport-agnostic layers (``rolo.gateway``, ``rolo.websocket`` …) log through :mod:`logging`; its
Twisted modules log through :func:`logger`, a :mod:`twisted.logger` ``Logger`` whose events become records
of the stdlib logger of the same name (``rolo.serving.twisted.http`` …). So every line rolo writes is a
record under the ``rolo`` logger, and the levels and handlers an application sets with :mod:`logging`
apply to all of them, whatever serves the application.

Where the records go when the application has configured no handler for them (none on the way from
their logger up to the root): :func:`show_rolo_logs` puts a handler on the ``rolo`` logger that writes
them into Twisted's log once it is written anywhere (``twistd`` writes it; so does a program that calls
``globalLogBeginner.beginLoggingTo``), and otherwise hands warnings and errors to
:data:`logging.lastResort`, which prints them on standard error, as Python does for any library.
``twistd rolo``, whose log is Twisted's, makes :data:`logging.lastResort` a line of that log
(:func:`show_unhandled_logs`): there go the application's own warnings and errors too, when it configured
no logging.
"""

from __future__ import annotations

import logging
import threading
from types import TracebackType
from typing import Any

from twisted.logger import ILogObserver, Logger, LogLevel, formatEvent, globalLogPublisher
from twisted.python.failure import Failure
from zope.interface import provider

from ._twisted import logging_began

__all__ = ["enabled", "logger", "show_rolo_logs", "show_unhandled_logs"]

_TO_STDLIB = {
    LogLevel.debug: logging.DEBUG,
    LogLevel.info: logging.INFO,
    LogLevel.warn: logging.WARNING,
    LogLevel.error: logging.ERROR,
    LogLevel.critical: logging.CRITICAL,
}

_TO_TWISTED = (
    (logging.CRITICAL, LogLevel.critical),
    (logging.ERROR, LogLevel.error),
    (logging.WARNING, LogLevel.warn),
    (logging.INFO, LogLevel.info),
)


def logger(namespace: str) -> Logger:
    """A :mod:`twisted.logger` ``Logger`` whose events are records of the stdlib logger named ``namespace``
    (give the module's ``__name__``): its level decides whether an event is formatted at all, and a
    failure's traceback becomes the record's ``exc_info``."""
    return Logger(namespace=namespace, observer=_record)


def enabled(log: Logger, level: LogLevel) -> bool:
    """Whether an event of ``level`` on ``log`` (a :func:`logger`) would become a record, by the level of
    the stdlib logger it goes to: so that a line logged often (one per request) need not have its fields
    made when nobody takes it."""
    return _stdlib_logger(log.namespace).isEnabledFor(_TO_STDLIB.get(level, logging.INFO))


_stdlib_loggers: dict[str, logging.Logger] = {}
"""The stdlib loggers by name, as :func:`logging.getLogger` returns them (it takes a lock each time)."""


def _stdlib_logger(name: str) -> logging.Logger:
    target = _stdlib_loggers.get(name)
    if target is None:
        target = _stdlib_loggers[name] = logging.getLogger(name)  # the same object for a name, ever after
    return target


@provider(ILogObserver)
def _record(event: dict[str, Any]) -> None:
    target = _stdlib_logger(event["log_namespace"])
    level = _TO_STDLIB.get(event["log_level"], logging.INFO)
    if not target.isEnabledFor(level):
        return
    failure: Failure | None = event.get("log_failure")
    exc_info: tuple[type[BaseException], BaseException, TracebackType | None] | None = None
    if failure is not None:
        # Twisted types a failure's type and value as optional; a Failure always has both
        exc_info = (failure.type, failure.value, failure.getTracebackObject())  # type: ignore[assignment]
    # made directly rather than through Logger.log, which would walk the stack for the caller's line only
    # to find this function; the text is made when a handler asks for it
    target.handle(target.makeRecord(target.name, level, "", 0, _EventText(event), (), exc_info))


class _EventText:
    """A Twisted event as a record's message: formatted when a stdlib handler asks for its text; put back
    into Twisted's log as the event it is."""

    __slots__ = ("event",)

    def __init__(self, event: dict[str, Any]) -> None:
        self.event = event

    def __str__(self) -> str:
        return formatEvent(self.event)


class _TwistedLogSink(logging.Handler):
    """Shows the records of rolo's loggers that no handler of the application takes: in Twisted's log once
    it is written, else warnings and errors through :data:`logging.lastResort`."""

    def emit(self, record: logging.LogRecord) -> None:
        if not self._handled_elsewhere(record):
            _show(record)

    def _handled_elsewhere(self, record: logging.LogRecord) -> bool:
        """Whether a handler other than this one sees ``record`` (the application configured logging)."""
        current: logging.Logger | None = _stdlib_logger(record.name)
        while current is not None:
            if any(handler is not self for handler in current.handlers):
                return True
            current = current.parent if current.propagate else None
        return False


def _to_twisted(record: logging.LogRecord) -> None:
    """Write ``record`` into Twisted's log, as an event of its logger's name and its level."""
    if isinstance(record.msg, _EventText):
        globalLogPublisher(record.msg.event)  # an event of rolo's Twisted side, as it was
        return
    level = next((twisted for stdlib, twisted in _TO_TWISTED if record.levelno >= stdlib), LogLevel.debug)
    log = _twisted_loggers.get(record.name)
    if log is None:
        log = _twisted_loggers[record.name] = Logger(namespace=record.name)
    message = record.getMessage()
    if record.exc_info and record.exc_info[1] is not None:
        kind, error, traceback = record.exc_info
        log.failure("{message}", Failure(error, kind, traceback), level=level, message=message)
    else:
        log.emit(level, "{message}", message=message)


_twisted_loggers: dict[str, Logger] = {}  # by namespace: rolo's few modules and the application's
_sink = _TwistedLogSink()


class _TwistedLastResort(logging.Handler):
    """:data:`logging.lastResort` in a program whose log is Twisted's: a warning or error no handler takes
    becomes a line of Twisted's log, with its logger's name and level, once that log is written (before,
    and for a record that comes back from Twisted's log, as Python's own last resort shows it).

    :ivar python_s: Python's own last resort, which this one replaced
    """

    def __init__(self, python_s: logging.Handler | None) -> None:
        super().__init__(logging.WARNING)  # as Python's own
        self.python_s = python_s
        self._inside = threading.local()

    def emit(self, record: logging.LogRecord) -> None:
        if getattr(self._inside, "active", False):
            # Twisted's log hands its events back to logging (twistd --logger STDLibLogObserver), and nothing
            # takes them there: show this one as Python would, rather than in a loop
            if self.python_s is not None:
                self.python_s.handle(record)
            return
        self._inside.active = True
        try:
            _show(record)
        finally:
            self._inside.active = False


def _python_last_resort() -> logging.Handler | None:
    """Python's own last resort, whether or not :func:`show_unhandled_logs` replaced it."""
    last_resort = logging.lastResort
    return last_resort.python_s if isinstance(last_resort, _TwistedLastResort) else last_resort


def _show(record: logging.LogRecord) -> None:
    """Show a record no handler of the application takes: in Twisted's log once it is written, else
    warnings and errors through Python's last resort (both where it is unknown)."""
    began = logging_began()
    if began is not False:
        _to_twisted(record)
    last_resort = _python_last_resort()
    if began is not True and last_resort is not None and record.levelno >= last_resort.level:
        last_resort.handle(record)


def show_unhandled_logs() -> None:
    """Make Twisted's log, rather than standard error, the place of the warnings and errors that no handler
    takes (those of an application that configured no logging), which Python shows through
    :data:`logging.lastResort`. For a program whose log is Twisted's (``twistd rolo``): until that log is
    written they still go to standard error; configuring logging (``logging.basicConfig`` …) works as
    ever, and takes its loggers' records from there on."""
    if not isinstance(logging.lastResort, _TwistedLastResort):
        logging.lastResort = _TwistedLastResort(logging.lastResort)


def show_rolo_logs() -> None:
    """Make sure rolo's records are seen when the application configures no logging (see the module): add
    the handler that shows them to the ``rolo`` logger, once. If logging is configured nowhere yet (no
    handler on the root logger or on ``rolo``, and no level on ``rolo``), also set the ``rolo`` logger's
    level to ``INFO``, so that its one line per request and per connection reaches Twisted's log."""
    rolo_logger = logging.getLogger("rolo")
    if _sink in rolo_logger.handlers:
        return
    if not (logging.getLogger().handlers or rolo_logger.handlers) and rolo_logger.level == logging.NOTSET:
        rolo_logger.setLevel(logging.INFO)
    rolo_logger.addHandler(_sink)
