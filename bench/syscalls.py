"""What a server asks of the kernel per echoed message, by thread: ``python -m bench.syscalls --servers
rolo,aiohttp [--connections 10] [--pin] [--no-trace]``.

Runs the echo load generator (``bench/loadgen.c``: each connection sends its next message once the echo of
the last is back) on ``--connections`` connections and, once it is warm, counts for ``--seconds``, per
message, apart for the main thread (where the event loop or reactor runs) and for the others (handler
threads, thread pools):

- the system calls by kind, with ``perf stat`` on the ``syscalls`` tracepoints: futex (each wait on a lock,
  a queue or the GIL that has to sleep, and each wake-up of a thread sleeping on one), epoll_wait, the
  waker pipe's writes and reads (a thread waking the loop), the socket's sends and receives;
- the voluntary context switches (a thread blocked: waiting for a message, a lock, the GIL or I/O) and the
  involuntary ones (it was preempted: by a thread it woke, or by the machine's other load), from
  ``/proc/PID/task/*/status``;
- the CPU time, from ``/proc/PID/task/*/schedstat`` (nanoseconds).

The counts per message hardly depend on the machine's load: they are how often the threads wake each
other and wait for each other, the cost of a hand-off between threads beyond the Python it runs
(``bench.instructions`` counts user-space instructions only). Timed figures (the CPU time, the
involuntary switches) only mean something on a quiet machine; the tracepoints slow every system call
down, ``--no-trace`` leaves them out for a CPU time undisturbed by them. ``perf`` is Debian's
``linux-perf``; the tracepoints need root, or ``perf_event_paranoid`` at most 1.
"""

from __future__ import annotations

import argparse
import subprocess
import threading
import time
from pathlib import Path

from bench import loadgen
from bench.processes import Placement, Ports, Server

PERF = "/usr/bin/perf"

SYSCALLS = ("futex", "epoll_wait", "write", "read", "sendto", "recvfrom", "sendmsg")
"""The system calls counted by name. ``write`` and ``read`` are the waker pipe's (Twisted and asyncio wake
their loop from another thread by writing a byte to it), or a socket's where a server writes with them."""

TRACEPOINTS = ("raw_syscalls:sys_enter", *(f"syscalls:sys_enter_{name}" for name in SYSCALLS))

LABELS = ("system calls", *SYSCALLS, "voluntary switches", "involuntary switches", "CPU µs")

WARMUP = 2.0

Counts = dict[str, dict[str, float]]
"""Per message, by side (``"main"``, ``"others"``), then by label (of :data:`LABELS`)."""


def measure(kind: str, connections: int, seconds: float, size: int, trace: bool) -> tuple[float, Counts]:
    """Run the echo load on a server of ``kind``; its messages a second, and its counts per message."""
    server = Server(kind, Ports(0).next())
    try:
        figures: dict = {}

        def load() -> None:
            figures.update(loadgen.echo(server.port, connections, size, WARMUP, seconds, server.pid))

        loader = threading.Thread(target=load)
        loader.start()
        time.sleep(WARMUP)  # nothing to wait on: the load generator measures from then on too
        before = _threads(server.pid)
        if trace:
            command = [PERF, "stat", "-x", ";", "--per-thread", "-e", ",".join(TRACEPOINTS), "-p", str(server.pid)]
            counted = subprocess.run(
                [*command, "--", "sleep", str(seconds)], capture_output=True, text=True, timeout=seconds + 60
            )
            if counted.returncode:
                raise RuntimeError(f"perf stat failed: {counted.stderr.strip()}")
            traced = counted.stderr
        else:
            time.sleep(seconds)  # as long as the load generator's window
            traced = ""
        after = _threads(server.pid)
        loader.join()
        messages = figures["msg_per_s"] * seconds
        counts: Counts = {"main": {}, "others": {}}

        def add(tid: int, label: str, value: float) -> None:
            side = counts["main" if tid == server.pid else "others"]
            side[label] = side.get(label, 0.0) + value / messages

        for line in traced.splitlines():
            # THREAD-TID;VALUE;UNIT;EVENT;...
            fields = line.split(";")
            if len(fields) < 4 or not fields[1].isdigit():
                continue
            event = fields[3]
            label = "system calls" if event == "raw_syscalls:sys_enter" else event.rpartition("sys_enter_")[2]
            add(int(fields[0].rpartition("-")[2]), label, float(fields[1]))
        for tid, (voluntary, involuntary, nanoseconds) in after.items():
            was = before.get(tid, (0, 0, 0))
            add(tid, "voluntary switches", voluntary - was[0])
            add(tid, "involuntary switches", involuntary - was[1])
            add(tid, "CPU µs", (nanoseconds - was[2]) / 1000)
        return figures["msg_per_s"], counts
    finally:
        server.stop()


def _threads(pid: int) -> dict[int, tuple[int, int, int]]:
    """Each live thread of process ``pid``: its voluntary and involuntary context switches and its CPU
    time in nanoseconds, so far."""
    found = {}
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            status = (task / "status").read_text()
            cpu = int((task / "schedstat").read_text().split()[0])
        except FileNotFoundError:  # the thread ended meanwhile
            continue
        fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
        found[int(task.name)] = (int(fields["voluntary_ctxt_switches"]), int(fields["nonvoluntary_ctxt_switches"]), cpu)
    return found


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.syscalls", description=__doc__.split("\n\n")[0])
    parser.add_argument("--servers", default="rolo", help="comma-separated kinds (of bench.servers)")
    parser.add_argument("--connections", type=int, default=10)
    parser.add_argument("--seconds", type=float, default=5.0, help="how long to count")
    parser.add_argument("--size", type=int, default=32, help="the message's size in bytes")
    parser.add_argument("--pin", action="store_true", help="the server on the last CPU, the load on the others")
    parser.add_argument("--no-trace", action="store_true", help="no system calls counted: a CPU time undisturbed")
    options = parser.parse_args()
    if options.pin:
        Placement.pin()
    for kind in options.servers.split(","):
        rate, counts = measure(kind, options.connections, options.seconds, options.size, not options.no_trace)
        print(f"{kind}, {options.connections} connections: {rate:,.0f} messages/s; per message, all = main + others")
        for label in LABELS:
            main_side, others = counts["main"].get(label, 0.0), counts["others"].get(label, 0.0)
            if main_side or others:
                print(f"  {label:>20}: {main_side + others:7.3f} = {main_side:7.3f} + {others:7.3f}")


if __name__ == "__main__":
    main()
