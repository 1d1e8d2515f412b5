"""The private parts of Autobahn that rolo uses, in one place, each with a fallback to the public path.

Autobahn is pinned below its next major release in the package's requirements, and
``./dev test-newest`` runs the test suite against its newest release. Where a part used here is missing,
rolo takes the public path, which is slower or plainer but right:

- :class:`ProtocolInternals` feeds received bytes straight to the parser (``_dataReceived``), skipping a
  debug line whose arguments the Twisted adapter formats on every read; on an open connection, further
  to the parser's loop itself (``data`` and ``processData``, as ``consumeData`` runs them), skipping the
  count into the class-wide ``trafficStats`` and ``logOctets``; public path: ``dataReceived``.
  It pings only connections that were silent for a whole interval (``_sendAutoPing``); without it,
  Autobahn pings on its fixed schedule.
- :func:`message_compressor` gives the negotiated permessage-deflate compressor
  (``_perMessageCompress``), so that rolo frames compressed messages itself; without it, rolo sends
  through ``sendMessage``.
- :func:`use_reactor_timer` times handshakes and pings on the reactor's clock to the millisecond (the
  factory's ``_batched_timer``); without it, txaio's timer rounds deadlines down to whole seconds.
- :func:`drop_handshake_leftovers` frees what the protocol keeps of the opening handshake once the
  connection is open (about 1.5 KB), and the attributes that still hold the values they started with,
  which the protocol's class then gives (about 1.1 KB in all: 17 attributes left, in a table of 32
  entries rather than 128); without it that memory stays. It also drops the objects Autobahn makes for
  every connection that rolo does not read while it is idle (:data:`_MADE_WHEN_READ`: the Deferreds fired
  as it opens and as it closes, the UTF-8 validator) for the class to make an equal one when first read,
  and the connection's traffic counters, for the class's one: about 0.55 KB. A Deferred is dropped only
  when Twisted's (its ``_callbacks``, ``_canceller`` and ``_chainedTo``) show that nobody waits for it;
  without them, it stays.
- :func:`fail_connection` fails a connection for an error rolo's own frame parser found, as Autobahn's
  would (``_fail_connection``); without it, rolo sends the close frame and drops the connection itself.
- :func:`data_arrived` tells Autobahn's keep-alive that the peer sent data, which stands for the pong it
  waits for, as its own parser does (``_cancelAutoPingTimeoutCall``); without it, a peer sending
  without answering a ping is dropped at the ping timeout.
- :func:`unmasked` undoes a client's mask in the buffer that holds the payload, through the masker of
  Autobahn's native extension (NVX: its ``_masker`` handle and its C library), where Autobahn's public
  ``process`` would make three copies of the payload (a zeroed C buffer, the payload copied into it, and
  the bytes it returns); without it, or without NVX, rolo unmasks through ``process``.
- :func:`parsed_handshake` gives a server protocol the opening handshake request that Twisted Web parsed
  and rolo checked, setting the fields Autobahn's parser (``processHandshake``) sets, so that the
  request is not written out again for Autobahn to parse a second time (about a tenth of what opening a
  connection costs); without those parts, where Autobahn's parser no longer sets those fields (its
  ``processHandshake`` names them) or its response no longer reads them (``succeedHandshake``), or for a
  request Autobahn would refuse for what rolo does not check, the caller feeds Autobahn the request's
  bytes and Autobahn parses and answers it. The header lines are then those Twisted Web parsed, which
  ends a line at CR LF alone, where Autobahn's parser also ends one at other line breaks of Unicode
  (``str.splitlines``: ``\x85``, ``\x0c`` …): a value holding one is one header's value here.
- Autobahn colours the arguments of its debug lines with click (when click is installed, as uvicorn and
  Flask bring it), whether or not the line is logged: 22 calls for each connection opened, a tenth of
  what opening one costs. On import, this module turns the colours off (``autobahn.util._HAS_CLICK``):
  Autobahn's debug lines, when someone shows them, come in plain text. It names the method that logs in
  each debug line (``hltype``), again whether or not the line is logged: three times for each connection
  opened, 3 µs each. This module has Autobahn's protocol modules name each function once, and reuse the
  text (the same text); where ``hltype`` is not there, Autobahn's modules are left as they are.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import cached_property, partial
from types import FunctionType
from typing import Any
from urllib.parse import parse_qs, urlparse

import autobahn.twisted.websocket
import autobahn.util
import autobahn.websocket.protocol
from autobahn.twisted.websocket import WebSocketServerFactory, WebSocketServerProtocol
from autobahn.websocket.protocol import FrameHeader, TrafficStats, WebSocketProtocol
from autobahn.websocket.types import ConnectionRequest
from autobahn.websocket.utf8validator import Utf8Validator
from autobahn.websocket.xormasker import create_xor_masker  # type: ignore[attr-defined]  # no __all__
from twisted.internet.defer import Deferred, succeed

__all__ = [
    "ProtocolInternals",
    "data_arrived",
    "drop_handshake_leftovers",
    "fail_connection",
    "message_compressor",
    "parsed_handshake",
    "unmasked",
    "use_reactor_timer",
]

_MISSING = object()

_STATE_OPEN, _STATE_CLOSED = WebSocketProtocol.STATE_OPEN, WebSocketProtocol.STATE_CLOSED

_RECEIVE = getattr(WebSocketProtocol, "_dataReceived", None)
_SEND_AUTO_PING = getattr(WebSocketProtocol, "_sendAutoPing", None)
_FAIL = getattr(WebSocketProtocol, "_fail_connection", None)
_CANCEL_PING_TIMEOUT = getattr(WebSocketProtocol, "_cancelAutoPingTimeoutCall", None)
_PARSE_EXTENSIONS = getattr(WebSocketProtocol, "_parseExtensionsHeader", None)
_URL_TO_ORIGIN = getattr(autobahn.websocket.protocol, "_url_to_origin", None)
_IS_SAME_ORIGIN = getattr(autobahn.websocket.protocol, "_is_same_origin", None)
_HANDSHAKE_FIELDS = (
    "http_status_line",
    "http_headers",
    "http_request_uri",
    "http_request_path",
    "http_request_params",
    "http_request_host",
    "websocket_version",
    "websocket_protocols",
    "websocket_origin",
    "websocket_extensions",
    "_wskey",
)
"""The fields :func:`parsed_handshake` sets, as Autobahn's parser does."""
_PROCESS_HANDSHAKE = getattr(WebSocketServerProtocol, "processHandshake", None)
_SUCCEED_HANDSHAKE = getattr(WebSocketServerProtocol, "succeedHandshake", None)
_TAKE_PARSED = (
    None not in (_PARSE_EXTENSIONS, _URL_TO_ORIGIN, _IS_SAME_ORIGIN)
    # Autobahn's parser still sets each of these fields, and its response still reads the key from one
    and set(_HANDSHAKE_FIELDS) <= set(getattr(getattr(_PROCESS_HANDSHAKE, "__code__", None), "co_names", ()))
    and "_wskey" in getattr(getattr(_SUCCEED_HANDSHAKE, "__code__", None), "co_names", ())
)

