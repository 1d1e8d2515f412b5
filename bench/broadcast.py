"""Broadcast: a message published on one connection reaches every member of a room of 1,000.

The load generator publishes 32-byte messages on a ``/publish`` connection, one at a time (the next once
every member has the last) or 16 at a time, and measures deliveries per second and the time from publish
to each member's receipt. rolo pushes with ``Hub.broadcast`` from the publishing handler's thread,
websockets with its ``broadcast()``, plain Autobahn with a loop over the room's protocols.
"""

from __future__ import annotations

from bench import loadgen
from bench.processes import Ports, attempt, serving
from bench.report import Results, Table, comparisons, number, rate

CLIENTS = 1000
IN_FLIGHT = (1, 16)


def label(in_flight: int) -> str:
    return f"{in_flight} in flight"


def run(kinds: list[str], rounds: int, warmup: float, duration: float, ports: Ports) -> Results:
    rows = []
    with serving(kinds, ports) as servers:
        for round_number in range(rounds):
            for in_flight in IN_FLIGHT:
                for kind, server in servers.items():
                    figures = attempt(
                        f"broadcast, {label(in_flight)}, on {kind}",
                        lambda: loadgen.broadcast(server.port, CLIENTS, in_flight, warmup, duration, server.pid),
                    )
                    if figures is None:
                        continue
                    rows.append({"server": kind, "load": label(in_flight), "round": round_number, **figures})
                    print(
                        f"  round {round_number + 1} {label(in_flight):<12} {kind:<12} "
                        f"{figures['delivery_per_s']:>9,.0f} deliveries/s  p99 {figures['p99_ms']:.1f} ms",
                        flush=True,
                    )
    return Results(rows)


def tables(results: Results, kinds: list[str]) -> list[Table]:
    header = ["server"]
    for in_flight in IN_FLIGHT:
        header += [f"{label(in_flight)}: deliveries/s", "p50, ms", "p99, ms", "CPU per delivery, µs"]
    table = Table("broadcast", f"Broadcast to {CLIENTS:,} clients, 32 B, publish to receipt", header)
    for kind in kinds:
        row = [kind]
        for in_flight in IN_FLIGHT:
            load = label(in_flight)
            row += [
                rate(results.median(kind, load, "delivery_per_s")),
                number(results.median(kind, load, "p50_ms")),
                number(results.median(kind, load, "p99_ms")),
                number(results.median(kind, load, "server_us_per_delivery"), 2),
            ]
        table.rows.append(row)
    ratios = Table(
        "broadcast-ratios",
        "Broadcast: rolo over each peer (same rounds)",
        ["ratio"] + [f"{label(n)}: {what}" for n in IN_FLIGHT for what in ("deliveries/s", "p99")],
    )
    for ours, peer in comparisons(kinds):
        ratios.rows.append(
            [f"{ours} / {peer}"]
            + [
                number(results.ratio(ours, peer, label(n), key), 2, "×")
                for n in IN_FLIGHT
                for key in ("delivery_per_s", "p99_ms")
            ]
        )
    return [table, ratios]


def chart(results: Results, kinds: list[str], axes) -> None:
    """Deliveries per second, one and 16 broadcasts in flight."""
    width = 0.4
    for offset, in_flight in zip((-width / 2, width / 2), IN_FLIGHT):
        values = [results.median(kind, label(in_flight), "delivery_per_s") or 0 for kind in kinds]
        axes.barh([p + offset for p in range(len(kinds))], values, width, label=label(in_flight))
    axes.set_yticks(range(len(kinds)), kinds)
    axes.invert_yaxis()
    axes.set(title=f"broadcast to {CLIENTS:,} clients", xlabel="deliveries per second")
    axes.legend(fontsize="small")
    axes.grid(True, axis="x", alpha=0.3)
