"""The benchmark's tables: medians over rounds, ratios of rolo against its peers from the same rounds, and
each table printed as text and written as a reStructuredText snippet."""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass, field
from pathlib import Path

from bench.servers import PEERS

MISSING = "–"


@dataclass
class Table:
    """A table of one part: ``name`` is the stem of its snippet, ``docs/bench/NAME.rst``."""

    name: str
    title: str
    header: list[str]
    rows: list[list[str]] = field(default_factory=list)
    notes: str = ""

    def text(self) -> str:
        widths = [max(len(row[i]) for row in [self.header, *self.rows]) for i in range(len(self.header))]
        lines = [self.title, ""]
        for n, row in enumerate([self.header, *self.rows]):
            cells = [row[0].ljust(widths[0])] + [cell.rjust(width) for cell, width in zip(row[1:], widths[1:])]
            lines.append("  ".join(cells).rstrip())
            if n == 0:
                lines.append("-" * len(lines[-1]))
        if self.notes:
            lines += ["", self.notes]
        return "\n".join(lines) + "\n"

    def rst(self) -> str:
        lines = [f".. list-table:: {self.title}", "   :header-rows: 1", ""]
        for row in [self.header, *self.rows]:
            lines.append(f"   * - {row[0]}")
            lines += [f"     - {cell}" for cell in row[1:]]
        if self.notes:
            lines += ["", self.notes]
        return "\n".join(lines) + "\n"


class Results:
    """Measured figures, one dict per (server, load, round), and their medians."""

    def __init__(self, rows: list[dict]) -> None:
        self.rows = rows

    def values(self, server: str, load: str, key: str) -> dict[int, float]:
        """The figure of each round (round number to value) where it was measured."""
        return {
            row["round"]: row[key]
            for row in self.rows
            if row["server"] == server and row["load"] == load and row.get(key) is not None
        }

    def median(self, server: str, load: str, key: str) -> float | None:
        values = list(self.values(server, load, key).values())
        return statistics.median(values) if values else None

    def ratio(self, server: str, peer: str, load: str, key: str) -> float | None:
        """The median over rounds of ``server``'s figure over ``peer``'s in the same round."""
        ours, theirs = self.values(server, load, key), self.values(peer, load, key)
        ratios = [ours[n] / theirs[n] for n in ours.keys() & theirs.keys() if theirs[n]]
        return statistics.median(ratios) if ratios else None


def comparisons(servers: list[str]) -> list[tuple[str, str]]:
    """The (rolo server, peer) pairs a part's ratios are given for: ``rolo`` against every peer that is
    not rolo; rolo's ``AsgiGateway`` under a server against the bare ASGI app on the same server; rolo in
    another guise (``rolo-metrics``) against ``rolo``."""
    pairs = []
    for server in servers:
        if server == "rolo":
            pairs += [(server, peer) for peer in servers if not PEERS[peer].is_rolo]
        elif PEERS[server].is_rolo:
            bare = server.removeprefix("rolo-")
            peer = bare if bare in PEERS else "rolo"
            if peer in servers:
                pairs.append((server, peer))
    return pairs


def rate(value: float | None) -> str:
    """A count per second, in thousands from 10,000 on."""
    if value is None or math.isnan(value):
        return MISSING
    return f"{value / 1000:.1f}k" if value >= 10_000 else f"{value:,.0f}"


def number(value: float | None, digits: int = 1, suffix: str = "") -> str:
    if value is None or math.isnan(value):
        return MISSING
    return f"{value:,.{digits}f}{suffix}"


def write(tables: list[Table], directory: Path, preface: str) -> None:
    """Print the tables and write each as ``directory/NAME.rst``, the preface (the run's command, date
    and machine) first in each."""
    directory.mkdir(parents=True, exist_ok=True)
    for table in tables:
        print("\n" + table.text(), end="")
        (directory / f"{table.name}.rst").write_text(f"{preface}\n\n{table.rst()}")
