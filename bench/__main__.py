"""``python -m bench`` (or ``./dev bench``): rolo side by side with the Python servers people pick instead.

Five parts, each every server of :data:`bench.servers.PEERS` that takes part in it, each server in a
process of its own, driven by a load generator cheaper than any of them (``bench/loadgen.c``, or wrk):

echo       32-byte echo on 1, 10, 100, 1,000 connections; 4 × 64 KiB; 4 × 1 MiB   (bench/echo.py)
scale      10,000 connections opened, one message on each, memory per connection  (bench/scale.py)
http       wrk -t1 -c50 on a GET of 11 bytes                                       (bench/wrk.py)
broadcast  a room of 1,000, one and 16 broadcasts in flight                        (bench/broadcast.py)
cluster    rolo only: --workers 2 against one process; a Hub over Redis, 2 processes (bench/cluster.py)

Rounds interleave (round 1 on every server, then round 2 ...); a cell is the median of the rounds, a
ratio the median of the rounds' ratios. Tables are printed and written as reStructuredText snippets with
charts into ``docs/bench/``; ``--docs`` also gathers them into ``docs/bench/results.rst``, which the
documentation's Benchmarks page shows.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

from bench import broadcast, cluster, echo, loadgen, scale, wrk
from bench.processes import ROOT, Placement, Ports, Server
from bench.report import Table, write
from bench.servers import PEERS

PARTS = ("echo", "scale", "http", "broadcast", "cluster")
DOCS = ROOT / "docs"
RESULTS = "results.rst"
"""The page of ``--out`` that gathers its snippets, which docs/benchmarks.rst includes."""
CHART_ALT = {
    "echo": "32-byte echo, every server: throughput, p99 round trip and server CPU per message against connections",
    "scale": "time to open 10,000 connections, and memory per connection, idle and with deflate used",
    "http": "HTTP requests per second of each server under wrk",
    "broadcast": "broadcast deliveries per second, one and 16 in flight",
}


def names(text: str, allowed, what: str) -> list[str]:
    chosen = [name.strip() for name in text.split(",") if name.strip()]
    unknown = [name for name in chosen if name not in allowed]
    if unknown:
        raise argparse.ArgumentTypeError(f"unknown {what} {', '.join(unknown)}; choose from {', '.join(allowed)}")
    return chosen


def arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="./dev bench", description=__doc__.split("\n\n")[0], epilog=__doc__.split("\n\n", 1)[1],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--only", type=lambda text: names(text, PARTS, "part"), default=list(PARTS),
        metavar="PART[,PART]", help=f"the parts to run: {', '.join(PARTS)} (default: all)",
    )
    parser.add_argument(
        "--servers", type=lambda text: names(text, PEERS, "server"), default=list(PEERS),
        metavar="KIND[,KIND]", help=f"the servers to run, of: {', '.join(PEERS)} (default: all)",
    )
    parser.add_argument("--repeat", type=int, default=1, metavar="N", help="rounds; cells are medians (default 1)")
    parser.add_argument("--pin", action="store_true", help="servers on the last CPU, load generators on the others")
    parser.add_argument("--duration", type=float, default=1.5, help="seconds each echo and broadcast load is measured")
    parser.add_argument("--warmup", type=float, default=0.5, help="seconds of load before measuring")
    parser.add_argument("--http-duration", type=float, default=5.0, help="seconds of each wrk run")
    parser.add_argument("--connections", type=int, default=10_000, help="connections opened by the scale part")
    parser.add_argument("--at-once", type=int, default=200, help="handshakes under way at once in the scale part")
    parser.add_argument("--port", type=int, default=0, help="first port of the servers (default: free ones)")
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "bench", help="where tables and charts go")
    parser.add_argument(
        "--docs", action="store_true", help=f"also gather the tables and charts into OUT/{RESULTS} for the docs"
    )
    args = parser.parse_args()
    if args.docs and not args.out.resolve().is_relative_to(DOCS):
        parser.error("--docs needs --out inside docs/, where the documentation can show the charts")
    return args


def preface(args: argparse.Namespace) -> str:
    """What a snippet says of its run: command, date, rolo's commit, placement, rounds, machine load."""
    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True
    ).stdout.strip()
    load = os.getloadavg()[0]
    return (
        f"Measured {datetime.now(timezone.utc):%Y-%m-%d} by ``./dev bench {shlex.join(sys.argv[1:])}`` "
        f"(rolo at {commit or 'an unknown commit'}) on {os.cpu_count()} CPUs, {Placement.describe()}, "
        f"median of {args.repeat} round(s); load average {load:.1f} when it started."
    )


