"""The servers the benchmark compares, each run in a process of its own: ``python -m bench.servers KIND PORT``.

Every WebSocket server serves the same paths with the same settings: permessage-deflate off unless started
with ``--deflate`` (then accepted when a client offers it), UTF-8 validation of text messages on (picows
has none), no pings, messages up to 2 MiB, logging of warnings only:

``/echo``
    sends back every message it receives, as it came (text or binary)
``/room`` and ``/publish``
    a member of ``/room`` is sent ``joined`` once it is in the room; every message received on a
    ``/publish`` connection is sent to every member of the room
``/hello``
    an HTTP ``GET`` answered with the 11 bytes ``hello world``

:data:`PEERS` says which of these each kind serves, and how: the parts of ``./dev bench`` it takes part in.
"""

from __future__ import annotations

from dataclasses import dataclass

MAX_MESSAGE_SIZE = 2 * 1024 * 1024
MAX_CONNECTIONS = 12_000  # above the 10,000 of the connection runs, for servers that cap them
BACKLOG = 4096
HELLO = b"hello world"


@dataclass(frozen=True)
class Peer:
    """A kind of server: what it is, in the tables' words, and the parts (``echo``, ``scale``,
    ``http``, ``broadcast``, ``cluster``) it takes part in."""

    name: str
    description: str
    parts: frozenset[str]

    @property
    def is_rolo(self) -> bool:
        return self.name.startswith("rolo")


def _peer(name: str, description: str, *parts: str) -> tuple[str, Peer]:
    return name, Peer(name, description, frozenset(parts))


WEBSOCKET = ("echo", "scale")
PEERS: dict[str, Peer] = dict(
    [
        _peer("rolo", "rolo, TwistedGateway", *WEBSOCKET, "http", "broadcast", "cluster"),
        _peer("rolo-metrics", "rolo, TwistedGateway with its metrics served (as twistd rolo --metrics)", "echo"),
        _peer("rolo-uvicorn", "rolo, AsgiGateway under uvicorn", *WEBSOCKET, "http"),
        _peer("rolo-hypercorn", "rolo, AsgiGateway under hypercorn", *WEBSOCKET),
        _peer("autobahn", "plain Autobahn on Twisted", *WEBSOCKET, "broadcast"),
        _peer("twisted-web", "plain Twisted Web resource", "http"),
        _peer("websockets", "websockets, asyncio server", *WEBSOCKET, "broadcast"),
        _peer("aiohttp", "aiohttp", *WEBSOCKET, "http"),
        _peer("uvicorn", "uvicorn, bare ASGI app", *WEBSOCKET, "http"),
        _peer("hypercorn", "hypercorn, bare ASGI app", *WEBSOCKET),
        _peer("picows", "picows (Cython)", *WEBSOCKET),
        _peer("gunicorn", "gunicorn gthread (32 threads), Flask app", "http"),
    ]
)
"""Every kind, in the order of the tables."""
