"""``python -m bench.workers``: 32-byte echo from one rolo process against ``twistd rolo --workers``.

Starts three servers, each ``twistd -n rolo`` in processes of its own, all kept running: one process (no
``--workers``), ``--workers N`` and ``--workers N --pin-workers`` (N: one per CPU by default). Each round runs
the load generator against each server in turn (interleaved, so that all three meet the same machine);
the figures are the medians of the rounds, the ratios the medians of each round's ratio to the one process.

The load generator is ``./dev bench``'s (``bench/loadgen.c``, epoll, framing by hand), in ``--clients``
processes sharing the connections. On a machine with as many CPUs as workers it competes with the workers
for them: its CPU use is in the table, and the workers cannot go faster than the CPUs the clients leave.
The ``server cores`` column is the CPU time of all the server's processes (workers and supervisor) over
the load's whole run (handshakes and warm-up included) divided by its length: how many CPUs it kept busy;
``CPU us`` divides it by the rate: the server's CPU time per message, which other load on the machine
disturbs much less than the rates (a little high: handshakes and warm-up count too).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

from bench import loadgen
from rolo import Router, route
from rolo.serving.twisted.workers import cpu_count
from rolo.websocket import WebSocketRequest

ROOT = Path(__file__).resolve().parent.parent
PYTHON = sys.executable
SIZE = 32
WARMUP = 0.5  # seconds of load before each measurement


@route("/echo", methods=["WEBSOCKET"])
def echo(request: WebSocketRequest) -> None:
    with request.accept() as websocket:
        for message in websocket:
            websocket.send(message)


router = Router()
router.add(echo)


class Server:
    """``twistd -n rolo --app bench.workers:router`` with ``options``, serving once it says where it listens."""

    def __init__(self, name: str, options: list[str]) -> None:
        self.name = name
        twistd = str(Path(PYTHON).parent / "twistd")
        command = [twistd, "-n", "--pidfile=", "rolo", "--app", "bench.workers:router"]
        command += ["--listen", "tcp:0:interface=127.0.0.1:backlog=1024", "--no-compression", "--ping-interval", "0"]
        self.process = subprocess.Popen(
            [*command, *options], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )
        self.pids = [self.process.pid]
        self.port = 0
        self._listening = threading.Event()
        # its log (a line per connection opened and closed) is read as it comes, and dropped once it serves
        threading.Thread(target=self._read_log, daemon=True).start()
        if not self._listening.wait(60) or not self.port:
            self.stop()
            raise RuntimeError(f"the {name} server did not start")

    def _read_log(self) -> None:
        for line in self.process.stdout:
            if self._listening.is_set():
                continue
            if match := re.search(r"worker \d+ \(pid (\d+)\) serving", line):
                self.pids.append(int(match.group(1)))
            if match := re.search(r"rolo listening at 127\.0\.0\.1:(\d+)", line):
                self.port = int(match.group(1))
                self._listening.set()
        self._listening.set()  # it exited

    def cpu_seconds(self) -> float:
        """The user and system CPU time of all its processes so far."""
        total = 0.0
        for pid in self.pids:
            with open(f"/proc/{pid}/stat") as stat:
                fields = stat.read().rpartition(")")[2].split()
            total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
        return total

    def stop(self) -> None:
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def run_load(server: Server, connections: int, clients: int, duration: float) -> dict:
    """One run of ``clients`` load processes sharing ``connections``: their summed rate, the worst p50
    and p99, their summed CPU, and the server's CPUs kept busy."""
    shares = [connections // clients + (i < connections % clients) for i in range(clients)]
    cpu, started = server.cpu_seconds(), time.monotonic()
    loads = [
        subprocess.Popen(
            # a server PID of 0: the load generator reports no server figures; server_cores below does
            [str(loadgen.binary()), "echo", str(server.port), "/echo",
             str(share), str(SIZE), str(WARMUP), str(duration), "0"],
            cwd=ROOT,
            stdout=subprocess.PIPE,
        )
        for share in shares
    ]
    results = []
    for load in loads:
        output, _ = load.communicate(timeout=duration + 120)
        if load.returncode:
            raise RuntimeError(f"the load generator failed against {server.name} (status {load.returncode})")
        results.append(json.loads(output))
    server_cores = (server.cpu_seconds() - cpu) / (time.monotonic() - started)
    return {
        "msg_per_s": sum(r["msg_per_s"] for r in results),
        "p50_ms": max(r["p50_ms"] for r in results),
        "p99_ms": max(r["p99_ms"] for r in results),
        "client_cpu": sum(r["client_cpu"] for r in results),
        "server_cores": server_cores,
    }


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.workers", description=__doc__.split("\n\n")[0])
    parser.add_argument("--workers", type=int, default=cpu_count(), help="worker processes (default: one per CPU)")
    parser.add_argument("--connections", type=int, default=100, help="connections, each echoing in turn")
    parser.add_argument("--clients", type=int, default=1, help="load generator processes sharing them")
    parser.add_argument("--duration", type=float, default=3.0, help="seconds each run is measured")
    parser.add_argument("--rounds", type=int, default=5, help="interleaved rounds; figures are medians")
    args = parser.parse_args()

    configurations = {
        "1 process": [],
        f"--workers {args.workers}": ["--workers", str(args.workers)],
        f"--workers {args.workers} --pin-workers": ["--workers", str(args.workers), "--pin-workers"],
    }
    servers: dict[str, Server] = {}
    try:
        for name, options in configurations.items():
            servers[name] = Server(name, options)
        rounds: list[dict[str, dict]] = []
        for number in range(1, args.rounds + 1):
            rounds.append(
                {
                    name: run_load(server, args.connections, args.clients, args.duration)
                    for name, server in servers.items()
                }
            )
            figures = ", ".join(f"{name} {r['msg_per_s']:,.0f} msg/s" for name, r in rounds[-1].items())
            print(f"round {number}: {figures}", flush=True)
    finally:
        for server in servers.values():
            server.stop()

    print(
        f"\nEcho, {SIZE} B, {args.connections} connections, {args.clients} load process(es) (bench/loadgen.c), "
        f"{os.cpu_count()} CPUs; medians of {args.rounds} interleaved rounds of {args.duration:g} s"
    )
    head = (
        f"{'server':<28}{'msg/s':>9}{'ratio':>8}{'p50 ms':>8}{'p99 ms':>8}{'server cores':>14}{'CPU us':>8}"
        f"{'client CPU':>12}"
    )
    print(head)
    print("-" * len(head))
    baseline = "1 process"
    for name in configurations:
        def median(key: str) -> float:
            return statistics.median(r[name][key] for r in rounds)

        ratio = statistics.median(r[name]["msg_per_s"] / r[baseline]["msg_per_s"] for r in rounds)
        cpu_us = statistics.median(r[name]["server_cores"] / r[name]["msg_per_s"] * 1e6 for r in rounds)
        print(
            f"{name:<28}{median('msg_per_s'):>9,.0f}{ratio:>7.2f}×{median('p50_ms'):>8.2f}{median('p99_ms'):>8.2f}"
            f"{median('server_cores'):>14.2f}{cpu_us:>8.0f}{median('client_cpu'):>12.0%}"
        )


if __name__ == "__main__":
    main()
