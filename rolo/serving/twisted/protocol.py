"""The Autobahn side of a WebSocket connection: the protocol that speaks RFC 6455 on the reactor thread,
and the :class:`~rolo.websocket.threaded.ServerConnection` through which the connection's adapter drives it.

A connection's bytes go: socket → :meth:`GatewayWebSocketProtocol.dataReceived` → Autobahn's parser →
:meth:`GatewayWebSocketProtocol.onMessage` → the adapter's inbox → the handler thread. Its handler's
messages go: adapter's outbox → :meth:`AutobahnConnection.send`, which writes one uncompressed message's
frame to the socket itself, and hands several, or compressed ones, to
:meth:`GatewayWebSocketProtocol.send_messages`, which frames them and writes them to the socket at once.
"""

from __future__ import annotations

import time
from functools import cached_property
from http import HTTPStatus
from typing import TYPE_CHECKING, Any, cast

from autobahn.twisted.websocket import WebSocketServerFactory
from autobahn.websocket.compress import PerMessageDeflateOffer, PerMessageDeflateOfferAccept
from autobahn.websocket.protocol import WebSocketProtocol
from autobahn.websocket.types import ConnectionRequest
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IPushProducer
from twisted.internet.protocol import connectionDone
from twisted.logger import LogLevel
from twisted.python.failure import Failure
from twisted.web.server import version
from zope.interface import implementer

from rolo.websocket.adapter import BytesMessage, Message, TextMessage, WebSocketEnvironment
from rolo.websocket.frames import (
    FIN,
    NOT_SIMPLE,
    RSV,
    WHOLE_FRAME_LIMIT,
    Close,
    CloseCode,
    Opcode,
    frame_header,
    read_frame,
    unmask,
)
from rolo.websocket.host import NO_THREAD, WebSocketHost
from rolo.websocket.threaded import Arrival, Outgoing, ThreadedWebSocketAdapter

from ._autobahn import (
    ProtocolInternals,
    data_arrived,
    drop_handshake_leftovers,
    fail_connection,
    message_compressor,
    unmasked,
    use_reactor_timer,
)
from ._twisted import read_into, read_now, stop_reading_into, write_each, write_now
from .channel import http_date
from .forwarded import bracket_ipv6
from .logs import enabled, logger
from .settings import TwistedSettings

if TYPE_CHECKING:
    from ._interfaces import IStreamTransport

__all__ = ["AutobahnConnection", "GatewayWebSocketProtocol", "build_factory"]

log = logger(__name__)


def build_factory(host: WebSocketHost, settings: TwistedSettings, reactor: Any) -> WebSocketServerFactory:
    """An Autobahn server factory whose protocols run their connections' handlers on ``host``.

    Autobahn copies each of its protocol options from the factory onto every protocol it builds, unless
    the protocol's class has it already: the options, and ``host``, go on a class made for this factory,
    which saves each connection 1.7 KB and the copying.
    """
    factory = WebSocketServerFactory(reactor=reactor)
    factory.server = None
    use_reactor_timer(factory, reactor)
    options: dict[str, Any] = {
        "maxMessagePayloadSize": settings.max_message_size,
        "maxFramePayloadSize": settings.max_message_size,
        "autoPingInterval": settings.ping_interval,
        "autoPingTimeout": settings.ping_timeout,
        "openHandshakeTimeout": settings.open_timeout,
        "closeHandshakeTimeout": settings.close_timeout,
        # a protocol error (or a message over the limit) is answered with a close frame saying why
        # (1002, 1007, 1009 …) rather than a dropped connection the peer cannot tell from a crash
        "failByDrop": False,
        # origins are checked before the hand-over (WebSocketHost.refusal); Autobahn's own check refuses
        # "null" unless told
        "allowNullOrigin": True,
    }
    if settings.compression:
        options["perMessageCompressionAccept"] = _accept_permessage_deflate
    factory.setProtocolOptions(**options)
    # Autobahn copies only the options it lists in CONFIG_ATTRS, and formats the whole list for a debug
    # line on every connection, logged or not (a fifth of what opening one cost): with the options on the
    # class, it has nothing to list
    attributes: dict[str, Any] = {"host": host, "clock": reactor, "CONFIG_ATTRS": ()}
    max_size = settings.max_message_size
    attributes["small_payload_limit"] = 125 if max_size <= 0 else min(125, max_size)
    for name in GatewayWebSocketProtocol.CONFIG_ATTRS:
        value = getattr(factory, name)
        # a function on the class would be bound to the protocol, and called with it as first argument
        attributes[name] = staticmethod(value) if callable(value) else value
    factory.protocol = cast(
        "type[GatewayWebSocketProtocol]",
        type(GatewayWebSocketProtocol.__name__, (GatewayWebSocketProtocol,), attributes),
    )
    return factory


DEFLATE_WINDOW_BITS = 10
"""The LZ77 window rolo compresses with, and asks clients to compress with when they allow it: 1 KiB
(RFC 7692, 7.1.2). zlib's default, 32 KiB, costs each connection 128 KiB more; messages of a few
kilobytes compress about as well with 1 KiB."""

