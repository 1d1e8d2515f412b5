"""Running the load generator, ``bench/loadgen.c``, built with the C compiler on first use.

The binary goes to ``$XDG_CACHE_HOME/rolo-bench`` (``~/.cache/rolo-bench``), named after a hash of the
source, so an edited source is built again. See ``loadgen.c`` for its three modes.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
from pathlib import Path

from bench.processes import ROOT, Placement, on_cpus

SOURCE = ROOT / "bench" / "loadgen.c"


def binary() -> Path:
    """The built load generator, building it first if this source has not been built yet."""
    source = SOURCE.read_bytes()
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "rolo-bench"
    path = cache / f"loadgen-{hashlib.sha256(source).hexdigest()[:16]}"
    if not path.exists():
        cache.mkdir(parents=True, exist_ok=True)
        compiler = os.environ.get("CC", "gcc")
        partial = path.with_suffix(".tmp")
        subprocess.run([compiler, "-O2", "-Wall", "-o", str(partial), str(SOURCE)], check=True)
        partial.replace(path)
    return path


def _run(arguments: list[str], timeout: float) -> dict:
    done = subprocess.run(
        [str(binary()), *arguments],
        check=True,
        capture_output=True,
        text=True,
        timeout=timeout,
        preexec_fn=on_cpus(Placement.client_cpus),
    )
    return json.loads(done.stdout)


def echo(port: int, connections: int, size: int, warmup: float, duration: float, server_pid: int) -> dict:
    """Echo ``size``-byte messages on ``connections`` connections to ``/echo``; the measured figures."""
    arguments = ["echo", str(port), "/echo", str(connections), str(size), str(warmup), str(duration)]
    return _run([*arguments, str(server_pid)], warmup + duration + 90)


def broadcast(port: int, clients: int, in_flight: int, warmup: float, duration: float, server_pid: int) -> dict:
    """Publish to ``clients`` members of ``/room``, ``in_flight`` messages at a time; the figures."""
    arguments = ["broadcast", str(port), str(clients), str(in_flight), str(warmup), str(duration)]
    return _run([*arguments, str(server_pid)], warmup + duration + 90)


class Hold:
    """Connections held open to ``/echo`` by one load generator process, driven a step at a time."""

    def __init__(self, port: int, connections: int, at_once: int, deflate: bool, more: int = 0) -> None:
        """Open ``connections`` (read how many opened with :meth:`opened`), at most ``at_once`` handshakes at
        a time, with room for ``more`` to be opened later (:meth:`open`)."""
        arguments = ["hold", str(port), "/echo", str(connections), str(at_once), str(int(deflate))]
        if more:
            arguments.append(str(more))
        self.process = subprocess.Popen(
            [str(binary()), *arguments],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            preexec_fn=on_cpus(Placement.client_cpus),
        )

    def _line(self, word: str) -> list[float]:
        fields = self.process.stdout.readline().split()
        if not fields or fields[0] != word:
            raise RuntimeError(f"the load generator failed (exit status {self.process.poll()})")
        return [float(field) for field in fields[1:]]

    def opened(self) -> tuple[int, float, int, float]:
        """Once all are open (or failed): how many opened, in how many seconds, how many with deflate, and
        the CPU seconds the load generator used meanwhile."""
        count, seconds, negotiated, cpu = self._line("open")
        return int(count), seconds, int(negotiated), cpu

    def open(self, count: int) -> tuple[int, float, int, float]:
        """Open ``count`` more connections (no more than the room made for them), held with the others;
        then as :meth:`opened`, for these."""
        self.process.stdin.write(f"open {count}\n")
        self.process.stdin.flush()
        return self.opened()

    def echo(self) -> tuple[int, float]:
        """One 32-byte message on each connection: how many were answered, in how many seconds."""
        self.process.stdin.write("echo\n")
        self.process.stdin.flush()
        count, seconds = self._line("answered")
        return int(count), seconds

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.stdin.write("close\n")
            self.process.stdin.close()
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
