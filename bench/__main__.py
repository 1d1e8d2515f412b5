"""``python -m bench`` (or ``./dev bench``): rolo against plain Autobahn, in one run.

Starts the rolo echo server and the Autobahn echo server (:mod:`bench.servers`) and runs the load
generator (:mod:`bench.load`) against each in turn, every one a process of its own; prints the table of
throughput, round trips and the rolo/Autobahn ratios; measures how many bytes each open connection costs the
server; and draws the chart into ``docs/bench.png``.
"""

from __future__ import annotations

import argparse
import json
import os
import select
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

PYTHON = sys.executable
ROOT = Path(__file__).resolve().parent.parent
SERVERS = ("rolo", "autobahn")
SWEEP = (1, 10, 50, 100)  # connections, 32-byte messages: the chart, and the table's 10 and 100
TABLE_LOADS = ((10, 32), (100, 32), (4, 1024 * 1024))
SMALL, LARGE = 32, 1024 * 1024


class Placement:
    """Where the processes run: anywhere (the operating system's choice), or with ``--pin`` every server
    on the last CPU and the clients on the others, as one would deploy a server process per CPU."""

    server_cpus: set[int] | None = None
    client_cpus: set[int] | None = None

    @classmethod
    def pin(cls) -> None:
        cpus = sorted(os.sched_getaffinity(0))
        if len(cpus) < 2:
            raise SystemExit("--pin needs two CPUs: one for the servers, the rest for the clients")
        cls.server_cpus, cls.client_cpus = {cpus[-1]}, set(cpus[:-1])


def on_cpus(cpus: set[int] | None):
    """A ``preexec_fn`` that keeps a child process (and its threads) on ``cpus``, or ``None``."""
    if cpus is None:
        return None
    return lambda: os.sched_setaffinity(0, cpus)


class Server:
    """A benchmark server in a process of its own."""

    def __init__(self, kind: str, port: int) -> None:
        self.kind, self.port = kind, port
        self.process = subprocess.Popen(
            [PYTHON, "-m", "bench.servers", kind, str(port)],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            preexec_fn=on_cpus(Placement.server_cpus),
        )
        ready, _, _ = select.select([self.process.stdout], [], [], 30)
        if not ready or self.process.stdout.readline().strip() != b"ready":
            self.stop()
            raise RuntimeError(f"the {kind} server did not start on port {port}")

    def status(self, field: str) -> int:
        """A number from /proc/PID/status (``VmRSS`` in KiB, ``Threads``)."""
        for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
        raise KeyError(field)

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def run_echo(server: Server, connections: int, size: int, duration: float) -> dict:
    command = [PYTHON, "-m", "bench.load", "echo", str(server.port), str(connections), str(size), str(duration)]
    command.append(str(server.process.pid))
    output = subprocess.run(
        command,
        cwd=ROOT,
        check=True,
        capture_output=True,
        timeout=duration + 120,
        preexec_fn=on_cpus(Placement.client_cpus),
    )
    return json.loads(output.stdout)


def read_count(holder: subprocess.Popen, word: str) -> int:
    """The number in a holding client's next line, ``WORD N``."""
    line = holder.stdout.readline().split()
    if len(line) != 2 or line[0] != word:
        raise RuntimeError(f"a holding client failed (exit status {holder.poll()}); see its output above")
    return int(line[1])


@dataclass
class ScaleResult:
    kind: str
    connections: int
    opened: int
    answered: int
    open_seconds: float
    answer_seconds: float
    idle_kib: int
    loaded_kib: int
    threads: int

    @property
    def bytes_per_connection(self) -> float:
        return (self.loaded_kib - self.idle_kib) * 1024 / max(self.opened, 1)