_NATIVE_MASKER = create_xor_masker(b"\0\0\0\0", 4096)
_IN_PLACE = all(hasattr(_NATIVE_MASKER, name) for name in ("ffi", "lib", "_masker")) and hasattr(
    getattr(_NATIVE_MASKER, "lib", None), "nvx_xormask_process"
)

if getattr(autobahn.util, "_HAS_CLICK", None) is True:
    autobahn.util._HAS_CLICK = False  # plain debug lines, not coloured ones nobody reads

_HLTYPE = getattr(autobahn.util, "hltype", None)
_NAMED: dict[FunctionType, str] = {}  # by function: as many as Autobahn has methods that log


def _hltype_once(obj: Any) -> str:
    """Autobahn's ``hltype``: the name of a function or method, for a debug line; made once per function."""
    function = getattr(obj, "__func__", obj)
    text = _NAMED.get(function) if type(function) is FunctionType else None
    if text is None:
        made: str = _HLTYPE(obj)  # type: ignore[misc]  # set in the modules below only where it is there
        if type(function) is FunctionType:
            _NAMED[function] = made
        return made
    return text


for _module in (autobahn.websocket.protocol, autobahn.twisted.websocket):
    if _HLTYPE is not None and getattr(_module, "hltype", None) is _HLTYPE:
        _module.hltype = _hltype_once  # type: ignore[attr-defined]

