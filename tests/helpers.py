"""Helpers for tests that drive blocking clients against a server on the test's reactor."""

from __future__ import annotations

import datetime
import ipaddress
import select
import socket
import struct
import threading
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from twisted.internet import threads


def in_thread(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """Run a blocking client off the reactor thread, so the server keeps serving meanwhile."""
    return threads.deferToThread(fn, *args, **kwargs)


class Signal:
    """A threading.Event whose wait fails the test instead of hanging it."""

    def __init__(self) -> None:
        self._event = threading.Event()

    def set(self) -> None:
        self._event.set()

    def wait(self, timeout: float = 10.0) -> None:
        assert self._event.wait(timeout), "timed out waiting for a signal"


# struct tcp_info (linux/tcp.h): tcpi_snd_wnd, the receive window the peer advertised, in bytes (Linux 5.4+)
_SND_WND_OFFSET = 228
_TCP_INFO_SIZE = _SND_WND_OFFSET + 4


def peer_window_closed(sock: socket.socket) -> bool:
    """Whether the peer of the TCP connection ``sock`` advertises a receive window of zero: its kernel's
    buffer for the connection is full, since the peer does not read from it."""
    info = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, _TCP_INFO_SIZE)
    assert len(info) >= _TCP_INFO_SIZE, "this kernel's TCP_INFO has no tcpi_snd_wnd (Linux 5.4 and later)"
    return struct.unpack_from("I", info, _SND_WND_OFFSET)[0] == 0


def send_until_unread(sock: socket.socket, chunks: Iterable[bytes], timeout: float = 30.0) -> tuple[int, bytes]:
    """Send ``chunks`` one after the other, as fast as ``sock`` takes them, until they are spent, the peer
    closed the connection, or the peer stopped reading: our send buffer is full and the peer's receive
    window is zero (:func:`peer_window_closed`), so that nothing more goes out until the peer reads.

    Returns the bytes sent, and what was not sent of the chunk being sent (empty if none): the rest of a
    frame, say, to send once the peer reads again.

    :raises AssertionError: if the socket took nothing for ``timeout`` seconds while the peer's window was
        open (a way out: a peer that reads, however slowly, opens its window again)
    """
    previous = sock.gettimeout()
    sock.setblocking(False)
    sent, pending, stuck_since = 0, memoryview(b""), time.monotonic()
    try:
        for chunk in chunks:
            pending = memoryview(chunk)
            while pending:
                try:
                    taken = sock.send(pending)
                except BlockingIOError:
                    if peer_window_closed(sock):
                        return sent, bytes(pending)
                    assert time.monotonic() - stuck_since < timeout, "the peer neither read nor closed its window"
                    # waits for room, or paces the polling of the window: the kernel has no event for it
                    select.select([], [sock], [], 0.01)
                    continue
                except (BrokenPipeError, ConnectionResetError):
                    return sent, bytes(pending)
                sent, pending, stuck_since = sent + taken, pending[taken:], time.monotonic()
        return sent, b""
    finally:
        sock.settimeout(previous)


def self_signed_certificate(directory: Path) -> tuple[Path, Path]:
    """A key and a self-signed certificate for 127.0.0.1 and localhost, as PEM files in ``directory``."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.timezone.utc)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")]),
            critical=False,
        )
        .sign(key, hashes.SHA256())
    )
    key_path, certificate_path = directory / "key.pem", directory / "cert.pem"
    key_path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    certificate_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    return key_path, certificate_path
