"""Listening endpoints shared by worker processes: the supervisor reserves each one, every worker listens.

A TCP or TLS endpoint (``tcp:``, ``tcp6:``, ``ssl:``) is shared with ``SO_REUSEPORT``: the supervisor binds
a socket to the address without listening on it, which fixes the port (that of ``tcp:0`` too) and keeps it
taken while workers come and go, and each worker binds a listening socket of its own to the same address.
The kernel (Linux) spreads new connections over the workers' sockets by a hash of the connection's
addresses; the socket of a worker that dies leaves the group with it. A UNIX endpoint (``unix:``) cannot be
shared so: the supervisor binds and listens on the one socket, and every worker accepts from a copy of its
descriptor that it inherits.

Both sides read the endpoint string with Twisted's parsers (:func:`~twisted.internet.endpoints.serverFromString`)
and catch the ``listenTCP``, ``listenSSL`` or ``listenUNIX`` call that the parsed endpoint makes on the
reactor it was given, so that every option of those endpoints (``interface``, ``backlog``, ``mode``, the TLS
keys …) means what it means without workers.
"""

from __future__ import annotations

import contextlib
import os
import socket
import stat
import sys
from dataclasses import dataclass
from typing import Any

from twisted.internet.abstract import isIPv6Address
from twisted.internet.address import IPv4Address, IPv6Address, UNIXAddress
from twisted.internet.defer import Deferred
from twisted.internet.error import CannotListenError
from twisted.internet.interfaces import IAddress, IListeningPort, IStreamServerEndpoint
from twisted.internet.protocol import Factory
from twisted.python.failure import Failure
from twisted.python.lockfile import FilesystemLock
from zope.interface import implementer

from ._twisted import adopt_unix_port
from .service import _parse_endpoint

__all__ = ["Reservation", "SharedEndpoint", "reserve"]

_KINDS = "--workers serves tcp, tcp6, ssl and unix endpoints"


class _NotShareable(Exception):
    """The endpoint asked its reactor for something other than a TCP, TLS or UNIX port."""


@dataclass(frozen=True)
class SharedEndpoint:
    """What a worker needs to listen on one endpoint: the endpoint string, and either the port its
    supervisor reserved (``SO_REUSEPORT``) or the number of the descriptor it inherits (a UNIX socket)."""

    description: str
    port: int | None = None
    fd: int | None = None

    def endpoint(self, reactor: Any) -> IStreamServerEndpoint:
        """The endpoint a worker serves with ``reactor``.

        :raises ValueError: for an endpoint string that does not parse
        """
        return _WorkerEndpoint(self.description, _parse_endpoint(_WorkerBinder(reactor, self), self.description))


class Reservation:
    """One endpoint as the supervisor holds it while its workers serve it: a bound socket that does not
    listen (``SO_REUSEPORT``), or the listening UNIX socket its workers inherit."""

    def __init__(self, description: str, reserved: _Reserved) -> None:
        self.description = description
        self.socket = reserved.socket
        self.inherited = reserved.inherited
        self.address: IAddress = _address(reserved.socket)
        self._lock = reserved.lock

    def shared(self, fd: int | None) -> SharedEndpoint:
        """The worker's side of it; ``fd`` is where an inherited socket is in the worker."""
        if self.inherited:
            return SharedEndpoint(self.description, fd=fd)
        return SharedEndpoint(self.description, port=self.address.port)  # type: ignore[attr-defined]

    def close(self) -> None:
        """Close the socket; a UNIX socket's file is removed (if it is a socket), and its lock released."""
        if isinstance(self.address, UNIXAddress) and self.address.name:
            _remove_socket_file(self.address.name)
        if self._lock is not None:
            self._lock.unlock()
        self.socket.close()


def reserve(description: str) -> Reservation:
    """Reserve the endpoint ``description`` for workers to serve (see the module).

    :raises ValueError: for an endpoint string that does not parse, or an endpoint of another kind
    :raises twisted.internet.error.CannotListenError: if the address is taken
    """
    endpoint = _parse_endpoint(_Reserver(), description)
    outcome: list[Any] = []
    # the endpoints call the reactor at once and wrap what it returns in a Deferred that has fired
    endpoint.listen(Factory()).addBoth(outcome.append)
    if isinstance(outcome[0], Failure):
        if outcome[0].check(_NotShareable):
            raise ValueError(f"{_KINDS}, not {description!r}")
        outcome[0].raiseException()
    return Reservation(description, outcome[0])


def _reuseport_supported() -> bool:
    # elsewhere SO_REUSEPORT either does not exist or hands every connection to one of the sockets
    return sys.platform.startswith("linux") and hasattr(socket, "SO_REUSEPORT")


def _address(sock: socket.socket) -> IAddress:
    if sock.family == socket.AF_UNIX:
        return UNIXAddress(sock.getsockname())
    host, port = sock.getsockname()[:2]
    if sock.family == socket.AF_INET6:
        return IPv6Address("TCP", host, port)
    return IPv4Address("TCP", host, port)


