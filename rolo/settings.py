"""Server settings: each declared once, with its default, unit and meaning, and validated when made.

:class:`ServerSettings` holds what every rolo server takes, whatever serves it (Twisted or an ASGI
server): how handlers run and how WebSocket connections are admitted, buffered and closed. A server adds
the settings only it has (:class:`rolo.serving.twisted.TwistedSettings` adds the protocol's and HTTP
parsing's). The ``twistd rolo`` options, their help and the documentation's table are made from these
declarations, so a setting is written down in one place.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, fields
from typing import Any

from rolo.heap import MAX_YOUNG_THRESHOLD

__all__ = ["ServerSettings", "at_least", "is_bool", "non_negative", "refuse_unknown", "setting"]

Check = Callable[[Any], "str | None"]
"""Says what is wrong with a value, or ``None`` if nothing is."""


def at_least(minimum: int, maximum: int | None = None) -> Check:
    """A check that a value is an integer no smaller than ``minimum`` (and no larger than ``maximum``, if
    given)."""

    def check(value: Any) -> str | None:
        if isinstance(value, bool) or not isinstance(value, int):
            return f"must be an integer, not {value!r}"
        if value < minimum:
            return f"must be at least {minimum}, not {value}"
        return None if maximum is None or value <= maximum else f"must be at most {maximum}, not {value}"

    return check


def non_negative(value: Any) -> str | None:
    """Whether ``value`` is a number of at least 0 (``None``, where a setting allows it, is checked apart)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return f"must be a number, not {value!r}"
    return None if value >= 0 else f"must not be negative, not {value}"


def is_bool(value: Any) -> str | None:
    """Whether ``value`` is ``True`` or ``False``."""
    return None if isinstance(value, bool) else f"must be True or False, not {value!r}"


def _origins(value: Any) -> str | None:
    if isinstance(value, str) or not all(isinstance(origin, str) for origin in value):
        return f"must be a list of origin patterns, not {value!r}"
    return None


def setting(
    default: Any,
    help: str,
    check: Check,
    *,
    unit: str = "",
    optional: bool = False,
    option: str | None = None,
    off_help: str = "",
    parse: Callable[[str], Any] | None = None,
) -> Any:
    """Declare a setting: a dataclass field with what the command line and the documentation need.

    :param default: its default value
    :param help: what it means, one sentence, for ``--help`` and the documentation
    :param check: what a value must satisfy (see :func:`at_least`, :func:`non_negative`)
    :param unit: ``"bytes"`` or ``"seconds"``, where it has one
    :param optional: whether ``None`` is allowed: "no limit" for a timeout (given as ``0`` on the command
        line)
    :param option: the command-line option, where it is not the name with dashes (a flag that turns a
        setting off, ``no-compression``; a repeated option, ``allowed-origin``)
    :param off_help: for a setting on by default, what its flag turns off, one sentence, for ``--help``
    :param parse: what makes the option's text the value (by default, the type of ``default``)
    :raises ValueError: from ``parse``, for text that does not make a value
    """
    assert off_help or not isinstance(default, bool), "a flag that turns a setting off says what it turns off"
    metadata = {
        "help": help,
        "check": check,
        "unit": unit,
        "optional": optional,
        "option": option,
        "off_help": off_help,
        "parse": parse,
    }
    return field(default=default, metadata=metadata)