DEFLATE_MEM_LEVEL = 2
"""zlib's memory level for what rolo compresses: 8 KiB of state (the default, 8, takes 128 KiB)."""


def _accept_permessage_deflate(offers: list[Any]) -> PerMessageDeflateOfferAccept | None:
    for offer in offers:
        if isinstance(offer, PerMessageDeflateOffer):
            # a smaller window than the client allows is always readable to it: it needs no word
            window = min(DEFLATE_WINDOW_BITS, offer.request_max_window_bits or DEFLATE_WINDOW_BITS)
            return PerMessageDeflateOfferAccept(
                offer,
                request_max_window_bits=DEFLATE_WINDOW_BITS if offer.accept_max_window_bits else 0,
                window_bits=max(window, 9),
                mem_level=DEFLATE_MEM_LEVEL,
            )
    return None


_UNMASK_IN_PYTHON = 2048
"""Payloads up to this many bytes are unmasked faster in Python than through Autobahn's masker."""

HOLD_FOR_INBOX = 1
"""Reading is held because the handler's inbox is full."""

HOLD_FOR_WRITES = 2
"""Reading is held because the peer does not read what the server writes."""

HOLD_FOR_TURN = 4
"""Reading is held until the reactor's next turn: this connection had its share of this one."""

FRAMES_PER_TURN = 256
"""The most frames of one connection parsed in one turn of the reactor."""

# the opcodes as globals for the paths every message takes: reading a member off its enum class takes
# 0.1 µs, five times as long as reading a global, and a message read and sent took eight
_CONTINUATION, _TEXT, _BINARY, _PING = Opcode.CONTINUATION, Opcode.TEXT, Opcode.BINARY, Opcode.PING

_PARSED_HERE = frozenset((_CONTINUATION, _TEXT, _BINARY, _PING))

_MESSAGE_STARTS = frozenset((_TEXT, _BINARY))

# the first byte of a frame that holds a whole message, text or binary, without extension bits
_WHOLE_TEXT, _WHOLE_BINARY = FIN | _TEXT, FIN | _BINARY

# likewise the protocol's states those paths compare with (a class's attribute takes three times as long)
_STATE_OPEN, _STATE_CLOSING, _STATE_CLOSED = (
    WebSocketProtocol.STATE_OPEN,
    WebSocketProtocol.STATE_CLOSING,
    WebSocketProtocol.STATE_CLOSED,
)


