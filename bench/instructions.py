"""Instructions a server executes per echoed message, or per HTTP request:
``python -m bench.instructions [--servers rolo,aiohttp] [--load echo|http]``.

A figure that other processes on the machine do not move, for changes too small for the timed benchmark to
see. Each server runs under ``valgrind --tool=callgrind``, with instrumentation off while it starts. The load
generator (``bench/loadgen.c``, its ``hold`` mode) opens ``--connections`` connections to ``/echo``; then, in
rounds, it sends one 32-byte text message on every connection and waits for every reply. After
``--warmup`` rounds with instrumentation on, each of ``--windows`` windows zeroes the counts
(``callgrind_control -z``), runs ``--rounds`` rounds and dumps them (``callgrind_control -d``): its
instructions per message are the dump's total over ``rounds × connections``, and the median of the
windows is the figure. With ``--load http`` the connections are HTTP/1.1 keep-alive ones, and a round sends
``GET /hello`` (answered with 11 bytes) on every connection, then reads every response: the figure is per
request. With ``--load open``, a round opens ``--connections`` new WebSocket connections to ``/echo``
(``hold``'s ``open``), all of their handshakes under way at once, and holds them, then waits for the server to be
idle (no CPU time in 0.5 s, read from ``/proc``), so that what an opening sets off after its
``101`` (rolo's handler reaching its first ``receive``) is counted with it: the figure is per opened
connection, and the connections of every round stay open to the end, as ``./dev bench --only scale``
holds its 10,000. The server's hash seed is fixed (``PYTHONHASHSEED=0``) so that dictionaries probe
alike from run to run; valgrind runs its threads in the order they asked for the CPU (``--fair-sched``);
and the time rolo's reactor waits for the handlers of a turn is stretched as valgrind slows the server
down (``BENCH_SLOWDOWN``), or every turn would end at its bound rather than when its handlers block, a
path both slower and varying with the machine's load. Run to run, the figure stays within about 1%.

What it counts: user-space instructions (callgrind's ``Ir``) of every thread of the server's process,
Python and C alike, for the whole of each message: reading, parsing, the handler, the reply, and the event
loop's turns in between. What it does not: time in the kernel (system calls, the TCP stack, scheduling,
context switches), time spent waiting (for the GIL, a lock, the next event), and the cost of an
instruction, which is not the same for all (cache misses, mispredicted branches, atomic operations).
Under valgrind the threads of a process run one at a time, so the interleaving of the reactor and handler
threads, and with it how many messages one ``epoll_wait`` returns, is not the one of a native run.
"""

from __future__ import annotations

import argparse
import os
import re
import socket
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

from bench import loadgen
from bench.processes import Ports, Server
from bench.servers import HELLO, PEERS

START_TIMEOUT = 600.0  # seconds a server may take to listen under valgrind

SLOWDOWN = 100
"""How many times slower than natively a Python server runs under callgrind, roughly: the time bounds of
rolo's handler turns are stretched as much (see ``bench.servers``)."""

# the threads take turns in the order they asked for the CPU (--fair-sched), which steadies the count; rolo
# runs a thread per WebSocket handler, more than valgrind's default bound of 500 at 1,000 connections
VALGRIND = ("valgrind", "-q", "--tool=callgrind", "--fair-sched=yes", "--instr-atstart=no", "--max-threads=5000")


def callgrind_control(option: str, pid: int) -> None:
    subprocess.run(["callgrind_control", option, str(pid)], check=True, capture_output=True, timeout=120)


def total_ir(dump: Path) -> int:
    """The total of instructions (``Ir``) in a callgrind dump."""
    found = re.search(r"^(?:summary|totals):\s+(\d+)", dump.read_text(), re.M)
    if found is None:
        raise RuntimeError(f"no total in {dump}")
    return int(found.group(1))


class _Echo:
    """The echo load: ``loadgen.c``'s ``hold`` mode on ``/echo``."""

    def __init__(self, port: int, connections: int) -> None:
        self._hold = loadgen.Hold(port, connections, connections, deflate=False)
        self.opened = self._hold.opened()[0]

    def round(self) -> int:
        """One message on each connection; how many were answered."""
        return self._hold.echo()[0]

    def close(self) -> None:
        self._hold.close()


class _Http:
    """The HTTP load: keep-alive connections to ``/hello``, from this process (the server is the slow side)."""

    def __init__(self, port: int, connections: int) -> None:
        self._request = f"GET /hello HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n".encode("ascii")
        self._connections = [socket.create_connection(("127.0.0.1", port)) for _ in range(connections)]
        self._pending = [b""] * connections  # bytes read past the last response, per connection
        self.opened = len(self._connections)

    def round(self) -> int:
        """``GET /hello`` on each connection, then each response read; how many answered ``HELLO``."""
        for connection in self._connections:
            connection.sendall(self._request)
        return sum(self._response(index) == HELLO for index in range(len(self._connections)))

    def _response(self, index: int) -> bytes:
        """The body of the next response on connection ``index`` (it must give its Content-Length)."""
        connection, data = self._connections[index], self._pending[index]
        while b"\r\n\r\n" not in data:
            data += self._received(connection)
        head, _, data = data.partition(b"\r\n\r\n")
        length = re.search(rb"\r\ncontent-length:\s*(\d+)", head, re.I)
        if length is None:
            raise RuntimeError(f"a response without Content-Length: {head!r}")
        size = int(length.group(1))
        while len(data) < size:
            data += self._received(connection)
        self._pending[index] = data[size:]
        return data[:size]

    @staticmethod
    def _received(connection: socket.socket) -> bytes:
        chunk = connection.recv(65536)
        if not chunk:
            raise RuntimeError("the server closed a keep-alive connection")
        return chunk

    def close(self) -> None:
        for connection in self._connections:
            connection.close()