def _reuseport_socket(port: int, interface: str) -> socket.socket:
    """A TCP socket with ``SO_REUSEPORT`` (and ``SO_REUSEADDR``, as Twisted's own ports) bound to the address."""
    family = socket.AF_INET6 if isIPv6Address(interface) else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        if family == socket.AF_INET6:  # a scope (fe80::1%eth0) needs resolving into the address tuple
            address = socket.getaddrinfo(interface, port, family, socket.SOCK_STREAM)[0][4]
        else:
            address = (interface, port)
        sock.bind(address)
    except OSError as error:
        sock.close()
        raise CannotListenError(interface, port, error) from error
    return sock


@dataclass
class _Reserved:
    socket: socket.socket
    inherited: bool
    lock: FilesystemLock | None = None


class _Reserver:
    """The reactor the supervisor parses endpoints with: it reserves rather than listens."""

    def listenTCP(self, port: int, factory: Any, backlog: int = 50, interface: str = "") -> _Reserved:
        if not _reuseport_supported():
            raise ValueError("--workers needs SO_REUSEPORT as Linux has it for tcp and ssl endpoints")
        return _Reserved(_reuseport_socket(port, interface), inherited=False)

    def listenSSL(
        self, port: int, factory: Any, contextFactory: Any, backlog: int = 50, interface: str = ""
    ) -> _Reserved:
        return self.listenTCP(port, factory, backlog, interface)

    def listenUNIX(
        self, address: str, factory: Any, backlog: int = 50, mode: int = 0o666, wantPID: int = 0
    ) -> _Reserved:
        lock = None
        if wantPID:  # lockfile=1, the default of unix: endpoint strings: what Twisted's UNIX port does
            lock = FilesystemLock(address + ".lock")
            if not lock.lock():
                raise CannotListenError(None, address, "Cannot acquire lock")
            if not lock.clean:  # a server that held it died: its socket's file is stale
                _remove_socket_file(address)
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.bind(address)
            if not address.startswith("\0"):  # not the abstract namespace: a file
                os.chmod(address, mode)
            sock.listen(backlog)
        except OSError as error:
            sock.close()
            if lock is not None:
                lock.unlock()
            raise CannotListenError(None, address, error) from error
        sock.setblocking(False)  # as adopting it requires, in every worker (they share the flag)
        # the workers get their copies of it where the supervisor says, not by chance
        sock.set_inheritable(False)
        return _Reserved(sock, inherited=True, lock=lock)

    def __getattr__(self, name: str) -> Any:
        raise _NotShareable(name)


class _WorkerBinder:
    """The reactor a worker parses its endpoints with: it listens as its supervisor planned, on ``reactor``."""

    def __init__(self, reactor: Any, shared: SharedEndpoint) -> None:
        self._reactor = reactor
        self._shared = shared

    def listenTCP(self, port: int, factory: Any, backlog: int = 50, interface: str = "") -> IListeningPort:
        # the port is the one the supervisor reserved (tcp:0 picked it there)
        sock = _reuseport_socket(self._shared.port, interface)  # type: ignore[arg-type]
        try:
            sock.listen(backlog)
            sock.setblocking(False)
            listening: IListeningPort = self._reactor.adoptStreamPort(sock.fileno(), sock.family, factory)
            return listening
        finally:
            sock.close()  # the port has its own copy of the descriptor

    def listenSSL(
        self, port: int, factory: Any, contextFactory: Any, backlog: int = 50, interface: str = ""
    ) -> IListeningPort:
        # what the reactor's own listenSSL does: TLS as a protocol over a TCP port (pyOpenSSL, which an
        # ssl: endpoint needs anyway, is imported here)
        from twisted.protocols.tls import TLSMemoryBIOFactory

        return self.listenTCP(port, TLSMemoryBIOFactory(contextFactory, False, factory), backlog, interface)

    def listenUNIX(
        self, address: str, factory: Any, backlog: int = 50, mode: int = 0o666, wantPID: int = 0
    ) -> IListeningPort:
        fd = self._shared.fd
        try:
            return adopt_unix_port(self._reactor, fd, factory, backlog, mode)  # type: ignore[arg-type]
        finally:
            os.close(fd)  # type: ignore[arg-type]  # the port has its own copy of the descriptor


@implementer(IStreamServerEndpoint)
class _WorkerEndpoint:
    """An endpoint of a worker, named by its endpoint string."""

    def __init__(self, description: str, endpoint: IStreamServerEndpoint) -> None:
        self._description = description
        self._endpoint = endpoint

    def listen(self, protocolFactory: Any) -> Deferred[IListeningPort]:
        return self._endpoint.listen(protocolFactory)

    def __repr__(self) -> str:
        return self._description


def _remove_socket_file(path: str | bytes) -> None:
    """Remove ``path`` if it is a UNIX socket's file (and leave anything else there alone)."""
    with contextlib.suppress(OSError):
        if stat.S_ISSOCK(os.stat(path).st_mode):
            os.remove(path)
