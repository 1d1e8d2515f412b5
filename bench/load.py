"""The load generator: WebSocket clients on asyncio that frame by hand, so the client costs little.

``python -m bench.load echo PORT CONNECTIONS SIZE DURATION [SERVER_PID]`` opens ``CONNECTIONS`` connections to
``ws://127.0.0.1:PORT/echo``; each sends a message of ``SIZE`` bytes (text up to 64 KiB, binary above) and
sends the next one when the echo is back. After a short warm-up it counts for ``DURATION`` seconds, then
prints one JSON line: messages per second, round-trip percentiles, the CPU the client itself used (if it
nears one core, the client is the bottleneck) and, given the server's PID, the server's CPU time and
context switches per message, which other load on the machine disturbs less than the rates.

``python -m bench.load hold PORT CONNECTIONS`` opens that many connections and keeps them open, driven by
lines on stdin: it prints ``open N`` once all are open, echoes one message on each on ``echo`` and prints
``answered N``, and closes them all on ``close``.

Each client masks its frames with one fixed key (servers may not check that keys vary), and parses the
server's unmasked frames itself.
"""

from __future__ import annotations

import asyncio
import json
import os
import resource
import sys
import time

HANDSHAKE = (
    "GET /echo HTTP/1.1\r\n"
    "Host: 127.0.0.1:{port}\r\n"
    "Upgrade: websocket\r\n"
    "Connection: Upgrade\r\n"
    "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
    "Sec-WebSocket-Version: 13\r\n"
    "\r\n"
)
MASK = os.urandom(4)
CLOSE_FRAME = None  # filled in below, once frame() exists
WARM_UP = 0.5
TEXT_LIMIT = 64 * 1024


