"""rolo on many CPUs: ``./dev bench --only cluster``, or alone, ``.venv/bin/python -m bench.cluster [--help]``.

``./dev bench --only cluster`` first compares one process with ``--workers 2`` (and ``--pin-workers``) on a
32-byte echo over 100 connections (:mod:`bench.workers`), then runs the measurements below, and writes
both as tables (:func:`part`); ``python -m bench.cluster`` runs the measurements below only, and prints
them.

Starts a Redis server (TCP, on loopback) and rolo servers (``twistd rolo --app bench.cluster:router``,
``--broker`` for the cluster), each a process of its own; connects the clients from this process (one
asyncio loop, frames read by hand, so that the clients cost little); and measures:

- latency: 1,000 clients, half on each of 2 processes, a handler on the first broadcasting 32-byte
  messages at 1,000/s; the time from the broadcast call to a client's receipt, on the other process
  (remote) and on the first (local). Rooms of ``--room-size`` clients (the broadcasts go round them), and
  once more with every client in one room;
- top rate: broadcasts per second to one room of 1,000 clients, as fast as a handler goes, each counted
  once every client has it: the in-process Hub on one process, against the cluster of two;
- broker restart: Redis killed (SIGKILL) and restarted a second later while a handler broadcasts
  1,000/s to clients of the other process; messages lost silently (neither received, nor reported
  failed to the handler, nor covered by a 1012 close to the client) and the time from Redis answering
  again to both processes being linked again.

This module is also the servers' application: a Hub named ``bench`` (with ``ROLO_BROKER``, which
``--broker`` sets, or in-process), a WebSocket route that joins a room, and an HTTP route whose handler
broadcasts.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import queue
import re
import shutil
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

from bench import workers
from bench.report import Results, Table, number, rate
from rolo import Request, Router, route
from rolo.serving.twisted.workers import cpu_count
from rolo.websocket import Hub, WebSocketRequest

ROOT = Path(__file__).resolve().parent.parent
PAYLOAD = 32
"""Bytes per message: a sequence number and a timestamp, padded."""

# -- the servers' application --------------------------------------------------------------------------

hub = Hub(name="bench", timeout=10)


@route("/rooms/<room>", methods=["WEBSOCKET"])
def join(request: WebSocketRequest, room: str):
    with request.accept() as websocket:
        hub.add(websocket, room)
        for _ in websocket:
            pass


@route("/publish", methods=["POST"])
def publish(request: Request):
    """Broadcast ``count`` messages to ``rooms`` rooms (``r0`` ...) in turn, ``rate`` a second (0: as fast
    as it goes). Each message is the sequence number and the ``time.monotonic_ns()`` of the call. Answers
    which were reported failed and how long it took."""
    count, rate, rooms = int(request.args["count"]), float(request.args["rate"]), int(request.args["rooms"])
    failed = []
    start = time.monotonic()
    for n in range(count):
        if rate:
            time.sleep(max(0.0, start + n / rate - time.monotonic()))  # pacing the load
        message = f"{n} {time.monotonic_ns()}".ljust(PAYLOAD)
        if hub.broadcast(f"r{n % rooms}", message).failed:
            failed.append(n)
    return {"failed": failed, "seconds": time.monotonic() - start}


@route("/members/<room>")
def members(request: Request, room: str):
    return {"count": hub.count(room)}


router = Router()
for _endpoint in (join, publish, members):
    router.add(_endpoint)

# -- processes ---------------------------------------------------------------------------------------------


class Process:
    """A child process whose output is read line by line, with when each line was read."""

    def __init__(self, command: list[str], env: dict[str, str] | None = None) -> None:
        self.process = subprocess.Popen(
            command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )
        self.lines: list[tuple[float, str]] = []
        self._new: queue.Queue[str | None] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.append((time.monotonic(), line))
            self._new.put(line)
        self._new.put(None)

    def wait_for(self, pattern: str, since: int = 0, timeout: float = 20.0) -> tuple[float, re.Match[str]]:
        """When the first line from index ``since`` on matching ``pattern`` was read, and the match."""
        deadline = time.monotonic() + timeout
        checked = since
        while True:
            for at, line in self.lines[checked:]:
                if match := re.search(pattern, line):
                    return at, match
            checked = max(checked, len(self.lines))
            try:
                if self._new.get(timeout=max(0.0, deadline - time.monotonic())) is None:
                    raise RuntimeError(f"{self.process.args[0]} exited:\n" + "".join(line for _, line in self.lines))
            except queue.Empty:
                output = "".join(line for _, line in self.lines)
                raise RuntimeError(f"no line matching {pattern!r}:\n{output}") from None

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Redis:
    def __init__(self) -> None:
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.ready_at = 0.0
        self.process: Process | None = None

    def start(self) -> None:
        command = [shutil.which("redis-server") or "redis-server", "--port", str(self.port), "--bind", "127.0.0.1",
                   "--save", "", "--appendonly", "no"]
        self.process = Process(command)
        self.ready_at, _ = self.process.wait_for("(?i)ready to accept connections")

    def kill(self) -> None:
        assert self.process is not None
        self.process.stop()


class Server:
    def __init__(self, broker: str | None) -> None:
        twistd = shutil.which("twistd", path=str(Path(sys.executable).parent)) or "twistd"
        command = [twistd, "-n", "--pidfile=", "rolo", "--app", "bench.cluster:router",
                   "--listen", "tcp:0:interface=127.0.0.1:backlog=2048", "--max-connections", "4096"]
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        env.pop("ROLO_BROKER", None)
        self.process = Process(command + (["--broker", broker] if broker else []), env)
        _, match = self.process.wait_for(r"rolo listening at 127\.0\.0\.1:(\d+)")
        self.port = int(match.group(1))

    def publish(self, count: int, rate: float, rooms: int) -> dict:
        url = f"http://127.0.0.1:{self.port}/publish?count={count}&rate={rate}&rooms={rooms}"
        with urllib.request.urlopen(urllib.request.Request(url, b"", method="POST"), timeout=600) as r:
            return json.loads(r.read())

    def count(self, room: str) -> int:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/members/{room}", timeout=30) as r:
            return json.loads(r.read())["count"]


# -- clients --------------------------------------------------------------------------------------------


class Client(asyncio.Protocol):
    """A WebSocket client that only reads: it records each text message's sequence number and latency
    (now minus the timestamp in it), and how the connection closed."""

    def __init__(self, path: str, opened: asyncio.Future, record: bool) -> None:
        self.path, self.opened, self.record = path, opened, record
        self.buffer = b""
        self.handshaken = False
        self.seqs: list[int] = []
        self.latencies: list[int] = []  # ns
        self.count = 0
        self.close_code: int | None = None
        self.got: asyncio.Event = asyncio.Event()
        self.wanted = 0

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        self.transport = transport
        key = base64.b64encode(os.urandom(16)).decode()
        transport.write(
            f"GET {self.path} HTTP/1.1\r\nHost: bench\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n".encode()
        )

    def data_received(self, data: bytes) -> None:
        now = time.monotonic_ns()
        buffer = self.buffer + data
        if not self.handshaken:
            end = buffer.find(b"\r\n\r\n")
            if end < 0:
                self.buffer = buffer
                return
            self.handshaken = True
            self.opened.set_result(None)
            buffer = buffer[end + 4 :]
        at = 0
        while len(buffer) - at >= 2:
            opcode, length = buffer[at] & 0x0F, buffer[at + 1] & 0x7F
            header = 2 if length < 126 else 4 if length == 126 else 10
            if length >= 126:
                if len(buffer) - at < header:
                    break
                length = int.from_bytes(buffer[at + 2 : at + header], "big")
            if len(buffer) - at < header + length:
                break
            payload = buffer[at + header : at + header + length]
            at += header + length
            if opcode == 1:
                self.count += 1
                if self.record:
                    seq, stamp = payload.split()
                    self.seqs.append(int(seq))
                    self.latencies.append(now - int(stamp))
                if self.count >= self.wanted:
                    self.got.set()
            elif opcode == 8:
                self.close_code = int.from_bytes(payload[:2], "big")
                self.got.set()
        self.buffer = buffer[at:]


async def connect_all(port: int, rooms: list[str], record: bool) -> list[Client]:
    loop = asyncio.get_running_loop()
    clients: list[Client] = []
    for start in range(0, len(rooms), 200):
        batch = []
        for room in rooms[start : start + 200]:
            opened = loop.create_future()
            _, client = await loop.create_connection(
                lambda r=room, o=opened: Client(f"/rooms/{r}", o, record), "127.0.0.1", port
            )
            clients.append(client)
            batch.append(opened)
        await asyncio.gather(*batch)
    return clients


async def members_settled(server: Server, room: str, count: int) -> None:
    """Wait until the hub counts ``count`` members in ``room`` (the last joins may still be on their way)."""
    for _ in range(600):
        if await asyncio.to_thread(server.count, room) >= count:
            return
        await asyncio.sleep(0.05)  # polling the server, which has no event for this
    raise RuntimeError(f"{room} never reached {count} members")


def percentile(values: list[int], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))] / 1e6 if ordered else float("nan")


# -- the measurements -----------------------------------------------------------------------------------


async def latency(servers: list[Server], clients: int, rate: float, seconds: float, room_size: int) -> dict:
    rooms = max(1, clients // room_size)
    half = clients // 2
    local = await connect_all(servers[0].port, [f"r{i % rooms}" for i in range(half)], True)
    remote = await connect_all(servers[1].port, [f"r{i % rooms}" for i in range(half, clients)], True)
    await members_settled(servers[0], "r0", len([c for c in local + remote if c.path.endswith("/r0")]))
    count = int(rate * seconds)
    started = time.monotonic()
    answer = await asyncio.to_thread(servers[0].publish, count, rate, rooms)
    per_room = {f"r{i}": len(range(i, count, rooms)) for i in range(rooms)}
    for client in local + remote:
        client.wanted = per_room[client.path.rsplit("/", 1)[1]]
        await asyncio.wait_for(client.got.wait(), 60)
    elapsed = time.monotonic() - started
    closed = sum(c.close_code is not None for c in local + remote)
    for client in local + remote:
        client.transport.abort()
    remote_ns = [x for c in remote for x in c.latencies]
    local_ns = [x for c in local for x in c.latencies]
    return {
        "clients": clients, "room_size": min(room_size, clients), "count": count, "rate": rate,
        "published_per_s": count / answer["seconds"], "failed": len(answer["failed"]),
        "deliveries": sum(c.count for c in local + remote), "seconds": elapsed, "closed": closed,
        "remote_p50_ms": percentile(remote_ns, 0.5), "remote_p99_ms": percentile(remote_ns, 0.99),
        "local_p50_ms": percentile(local_ns, 0.5), "local_p99_ms": percentile(local_ns, 0.99),
    }  # fmt: skip


def describe_latency(figures: dict) -> str:
    return (
        f"{figures['clients']} clients in rooms of {figures['room_size']}, {figures['count']} broadcasts asked at "
        f"{figures['rate']:,.0f}/s: published at {figures['published_per_s']:,.0f}/s, {figures['failed']} failed, "
        f"{figures['deliveries']:,} deliveries in {figures['seconds']:.2f} s, {figures['closed']} clients closed "
        f"(too slow)\n    remote p50 {figures['remote_p50_ms']:.2f} ms  p99 {figures['remote_p99_ms']:.2f} ms   "
        f"local p50 {figures['local_p50_ms']:.2f} ms  p99 {figures['local_p99_ms']:.2f} ms"
    )


async def top_rate(servers: list[Server], clients: int, count: int) -> float:
    """Broadcasts per second to one room of ``clients`` spread over ``servers``, until all have all."""
    groups = [await connect_all(s.port, ["r0"] * (clients // len(servers)), False) for s in servers]
    everyone = [c for g in groups for c in g]
    await members_settled(servers[0], "r0", len(everyone) if len(servers) > 1 else len(groups[0]))
    for client in everyone:
        client.wanted = count
    started = time.monotonic()
    await asyncio.to_thread(servers[0].publish, count, 0, 1)
    for client in everyone:
        await asyncio.wait_for(client.got.wait(), 120)
    rate = count / (time.monotonic() - started)
    closed = [c.close_code for c in everyone if c.close_code is not None]
    for client in everyone:
        client.transport.abort()
    if closed:
        raise RuntimeError(f"{len(closed)} clients were closed: {closed[:5]}")
    return rate


async def restart(servers: list[Server], redis: Redis, rate: float, seconds: float, clients: int) -> dict:
    remote = await connect_all(servers[1].port, ["r0"] * clients, True)
    await members_settled(servers[0], "r0", clients)
    marks = [len(s.process.lines) for s in servers]
    publishing = asyncio.create_task(asyncio.to_thread(servers[0].publish, int(rate * seconds), rate, 1))
    await asyncio.sleep(seconds / 4)  # load running; then the broker dies for a second
    redis.kill()
    await asyncio.sleep(1.0)
    await asyncio.to_thread(redis.start)
    back = [
        await asyncio.to_thread(server.process.wait_for, "linked to the broker", mark)
        for server, mark in zip(servers, marks)
    ]
    answer = await publishing
    await asyncio.sleep(0.5)  # the last messages' way to the clients
    failed = set(answer["failed"])
    silent = 0
    count = int(rate * seconds)
    for client in remote:
        if client.close_code != 1012:  # a client closed with 1012 was told it may have missed messages
            seen = set(client.seqs)
            silent += sum(1 for n in range(count) if n not in seen and n not in failed)
        if client.seqs != sorted(set(client.seqs)):
            silent += 1_000_000  # out of order or twice: as bad
        client.transport.abort()
    return {
        "count": count, "rate": rate, "clients": clients, "lost_silently": silent, "failed": len(failed),
        "closed": sum(c.close_code is not None for c in remote),
        "codes": sorted({c.close_code for c in remote if c.close_code is not None}),
        "relinked_s": max(at for at, _ in back) - redis.ready_at,
    }  # fmt: skip


def describe_restart(figures: dict) -> str:
    return (
        f"{figures['count']} broadcasts at {figures['rate']:,.0f}/s to {figures['clients']} clients of the other "
        f"process, Redis killed and restarted after 1 s: lost silently {figures['lost_silently']}; reported failed "
        f"to the handler {figures['failed']}; clients closed {figures['closed']} (codes {figures['codes']}); "
        f"linked again {figures['relinked_s']:.3f} s after Redis answered"
    )


async def measure(args: argparse.Namespace, report=print) -> dict:
    """Run the measurements ``args.only`` names; ``report`` gets each one's text as it is done. Returns
    the figures: ``latency`` (one per room size), ``alone`` and ``together`` (broadcasts/s), ``restart``."""
    redis = Redis()
    redis.start()
    started: list[Server] = []
    figures: dict = {}

    def servers(n: int, broker: bool) -> list[Server]:
        made = [Server(redis.url if broker else None) for _ in range(n)]
        started.extend(made)
        return made

    try:
        if "latency" in args.only:
            cluster = servers(2, True)
            figures["latency"] = []
            for room_size in (args.room_size, args.clients):
                figures["latency"].append(await latency(cluster, args.clients, args.rate, args.seconds, room_size))
                report(describe_latency(figures["latency"][-1]))
        if "rate" in args.only:
            figures["alone"] = await top_rate(servers(1, False), args.clients, args.count)
            figures["together"] = await top_rate(servers(2, True), args.clients, args.count)
            report(
                f"top broadcast rate to one room of {args.clients}: in-process Hub on one process "
                f"{figures['alone']:,.0f}/s, cluster of two {figures['together']:,.0f}/s: "
                f"{figures['together'] / figures['alone']:.2f}x"
            )
        if "restart" in args.only:
            figures["restart"] = await restart(servers(2, True), redis, args.rate, 4.0, 10)
            report(describe_restart(figures["restart"]))
    finally:
        for server in started:
            server.process.stop()
        redis.kill()
    return figures


def options(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.cluster", description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, default=1000)
    parser.add_argument("--rate", type=float, default=1000.0, help="broadcasts a second for latency and restart")
    parser.add_argument("--seconds", type=float, default=3.0, help="how long the latency runs last")
    parser.add_argument("--room-size", type=int, default=10, help="clients per room in the first latency run")
    parser.add_argument("--count", type=int, default=300, help="broadcasts in the top-rate runs")
    parser.add_argument("--only", nargs="+", default=["latency", "rate", "restart"],
                        choices=["latency", "rate", "restart"])  # fmt: skip
    return parser.parse_args(argv)


# -- ./dev bench --only cluster -----------------------------------------------------------------------------

ECHO_CONNECTIONS = 100


def part(rounds: int, duration: float) -> tuple[list[Table], Results]:
    """``./dev bench``'s cluster part: the workers' echo over ``rounds`` interleaved rounds of ``duration``
    seconds, then the Hub's measurements once per round (latency with ``duration`` seconds of broadcasts).
    Returns the tables and the figures (one row per measurement and round)."""
    count = min(2, cpu_count())  # the goal (issue 14) is for two workers against one process
    configurations = {
        "1 process": [],
        f"--workers {count}": ["--workers", str(count)],
        f"--workers {count} --pin-workers": ["--workers", str(count), "--pin-workers"],
    }
    rows: list[dict] = []
    servers: dict[str, workers.Server] = {}
    try:
        for name, extra in configurations.items():
            servers[name] = workers.Server(name, extra)
        for number in range(rounds):
            for name, server in servers.items():
                figures = workers.run_load(server, ECHO_CONNECTIONS, 1, duration)
                figures["cpu_us"] = figures["server_cores"] / figures["msg_per_s"] * 1e6
                rows.append({"server": name, "load": "echo", "round": number, **figures})
                print(f"  round {number + 1} echo {name:<28} {figures['msg_per_s']:>9,.0f} msg/s", flush=True)
    finally:
        for server in servers.values():
            server.stop()
    hub = options(["--seconds", str(duration)])
    for number in range(rounds):
        figures = asyncio.run(measure(hub, report=lambda text: print("  " + text, flush=True)))
        for measured in figures["latency"]:
            rows.append({"server": f"rooms of {measured['room_size']}", "load": "latency", "round": number, **measured})
        rows.append({"server": "rate", "load": "rate", "round": number, "alone": figures["alone"],
                     "together": figures["together"], "ratio": figures["together"] / figures["alone"]})  # fmt: skip
        rows.append({"server": "restart", "load": "restart", "round": number, **figures["restart"]})
    results = Results(rows)
    return tables(results, list(configurations), hub), results


def tables(results: Results, configurations: list[str], hub: argparse.Namespace) -> list[Table]:
    echo = Table(
        "cluster-workers",
        f"Echo, 32 B, {ECHO_CONNECTIONS} connections: one process against worker processes (SO_REUSEPORT)",
        ["server", "msg/s", "ratio", "p50, ms", "p99, ms", "server cores", "CPU per message, µs", "client CPU"],
    )
    for name in configurations:
        echo.rows.append([
            name,
            rate(results.median(name, "echo", "msg_per_s")),
            number(results.ratio(name, configurations[0], "echo", "msg_per_s"), 2, "×"),
            number(results.median(name, "echo", "p50_ms"), 2),
            number(results.median(name, "echo", "p99_ms"), 2),
            number(results.median(name, "echo", "server_cores"), 2),
            number(results.median(name, "echo", "cpu_us")),
            number(100 * (results.median(name, "echo", "client_cpu") or float("nan")), 0, "%"),
        ])  # fmt: skip
    broadcast = Table(
        "cluster-hub",
        f"A Hub over Redis, two processes: {hub.clients:,} clients, 32 B, {hub.rate:,.0f} broadcasts/s from a "
        "handler on the first",
        ["rooms", "remote p50, ms", "remote p99, ms", "local p50, ms", "local p99, ms", "failed", "closed"],
    )
    for size in sorted({row["room_size"] for row in results.rows if row["load"] == "latency"}):
        name = f"rooms of {size}"
        broadcast.rows.append(
            [name]
            + [number(results.median(name, "latency", key), 2) for key in
               ("remote_p50_ms", "remote_p99_ms", "local_p50_ms", "local_p99_ms")]
            + [number(results.median(name, "latency", key), 0) for key in ("failed", "closed")]
        )  # fmt: skip
    top = Table(
        "cluster-rate",
        f"Top broadcast rate to one room of {hub.clients:,}, and a broker restart under load",
        ["measure", "value"],
        [
            ["in-process Hub, one process, broadcasts/s", rate(results.median("rate", "rate", "alone"))],
            ["two processes over Redis, broadcasts/s", rate(results.median("rate", "rate", "together"))],
            ["ratio", number(results.median("rate", "rate", "ratio"), 2, "×")],
            ["restart: messages lost silently (worst round)",
             number(max(results.values("restart", "restart", "lost_silently").values(), default=None), 0)],
            ["restart: reported failed to the handler", number(results.median("restart", "restart", "failed"), 0)],
            ["restart: linked again after Redis answered, s",
             number(results.median("restart", "restart", "relinked_s"), 3)],
        ],
    )  # fmt: skip
    return [echo, broadcast, top]


def main() -> None:
    args = options()
    print("A noisy, shared 2-CPU machine gives noisy figures: compare the ratios of one run.\n")
    asyncio.run(measure(args))


if __name__ == "__main__":
    main()
