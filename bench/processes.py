"""The benchmark's processes: where they run (``--pin``), the servers' lifetimes, and what /proc says of
them (CPU time, resident memory, context switches)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
START_TIMEOUT = 30.0  # seconds a server may take to listen


class Placement:
    """Where the processes run: anywhere (the operating system's choice), or with ``--pin`` every server
    on the last CPU and the load generators on the others, as one would deploy a server process per CPU."""

    server_cpus: set[int] | None = None
    client_cpus: set[int] | None = None

    @classmethod
    def pin(cls) -> None:
        cpus = sorted(os.sched_getaffinity(0))
        if len(cpus) < 2:
            raise SystemExit("--pin needs two CPUs: one for the servers, the rest for the clients")
        cls.server_cpus, cls.client_cpus = {cpus[-1]}, set(cpus[:-1])

    @classmethod
    def describe(cls) -> str:
        if cls.server_cpus is None:
            return "processes unpinned"
        return f"servers pinned to CPU {min(cls.server_cpus)}, load generators to the others"


def on_cpus(cpus: set[int] | None):
    """A ``preexec_fn`` that keeps a child process (and its threads and children) on ``cpus``, or ``None``."""
    if cpus is None:
        return None
    return lambda: os.sched_setaffinity(0, cpus)


class Ports:
    """The ports servers listen on: free ones the kernel picks (``base`` 0), or ``base``, ``base`` + 1 …"""

    def __init__(self, base: int) -> None:
        self.base, self.used = base, 0

    def next(self) -> int:
        if self.base:
            self.used += 1
            return self.base + self.used - 1
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            return probe.getsockname()[1]


def stat_fields(pid: int) -> list[str]:
    """The fields of /proc/PID/stat after the command name (field 3, the state, first)."""
    return Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()


def descendants(pid: int) -> list[int]:
    """``pid`` and every live process below it (gunicorn's worker, say)."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                children.setdefault(int(stat_fields(int(entry))[1]), []).append(int(entry))
            except (FileNotFoundError, ProcessLookupError, IndexError):
                pass  # gone meanwhile
    found, todo = [], [pid]
    while todo:
        current = todo.pop()
        found.append(current)
        todo.extend(children.get(current, ()))
    return found


class Server:
    """A server of :mod:`bench.servers` in a process of its own, listening on ``port`` once made; what it
    writes goes to ``Server.log`` (an open file), or to this process's standard error. ``wrapper``: a
    command that runs the server's (valgrind and its options, say; it must exec, not fork, the server), and
    ``start_timeout`` the seconds the server may take to listen."""

    log = None

    def __init__(
        self,
        kind: str,
        port: int,
        *,
        deflate: bool = False,
        wrapper: Sequence[str] = (),
        start_timeout: float = START_TIMEOUT,
    ) -> None:
        self.kind, self.port = kind, port
        options = ["--deflate"] if deflate else []
        command = [*wrapper, sys.executable, "-m", "bench.servers", kind, str(port), *options]
        self.process = subprocess.Popen(
            command, cwd=ROOT, stdout=self.log, stderr=self.log, preexec_fn=on_cpus(Placement.server_cpus)
        )
        deadline = time.monotonic() + start_timeout
        while not self._listening():
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                where = f"; see {self.log.name}" if self.log else ""
                raise RuntimeError(f"the {kind} server did not listen on port {port}{where}")
            time.sleep(0.05)  # polling a port that is not open yet: nothing to wait on but time

    def _listening(self) -> bool:
        try:
            socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
            return True
        except OSError:
            return False

    @property
    def pid(self) -> int:
        """The process that serves: gunicorn's worker, where the server is gunicorn."""
        return descendants(self.process.pid)[-1]

    def cpu_seconds(self) -> float:
        """User and system CPU time of the server's processes, all their threads, so far."""
        total = 0
        for pid in descendants(self.process.pid):
            fields = stat_fields(pid)
            total += int(fields[11]) + int(fields[12])
        return total / os.sysconf("SC_CLK_TCK")

    def rss_kib(self) -> int:
        """Resident memory of the server's processes, in KiB."""
        total = 0
        for pid in descendants(self.process.pid):
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
        return total

    def stop(self) -> None:
        for pid in reversed(descendants(self.process.pid)):
            try:
                os.kill(pid, 15)
            except ProcessLookupError:
                pass
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            for pid in descendants(self.process.pid):
                os.kill(pid, 9)
            self.process.wait()


@contextmanager
def serving(kinds: list[str], ports: Ports) -> Iterator[dict[str, Server]]:
    """A server of each kind, for the length of the block."""
    servers: dict[str, Server] = {}
    try:
        for kind in kinds:
            servers[kind] = Server(kind, ports.next())
        yield servers
    finally:
        for server in servers.values():
            server.stop()


def attempt(what: str, measure: Callable[[], dict]) -> dict | None:
    """``measure()``, or ``None`` (and a line on standard error) if the load generator or the server failed:
    one server failing a load leaves a gap in the tables, not a lost run."""
    try:
        return measure()
    except (subprocess.SubprocessError, RuntimeError, ValueError) as error:
        print(f"{what} failed: {error}", file=sys.stderr)
        return None