class GatewayWebSocketProtocol(ProtocolInternals):
    """Autobahn's server protocol, reporting to the connection's
    :class:`~rolo.websocket.threaded.ThreadedWebSocketAdapter`.

    What a peer can make it hold is bounded: reading stops, and so does parsing what was read, while the
    handler's inbox is full or while the peer does not read what the server writes (the replies to its
    pings included); a message in fragments is gathered in one buffer, so that it costs what it holds.

    ``environ`` is set before the opening handshake is fed to it; ``host`` and ``clock`` are set on the
    class by :func:`build_factory`.
    """

    host: WebSocketHost
    clock: Any
    environ: WebSocketEnvironment
    adapter: ThreadedWebSocketAdapter | None = None
    handshake: Deferred[Any] | None = None
    opened_at: float = 0.0
    was_open = False
    reading_held = 0
    """Why reading is held: :data:`HOLD_FOR_INBOX`, :data:`HOLD_FOR_WRITES` and :data:`HOLD_FOR_TURN`
    or'ed together."""
    frames_this_turn = 0
    """Frames parsed since the reactor last read from this connection, or gave it a turn."""
    fragments: bytearray | None = None
    """The message in fragments being put together by rolo's parser, ``None`` if none is."""
    incoming: bytearray | None = None
    """The payload of a large frame that is coming, as it comes (still masked), ``None`` if none is."""
    incoming_filled = 0
    incoming_head: tuple[int, bytes] = (0, b"")
    fragments_binary = False
    small_payload_limit = 125
    """The longest payload of a whole message that :meth:`read_frames` reads without :func:`read_frame`:
    125 bytes, the most a length in a frame's second byte says, or ``max_message_size`` if less (set by
    :func:`build_factory`, with the limit; worked out there rather than with a call of ``min`` for every
    read, a thousand instructions)."""
    close_received = False
    """Whether the peer's close frame came (with or without a status code)."""
    close_sent_at = 0.0
    """When the server's own close frame went out (by :attr:`clock`), if it did: not one replying to the
    peer's."""
    dropped_unanswered = False
    """Whether the server dropped the connection, at shutdown, while it waited for the peer to answer its
    close (:meth:`AutobahnConnection.drop`); Autobahn's ``wasCloseHandshakeTimeout`` says the same of its
    own timeout, ``close_timeout``."""
    if TYPE_CHECKING:
        # set by makeConnection, before any of its methods but makeConnection runs; never unset
        transport: IStreamTransport
        # Autobahn keeps the pieces of a message in a list; rolo one piece, or a bytearray for more
        # (onMessageFrameData), and None between messages, as Autobahn does
        message_data: bytes | bytearray | None  # type: ignore[assignment]

    def connectionMade(self) -> None:
        super().connectionMade()
        if self.peer is not None:  # Autobahn's description of it, for the log lines: as the HTTP ones name it
            self.peer = bracket_ipv6(self.peer)
        # Autobahn's is a deque, of which it uses len, append and popleft
        self.send_queue = _WriteQueue()
        # read for every frame: on the instance, where CPython 3.11's specialised attribute reads find them,
        # rather than through the class's defaults, which each read looks up in the class's bases (a
        # message read and sent takes 1.5% fewer instructions); the instance's dictionary, of 16 keys,
        # keeps its size with 19
        self.reading_held, self.fragments, self.incoming = 0, None, None

    @cached_property
    def send_queue(self) -> _WriteQueue:  # type: ignore[override]
        """Autobahn's queue of writes, made when Autobahn next reads it once an open connection dropped its
        empty one (:meth:`onOpen`): rolo writes its messages itself, and an idle connection needs none."""
        return _WriteQueue()

    def hold_reading(self, reason: int) -> None:
        """Stop reading from the socket, and parsing what was read, for ``reason``."""
        if not self.reading_held:
            self.transport.pauseProducing()
        self.reading_held |= reason

    def release_reading(self, reason: int) -> None:
        """``reason`` to hold reading is gone: once none is left, parse what was read and read on."""
        if not self.reading_held & reason:
            return
        self.reading_held &= ~reason
        if not self.reading_held:
            self.consumeData()
            if not self.reading_held:  # parsing may have filled the inbox again
                self.transport.resumeProducing()

    def dataReceived(self, data: bytes) -> None:
        self.frames_this_turn = 0
        if self.incoming is not None:
            self.heard_from_peer = True
            data = self.take_incoming(data)
            if not data:
                return
        if (
            self.parses_directly
            and not self.data
            and not self.reading_held
            and self.state == _STATE_OPEN
            and self.current_frame is None
            and not self.inside_message
        ):
            # a read that starts with a frame, as ProtocolInternals.dataReceived and processData would go
            # about it (rolo's parser first), without their two calls
            self.heard_from_peer = True
            self.data = data
            if self.read_frames():  # a frame for Autobahn's parser: on as they would
                while self.processData() and self.state != _STATE_CLOSED:
                    pass
            elif self.frames_this_turn >= FRAMES_PER_TURN or self.failedByMe:
                self.frames_read()
        else:
            super().dataReceived(data)
        if self.incoming is not None and not self.reading_held:
            read_now(self.transport)  # a large frame began: the socket often holds more of it already

    def take_incoming(self, data: bytes) -> bytes:
        """Copy what came of a large frame's payload into its buffer (see :meth:`incoming_received`).
        What follows the frame is returned, to be parsed as usual."""
        incoming = self.incoming
        assert incoming is not None
        filled = self.incoming_filled
        taken = min(len(incoming) - filled, len(data))
        incoming[filled : filled + taken] = memoryview(data)[:taken]
        self.incoming_received(taken)
        return data[taken:]

    def read_incoming(self, count: int) -> None:
        """The transport read ``count`` bytes more of a large frame's payload straight into its buffer
        (:func:`~rolo.serving.twisted._twisted.read_into`)."""
        self.frames_this_turn = 0
        self.heard_from_peer = True
        self.incoming_received(count)

    def incoming_received(self, count: int) -> None:
        """``count`` more bytes of a large frame's payload are in its buffer; once it is whole, take the
        frame."""
        incoming = self.incoming
        assert incoming is not None
        self.incoming_filled += count
        if self.incoming_filled < len(incoming):
            return
        first, mask = self.incoming_head
        self.incoming = None
        self.frames_this_turn += 1
        self.take_data(first & 0x0F, bool(first & FIN), unmasked(incoming, mask))

    def processData(self) -> bool:
        # Autobahn parses every frame of a read at once; while reading is held, the rest of it waits
        if self.reading_held:
            return False
        if self.frames_this_turn >= FRAMES_PER_TURN:
            self._yield_turn()
            return False
        if (
            self.current_frame is None
            and not self.inside_message
            and self.state == _STATE_OPEN
            and not self.read_frames()
        ):
            self.frames_read()
            return False
        self.frames_this_turn += 1
        more = super().processData()
        return not self.dropped_if_failed() and more

    def frames_read(self) -> None:
        """rolo's parser stopped short of a frame for Autobahn's: yield the turn if this connection's frames
        for it are done, and drop the connection if the server failed it."""
        if self.frames_this_turn >= FRAMES_PER_TURN and self.data and not self.reading_held:
            self._yield_turn()
        self.dropped_if_failed()

    def dropped_if_failed(self) -> bool:
        """Drop the connection if the server failed it (a protocol error, a message too big) and its close
        frame is out: whether it did. Autobahn would read on for the peer's reply, but its parser may be
        stuck in the frame that failed (a compressed one over the limit), keeping all it reads: the TCP
        connection is closed instead, as failing a connection is (RFC 6455, 7.1.7)."""
        if self.failedByMe and self.state == _STATE_CLOSING:
            self.data = b""
            self.wasNotCleanReason = "the server failed the connection"
            self.dropConnection(abort=False)
            return True
        return False

    def _yield_turn(self) -> None:
        # a read of many small frames (pings, fragments) is parsed over several turns of the reactor, so
        # that the other connections are served in between
        self.hold_reading(HOLD_FOR_TURN)
        self.clock.callLater(0, self._next_turn)

    def _next_turn(self) -> None:
        self.frames_this_turn = 0
        self.release_reading(HOLD_FOR_TURN)

    def read_frames(self) -> bool:
        """Parse the frames at the head of what was read that rolo parses itself: data frames without
        extension bits, whole messages or fragments, and pings, the commonest by far, at a tenth of what
        Autobahn's parser costs and in time linear in what was read. Whether a frame follows that
        Autobahn must parse (compressed frames, pongs, close frames, and anything against the rules,
        whose errors Autobahn answers); ``False`` if the rest is part of a frame still coming, reading
        is held, or the turn's frames are done."""
        data = self.data
        start = 0
        small = self.small_payload_limit  # the longest payload of the frames read below without read_frame
        received = len(data)
        try:
            # the read is usually used up by whole frames: stopping at its end spares a call to read_frame
            while start < received and self.frames_this_turn < FRAMES_PER_TURN:
                first = data[start]
                if (first == _WHOLE_TEXT or first == _WHOLE_BINARY) and self.fragments is None:
                    # the commonest frame by far: a whole small message, masked (the mask bit, cleared
                    # here, leaves a length up to 127; a frame without it, 128 or more). Read here as
                    # read_frame and take_data would, without their calls
                    length = data[start + 1] ^ 0x80 if start + 1 < received else 128
                    end = start + 6 + length
                    if length <= small and end <= received:
                        payload = unmask(data[start + 6 : end], data[start + 2 : start + 6])
                        start = end
                        self.frames_this_turn += 1
                        message: Arrival | None
                        if first == _WHOLE_BINARY:
                            message = BytesMessage(payload)
                        elif payload.isascii():
                            message = payload  # text, valid UTF-8: the handler decodes it
                        elif self.take_data(_TEXT, True, payload):  # text beyond ASCII: validated, decoded
                            message = None
                        else:
                            return False  # not UTF-8: failed
                        if message is not None:
                            if self.autoPingTimeoutCall is not None:  # data_arrived's test, without its call
                                data_arrived(self)
                            if TYPE_CHECKING:  # set before the connection opened (onConnect)
                                assert self.adapter is not None
                            # as deliver, without its call: the connection is open (its parser stops once
                            # it fails), so the message is the handler's
                            self.adapter.on_message(message)
                        if self.reading_held:
                            return False
                        continue
                head = read_frame(data, start)
                if head is None:
                    return False
                if self.fragments is not None and data[start] & 0x0F in _MESSAGE_STARTS:
                    # compressed or not (RFC 6455, 5.4: no extension rolo takes interleaves messages):
                    # Autobahn's parser, knowing nothing of the message gathered here, would take it
                    fail_connection(self, CloseCode.PROTOCOL_ERROR, "a new message inside a fragmented one")
                    return False
                if head == NOT_SIMPLE:
                    return True
                if TYPE_CHECKING:  # NOT_SIMPLE is the one int it returns
                    assert not isinstance(head, int)
                first, payload_start, end, mask = head
                opcode = first & 0x0F
                if (
                    first & RSV
                    or opcode not in _PARSED_HERE
                    or (opcode == _CONTINUATION and self.fragments is None)
                ):
                    return True  # compression, pongs, close frames, errors: Autobahn's to parse
                if opcode == _PING:
                    if not first & FIN or end - payload_start > 125:
                        return True
                elif 0 < (max_size := self.maxMessagePayloadSize) < end - payload_start + len(self.fragments or b""):
                    if self.fragments is None:
                        return True  # Autobahn closes with 1009
                    fail_connection(self, CloseCode.MESSAGE_TOO_BIG, f"a message over {max_size} bytes")
                    return False
                if len(data) < end:
                    if end - payload_start > WHOLE_FRAME_LIMIT and opcode != _PING:
                        # a large frame goes into one buffer as its pieces come: the transport reads the
                        # rest straight into it where it can, or each piece read is copied into it once
                        incoming = self.incoming = bytearray(end - payload_start)
                        filled = self.incoming_filled = len(data) - payload_start
                        incoming[:filled] = memoryview(data)[payload_start:]
                        self.incoming_head = first, mask
                        read_into(self.transport, memoryview(incoming)[filled:], self.read_incoming)
                        start = len(data)
                    return False  # the rest is awaited
                if end - payload_start <= _UNMASK_IN_PYTHON:
                    payload = unmask(data[payload_start:end], mask)
                else:
                    payload = unmasked(bytearray(memoryview(data)[payload_start:end]), mask)
                start = end
                self.frames_this_turn += 1
                if opcode == _PING:
                    self.sendPong(payload)
                elif not self.take_data(opcode, bool(first & FIN), payload):
                    return False  # failed
                if self.reading_held:
                    return False
            return False
        finally:
            if start:
                # a read used up by whole frames, the commonest, leaves the empty bytes without a slice
                self.data = data[start:] if start < received else b""

    def take_data(self, opcode: int, fin: bool, payload: bytes) -> bool:
        """Take a data frame's payload (unmasked): deliver a message it ends; ``False`` if it fails the
        connection (text that is not UTF-8)."""
        data_arrived(self)
        if opcode != _CONTINUATION:
            self.fragments_binary = opcode == _BINARY
            if not fin:
                self.fragments = bytearray(payload)
                if not self.fragments_binary:
                    self.utf8validator.reset()
                    return self.check_utf8(payload, final=False)
                return True
            fragments: bytes | bytearray = payload
        else:
            if TYPE_CHECKING:  # a continuation frame comes here inside a fragmented message alone (read_frames)
                assert self.fragments is not None
            self.fragments += payload
            if not self.fragments_binary and not self.check_utf8(payload, final=fin):
                return False
            if not fin:
                return True
            fragments, self.fragments = self.fragments, None
        message: Arrival
        if self.fragments_binary:
            message = BytesMessage(bytes(fragments))
        elif opcode == _CONTINUATION or fragments.isascii():
            message = bytes(fragments)  # text, validated on the way: the handler decodes it
        else:
            try:
                message = TextMessage(fragments.decode("utf-8"))
            except UnicodeDecodeError:
                fail_connection(self, CloseCode.INVALID_FRAME_PAYLOAD_DATA, "a text message that is not UTF-8")
                return False
        self.deliver(message)
        return True

    def check_utf8(self, payload: bytes, final: bool) -> bool:
        """Validate a piece of a fragmented text message; fail the connection (1007) if it is not UTF-8."""
        valid, ends_on_codepoint, _, _ = self.utf8validator.validate(payload)
        if valid and (ends_on_codepoint or not final):
            return True
        fail_connection(self, CloseCode.INVALID_FRAME_PAYLOAD_DATA, "a text message that is not UTF-8")
        return False

    def onMessageBegin(self, isBinary: bool) -> None:
        super().onMessageBegin(isBinary)
        self.message_data = b""

    def onMessageFrameData(self, payload: bytes) -> None:
        # Autobahn keeps each piece of a message apart, about 40 bytes each: a message in 2-byte frames
        # would cost 20 times its size. One piece is kept as it is; more are gathered in one buffer.
        if self.failedByMe:
            return
        data = self.message_data
        if TYPE_CHECKING:  # between onMessageBegin and onMessageEnd
            assert data is not None
        if not data:
            self.message_data = payload
        elif isinstance(data, bytearray):
            data += payload
        else:
            self.message_data = bytearray(data) + payload

    def onMessageFrameEnd(self) -> None:
        self.frame_data = None

    def onMessageEnd(self) -> None:
        # Autobahn's also fires its "message" event to observers, through Deferreds, for every message;
        # rolo registers none
        if not self.failedByMe:
            data = self.message_data
            if TYPE_CHECKING:  # between onMessageBegin and onMessageEnd
                assert data is not None
            self.onMessage(data if isinstance(data, bytes) else bytes(data), self.message_is_binary)
        self.message_data = None

    def send_messages(self, messages: list[Outgoing], compressor: Any) -> None:
        """Frame ``messages`` and write them to the socket in one go, compressed with ``compressor`` (what
        :func:`~rolo.serving.twisted._autobahn.message_compressor` gives for this connection).

        rolo frames its data messages itself rather than through Autobahn's ``sendMessage``: a server's
        frame is unmasked and rolo never fragments a message, which leaves a header to build, where
        ``sendMessage`` spends 5 µs on checks and statistics for a small message. Unlike ``sendMessage``,
        it does not hold the handler's messages to ``max_message_size``: that limits what the peer sends.
        """
        if compressor is NotImplemented:
            for message in messages:
                opcode, payload = _payload(message)
                self.sendMessage(payload, opcode == _BINARY)
            return
        pieces: list[bytes] = []
        for message in messages:
            if compressor is None:
                pieces.extend(_frame(message))
                continue
            opcode, payload = _payload(message)
            compressor.start_compress_message()
            payload = compressor.compress_message_data(payload) + compressor.end_compress_message()
            pieces.append(frame_header(opcode, len(payload), compressed=True))
            pieces.append(payload)
        write_now(self.transport, pieces if len(pieces) <= _PIECES_PER_WRITE else [b"".join(pieces)])

    # Autobahn types what it returns as the accepted subprotocol (and headers) alone; Autobahn waits for a
    # Deferred of them as well (the handshake is the handler's to accept, in its thread)
    def onConnect(self, request: ConnectionRequest) -> Deferred[Any]:  # type: ignore[override]
        self.opened_at = self.clock.seconds()
        self.handshake = Deferred()
        connection = AutobahnConnection(self)
        try:
            self.adapter = self.host.open(connection, self.environ)
        except RuntimeError:
            log.failure("no thread for the WebSocket handler of {path}", path=self.environ.get("PATH_INFO"))
            headers = [("Content-Type", "text/plain; charset=utf-8"), *NO_THREAD.headers]
            connection.reject(NO_THREAD.status, headers, NO_THREAD.body)
        return self.handshake

    def take_handshake(self, request: ConnectionRequest) -> None:
        """Go on with an opening handshake request given as Autobahn's parser gives it
        (:func:`~rolo.serving.twisted._autobahn.parsed_handshake`): ``onConnect``, then Autobahn's response
        once the handler accepted, as after Autobahn's own parser."""
        self.heard_from_peer = True
        try:
            handshake = self.onConnect(request)
        except Exception as error:  # as Autobahn answers an onConnect that failed
            log.failure("the WebSocket handshake of {path} failed", path=self.environ.get("PATH_INFO"))
            self.failHandshake(f"Internal server error: {error}", 500)
            return
        handshake.addCallback(self.succeedHandshake)

    def onOpen(self) -> None:
        # the handler has the request in its environ; the server is done with the handshake
        drop_handshake_leftovers(self)
        if not self.send_queue:
            del self.send_queue
        self.transport.registerProducer(_WriteFlowControl(self), True)
        assert self.adapter is not None, "set by onConnect, or the connection does not open"
        self.adapter.on_open()
        self.was_open = True
        if enabled(log, LogLevel.info):  # one line per connection: not made when nobody takes it
            log.info("WebSocket open {path} from {peer}", path=self.environ.get("PATH_INFO"), peer=self.peer)

    def onMessage(self, payload: bytes, isBinary: bool) -> None:
        self.deliver(BytesMessage(payload) if isBinary else payload)

    def deliver(self, message: Arrival) -> None:
        """Hand a message that arrived to the handler's side, unless the server has closed already: a
        text message as its validated UTF-8 ``bytes`` (see :data:`~rolo.websocket.threaded.Arrival`)."""
        if self.state == _STATE_CLOSING:
            # the server closed: nobody will read it, and the peer's close reply is what counts. A large
            # frame read straight into its buffer may end here after the close (read_frames reads no
            # frame then, and Autobahn's parser calls onMessage)
            return
        if TYPE_CHECKING:  # set before the connection opened (onConnect), or no message comes
            assert self.adapter is not None
        self.adapter.on_message(message)

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        if self.incoming is not None:  # a large frame was coming: its buffer goes now, not at a collection
            self.incoming = None
            stop_reading_into(self.transport)
        super().connectionLost(reason)

    def onCloseFrame(self, code: int | None, reasonRaw: bytes | None) -> bool | None:
        fault = _close_frame_fault(code, reasonRaw)
        if fault is not None:
            # Autobahn would send its close, then take the peer's invalid one for the reply to it and abort
            # the TCP connection, dropping its close unsent: the peer saw a reset. Fail the connection as
            # processData does, the close frame out before the TCP connection closes (RFC 6455, 7.1.7).
            # As the reply to the server's close, the invalid frame is no close received either: Autobahn
            # would report 1000, which the peer never sent (the connection is dropped at once, its reason
            # set first to make the drop a peer's fault, not a warning)
            self.wasNotCleanReason = "the server failed the connection"
            fail_connection(self, *fault)
            self.dropConnection(abort=False)
            return True
        self.close_received = True
        if super().onCloseFrame(code, reasonRaw):  # type: ignore[arg-type]  # None without a code
            self.close_received = False  # not a valid close frame: the server failed the connection
            return True
        return None

    def sendCloseFrame(self, code: int | None = None, reasonUtf8: bytes | None = None, isReply: bool = False) -> None:
        if not isReply and self.state == _STATE_OPEN:
            self.close_sent_at = self.clock.seconds()
        super().sendCloseFrame(code, reasonUtf8, isReply)

    def onClose(self, wasClean: bool, code: int | None, reason: str | None) -> None:
        if self.adapter is None:
            return  # the handshake never got to the application
        received = sent = None
        if self.remoteCloseCode is not None:
            received = Close(self.remoteCloseCode, self.remoteCloseReason or "")
        elif self.close_received:
            # a close frame without a status code: reported as 1005 (RFC 6455, section 7.1.5)
            received = Close(CloseCode.NO_STATUS_RCVD)
        if self.localCloseCode is not None:
            sent = Close(self.localCloseCode, (self.localCloseReason or b"").decode("utf-8", "replace"))
        closed_by = "server" if self.closedByMe else "peer" if received is not None else None
        self.adapter.on_close(received, sent, closed_by)
        if self.was_open and enabled(log, LogLevel.info):
            why = ""  # the server's own reason; a peer's is its text, not the log's
            if closed_by == "server":
                ending, code = "closed by the server", self.localCloseCode
                reasons = [sent.reason] if sent is not None and sent.reason else []
                if received is None and (self.dropped_unanswered or self.wasCloseHandshakeTimeout):
                    ending = "dropped by the server"
                    waited = self.clock.seconds() - self.close_sent_at
                    reasons.append(f"the client did not answer the close in {waited:.3f}s")
                if reasons:
                    why = ": " + "; ".join(reasons)
            elif received is not None:  # closed by the peer
                ending, code = "closed by the peer", received.code
            else:
                ending, code = "lost", CloseCode.ABNORMAL_CLOSURE
            log.info(
                "WebSocket {ending} {path} from {peer}: code {code} after {duration:.3f}s{why}",
                ending=ending,
                path=self.environ.get("PATH_INFO"),
                peer=self.peer,
                code=int(code) if code is not None else None,
                duration=self.clock.seconds() - self.opened_at,
                why=why,
            )