_HANDSHAKE_LEFTOVERS = (
    *(name for name in _HANDSHAKE_FIELDS if name != "websocket_version"),
    "http_request_data",
    "http_response_data",
    "websocket_extensions_in_use",
    "_transport_details",
)
"""What an Autobahn server protocol keeps of the opening handshake and never reads once it is open: the
request and response as sent, parsed and taken apart (but the version, which its class gives once open:
:data:`_UNTIL_CLOSING`), the extensions it agreed to (a server keeps the compressor it uses apart), and
the transport details it gathers for WAMP."""

_UNOBSERVED = ("_valid_events", "_results")
"""What an Autobahn protocol keeps for observers of its ``message`` event (a list and a dict): its
``onMessageEnd`` fires the event, rolo's protocol replaces it and fires nothing, and nobody observes. Once
they are gone, the class's ``None`` stands for them, as for an Autobahn object that never set them."""

_UNTIL_CLOSING: dict[str, object] = dict.fromkeys(
    (
        "_perMessageCompress",
        "autoPingPending",
        "autoPingPendingCall",
        "autoPingPendingSent",
        "autoPingTimeoutCall",
        "closeHandshakeTimeoutCall",
        "localCloseCode",
        "localCloseReason",
        "openHandshakeTimeoutCall",
        "remoteCloseCode",
        "remoteCloseReason",
        "trackedTimings",
        "wasNotCleanReason",
        "websocket_protocol_in_use",
    ),
    None,
) | dict.fromkeys(
    (
        "closedByMe",
        "droppedByMe",
        "failedByMe",
        "wasClean",
        "wasCloseHandshakeTimeout",
        "wasMaxFramePayloadSizeExceeded",
        "wasMaxMessagePayloadSizeExceeded",
        "wasOpenHandshakeTimeout",
        "wasServerConnectionDropTimeout",
        "wasServingFlashSocketPolicyFile",
        "triggered",
    ),
    False,
) | {"autoPingPendingSeq": 0, "send_state": WebSocketProtocol.SEND_STATE_GROUND, "websocket_version": 13}
"""What an Autobahn protocol sets on every connection as it starts (or opens, with RFC 6455's version),
with the value it usually has then, and changes only as it closes, fails or pings (``send_state`` also
when a message is streamed through Autobahn's frame API, which rolo does not use): an open connection's
protocol holds these only once they differ, and reads them off its class until then."""


_PEER_FAULTS = frozenset(
    {
        'failing WebSocket connection (code={code}): "{reason}"',  # a protocol error, a message too big
        "Auto ping/pong: received non-pending pong",  # allowed: a unidirectional heartbeat (RFC 6455, 5.5.3)
    }
)
"""Autobahn's warnings about what its peer did: a server's to make at the peer's will."""

_DROPPING = "dropping connection to peer {peer} with abort={abort}: {reason}"
_DROPPED_FOR_FAULT = ("the server failed the connection", "I dropped the WebSocket TCP connection: ")
"""The reasons of Autobahn's warning as it drops a connection that failed for a peer's fault: rolo's
(``GatewayWebSocketProtocol.processData``) and Autobahn's own (``failByDrop``)."""


