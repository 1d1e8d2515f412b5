"""Connections: many opened at once on a fresh server, one echo on each, and what each costs in memory.

For each server, twice: without permessage-deflate, and with it offered (and accepted where the server
can); the second only in the first round, as what it is for, memory, varies little from round to round.
The connections are opened a batch of handshakes at a time; once all are open, the server's resident
memory above the warm, idle server is the cost of an idle connection; then one 32-byte message goes to
each (compressed where deflate was negotiated) and the memory is read again: what a connection costs
once its compressor and decompressor have been used. Then :data:`BURSTS` more messages go to each, one
burst at a time, and the time to answer all is the median burst's: whether a burst sets off a full garbage
collection (half a second with 10,000 connections open under an ASGI server) depends on where the opening
left the collector's count, so one burst draws it or not, where a run of them pays it about as often as
its heap makes it due.
"""

from __future__ import annotations

import statistics

from bench import loadgen
from bench.processes import Ports, Server, attempt
from bench.report import Results, Table, comparisons, number

VARIANTS = ("plain", "deflate")

BURSTS = 5
"""Bursts of one message on each connection, the time to answer all being the median burst's."""


def measure(kind: str, port: int, connections: int, at_once: int, deflate: bool) -> dict:
    server = Server(kind, port, deflate=deflate)
    hold = None
    try:
        loadgen.echo(port, 1, 32, 0.0, 0.2, server.pid)  # load what a first connection loads: warm, idle
        idle_kib, cpu = server.rss_kib(), server.cpu_seconds()
        hold = loadgen.Hold(port, connections, at_once, deflate)
        opened, open_seconds, negotiated, client_cpu = hold.opened()
        open_kib, open_cpu = server.rss_kib(), server.cpu_seconds() - cpu
        answered, seconds = hold.echo()
        used_kib = server.rss_kib()
        bursts = [seconds]
        for _ in range(BURSTS - 1):
            count, seconds = hold.echo()
            answered = min(answered, count)
            bursts.append(seconds)
        answer_seconds = statistics.median(bursts)
    finally:
        if hold is not None:
            hold.close()
        server.stop()
    per = max(opened, 1)
    figures = {
        "opened": opened,
        "open_s": open_seconds,
        "open_cpu_us": open_cpu / per * 1e6,
        "client_open_cpu": client_cpu / max(open_seconds, 1e-9),
        "answered": answered,
        "answer_s": answer_seconds,
        "idle_kib": (open_kib - idle_kib) / per,
        "used_kib": (used_kib - idle_kib) / per,
        "negotiated": negotiated,
    }
    if deflate and not negotiated:  # the server has no permessage-deflate: nothing measured
        return dict.fromkeys(figures)
    return figures


def answer(results: Results, kind: str, connections: int) -> str:
    """The time to answer one message on each connection (the median burst's), with how many were answered
    in the burst that answered fewest if not all."""
    seconds, answered = results.median(kind, "plain", "answer_s"), results.median(kind, "plain", "answered")
    if answered is not None and answered < connections:
        return f"{number(seconds, 2)} ({answered:,.0f} answered)"
    return number(seconds, 2)


def run(kinds: list[str], rounds: int, connections: int, at_once: int, ports: Ports) -> Results:
    rows = []
    for round_number in range(rounds):
        for kind in kinds:
            for variant in VARIANTS if round_number == 0 else VARIANTS[:1]:
                figures = attempt(
                    f"connections ({variant}) on {kind}",
                    lambda: measure(kind, ports.next(), connections, at_once, variant == "deflate"),
                )
                if figures is None:
                    continue
                rows.append({"server": kind, "load": variant, "round": round_number, **figures})
                if figures["opened"] is not None:
                    print(
                        f"  round {round_number + 1} {variant:<8} {kind:<15} opened {figures['opened']:,} in "
                        f"{figures['open_s']:.2f} s (client CPU {figures['client_open_cpu']:.0%}), "
                        f"answered {figures['answered']:,} in {figures['answer_s']:.2f} s,"
                        f" {figures['idle_kib']:.1f} KiB idle, {figures['used_kib']:.1f} KiB used",
                        flush=True,
                    )
    return Results(rows)


def tables(results: Results, kinds: list[str], connections: int) -> list[Table]:
    table = Table(
        "scale",
        f"Connections: {connections:,} opened at once, then one message on each",
        [
            "server",
            "open, s",
            "server CPU per open, µs",
            "answer all, s",
            "RSS per idle conn, KiB",
            "deflate negotiated: open, s",
            "idle, KiB",
            "after a message, KiB",
        ],
        notes="Memory is the server's resident set (all its processes) above the warm, idle server, per "
        "connection; with deflate, the last column is after one compressed message each way. "
        f"{'–'}: the server has no permessage-deflate. Answer all: the median of {BURSTS} bursts of one "
        "message on each connection.",
    )
    for kind in kinds:
        def cell(variant, key, digits=1):
            return number(results.median(kind, variant, key), digits)

        table.rows.append(
            [
                kind,
                cell("plain", "open_s", 2),
                cell("plain", "open_cpu_us", 0),
                answer(results, kind, connections),
                cell("plain", "idle_kib"),
                cell("deflate", "open_s", 2),
                cell("deflate", "idle_kib"),
                cell("deflate", "used_kib"),
            ]
        )
    ratios = Table(
        "scale-ratios",
        "Connections: rolo over each peer (same rounds; below 1 is better)",
        ["ratio", "open time", "answer time", "RSS per idle conn", "with deflate, after a message"],
    )
    for ours, peer in comparisons(kinds):
        ratios.rows.append(
            [
                f"{ours} / {peer}",
                number(results.ratio(ours, peer, "plain", "open_s"), 2, "×"),
                number(results.ratio(ours, peer, "plain", "answer_s"), 2, "×"),
                number(results.ratio(ours, peer, "plain", "idle_kib"), 2, "×"),
                number(results.ratio(ours, peer, "deflate", "used_kib"), 2, "×"),
            ]
        )
    return [table, ratios]


def chart(results: Results, kinds: list[str], axes_row) -> None:
    """Time to open the connections, and memory per connection (idle; with deflate, after a message)."""
    positions = range(len(kinds))
    open_times = [results.median(kind, "plain", "open_s") or 0 for kind in kinds]
    axes_row[0].barh(positions, open_times)
    axes_row[0].set(title="time to open the connections", xlabel="s")
    width = 0.4
    idle = [results.median(kind, "plain", "idle_kib") or 0 for kind in kinds]
    used = [results.median(kind, "deflate", "used_kib") or 0 for kind in kinds]
    axes_row[1].barh([p - width / 2 for p in positions], idle, width, label="idle")
    axes_row[1].barh([p + width / 2 for p in positions], used, width, label="deflate, after a message")
    axes_row[1].set(title="memory per connection", xlabel="KiB")
    axes_row[1].legend(fontsize="small")
    for axes in axes_row[:2]:
        axes.set_yticks(list(positions), kinds)
        axes.invert_yaxis()
        axes.grid(True, axis="x", alpha=0.3)