_UNKNOWN: Any = object()

_last_framed: tuple[Outgoing | None, tuple[bytes, ...]] = (None, ())

_PIECES_PER_WRITE = 64
"""The most pieces written with one ``sendmsg``: more are joined first (an iovec has its limits)."""

_JOIN_BELOW = 16 * 1024
"""A payload this small is joined to its frame's header, a larger one written beside it."""

_SMALL_HEADERS = {opcode: tuple(frame_header(opcode, length) for length in range(126)) for opcode in (_TEXT, _BINARY)}
"""The headers of uncompressed text and binary frames of up to 125 bytes (the length in the second byte),
by opcode and length."""


def _close_frame_fault(code: int | None, reason: bytes | None) -> tuple[int, str] | None:
    """What is wrong with a close frame the peer sent, as Autobahn judges it: the close code to fail the
    connection with, and why; ``None`` for a valid one. Its code must be one RFC 6455 lets an endpoint
    send (section 7.4), its reason UTF-8 (section 5.5.1)."""
    if code is not None and (
        code < 1000 or code >= 5000 or (code < 3000 and code not in WebSocketProtocol.CLOSE_STATUS_CODES_ALLOWED)
    ):
        return CloseCode.PROTOCOL_ERROR, f"invalid close code {code}"
    if reason:
        try:
            reason.decode("utf-8")
        except UnicodeDecodeError:
            return CloseCode.INVALID_FRAME_PAYLOAD_DATA, "invalid close reason (non-UTF8 payload)"
    return None


