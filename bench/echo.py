"""Echo: each connection sends its next message when the reply to the last one arrives.

32-byte text messages on 1, 10, 100 and 1,000 connections, then 4 connections of 64 KiB text and of 1 MiB
binary messages; every server runs in its own process for the whole part, the rounds interleaved (each
load on every server, back to back, before the next load).
"""

from __future__ import annotations

from bench import loadgen
from bench.processes import Ports, attempt, serving
from bench.report import Results, Table, comparisons, number, rate

LOADS = ((1, 32), (10, 32), (100, 32), (1000, 32), (4, 64 * 1024), (4, 1024 * 1024))
SMALL_LOADS = [load for load in LOADS if load[1] == 32]


def label(connections: int, size: int) -> str:
    if size == 32:
        return f"{connections:,} conn{'s' if connections > 1 else ''}"
    if size >= 1024 * 1024:
        return f"{connections} × {size // 1024 // 1024} MiB"
    return f"{connections} × {size // 1024} KiB"


LABELS = [label(*load) for load in LOADS]


def run(kinds: list[str], rounds: int, warmup: float, duration: float, ports: Ports) -> Results:
    rows = []
    with serving(kinds, ports) as servers:
        for round_number in range(rounds):
            for load in LOADS:
                for kind, server in servers.items():
                    figures = attempt(
                        f"echo {label(*load)} on {kind}",
                        lambda: loadgen.echo(server.port, *load, warmup, duration, server.pid),
                    )
                    if figures is None:
                        continue
                    rows.append({"server": kind, "load": label(*load), "round": round_number, **figures})
                    print(
                        f"  round {round_number + 1} {label(*load):>12} {kind:<15} {figures['msg_per_s']:>9,.0f} msg/s"
                        f" {figures['server_us_per_msg']:7.1f} µs/msg  client CPU {figures['client_cpu']:.0%}"
                        f"  {figures['tcp_segments_per_msg']:.2f} TCP segments/msg",
                        flush=True,
                    )
    return Results(rows)


def tables(results: Results, kinds: list[str]) -> list[Table]:
    throughput = Table("echo", "Echo: messages per second", ["server", *LABELS])
    cpu = Table(
        "echo-cpu",
        "Echo: server CPU per message, µs (context switches per message)",
        ["server", *LABELS],
    )
    latency = Table("echo-latency", "Echo: round trip p50 / p99, ms", ["server", *LABELS])
    for kind in kinds:
        throughput.rows.append([kind] + [rate(results.median(kind, load, "msg_per_s")) for load in LABELS])
        cpu.rows.append(
            [kind]
            + [
                f"{number(results.median(kind, load, 'server_us_per_msg'))} "
                f"({number(results.median(kind, load, 'server_switches_per_msg'), 2)})"
                for load in LABELS
            ]
        )
        latency.rows.append(
            [kind]
            + [
                f"{number(results.median(kind, load, 'p50_ms'), 2)} / {number(results.median(kind, load, 'p99_ms'), 2)}"
                for load in LABELS
            ]
        )
    client = [max((row["client_cpu"] for row in results.rows if row["load"] == load), default=None) for load in LABELS]
    throughput.rows.append(["load generator CPU, most"] + [number(c and c * 100, 0, "%") for c in client])
    ratios = Table("echo-ratios", "Echo: messages per second, rolo over each peer (same rounds)", ["ratio", *LABELS])
    for ours, peer in comparisons(kinds):
        ratios.rows.append(
            [f"{ours} / {peer}"] + [number(results.ratio(ours, peer, load, "msg_per_s"), 2, "×") for load in LABELS]
        )
    return [throughput, ratios, cpu, latency]


def chart(results: Results, kinds: list[str], axes_row) -> None:
    """Throughput, p99 round trip and server CPU per message against the number of connections."""
    panels = (
        ("msg_per_s", "32-byte echo: throughput", "messages per second"),
        ("p99_ms", "32-byte echo: round trip, p99", "ms"),
        ("server_us_per_msg", "32-byte echo: server CPU per message", "µs"),
    )
    counts = [connections for connections, _ in SMALL_LOADS]
    for axes, (key, title, unit) in zip(axes_row, panels):
        for kind in kinds:
            values = [results.median(kind, label(*load), key) for load in SMALL_LOADS]
            style = "o-" if kind == "rolo" else ("s--" if kind.startswith("rolo") else ".:")
            axes.plot(counts, [float("nan") if v is None else v for v in values], style, label=kind)
        axes.set(title=title, xlabel="connections", ylabel=unit)
        axes.set_xscale("log")
        if key == "p99_ms":
            axes.set_yscale("log")
        else:
            axes.set_ylim(bottom=0)
        axes.set_xticks(counts, [f"{n:,}" for n in counts])
        axes.grid(True, alpha=0.3)
    axes_row[0].legend(fontsize="small")