class _PeerFaultsAsDebug:
    """Autobahn's protocol log (``log``, a txaio logger) with its warnings about the peer's faults logged
    as debug lines: a protocol error that fails the connection and the drop that follows it, a pong nobody
    asked for. Any client can make those at will, two lines each time; rolo's own line for the
    connection's close says how it ended, with the server's reason. Autobahn's other warnings (a
    handshake or ping that timed out …) stay warnings, and so does any of these whose text Autobahn
    changes."""

    __slots__ = ("_log",)

    def __init__(self, log: Any) -> None:
        self._log = log

    # the levels Autobahn's protocols log at, forwarded as they are (the logger sets them by its level)
    def debug(self, *args: Any, **kwargs: Any) -> None:
        self._log.debug(*args, **kwargs)

    def info(self, *args: Any, **kwargs: Any) -> None:
        self._log.info(*args, **kwargs)

    def error(self, *args: Any, **kwargs: Any) -> None:
        self._log.error(*args, **kwargs)

    def __getattr__(self, name: str) -> Any:  # the others, which Autobahn's protocols do not use
        return getattr(self._log, name)

    def warn(self, format: str, **kwargs: Any) -> None:
        if format in _PEER_FAULTS or (format == _DROPPING and str(kwargs.get("reason")).startswith(_DROPPED_FOR_FAULT)):
            self._log.debug(format, **kwargs)
        else:
            self._log.warn(format, **kwargs)


class ProtocolInternals(WebSocketServerProtocol):
    """Autobahn's server protocol with its receive path and its keep-alive pings made cheaper, and its
    warnings about the peer's faults logged as debug lines (:class:`_PeerFaultsAsDebug`).

    :ivar heard_from_peer: whether the peer sent anything since the keep-alive ping was last scheduled
    """

    log = _PeerFaultsAsDebug(WebSocketServerProtocol.log)
    heard_from_peer = False
    parses_directly = _RECEIVE is not None
    """Whether :meth:`dataReceived` hands an open connection's reads to the parser itself (``data`` and
    ``processData``): a subclass may do as it does (``heard_from_peer`` set, the read added to ``data``,
    ``processData`` called while it returns true and the connection is not closed)."""

    # Autobahn's options, which it copies from its factory, or rolo puts on the protocol's class
    # (build_factory): unknown to mypy
    autoPingInterval: float
    autoPingRestartOnAnyTraffic: bool
    maxMessagePayloadSize: int
    # Autobahn's attributes that mypy takes for always None, or never None, from the first line of
    # Autobahn's that sets them (unannotated): their types as Autobahn sets them
    autoPingTimeoutCall: object  # type: ignore[assignment]  # a delayed call (txaio's or _TimerCall), or None
    current_frame: FrameHeader | None  # type: ignore[assignment]
    remoteCloseCode: int | None
    localCloseCode: int | None  # type: ignore[assignment]
    frame_data: list[bytes] | None  # type: ignore[assignment]

    def dataReceived(self, data: bytes) -> None:
        self.heard_from_peer = True
        if _RECEIVE is not None and self.state == _STATE_OPEN:
            # straight to the parser, as consumeData runs it on an open connection: Autobahn's receive path
            # would add the read to trafficStats, which rolo never reads (one for all connections), and log
            # it under logOctets, an option rolo never sets
            self.data += data
            while self.processData() and self.state != _STATE_CLOSED:
                pass
        elif _RECEIVE is not None:
            _RECEIVE(self, data)
        else:
            super().dataReceived(data)

    if _SEND_AUTO_PING is not None:

        def _sendAutoPing(self) -> None:
            # Autobahn pings on a fixed schedule; a peer that is sending proves it is alive, so only a
            # connection silent for a whole interval is pinged (and a ping never lands in a busy exchange)
            if self.heard_from_peer:
                self.heard_from_peer = False
                self.autoPingPendingCall = self.factory._batched_timer.call_later(
                    self.autoPingInterval, self._sendAutoPing
                )
                return
            super()._sendAutoPing()


for _name, _value in _UNTIL_CLOSING.items():
    setattr(ProtocolInternals, _name, _value)  # read while the protocol holds none of its own

