"""HTTP throughput and latency of TwistedGateway under concurrent keep-alive clients.

Serves a small gateway in a child process and drives it from this one with ``--clients`` keep-alive
connections (asyncio, one request in flight per connection) for ``--duration`` seconds, then prints
requests per second and the latency percentiles. Every response body is checked.

    .venv/bin/python bench/http_concurrency.py --clients 50 --duration 5
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import time


def serve(port: int, http_threads: int) -> None:
    """Serve ``GET /hello/<name>`` on the loopback port until killed; print ``ready`` once listening."""
    from twisted.internet import reactor

    from rolo import Router, route
    from rolo.gateway import Gateway
    from rolo.gateway.handlers import RouterHandler
    from rolo.serving.twisted import TwistedGateway

    @route("/hello/<name>")
    def hello(request, name: str) -> str:
        return f"hello {name}"

    router = Router()
    router.add(hello)
    gateway = Gateway(request_handlers=[RouterHandler(router, respond_not_found=True)])
    reactor.listenTCP(port, TwistedGateway(gateway, http_threads=http_threads), interface="127.0.0.1")
    reactor.callWhenRunning(lambda: print("ready", flush=True))
    reactor.run()


async def client(number: int, port: int, until: float, latencies: list[float]) -> int:
    """Send requests on one keep-alive connection until ``until``; return how many were answered."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    expected = f"hello c{number}".encode()
    request = f"GET /hello/c{number} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n".encode()
    answered = 0
    try:
        while time.perf_counter() < until:
            started = time.perf_counter()
            writer.write(request)
            head = await reader.readuntil(b"\r\n\r\n")
            status = head.split(b" ", 2)[1]
            length = next(
                int(line.split(b":", 1)[1])
                for line in head.split(b"\r\n")
                if line.lower().startswith(b"content-length:")
            )
            body = await reader.readexactly(length)
            if status != b"200" or body != expected:
                raise AssertionError(f"client {number} got {status!r} {body!r}")
            latencies.append(time.perf_counter() - started)
            answered += 1
    finally:
        writer.close()
    return answered


def cpu_seconds(pid: int) -> float | None:
    """User plus system CPU time a process has used (Linux), or None where /proc is missing."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def drive(port: int, server_pid: int, clients: int, duration: float, warmup: float) -> None:
    warm: list[float] = []
    await asyncio.gather(*(client(n, port, time.perf_counter() + warmup, warm) for n in range(clients)))

    latencies: list[float] = []
    cpu_before = cpu_seconds(server_pid)
    started = time.perf_counter()
    counts = await asyncio.gather(
        *(client(n, port, started + duration, latencies) for n in range(clients))
    )
    elapsed = time.perf_counter() - started
    cpu_after = cpu_seconds(server_pid)

    total = sum(counts)
    cuts = statistics.quantiles(latencies, n=100)
    print(f"clients: {clients}  duration: {elapsed:.1f}s  requests: {total}  (all answered and checked)")
    print(f"requests/s: {total / elapsed:.0f}")
    print(f"latency p50: {cuts[49] * 1000:.2f} ms  p99: {cuts[98] * 1000:.2f} ms  max: {max(latencies) * 1000:.2f} ms")
    if cpu_before is not None and cpu_after is not None:
        # less sensitive than requests/s to what else the machine runs
        print(f"server CPU: {(cpu_after - cpu_before) / total * 1e6:.0f} us/request")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--duration", type=float, default=5.0, help="seconds measured")
    parser.add_argument("--warmup", type=float, default=1.0, help="seconds before measuring")
    parser.add_argument("--port", type=int, default=8100)
    parser.add_argument("--http-threads", type=int, default=32)
    parser.add_argument("--serve", action="store_true", help="only run the server (used by the benchmark)")
    args = parser.parse_args()

    if args.serve:
        serve(args.port, args.http_threads)
        return

    server = subprocess.Popen(
        [sys.executable, __file__, "--serve", "--port", str(args.port), "--http-threads", str(args.http_threads)],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        if server.stdout is None or server.stdout.readline().strip() != "ready":
            raise SystemExit("the server did not start")
        asyncio.run(drive(args.port, server.pid, args.clients, args.duration, args.warmup))
    finally:
        server.terminate()
        server.wait(10)


if __name__ == "__main__":
    main()