def _payload(message: Outgoing) -> tuple[int, bytes]:
    """The opcode and the uncompressed payload of a message the adapter hands over (a ``str`` is a text
    message's text, :data:`~rolo.websocket.threaded.Outgoing`)."""
    if isinstance(message, str):
        return _TEXT, message.encode("utf-8")
    if isinstance(message, TextMessage):
        return _TEXT, message.data.encode("utf-8")
    return _BINARY, message.data


def _frame(message: Outgoing) -> tuple[bytes, ...]:
    """The frame of an uncompressed message, as one piece or a header and the payload (for a large one,
    so that the payload is not copied); the same message sent to many connections in a row (a broadcast)
    is framed once."""
    global _last_framed
    last, frame = _last_framed
    if message is not last:
        # _payload, without its call: a text message's text alone is what most sends hand over
        if isinstance(message, str):
            opcode, payload = _TEXT, message.encode("utf-8")
        elif isinstance(message, TextMessage):
            opcode, payload = _TEXT, message.data.encode("utf-8")
        else:
            opcode, payload = _BINARY, message.data
        length = len(payload)
        if length < 126:  # the commonest: its header made once, without a call
            frame = (_SMALL_HEADERS[opcode][length] + payload,)
        else:
            header = frame_header(opcode, length)
            frame = (header + payload,) if length < _JOIN_BELOW else (header, payload)
        _last_framed = message, frame
    return frame