_MADE_WHEN_READ: dict[str, tuple[Callable[[], object], Callable[[object], bool]]] = {
    "is_open": (partial(succeed, None), lambda deferred: _unawaited(deferred, fired=True)),
    "is_closed": (Deferred, lambda deferred: _unawaited(deferred, fired=False)),
    "utf8validator": (Utf8Validator, lambda validator: type(validator) is Utf8Validator),
}
"""What an Autobahn protocol makes for each connection as it starts and an open one may never read, with
what it makes an equal of and whether the connection's own may go: the Deferreds that fire once it opened
and once it closed, which nobody waits for in rolo, and the validator of fragmented text messages, reset
before each. Once an open connection dropped its own (:func:`drop_handshake_leftovers`), the first read
makes an equal one: a fired Deferred, a pending one, a validator. Autobahn fires the first just after
``onOpen``, where rolo drops the rest: it goes once fired."""


def _made_when_read(make: Callable[[], object]) -> cached_property[object]:
    return cached_property(lambda protocol: make())


for _name, (_make, _) in _MADE_WHEN_READ.items():
    _made = _made_when_read(_make)
    _made.__set_name__(ProtocolInternals, _name)
    setattr(ProtocolInternals, _name, _made)

ProtocolInternals.trafficStats = TrafficStats()
"""Autobahn counts each connection's messages and bytes in its own ``trafficStats`` (about 180 bytes), which
rolo never reads: an open connection counts in this one of the class, with every other."""

def message_compressor(protocol: WebSocketProtocol) -> Any:
    """The permessage-deflate compressor the connection negotiated, ``None`` if it negotiated none, or
    ``NotImplemented`` where Autobahn keeps it elsewhere (then send through ``sendMessage``)."""
    compressor = getattr(protocol, "_perMessageCompress", _MISSING)
    return NotImplemented if compressor is _MISSING else compressor


def fail_connection(protocol: WebSocketProtocol, code: int, reason: str) -> None:
    """Fail the connection for a protocol error (RFC 6455, 7.1.7): a close frame with ``code`` and
    ``reason``, then the connection is dropped."""
    if _FAIL is not None:
        _FAIL(protocol, code, reason)
    else:
        protocol.failedByMe = True
        protocol.sendCloseFrame(code, reason.encode("utf-8")[:123], isReply=False)


def data_arrived(protocol: ProtocolInternals) -> None:
    """The peer sent a data frame: if a keep-alive ping waits for its pong, the peer is alive."""
    if protocol.autoPingTimeoutCall is not None and protocol.autoPingRestartOnAnyTraffic:
        if _CANCEL_PING_TIMEOUT is not None:
            _CANCEL_PING_TIMEOUT(protocol)


def unmasked(payload: bytearray, mask: bytes) -> bytes:
    """``payload`` with a client's masking undone (RFC 6455, 5.3), as ``bytes``: each byte XOR'ed with the
    4-byte ``mask``. ``payload`` is unmasked in place, and then copied once, where Autobahn's native masker
    allows it; otherwise it is left as it was."""
    masker = create_xor_masker(mask, len(payload))
    if _IN_PLACE:
        masker.lib.nvx_xormask_process(masker._masker, masker.ffi.from_buffer(payload), len(payload))
        return bytes(payload)
    result: bytes = masker.process(payload)
    return result