@dataclass(frozen=True, kw_only=True)
class ServerSettings:
    """What every rolo server takes. Each is a keyword argument of the servers
    (``TwistedGateway(gateway, max_connections=100)``, ``AsgiGateway(gateway, ...)``).

    :raises ValueError: naming the setting, for a value it does not allow
    """

    http_threads: int = setting(32, "Threads for plain HTTP handlers.", at_least(1))
    http_queue: int = setting(
        128,
        "HTTP requests that may wait for a thread while all are busy; beyond, requests get 503 at once.",
        at_least(0),
    )
    body_timeout: float | None = setting(
        60.0,
        "For an HTTP request's body to arrive, from the end of its headers; slower clients get 408. None: no "
        "limit.",
        non_negative,
        unit="seconds",
        optional=True,
    )
    max_connections: int = setting(
        4096, "WebSocket handlers that may run at once, each in a thread; beyond, upgrades get 503.", at_least(1)
    )
    thread_stack_size: int = setting(
        512 * 1024,
        "Stack size of WebSocket handler threads: the address space each reserves (only touched pages are "
        "resident).",
        at_least(64 * 1024),
        unit="bytes",
    )
    global_futex_hash: bool = setting(
        True,
        "On Linux 6.17+, have the whole process's futexes hashed in the kernel's global table, for good, as "
        "the server is made (and in a process forked from it): the small table of a process's own makes "
        "each wake-up walk hundreds of waiters once thousands of handlers wait "
        "(rolo.threads.use_global_futex_hash).",
        is_bool,
        option="no-global-futex-hash",
        off_help="Leave the process's futexes hashed in a small table of its own, not the kernel's global one.",
    )
    gc_threshold: int | None = setting(
        None,
        "The garbage collector's youngest-generation threshold for the whole process, set as the server is "
        "made (the first of gc.set_threshold's values; CPython's is 700 up to 3.12): a larger one lets the "
        "short-lived objects of a burst of messages die before a collection sees them, so that fewer reach "
        "the oldest generation and set off a full collection, which walks every open connection's objects. "
        "The last server made with one sets it. None: the interpreter's, left as it is "
        "(rolo.heap.set_young_threshold).",
        at_least(1, MAX_YOUNG_THRESHOLD),
        optional=True,
        parse=int,
    )
    thread_idle_timeout: float = setting(
        10.0,
        "How long a WebSocket handler thread whose connection ended waits to serve the next one before it "
        "exits.",
        non_negative,
        unit="seconds",
    )
    max_queue: int = setting(
        16, "Received messages that may wait for a handler before the server stops reading.", at_least(1)
    )
    max_queue_bytes: int = setting(
        512 * 1024,
        "Bytes of received messages (their size in memory) that may wait for a handler before the server "
        "stops reading; the message that crosses it still gets through.",
        at_least(1),
        unit="bytes",
    )
    write_high_water: int = setting(
        64 * 1024,
        "Bytes a handler may have sent that are not yet written before its send blocks (a message counts its "
        "data and about 48 bytes).",
        at_least(1),
        unit="bytes",
    )
    open_timeout: float = setting(
        10.0, "From the upgrade request to the handler's accept or reject.", non_negative, unit="seconds"
    )
    close_timeout: float = setting(
        10.0,
        "For the closing handshake (at shutdown, at most half of grace_period).",
        non_negative,
        unit="seconds",
    )
    allowed_origins: Sequence[str] | None = setting(
        None,
        "Origin patterns allowed to open WebSockets, * as wildcard (https://*.example.com); others get 403. "
        "None: any origin.",
        _origins,
        optional=True,
        option="allowed-origin",
    )
    grace_period: float = setting(
        10.0,
        "How long a shutdown waits for running handlers, and so at most how long it takes under Twisted (an "
        "ASGI server's own shutdown comes before the lifespan's): a WebSocket whose client has not answered "
        "the close by min(close_timeout, grace_period / 2) is dropped, so that its handler has the rest to "
        "return.",
        non_negative,
        unit="seconds",
    )

    def __post_init__(self) -> None:
        for declared in fields(self):
            value = getattr(self, declared.name)
            if value is None and declared.metadata.get("optional"):
                continue
            problem = declared.metadata["check"](value)
            if problem is not None:
                raise ValueError(f"{declared.name} {problem}")
        if self.allowed_origins is not None:
            object.__setattr__(self, "allowed_origins", tuple(self.allowed_origins))


def refuse_unknown(names: Iterable[str], server: str, settings: type[ServerSettings] = ServerSettings) -> None:
    """Refuse, among the keyword ``names`` given to a server (``server``, ``"AsgiGateway"``) that takes the
    fields of ``settings`` (:class:`ServerSettings`, or a subclass that adds a server's own), one that is not
    among them, with an error that says what it is, where the dataclass would only say it is unexpected.

    :raises TypeError: naming the first such keyword (in sorted order): given to a server that takes the
        :class:`ServerSettings` alone, a setting of TwistedGateway's own (the protocol's and HTTP
        parsing's, which an ASGI server has settings of its own for); or no setting at all, with the class
        whose fields the settings are and the documentation's section that lists them
    """
    unknown = sorted(set(names).difference(declared.name for declared in fields(settings)))
    if not unknown:
        return
    name = unknown[0]
    if settings is ServerSettings:
        # on this path alone: a server made without Twisted's settings imports none of Twisted
        from rolo.serving.twisted.settings import TwistedSettings

        if name in {declared.name for declared in fields(TwistedSettings)}:
            raise TypeError(
                f"{server} does not take {name}: it is a TwistedGateway-only setting (under ASGI, the server's "
                "own settings cover the protocol and HTTP parsing)"
            )
    raise TypeError(
        f"{name} is not a setting of {server}: the settings are the fields of {settings.__module__}."
        f"{settings.__qualname__}, listed in rolo's documentation (docs/serving.rst, Settings)"
    )