def _write_failed(transport: Any, error: Exception) -> None:
    """Log a broadcast's write to ``transport`` that raised (:meth:`AutobahnConnection.send_each`)."""
    log.failure("writing a message to {peer} failed", Failure(error), peer=transport.getPeer())


class _WriteQueue(list[tuple[bytes, bool]]):
    """Autobahn's queue of chopped and synchronous writes (``send_queue``), which rolo never makes.

    It only needs ``len``, ``append`` and ``popleft``: an empty list takes 56 bytes, an empty deque 760.
    """

    def popleft(self) -> tuple[bytes, bool]:
        return self.pop(0)


@implementer(IPushProducer)
class _WriteFlowControl:
    """Registered with the transport so that its buffer filling up (the peer does not read) holds the
    handler's ``send``, and reading from the peer, until it drains."""

    __slots__ = ("_protocol",)

    def __init__(self, protocol: GatewayWebSocketProtocol) -> None:
        self._protocol = protocol

    # registered once the connection opened (onOpen), when the protocol has its adapter

    def pauseProducing(self) -> None:
        if TYPE_CHECKING:
            assert self._protocol.adapter is not None
        self._protocol.adapter.on_pause_writing()
        self._protocol.hold_reading(HOLD_FOR_WRITES)

    def resumeProducing(self) -> None:
        if TYPE_CHECKING:
            assert self._protocol.adapter is not None
        self._protocol.adapter.on_resume_writing()
        self._protocol.release_reading(HOLD_FOR_WRITES)

    def stopProducing(self) -> None:
        if TYPE_CHECKING:
            assert self._protocol.adapter is not None
        self._protocol.adapter.on_resume_writing()


