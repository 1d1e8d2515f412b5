"""The client behind trusted proxies: its address and scheme as the proxies say, believed only from them.

A proxy in front of the server (nginx, a load balancer) is the peer of every connection; it says which
client it forwards, and over which scheme, in ``Forwarded`` (RFC 7239) or in ``X-Forwarded-For`` and
``X-Forwarded-Proto``. Anyone can send those headers, so they are read only on a connection from a proxy
the ``forwarded_allow_ips`` setting names (as uvicorn's and gunicorn's option of that name). Each proxy
appends the peer it saw to the list: it is read from the right, past the proxies trusted, and the first
address that is not one of them is the client.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from autobahn.twisted.util import peer2str
from twisted.internet.address import IPv4Address, IPv6Address, UNIXAddress
from twisted.web.server import Request
from werkzeug.http import parse_list_header, parse_options_header

__all__ = ["ForwardedClient", "TrustedProxies", "peer_description"]

_Network = ipaddress.IPv4Network | ipaddress.IPv6Network

# what a scheme of the forwarded request means for the request this server sees (RFC 7239 section 5.4)
_SCHEMES = {"http": "http", "https": "https", "ws": "http", "wss": "https"}


@dataclass(frozen=True)
class ForwardedClient:
    """Who a request came from, as trusted proxies say.

    :ivar host: the client's address (or the identifier a proxy gave instead: ``unknown``, ``_hidden``)
    :ivar scheme: ``http`` or ``https``, as the client spoke to the first proxy; ``None`` if no proxy said
    """

    host: str
    scheme: str | None


class TrustedProxies:
    """The peers whose forwarding headers are believed.

    :param allowed: IP addresses (``127.0.0.1``, ``::1``) and networks (``10.0.0.0/8``) of the proxies,
        ``unix`` for connections over UNIX sockets, or ``*`` for every peer
    :raises ValueError: naming an entry that is none of those
    """

    def __init__(self, allowed: Iterable[str]) -> None:
        self.everyone = False
        self.unix = False
        self._networks: list[_Network] = []
        for entry in allowed:
            entry = entry.strip()
            if entry == "*":
                self.everyone = True
            elif entry == "unix":
                self.unix = True
            else:
                try:
                    self._networks.append(ipaddress.ip_network(entry, strict=False))
                except ValueError:
                    raise ValueError(f"{entry!r}, which is not an IP address or network, 'unix' or '*'") from None

    def trusts(self, host: str) -> bool:
        """Whether ``host``, an address as text, is a trusted proxy's."""
        if self.everyone:
            return True
        try:
            address = ipaddress.ip_address(host)
        except ValueError:
            return False
        return any(address in network for network in self._networks)

    def client_of(self, request: Request) -> ForwardedClient | None:
        """The client a request was forwarded for, when its peer is a trusted proxy that says so; else
        ``None`` (the peer is the client). ``Forwarded`` is read where present, else ``X-Forwarded-For`` and
        ``X-Forwarded-Proto``."""
        peer = request.getClientAddress()
        if isinstance(peer, (IPv4Address, IPv6Address)):
            if not self.trusts(peer.host):
                return None
        elif not (self.everyone or (self.unix and isinstance(peer, UNIXAddress))):
            return None
        headers = request.requestHeaders
        forwarded = _joined(headers.getRawHeaders(b"forwarded"))
        if forwarded is not None:
            return self._from_forwarded(forwarded)
        forwarded_for = _joined(headers.getRawHeaders(b"x-forwarded-for"))
        if forwarded_for is None:
            return None
        return self._from_x_forwarded(forwarded_for, _joined(headers.getRawHeaders(b"x-forwarded-proto")))

    def _from_forwarded(self, value: str) -> ForwardedClient | None:
        # RFC 7239 section 4: a list of elements, each a list of parameters as those after a media type
        # (parse_options_header reads them after a value, here a placeholder)
        elements = [parse_options_header("_;" + element)[1] for element in parse_list_header(value)]
        hops = [(element.get("for"), element.get("proto")) for element in elements]
        return self._client(hops)

    def _from_x_forwarded(self, forwarded_for: str, forwarded_proto: str | None) -> ForwardedClient | None:
        hosts = parse_list_header(forwarded_for)
        schemes = parse_list_header(forwarded_proto) if forwarded_proto is not None else []
        # a scheme for each hop, appended as the addresses are; or one, which the last proxy set
        aligned: list[str | None] = list(schemes)
        if len(aligned) != len(hosts):
            aligned = [None] * len(hosts)
            if len(schemes) == 1:
                aligned[-1] = schemes[0]
        return self._client(list(zip(hosts, aligned)))

    def _client(self, hops: Sequence[tuple[str | None, str | None]]) -> ForwardedClient | None:
        """The client among ``hops``, (node, scheme) pairs from the first proxy's to the last's."""
        if not hops:
            return None
        index = len(hops) - 1
        while index > 0:
            proxy = hops[index][0]
            if proxy is None or not self.trusts(_host(proxy)):
                break
            index -= 1  # a trusted proxy's own peer: look further left
        node, scheme = hops[index]
        if not node:
            return None
        if scheme is None:  # the scheme the last proxy said it received, which it set for the whole path
            scheme = hops[-1][1]
        return ForwardedClient(_host(node), _SCHEMES.get((scheme or "").strip().lower()))


def _joined(values: Sequence[bytes] | None) -> str | None:
    """A header's lines as one comma-separated list (RFC 9110 section 5.3), or ``None`` if absent."""
    if not values:
        return None
    return ", ".join(value.decode("latin-1") for value in values)


def _host(node: str) -> str:
    """The address of a node, without its port: ``[2001:db8::1]:4711`` → ``2001:db8::1`` (RFC 7239
    section 6), ``192.0.2.43:47011`` → ``192.0.2.43``; a bare IPv6 address (X-Forwarded-For) as it is."""
    node = node.strip()
    if node.startswith("["):
        return node[1 : node.find("]")] if "]" in node else node
    if node.count(":") == 1:
        return node.split(":", 1)[0]
    return node


def connection_peer(transport: Any) -> str:
    """A connection's peer, for the log (``tcp4:127.0.0.1:51234``, ``tcp6:[::1]:51234``; ``unknown`` once it
    has no transport)."""
    return bracket_ipv6(peer2str(transport)) if transport is not None else "unknown"


def bracket_ipv6(peer: str) -> str:
    """Autobahn's description of a peer (``peer2str``) with an IPv6 address in brackets, as in a URL (RFC
    3986, section 3.2.2), so that its port stands apart: ``tcp6:2001:db8::1:443`` becomes
    ``tcp6:[2001:db8::1]:443``; any other description is returned as it is."""
    if not peer.startswith("tcp6:"):
        return peer
    host, _, port = peer[5:].rpartition(":")
    return f"tcp6:[{host}]:{port}"


def peer_description(request: Request) -> str:
    """Who a request came from, for the log: its connection's peer (``tcp4:127.0.0.1:51234``), and the
    client behind it when a trusted proxy said (``203.0.113.7 via tcp4:127.0.0.1:51234``)."""
    connection = connection_peer(request.transport)
    forwarded: ForwardedClient | None = getattr(request, "forwarded", None)
    return f"{forwarded.host} via {connection}" if forwarded is not None else connection
