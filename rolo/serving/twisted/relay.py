"""A worker's log carried to its supervisor: each event a line of JSON on a pipe, published there again.

A worker logs through ``twisted.logger`` as any rolo server does; its one observer
(:class:`PipeLogObserver`, which ``twistd --logger`` installs in the worker) writes every event as JSON to
the descriptor :data:`LOG_FD`, its text formatted in the worker (where every field's value and format
specification are at hand, and a traceback's exception) and its time, level, namespace and system kept.
The supervisor reads the lines (:class:`Lines`), turns each back into an event (:func:`event_from_line`)
and publishes it under the worker's name (:func:`relabel`), so that the supervisor's log (standard output,
``--logfile``, syslog) is the one stream of every process.
"""

from __future__ import annotations

import os
import threading
from typing import Any

from twisted.logger import ILogObserver, eventAsJSON, eventFromJSON, formatEvent
from zope.interface import implementer

__all__ = ["FORMAT", "LOG_FD", "Lines", "PipeLogObserver", "event_from_line", "pipe_log_observer", "relabel"]

LOG_FD = 3
"""The descriptor a worker writes its log events to."""

MAX_LINE = 1024 * 1024
"""The longest line a supervisor keeps whole, in bytes: a longer one is cut into lines of this size."""

FORMAT = "rolo_format"
"""The key of a relayed event that holds the format string the worker logged it with."""

_KEPT = ("log_level", "log_namespace", "log_system", "log_time")


@implementer(ILogObserver)
class PipeLogObserver:
    """A log observer that writes each event as a line of JSON (Twisted's :func:`eventAsJSON`) to a
    descriptor: its text (``log_text``, with the traceback of its failure), the format string it was
    logged with (:data:`FORMAT`), and its time, level, namespace and system. A line is written whole,
    whichever thread logs it."""

    def __init__(self, fd: int = LOG_FD) -> None:
        self._fd = fd
        self._lock = threading.Lock()

    def __call__(self, event: dict[str, Any]) -> None:
        text = formatEvent(event)
        if (failure := event.get("log_failure")) is not None:
            text = f"{text}\n{failure.getTraceback().rstrip()}"
        relayed = {key: event[key] for key in _KEPT if key in event}
        relayed.update(log_format="{log_text}", log_text=text, **{FORMAT: event.get("log_format")})
        line = (eventAsJSON(relayed) + "\n").encode("utf-8", "backslashreplace")
        with self._lock:
            view = memoryview(line)
            try:
                while view:
                    view = view[os.write(self._fd, view) :]
            except OSError:
                pass  # the supervisor is gone, and nobody reads the log any more


def pipe_log_observer() -> PipeLogObserver:
    """The observer of a worker's log (for ``twistd --logger``)."""
    return PipeLogObserver()


class Lines:
    """Splits what arrives from a pipe into lines, holding at most :data:`MAX_LINE` bytes of a partial one."""

    def __init__(self, limit: int = MAX_LINE) -> None:
        self._limit = limit
        self._partial = bytearray()

    def feed(self, data: bytes) -> list[bytes]:
        """The lines ``data`` completes, without their line ends."""
        self._partial += data
        *lines, rest = self._partial.split(b"\n")
        while len(rest) > self._limit:
            lines.append(rest[: self._limit])  # a copy
            del rest[: self._limit]
        self._partial = rest
        return [bytes(line) for line in lines]

    def rest(self) -> bytes:
        """What came after the last line end (once the pipe has closed: the last, unterminated line)."""
        rest, self._partial = bytes(self._partial), bytearray()
        return rest


def event_from_line(line: bytes) -> dict[str, Any] | None:
    """The event a :class:`PipeLogObserver` wrote as ``line``, or ``None`` if it is not one."""
    try:
        event = eventFromJSON(line.decode("utf-8"))
    except ValueError:  # json's errors, and UnicodeDecodeError, are ValueErrors
        return None
    return event if isinstance(event, dict) else None


def relabel(event: dict[str, Any], name: str) -> dict[str, Any]:
    """``event`` with ``name`` in front of its system (``[worker 1 rolo.serving.twisted.http#info]``)."""
    system = event.get("log_system")
    if system is None:
        level = event.get("log_level")
        system = f"{event.get('log_namespace', '-')}#{level.name if level is not None else '-'}"
    event["log_system"] = f"{name} {system}"
    return event