class AutobahnConnection:
    """The I/O side of a connection (:class:`~rolo.websocket.threaded.ServerConnection`) on Autobahn.

    Its methods run on the reactor thread.
    """

    __slots__ = ("_compressor", "_protocol", "_transport")

    def __init__(self, protocol: GatewayWebSocketProtocol) -> None:
        self._protocol = protocol
        self._transport = protocol.transport  # its own, for good once connected (as the connection's)
        # the permessage-deflate compressor (message_compressor), looked up at the first send: the
        # handshake negotiated it by then, and it stays
        self._compressor: Any = _UNKNOWN

    def accept(self, subprotocol: str | None, headers: list[tuple[str, str]]) -> None:
        protocol = self._protocol
        if protocol.state != WebSocketProtocol.STATE_CONNECTING:
            return  # the peer left while the handler decided; the adapter knows from onClose
        grouped: dict[str, list[str]] = {}
        for name, value in headers:
            grouped.setdefault(name, []).append(value)
        handshake, protocol.handshake = protocol.handshake, None  # fired, it would hold its result
        assert handshake is not None, "onConnect made it, and only accept or reject ends the handshake"
        handshake.callback((subprotocol, grouped))

    def reject(self, status: int, headers: list[tuple[str, str]], body: bytes) -> None:
        protocol = self._protocol
        if protocol.state != WebSocketProtocol.STATE_CONNECTING:
            return
        try:
            phrase = HTTPStatus(status).phrase
        except ValueError:
            phrase = "Unknown"
        lines = [f"HTTP/1.1 {status} {phrase}"]
        # the headers of the site's every other response, unless the handler's response has them: a Date
        # is owed in a 4xx (RFC 9110, section 6.6.1)
        given = {name.lower() for name, _ in headers}
        if "server" not in given:
            lines.append(f"Server: {version.decode('latin-1')}")
        if "date" not in given:
            lines.append(f"Date: {http_date(int(time.time())).decode('latin-1')}")
        # framing is ours: the body is sent whole and the connection closes after it
        framing = ("content-length", "connection", "transfer-encoding")
        lines.extend(f"{name}: {value}" for name, value in headers if name.lower() not in framing)
        lines.append(f"Content-Length: {len(body)}")
        lines.append("Connection: close")
        protocol.sendData("\r\n".join(lines).encode("latin-1") + b"\r\n\r\n" + body)
        protocol.wasClean = True  # an answered request, not a failure for Autobahn to warn about
        protocol.dropConnection(abort=False)
        log.info(
            "WebSocket rejected {path} from {peer}: {status}",
            path=protocol.environ.get("PATH_INFO"),
            peer=protocol.peer,
            status=status,
        )

    def send(self, messages: list[Outgoing]) -> None:
        protocol = self._protocol
        if protocol.state != _STATE_OPEN:
            return
        compressor = self._compressor
        if compressor is _UNKNOWN:
            compressor = self._compressor = message_compressor(protocol)
        if compressor is None and len(messages) == 1:  # as each connection of a broadcast sends
            # the frame as it is: the same message to many connections in a row is framed once
            write_now(self._transport, _frame(messages[0]))
        else:
            protocol.send_messages(messages, compressor)

    @staticmethod
    def send_each(connections: list[AutobahnConnection], message: Message) -> None:
        """Write ``message`` to each of ``connections``, as :meth:`send` would (a broadcast, on the reactor
        thread): the uncompressed frame, framed once, to all that have not started closing, in one loop
        (:func:`~rolo.serving.twisted._twisted.write_each`); a connection that negotiated compression
        compresses it for itself. A connection whose write fails costs only itself the message."""
        transports = []
        for connection in connections:
            if connection._protocol.state != _STATE_OPEN:
                continue
            if connection._compressor is None:
                transports.append(connection._transport)
                continue
            try:  # compressing, or not known yet (its first message)
                connection.send([message])
            except Exception:
                log.failure("writing a message to {peer} failed", peer=connection._protocol.peer)
        if transports:  # none when all compress or are closing: nothing to frame
            write_each(transports, _frame(message), _write_failed)

    def close(self, code: int, reason: str | None) -> None:
        protocol = self._protocol
        if protocol.state == WebSocketProtocol.STATE_OPEN:
            reason_bytes = reason.encode("utf-8") if reason else None  # the adapter fitted it to the frame
            # sendClose only allows the codes an application may use; a server also sends 1001 and 1011
            protocol.sendCloseFrame(int(code), reason_bytes, isReply=False)
            # the peer's close reply is behind whatever the full inbox kept unread: read on, dropping
            # messages (onMessage), to find it
            protocol.release_reading(HOLD_FOR_INBOX)
        elif protocol.state == WebSocketProtocol.STATE_CONNECTING:
            protocol.dropConnection(abort=True)

    def drop(self) -> None:
        protocol = self._protocol
        if protocol.state == _STATE_CLOSING and protocol.closedByMe:
            protocol.dropped_unanswered = True  # for its log line
        protocol.dropConnection(abort=True)

    def pause_reading(self) -> None:
        self._protocol.hold_reading(HOLD_FOR_INBOX)

    def resume_reading(self) -> None:
        self._protocol.release_reading(HOLD_FOR_INBOX)
