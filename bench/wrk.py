"""HTTP: ``wrk -t1 -c50`` on a ``GET`` answered with 11 bytes, keep-alive, against each server in turn.

wrk is Debian's (``./dev bench`` installs it); it runs on the load generators' CPUs. Each server answers
one request first, whose body is checked, then a one-second run warms it up; the rounds interleave.
"""

from __future__ import annotations

import re
import subprocess
import urllib.request

from bench.processes import Placement, Ports, attempt, on_cpus, serving
from bench.report import Results, Table, comparisons, number, rate
from bench.servers import HELLO

CONNECTIONS = 50
UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3}


def command(port: int, duration: float) -> list[str]:
    """The wrk command line for ``duration`` seconds (whole ones, at least one) against ``/hello``."""
    return ["wrk", "-t1", f"-c{CONNECTIONS}", f"-d{max(1, round(duration))}s", "--latency", f"http://127.0.0.1:{port}/hello"]


def parse(output: str) -> dict:
    """Requests per second, latency percentiles (ms), the count of requests and errors, from wrk's output."""
    figures = {"requests_per_s": float(re.search(r"Requests/sec:\s*([\d.]+)", output).group(1))}
    for percent in ("50", "99"):
        value, unit = re.search(rf"^\s*{percent}%\s+([\d.]+)(us|ms|s)\s*$", output, re.M).groups()
        figures[f"p{percent}_ms"] = float(value) * UNITS[unit]
    requests = int(re.search(r"(\d+) requests in", output).group(1))
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    socket_errors = re.search(r"Socket errors: (.*)", output)
    figures["requests"] = requests
    figures["errors"] = (int(errors.group(1)) if errors else 0) + (
        sum(int(n) for n in re.findall(r"\d+", socket_errors.group(1))) if socket_errors else 0
    )
    return figures


def wrk(port: int, duration: float) -> dict:
    """Run wrk against ``/hello``; its figures (:func:`parse`)."""
    output = subprocess.run(
        command(port, duration),
        check=True,
        capture_output=True,
        text=True,
        timeout=duration + 60,
        preexec_fn=on_cpus(Placement.client_cpus),
    ).stdout
    return parse(output)


def run(kinds: list[str], rounds: int, duration: float, ports: Ports) -> Results:
    rows = []
    with serving(kinds, ports) as servers:
        for kind, server in servers.items():
            with urllib.request.urlopen(f"http://127.0.0.1:{server.port}/hello", timeout=10) as response:
                if response.read() != HELLO:
                    raise RuntimeError(f"{kind} did not answer {HELLO!r}")
            wrk(server.port, 1)
        for round_number in range(rounds):
            for kind, server in servers.items():
                cpu = server.cpu_seconds()
                figures = attempt(f"wrk on {kind}", lambda: wrk(server.port, duration))
                if figures is None:
                    continue
                figures["server_us_per_request"] = (server.cpu_seconds() - cpu) / max(figures["requests"], 1) * 1e6
                rows.append({"server": kind, "load": "GET", "round": round_number, **figures})
                print(
                    f"  round {round_number + 1} {kind:<15} {figures['requests_per_s']:>9,.0f} req/s "
                    f"{figures['server_us_per_request']:6.0f} µs/req  p99 {figures['p99_ms']:.1f} ms"
                    f"  errors {figures['errors']}",
                    flush=True,
                )
    return Results(rows)


def tables(results: Results, kinds: list[str], duration: float) -> list[Table]:
    table = Table(
        "http",
        f"HTTP: wrk -t1 -c{CONNECTIONS} -d{max(1, round(duration))}s, GET of 11 bytes",
        ["server", "req/s", "server CPU per request, µs", "p50, ms", "p99, ms", "errors"],
        notes="Server CPU counts every process of the server (gunicorn's master and worker) during the run.",
    )
    for kind in kinds:
        table.rows.append(
            [
                kind,
                rate(results.median(kind, "GET", "requests_per_s")),
                number(results.median(kind, "GET", "server_us_per_request"), 0),
                number(results.median(kind, "GET", "p50_ms"), 2),
                number(results.median(kind, "GET", "p99_ms"), 2),
                number(results.median(kind, "GET", "errors"), 0),
            ]
        )
    ratios = Table(
        "http-ratios", "HTTP: rolo over each peer (same rounds)", ["ratio", "req/s", "CPU per request", "p99"]
    )
    for ours, peer in comparisons(kinds):
        ratios.rows.append(
            [f"{ours} / {peer}"]
            + [
                number(results.ratio(ours, peer, "GET", key), 2, "×")
                for key in ("requests_per_s", "server_us_per_request", "p99_ms")
            ]
        )
    return [table, ratios]


def chart(results: Results, kinds: list[str], axes) -> None:
    """Requests per second of each server."""
    axes.barh(range(len(kinds)), [results.median(kind, "GET", "requests_per_s") or 0 for kind in kinds])
    axes.set_yticks(range(len(kinds)), kinds)
    axes.invert_yaxis()
    axes.set(title=f"HTTP GET, wrk -c{CONNECTIONS}", xlabel="requests per second")
    axes.grid(True, axis="x", alpha=0.3)