def parsed_handshake(protocol: Any, target: str, headers: list[tuple[str, str]]) -> ConnectionRequest | None:
    """Give ``protocol`` (a server protocol, connected) an opening handshake request as Autobahn's parser
    would: its fields set, and the request for ``onConnect`` returned, for the caller to go on with the
    handshake. The request was checked by :func:`~rolo.websocket.handshake.check_request`.

    ``None``, with nothing set, where Autobahn is to parse the request itself (the caller then feeds it
    the request's bytes): an Autobahn without the parts used here, options that make it look at more
    (``trustXForwardedFor``, ``maxConnections``), and a request it would refuse for what rolo does not
    check (a ``Host`` header missing, repeated, or with a port that is not a number; an ``Origin`` it cannot
    parse or does not allow; a target it cannot parse), so that Autobahn answers it as it does.

    :param target: the request target, as sent
    :param headers: the request's header lines, repeated ones repeated
    """
    if not _TAKE_PARSED or protocol.trustXForwardedFor or protocol.maxConnections > 0:
        return None
    fields: dict[str, str] = {}  # names in lower case, a repeated header's lines joined, as Autobahn has them
    hosts = 0
    for name, value in headers:
        key = name.lower()
        value = value.strip()
        if key in fields:
            fields[key] += f", {value}"
        else:
            fields[key] = value
        hosts += key == "host"
    if hosts != 1 or not (
        _has_token(fields.get("upgrade", ""), "websocket") and _has_token(fields.get("connection", ""), "upgrade")
    ):
        return None
    factory = protocol.factory
    host = fields["host"]
    if ":" in host and not host.endswith("]"):
        host, _, port_text = host.rpartition(":")
        try:
            port = int(port_text)
        except ValueError:
            return None
        if factory.externalPort and port != factory.externalPort:
            return None
    version = int(fields["sec-websocket-version"])
    if version not in protocol.versions:
        return None
    offered = fields.get("sec-websocket-protocol")
    protocols = [token.strip() for token in offered.split(",")] if offered is not None else []
    if len(set(protocols)) != len(protocols):
        return None
    origin = fields.get("origin")
    if origin is not None:
        try:
            where = _URL_TO_ORIGIN(origin)  # type: ignore[misc]  # _TAKE_PARSED: it is there
        except ValueError:
            return None
        if not (where == "null" and factory.allowNullOrigin) and not _IS_SAME_ORIGIN(  # type: ignore[misc]
            where, "https" if factory.isSecure else "http", factory.externalPort or factory.port,
            protocol.allowedOriginsPatterns,
        ):
            return None
    try:
        parts = urlparse(target)
    except ValueError:
        return None
    offers = fields.get("sec-websocket-extensions")
    protocol.http_status_line = f"GET {target} HTTP/1.1"
    protocol.http_headers = fields
    protocol.http_request_uri = target
    protocol.http_request_path = parts.path
    protocol.http_request_params = parse_qs(parts.query)
    protocol.http_request_host = host
    protocol.websocket_version = version
    protocol.websocket_protocols = protocols
    protocol.websocket_origin = origin or ""
    protocol.websocket_extensions = _PARSE_EXTENSIONS(protocol, offers) if offers is not None else []  # type: ignore[misc]
    protocol._wskey = fields["sec-websocket-key"]
    return ConnectionRequest(
        protocol.peer,
        fields,
        host,
        parts.path,
        protocol.http_request_params,
        version,
        protocol.websocket_origin,
        protocols,
        protocol.websocket_extensions,
    )


def _has_token(value: str, token: str) -> bool:
    return any(part.strip().lower() == token for part in value.split(","))


def use_reactor_timer(factory: WebSocketServerFactory, reactor: Any) -> None:
    """Time the factory's protocols' handshakes and pings on ``reactor``'s clock."""
    if getattr(factory, "_batched_timer", _MISSING) is not _MISSING:
        factory._batched_timer = _ReactorTimer(reactor)