class _Open:
    """The opening load: each round opens ``connections`` new WebSocket connections to ``/echo`` and holds
    them (the load generator's ``hold`` mode, with room for ``rounds`` rounds)."""

    def __init__(self, port: int, connections: int, rounds: int, server: Server) -> None:
        self._connections = connections
        self._server = server
        self._hold = loadgen.Hold(port, 0, connections, deflate=False, more=connections * rounds)
        self._hold.opened()
        self.opened = connections  # none held yet: each round checks that all of its own opened

    def round(self) -> int:
        """Open ``connections`` more and wait for the server to be idle; how many opened."""
        opened = self._hold.open(self._connections)[0]
        _settle(self._server)
        return opened

    def close(self) -> None:
        self._hold.close()


def _settle(server: Server, quiet: float = 0.5, timeout: float = 120.0) -> None:
    """Wait until ``server`` uses no CPU time for ``quiet`` seconds (at most ``timeout`` seconds)."""
    deadline = time.monotonic() + timeout
    before = server.cpu_seconds()
    while time.monotonic() < deadline:
        time.sleep(quiet)
        now = server.cpu_seconds()
        if now == before:
            return
        before = now
    raise RuntimeError(f"the server was still busy {timeout:.0f} s after a round")


LOADS = {"echo": _Echo, "http": _Http, "open": _Open}
"""The loads, by name: what a round sends on each connection (or, ``open``, how it opens them)."""

PART = {"echo": "echo", "http": "http", "open": "scale"}
"""The part of ``./dev bench`` (:data:`bench.servers.PEERS`) that a server serving each load takes part in."""


def measure(
    kind: str, connections: int, warmup: int, rounds: int, windows: int, keep: Path | None, load: str = "echo"
) -> list[float]:
    """Instructions per message (per request for the ``http`` load, per opened connection for ``open``)
    of server ``kind`` under ``load`` on ``connections`` connections, in each of ``windows`` windows of
    ``rounds`` rounds, one after the other in one server process. The windows' dumps are kept in ``keep`` if given, as
    ``KIND-LOAD-CONNECTIONS.callgrind.N``."""
    os.environ.update(PYTHONHASHSEED="0", BENCH_SLOWDOWN=str(SLOWDOWN))  # the server inherits them
    with tempfile.TemporaryDirectory(prefix="rolo-callgrind-") as directory:
        out = (keep or Path(directory)) / f"{kind}-{load}-{connections}.callgrind"
        wrapper = [*VALGRIND, f"--callgrind-out-file={out}"]
        server = Server(kind, Ports(0).next(), wrapper=wrapper, start_timeout=START_TIMEOUT)
        try:
            if load == "open":
                clients = _Open(server.port, connections, warmup + windows * rounds, server)
            else:
                clients = LOADS[load](server.port, connections)
            try:
                if clients.opened != connections:
                    raise RuntimeError(f"{clients.opened} of {connections} connections opened on {kind}")
                callgrind_control("--instr=on", server.pid)
                for _ in range(warmup):
                    clients.round()
                figures = []
                for window in range(1, windows + 1):
                    callgrind_control("-z", server.pid)
                    answered = sum(clients.round() for _ in range(rounds))
                    callgrind_control("-d", server.pid)
                    if answered != rounds * connections:
                        raise RuntimeError(f"{answered} of {rounds * connections} answered on {kind}")
                    figures.append(total_ir(Path(f"{out}.{window}")) / answered)
            finally:
                clients.close()
        finally:
            server.stop()
        return figures


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.instructions", description=__doc__.split("\n\n")[0])
    parser.add_argument("--servers", default="rolo", help="comma-separated kinds (of bench.servers)")
    parser.add_argument("--connections", default="10", help="comma-separated connection counts")
    parser.add_argument("--warmup", type=int, default=50, help="rounds before counting")
    parser.add_argument("--rounds", type=int, default=100, help="rounds in a window (a message per connection each)")
    parser.add_argument("--keep", type=Path, help="a directory to keep callgrind's dumps in (callgrind_annotate)")
    parser.add_argument("--windows", type=int, default=3, help="windows counted, one after the other")
    parser.add_argument(
        "--load", choices=sorted(LOADS), default="echo", help="WebSocket echo, HTTP GET, or WebSocket opening"
    )
    args = parser.parse_args()
    kinds = args.servers.split(",")
    if args.keep:
        args.keep.mkdir(parents=True, exist_ok=True)
    for kind in kinds:
        if kind not in PEERS or PART[args.load] not in PEERS[kind].parts:
            parser.error(f"{kind} does not serve the {args.load} benchmark")
    unit = {"http": "request", "open": "opened connection"}.get(args.load, "message")
    for connections in (int(count) for count in args.connections.split(",")):
        for kind in kinds:
            figures = measure(kind, connections, args.warmup, args.rounds, args.windows, args.keep, args.load)
            each = ", ".join(f"{figure:,.0f}" for figure in figures)
            print(
                f"{kind:<15} {connections:>5,} conns  {statistics.median(figures):>10,.0f} instructions per {unit}"
                f" (median of {each})",
                flush=True,
            )


if __name__ == "__main__":
    main()