def draw(path: Path, panels: int, draw_panels) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(1, panels, figsize=(6 * panels, 4.5), squeeze=False)
    draw_panels(list(axes[0]) if panels > 1 else axes[0][0])
    figure.tight_layout()
    figure.savefig(path, dpi=90)
    plt.close(figure)
    print(f"chart: {os.path.relpath(path)}")


def update_docs(directory: Path) -> None:
    """Gather every snippet of ``directory`` (the parts' tables, in the order of the parts) and its chart
    into ``directory/results.rst``, each run's preface once."""

    def order(path: Path) -> tuple:
        part = path.stem.split("-")[0]
        kind = path.stem.removeprefix(part).lstrip("-")
        return PARTS.index(part) if part in PARTS else len(PARTS), kind not in ("", "ratios"), kind != "", kind

    block = [".. Written by ``./dev bench --docs``: the tables and charts of the last run.\n"]
    last_preface = None
    for snippet in sorted((path for path in directory.glob("*.rst") if path.name != RESULTS), key=order):
        preface, _, table = snippet.read_text().partition("\n\n")
        if preface != last_preface:
            block.append(preface + "\n")
            last_preface = preface
        block.append(table)
        chart = snippet.with_suffix(".png")
        if chart.exists():
            alt = CHART_ALT.get(snippet.stem, snippet.stem)
            # a path from the documentation's root: the image is found whichever page includes this one
            block.append(f".. image:: /{chart.resolve().relative_to(DOCS)}\n   :alt: {alt}\n")
    (directory / RESULTS).write_text("\n".join(block))
    print(f"{os.path.relpath(directory / RESULTS)}: tables gathered")


def main() -> None:
    args = arguments()
    if args.pin:
        Placement.pin()
    loadgen.binary()  # build it before anything is timed
    started = time.monotonic()
    args.out.mkdir(parents=True, exist_ok=True)
    Server.log = open(args.out / "servers.log", "w")
    ports = Ports(args.port)
    intro = preface(args)
    for part in args.only:
        kinds = [kind for kind in args.servers if part in PEERS[kind].parts]
        if not kinds:
            continue
        print(f"\n{part}: {', '.join(kinds)}", flush=True)
        part_started = time.monotonic()
        tables: list[Table]
        if part == "echo":
            results = echo.run(kinds, args.repeat, args.warmup, args.duration, ports)
            tables = echo.tables(results, kinds)
            draw(args.out / "echo.png", 3, lambda axes: echo.chart(results, kinds, axes))
        elif part == "scale":
            results = scale.run(kinds, args.repeat, args.connections, args.at_once, ports)
            tables = scale.tables(results, kinds, args.connections)
            draw(args.out / "scale.png", 2, lambda axes: scale.chart(results, kinds, axes))
        elif part == "http":
            results = wrk.run(kinds, args.repeat, args.http_duration, ports)
            tables = wrk.tables(results, kinds, args.http_duration)
            draw(args.out / "http.png", 1, lambda axes: wrk.chart(results, kinds, axes))
        elif part == "cluster":
            tables, results = cluster.part(args.repeat, args.duration)
        else:
            results = broadcast.run(kinds, args.repeat, args.warmup, args.duration, ports)
            tables = broadcast.tables(results, kinds)
            draw(args.out / "broadcast.png", 1, lambda axes: broadcast.chart(results, kinds, axes))
        write(tables, args.out, intro)
        print(f"({part}: {time.monotonic() - part_started:.0f} s)")
        (args.out / f"{part}.json").write_text(json.dumps(results.rows, indent=1) + "\n")
    if args.docs:
        update_docs(args.out)
    print(f"\n{Placement.describe()}; {args.repeat} round(s) in {time.monotonic() - started:.0f} s")


if __name__ == "__main__":
    main()