def drop_handshake_leftovers(protocol: WebSocketProtocol) -> None:
    """Forget what an open connection's protocol keeps of its opening handshake and for observers rolo has
    none of, and the attributes that still have the value its class gives them (:class:`ProtocolInternals`,
    from :data:`_UNTIL_CLOSING`).

    Its attributes then go into a dictionary of their own size: about 50 attributes take a table of 128
    entries (1.6 KB), the 17 or so left a table of 32 (0.45 KB), and a dictionary never shrinks as entries
    leave it. The Deferreds and the validator of :data:`_MADE_WHEN_READ` go too, made again when first
    read, and the traffic counters, which the class's stand for.
    """
    attributes = vars(protocol)
    for name in _DROPPED:
        attributes.pop(name, None)
    given = _given_by_class(type(protocol))
    for name, unread in given.made_when_read:
        if name in attributes and unread(attributes[name]):
            del attributes[name]
    opened = attributes.get("is_open")
    if given.opened_when_read and _unawaited(opened, fired=False):
        opened.addCallback(_forget_opened, protocol)  # type: ignore[union-attr]  # a Deferred: _unawaited
    if given.traffic_stats and type(attributes.get("trafficStats")) is TrafficStats:
        del attributes["trafficStats"]
    for name, value in given.until_closing:
        if attributes.get(name, _MISSING) is value:
            del attributes[name]
    protocol.__dict__ = dict(attributes)


_DROPPED = _HANDSHAKE_LEFTOVERS + _UNOBSERVED


class _GivenByClass:
    """What a protocol class gives its instances, of what :func:`drop_handshake_leftovers` may drop: found
    once per class rather than for every connection (a fifth of what the function cost). A class is not
    changed once it has served a connection (rolo makes its protocol classes and leaves them as made)."""

    __slots__ = ("made_when_read", "opened_when_read", "traffic_stats", "until_closing")

    def __init__(self, cls: type) -> None:
        self.made_when_read = tuple(
            (name, unread)
            for name, (_, unread) in _MADE_WHEN_READ.items()
            if isinstance(getattr(cls, name, None), cached_property)
        )
        self.opened_when_read = isinstance(getattr(cls, "is_open", None), cached_property)
        self.traffic_stats = type(getattr(cls, "trafficStats", None)) is TrafficStats
        self.until_closing = tuple(
            (name, value) for name, value in _UNTIL_CLOSING.items() if getattr(cls, name, _MISSING) is value
        )


def _given_by_class(cls: type) -> _GivenByClass:
    # kept on the class itself (a protocol class is made per factory: a table would keep them all alive)
    given = vars(cls).get("_rolo_given_by_class")
    if not isinstance(given, _GivenByClass):
        given = _GivenByClass(cls)
        cls._rolo_given_by_class = given  # type: ignore[attr-defined]  # an attribute of rolo's own
    return given


def _forget_opened(result: None, protocol: WebSocketProtocol) -> None:
    """Drop the protocol's ``is_open`` once Autobahn fired it (nobody else waited for it)."""
    vars(protocol).pop("is_open", None)
    return result


def _unawaited(deferred: object, fired: bool) -> bool:
    """Whether ``deferred`` is a Deferred nobody waits for, fired with ``None`` (``fired``) or pending: one
    that :data:`_MADE_WHEN_READ` makes an equal of. Where Twisted's Deferred keeps its callbacks and its
    canceller elsewhere, none is."""
    return (
        type(deferred) is Deferred
        and getattr(deferred, "_callbacks", None) == []
        and getattr(deferred, "_canceller", _MISSING) is None
        and getattr(deferred, "_chainedTo", _MISSING) is None
        and not deferred.paused
        and deferred.called is fired
        and (not fired or deferred.result is None)
    )


class _ReactorTimer:
    """Autobahn's timer interface (``call_later``) on the reactor's clock, to the millisecond.

    Autobahn times its pings and handshakes with txaio's batched timer, which rounds each deadline down
    to a whole second: a ping timeout of 0.5 s could fire at once, and one of 20 s after 19.
    """

    def __init__(self, reactor: Any) -> None:
        self._reactor = reactor

    def call_later(self, delay: float, fn: Any, *args: Any, **kwargs: Any) -> _TimerCall:
        return _TimerCall(self._reactor.callLater(delay, fn, *args, **kwargs))


class _TimerCall:
    """A delayed call that, like txaio's, may be cancelled after it ran."""

    __slots__ = ("_call",)

    def __init__(self, call: Any) -> None:
        self._call = call

    def cancel(self) -> None:
        if self._call.active():
            self._call.cancel()