def run_scale(kind: str, port: int, connections: int, clients: int) -> ScaleResult:
    """Open ``connections`` on a fresh server, echo once on each once all are open, read the server's RSS."""
    server = Server(kind, port)
    holders: list[subprocess.Popen] = []
    try:
        run_echo(server, 1, SMALL, 0.2)  # load what the first connection loads, so idle means warm
        idle = server.status("VmRSS")
        shares = [connections // clients + (i < connections % clients) for i in range(clients)]
        started = time.perf_counter()
        for share in shares:
            holders.append(
                subprocess.Popen(
                    [PYTHON, "-m", "bench.load", "hold", str(port), str(share)],
                    cwd=ROOT,
                    stdin=subprocess.PIPE,
                    stdout=subprocess.PIPE,
                    text=True,
                    preexec_fn=on_cpus(Placement.client_cpus),
                )
            )
        opened = sum(read_count(holder, "open") for holder in holders)
        open_seconds = time.perf_counter() - started
        started = time.perf_counter()
        for holder in holders:
            holder.stdin.write("echo\n")
            holder.stdin.flush()
        answered = sum(read_count(holder, "answered") for holder in holders)
        answer_seconds = time.perf_counter() - started
        result = ScaleResult(
            kind, connections, opened, answered, open_seconds, answer_seconds, idle,
            server.status("VmRSS"), server.status("Threads"),
        )
        for holder in holders:
            holder.stdin.write("close\n")
            holder.stdin.flush()
        for holder in holders:
            holder.wait(60)
        return result
    finally:
        for holder in holders:
            if holder.poll() is None:
                holder.kill()
        server.stop()


def label(connections: int, size: int) -> str:
    return f"{connections} × {'1 MiB' if size == LARGE else f'{size} B'}"


def median_cell(rounds: list[dict], kind: str, key: str) -> float:
    return statistics.median(r[kind][key] for r in rounds)


def median_ratio(rounds: list[dict], key: str) -> float:
    return statistics.median(r["rolo"][key] / r["autobahn"][key] for r in rounds)


def print_table(results: dict[tuple[int, int], list[dict]], loads) -> None:
    head = (
        f"{'load':<13}{'rolo msg/s':>11}{'p50 ms':>8}{'p99 ms':>8}{'CPU us':>8}{'cs':>5}"
        f"{'Autobahn msg/s':>16}{'p50 ms':>8}{'p99 ms':>8}{'CPU us':>8}{'cs':>5}"
        f"{'ratio msg/s':>12}{'p99':>7}{'CPU':>7}{'client':>8}"
    )
    print(head)
    print("-" * len(head))
    for load in loads:
        rounds = results[load]
        cpu = max(r[kind]["client_cpu"] for r in rounds for kind in SERVERS)
        row = f"{label(*load):<13}"
        for kind, width in (("rolo", 11), ("autobahn", 16)):
            row += (
                f"{median_cell(rounds, kind, 'msg_per_s'):>{width},.0f}"
                f"{median_cell(rounds, kind, 'p50_ms'):>8.2f}{median_cell(rounds, kind, 'p99_ms'):>8.2f}"
                f"{median_cell(rounds, kind, 'server_us_per_msg'):>8.0f}"
                f"{median_cell(rounds, kind, 'server_switches_per_msg'):>5.1f}"
            )
        row += (
            f"{median_ratio(rounds, 'msg_per_s'):>11.2f}×{median_ratio(rounds, 'p99_ms'):>6.2f}×"
            f"{median_ratio(rounds, 'server_us_per_msg'):>6.2f}×{cpu:>8.0%}"
        )
        print(row)
    print(
        "CPU us: the server's CPU time per message (user + system), which other load on the machine disturbs\n"
        "less than the rates; cs: the server's context switches per message; client: the most CPU the load\n"
        "generator used (near 100%, it is the bottleneck)."
    )


def draw_chart(results: dict[tuple[int, int], list[dict]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = (
        ("msg_per_s", "throughput", "messages per second"),
        ("p99_ms", "round trip, 99th percentile", "ms"),
        ("server_us_per_msg", "server CPU per message", "µs"),
    )
    figure, axes_row = plt.subplots(1, len(panels), figsize=(14, 4))
    for axes, (key, title, unit) in zip(axes_row, panels):
        for kind, name, style in (("rolo", "rolo", "o-"), ("autobahn", "Autobahn", "s--")):
            axes.plot(SWEEP, [median_cell(results[(n, SMALL)], kind, key) for n in SWEEP], style, label=name)
        axes.set(title=f"32-byte echo: {title}", xlabel="connections", ylabel=unit)
        axes.set_xscale("log")
        axes.set_xticks(SWEEP, [str(n) for n in SWEEP])
        axes.set_ylim(bottom=0)
        axes.grid(True, alpha=0.3)
        axes.legend()
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=100)


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=3.0, help="seconds each load is measured")
    parser.add_argument("--repeat", type=int, default=1, help="rounds of every load; cells are medians")
    parser.add_argument("--port", type=int, default=8600, help="first of the four ports used")
    parser.add_argument("--scale", type=int, default=10_000, help="connections held open (0: skip)")
    parser.add_argument("--scale-clients", type=int, default=2, help="load processes holding them")
    parser.add_argument("--chart", type=Path, default=ROOT / "docs" / "bench.png", help="the PNG written")
    parser.add_argument("--only", choices=("echo", "scale"), help="run one part only")
    parser.add_argument(
        "--pin", action="store_true", help="servers on the last CPU, clients on the others (Linux)"
    )
    args = parser.parse_args()
    if args.pin:
        Placement.pin()
    placement = "servers pinned to one CPU, clients to the others" if args.pin else "processes unpinned"

    if args.only != "scale":
        loads = [(n, SMALL) for n in SWEEP] + [(4, LARGE)]
        results: dict[tuple[int, int], list[dict]] = {load: [] for load in loads}
        servers = {"rolo": Server("rolo", args.port), "autobahn": Server("autobahn", args.port + 1)}
        try:
            for _ in range(args.repeat):
                for load in loads:
                    # the two servers back to back, so that both meet the same machine
                    results[load].append(
                        {kind: run_echo(servers[kind], *load, args.duration) for kind in SERVERS}
                    )
        finally:
            for server in servers.values():
                server.stop()
        print(
            f"\nEcho, {args.duration:g} s per load, median of {args.repeat} round(s), {placement}; "
            "ratios are rolo / Autobahn"
        )
        print_table(results, [(n, SMALL) for n in SWEEP] + [(4, LARGE)])
        draw_chart(results, args.chart)
        print(f"chart: {os.path.relpath(args.chart)}")

    if args.only != "echo" and args.scale:
        print(f"\nConnection scale: {args.scale:,} connections open at once, one echo on each once all are open")
        for offset, kind in enumerate(SERVERS, start=2):
            r = run_scale(kind, args.port + offset, args.scale, args.scale_clients)
            print(
                f"{kind:<9} opened {r.opened:,} in {r.open_seconds:.1f} s, answered {r.answered:,} in "
                f"{r.answer_seconds:.2f} s; RSS idle {r.idle_kib / 1024:.0f} MiB, loaded "
                f"{r.loaded_kib / 1024:.0f} MiB: {r.bytes_per_connection / 1000:.1f} KB per connection "
                f"({r.threads:,} threads)"
            )


if __name__ == "__main__":
    main()
