"""Records of rolo's transport-agnostic layers, which log through :mod:`logging`, into ``twisted.logger``.

``rolo.gateway`` and ``rolo.routing`` know nothing of Twisted, so a handler's traceback is a stdlib log
record. An application served on Twisted reads Twisted's log: unless the application has configured stdlib
logging itself, :func:`forward_rolo_logs` sends those records there, each as one event, with the traceback
as its failure.
"""

from __future__ import annotations

import logging

from twisted.logger import Logger, LogLevel
from twisted.python.failure import Failure

__all__ = ["forward_rolo_logs"]

_LEVELS = (
    (logging.CRITICAL, LogLevel.critical),
    (logging.ERROR, LogLevel.error),
    (logging.WARNING, LogLevel.warn),
    (logging.INFO, LogLevel.info),
)


class _TwistedLogHandler(logging.Handler):
    """Emits each stdlib record as a ``twisted.logger`` event in the record's logger's namespace."""

    def emit(self, record: logging.LogRecord) -> None:
        level = next((twisted for stdlib, twisted in _LEVELS if record.levelno >= stdlib), LogLevel.debug)
        log = Logger(namespace=record.name)
        message = record.getMessage()
        if record.exc_info and record.exc_info[1] is not None:
            _, error, traceback = record.exc_info
            log.failure("{message}", Failure(error, type(error), traceback), level=level, message=message)
        else:
            log.emit(level, "{message}", message=message)


def forward_rolo_logs() -> None:
    """Send the ``rolo`` stdlib logger's records to ``twisted.logger``, once, unless stdlib logging is
    configured (the root logger or the ``rolo`` logger has a handler): then the application has said where
    its logs go."""
    rolo_logger = logging.getLogger("rolo")
    if logging.getLogger().handlers or rolo_logger.handlers:
        return
    rolo_logger.addHandler(_TwistedLogHandler())
    # twisted.logger filters by level itself; without a level here, stdlib would drop INFO and DEBUG
    if rolo_logger.level == logging.NOTSET:
        rolo_logger.setLevel(logging.INFO)
