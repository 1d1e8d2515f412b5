"""Helpers for the hardening tests: raw HTTP and WebSocket frames over a socket, and counting a process's
resources."""

from __future__ import annotations

import itertools
import os
import socket
import stat
import struct
import zlib

from tests.helpers import send_until_unread

WEBSOCKET_KEY = "dGhlIHNhbXBsZSBub25jZQ=="


def upgrade_request(
    path: str = "/ws",
    host: str = "127.0.0.1",
    method: str = "GET",
    version: str = "HTTP/1.1",
    headers: list[tuple[str, str]] | None = None,
) -> bytes:
    """A WebSocket opening handshake request; ``headers`` replaces the usual ones."""
    if headers is None:
        headers = [
            ("Host", host),
            ("Upgrade", "websocket"),
            ("Connection", "Upgrade"),
            ("Sec-WebSocket-Key", WEBSOCKET_KEY),
            ("Sec-WebSocket-Version", "13"),
        ]
    lines = [f"{method} {path} {version}"] + [f"{name}: {value}" for name, value in headers]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def http_request(
    target: str, method: str = "GET", headers: list[tuple[str, str]] | None = None, host: str = "127.0.0.1"
) -> bytes:
    """An HTTP/1.1 request head for ``target``, with a Host header and then ``headers``."""
    lines = [f"{method} {target} HTTP/1.1", f"Host: {host}"] + [f"{n}: {v}" for n, v in headers or []]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def response_head(address: tuple[str, int], data: bytes, timeout: float = 5.0) -> bytes:
    """Send ``data`` on a new connection and return what came back up to the end of the response head
    (less if the server closed first; empty if it answered nothing)."""
    with socket.create_connection(address, timeout=timeout) as sock:
        try:
            sock.sendall(data)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the server refused part way; its answer may still be readable
        received = b""
        while b"\r\n\r\n" not in received:
            try:
                chunk = sock.recv(65536)
            except ConnectionResetError:
                break
            if not chunk:
                break
            received += chunk
        return received


def status_of(head: bytes) -> int | None:
    """The status code of a response head, None if there was no status line."""
    parts = head.split(b"\r\n", 1)[0].split(b" ", 2)
    if len(parts) < 2 or not parts[0].startswith(b"HTTP/") or not parts[1].isdigit():
        return None
    return int(parts[1])


def reset(sock: socket.socket) -> None:
    """Close ``sock`` with a TCP reset instead of a FIN: the peer vanishing without a goodbye."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()


def process_usage(pid: int) -> dict[str, int]:
    """Threads, open file descriptors, resident memory and its peak (bytes) of process ``pid``, and the
    bytes in the regular files it has open (``stored``: a request body spooled to a temporary file)."""
    usage = {"fds": 0, "stored": 0}
    for fd in os.listdir(f"/proc/{pid}/fd"):
        usage["fds"] += 1
        try:
            info = os.stat(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue  # closed meanwhile
        if stat.S_ISREG(info.st_mode):
            usage["stored"] += info.st_size
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            name, _, value = line.partition(":")
            if name == "Threads":
                usage["threads"] = int(value)
            elif name in ("VmRSS", "VmHWM"):
                usage["rss" if name == "VmRSS" else "peak_rss"] = int(value.split()[0]) * 1024
    return usage


def client_frame(opcode: int, payload: bytes = b"", fin: bool = True, compressed: bool = False) -> bytes:
    """A masked frame as a client sends it (RFC 6455, 5.2): the mask is fixed, as any mask will do."""
    first = (0x80 if fin else 0) | (0x40 if compressed else 0) | opcode
    length = len(payload)
    if length < 126:
        head = bytes((first, 0x80 | length))
    elif length < 0x10000:
        head = bytes((first, 0x80 | 126)) + length.to_bytes(2, "big")
    else:
        head = bytes((first, 0x80 | 127)) + length.to_bytes(8, "big")
    mask = b"\x37\xfa\x21\x3d"
    masked = (int.from_bytes(payload, "little") ^ int.from_bytes(mask * (length // 4 + 1), "little")).to_bytes(
        length + 4, "little"
    )[:length]
    return head + mask + masked


def deflated(payload: bytes) -> bytes:
    """``payload`` compressed on its own, as permessage-deflate sends a message (RFC 7692, 7.2.1)."""
    compressor = zlib.compressobj(wbits=-zlib.MAX_WBITS)
    return (compressor.compress(payload) + compressor.flush(zlib.Z_SYNC_FLUSH))[:-4]


def open_websocket(address: tuple[str, int], path: str, extensions: str | None = None) -> socket.socket:
    """A raw socket that completed the opening handshake for ``path`` (offering ``extensions``)."""
    headers = [
        ("Host", "127.0.0.1"),
        ("Upgrade", "websocket"),
        ("Connection", "Upgrade"),
        ("Sec-WebSocket-Key", WEBSOCKET_KEY),
        ("Sec-WebSocket-Version", "13"),
    ]
    if extensions:
        headers.append(("Sec-WebSocket-Extensions", extensions))
    sock = socket.create_connection(address, timeout=10)
    sock.sendall(upgrade_request(path, headers=headers))
    head = b""
    while b"\r\n\r\n" not in head:
        chunk = sock.recv(1)  # no further: what follows the head is the server's first frame
        if not chunk:
            raise ConnectionError(f"the server closed during the handshake: {head!r}")
        head += chunk
    if status_of(head) != 101:
        raise ConnectionError(f"the handshake was refused: {head!r}")
    return sock


def send_until_stalled(sock: socket.socket, data: bytes, limit: int) -> int:
    """Send ``data`` over and over until ``limit`` bytes are out, or until the server stopped reading (the
    kernel's buffers between are full: :func:`tests.helpers.send_until_unread`), or until it closed the
    connection; return how many bytes went out."""
    sent, _ = send_until_unread(sock, itertools.repeat(data, -(-limit // len(data))))
    return sent