def frame(payload: bytes, opcode: int) -> bytes:
    """A final, masked client frame carrying ``payload``."""
    size = len(payload)
    if size < 126:
        header = bytes([0x80 | opcode, 0x80 | size])
    elif size < 1 << 16:
        header = bytes([0x80 | opcode, 0x80 | 126]) + size.to_bytes(2, "big")
    else:
        header = bytes([0x80 | opcode, 0x80 | 127]) + size.to_bytes(8, "big")
    key = int.from_bytes(MASK * (size // 4 + 1), "big") >> (8 * (4 - size % 4))
    masked = (int.from_bytes(payload, "big") ^ key).to_bytes(size, "big") if size else b""
    return header + MASK + masked


CLOSE_FRAME = frame((1000).to_bytes(2, "big"), 0x8)


class Client(asyncio.Protocol):
    """One connection: performs the handshake, then reports each complete frame it receives."""

    def __init__(self, port: int, on_frame) -> None:
        self.port = port
        self.on_frame = on_frame
        self.opened = asyncio.get_running_loop().create_future()
        self.closed = asyncio.get_running_loop().create_future()
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.upgraded = False
        self.sent_at = 0.0

    def connection_made(self, transport: asyncio.Transport) -> None:
        self.transport = transport
        transport.write(HANDSHAKE.format(port=self.port).encode("ascii"))

    def data_received(self, data: bytes) -> None:
        buffer = self.buffer
        buffer += data
        if not self.upgraded:
            end = buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            status = bytes(buffer[: buffer.find(b"\r\n")])
            del buffer[: end + 4]
            if b" 101 " not in status:
                self.opened.set_exception(ConnectionError(status.decode("latin-1")))
                self.transport.abort()
                return
            self.upgraded = True
            self.opened.set_result(None)
        while len(buffer) >= 2:
            size = buffer[1] & 0x7F
            if size < 126:
                start = 2
            elif size == 126:
                if len(buffer) < 4:
                    return
                start, size = 4, int.from_bytes(buffer[2:4], "big")
            else:
                if len(buffer) < 10:
                    return
                start, size = 10, int.from_bytes(buffer[2:10], "big")
            end = start + size
            if len(buffer) < end:
                return
            opcode = buffer[0] & 0x0F
            del buffer[:end]
            if opcode == 0x8:
                self.transport.close()
            else:
                self.on_frame(self)

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.opened.done():
            self.opened.set_exception(exc or ConnectionError("closed during the handshake"))
        if not self.closed.done():
            self.closed.set_result(None)

    async def close(self) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(CLOSE_FRAME)
        try:
            await asyncio.wait_for(asyncio.shield(self.closed), 5)
        except asyncio.TimeoutError:
            self.transport.abort()


def raise_file_limit() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


async def connect(port: int, on_frame, limit: asyncio.Semaphore) -> Client:
    loop = asyncio.get_running_loop()
    async with limit:  # a bounded number of handshakes at once keeps the listen backlog from overflowing
        _, client = await loop.create_connection(lambda: Client(port, on_frame), "127.0.0.1", port)
        await asyncio.wait_for(client.opened, 30)
    return client


def cpu_seconds(pid: int) -> float:
    """The user and system CPU time a process has used so far."""
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


SWITCH_FIELDS = ("voluntary_ctxt_switches:", "nonvoluntary_ctxt_switches:")


def context_switches(pid: int) -> int:
    """The context switches (voluntary or not) of a process's live threads so far."""
    total = 0
    for task in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{task}/status") as status:
                total += sum(int(line.split()[1]) for line in status if line.startswith(SWITCH_FIELDS))
        except FileNotFoundError:
            pass  # the thread ended meanwhile
    return total


def percentile(sorted_values: list[float], fraction: float) -> float:
    if not sorted_values:
        return float("nan")
    return sorted_values[min(len(sorted_values) - 1, int(fraction * len(sorted_values)))]


async def echo(port: int, connections: int, size: int, duration: float, server_pid: int | None) -> dict:
    message = frame(b"x" * size, 0x1 if size <= TEXT_LIMIT else 0x2)
    round_trips: list[float] = []
    record = round_trips.append
    clock = time.perf_counter
    running = True

    def on_frame(client: Client) -> None:
        now = clock()
        record(now - client.sent_at)
        if running:
            client.sent_at = now
            client.transport.write(message)

    limit = asyncio.Semaphore(64)
    clients = await asyncio.gather(*(connect(port, on_frame, limit) for _ in range(connections)))
    start = clock()
    for client in clients:
        client.sent_at = start
        client.transport.write(message)
    await asyncio.sleep(WARM_UP)
    round_trips.clear()
    server_start = cpu_seconds(server_pid) if server_pid else 0.0
    switches_start = context_switches(server_pid) if server_pid else 0
    cpu_start, start = time.process_time(), clock()
    await asyncio.sleep(duration)
    count, elapsed, cpu = len(round_trips), clock() - start, time.process_time() - cpu_start
    server_cpu = cpu_seconds(server_pid) - server_start if server_pid else float("nan")
    switches = context_switches(server_pid) - switches_start if server_pid else float("nan")
    measured = sorted(round_trips[:count])
    running = False
    await asyncio.gather(*(client.close() for client in clients))
    return {
        "connections": connections,
        "size": size,
        "messages": count,
        "msg_per_s": count / elapsed,
        "p50_ms": percentile(measured, 0.50) * 1000,
        "p99_ms": percentile(measured, 0.99) * 1000,
        "client_cpu": cpu / elapsed,
        "server_cpu": server_cpu / elapsed,
        "server_us_per_msg": server_cpu / max(count, 1) * 1e6,
        "server_switches_per_msg": switches / max(count, 1),
    }


async def hold(port: int, connections: int) -> None:
    loop = asyncio.get_running_loop()
    stdin = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(stdin), sys.stdin)
    answered = 0
    all_answered = loop.create_future()

    def on_frame(client: Client) -> None:
        nonlocal answered
        answered += 1
        if answered == connections and not all_answered.done():
            all_answered.set_result(None)

    limit = asyncio.Semaphore(128)
    clients = await asyncio.gather(*(connect(port, on_frame, limit) for _ in range(connections)))
    print(f"open {len(clients)}", flush=True)
    message = frame(b"x" * 32, 0x1)
    while command := (await stdin.readline()).decode().strip():
        if command == "echo":
            for client in clients:
                client.transport.write(message)
            try:
                await asyncio.wait_for(asyncio.shield(all_answered), 60)
            except asyncio.TimeoutError:
                pass
            print(f"answered {answered}", flush=True)
        elif command == "close":
            break
    await asyncio.gather(*(client.close() for client in clients))


def main() -> None:
    raise_file_limit()
    mode, port, connections = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    if mode == "echo":
        size, duration = int(sys.argv[4]), float(sys.argv[5])
        server_pid = int(sys.argv[6]) if len(sys.argv) > 6 else None
        print(json.dumps(asyncio.run(echo(port, connections, size, duration, server_pid))), flush=True)
    else:
        asyncio.run(hold(port, connections))


if __name__ == "__main__":
    main()
