"""What opening many WebSocket connections at once costs the reactor in starting handler threads, and what
a client already connected waits meanwhile.

``python -m bench.spawning [--connections N] [--at-once N] [--rounds N] [--pin]``: for each round, a fresh rolo
server (``TwistedGateway``, the benchmark's application) in a process of its own, instrumented; the load
generator's ``hold`` mode opens ``--connections`` connections to ``/echo``, ``--at-once`` handshakes at a
time, while two probes ask one at a time, one every :data:`PROBE_INTERVAL` at most: a ``GET /hello`` on a
kept-alive HTTP connection, and an echo on a WebSocket opened before. Per round, printed as JSON:

- ``starts_per_1000``: ``Thread.start`` calls made on the reactor thread per 1,000 opened connections, and
  ``all_starts_per_1000`` those made on any thread (about 1,000: each open connection holds a thread);
- ``submit_wall_us`` and ``submit_cpu_us``: the reactor's time inside ``HandlerPool.submit`` per opened
  connection, wall-clock and its thread's CPU time (the difference is waiting: for a thread to start);
- ``open_s``: the time to open them all, as the load generator measured it, and ``open_cpu_us`` the
  server's CPU time meanwhile per opened connection (the probes' included), ``open_system_us`` the part
  of it in the kernel, ``switches_per_open`` the context switches of its threads (those alive at the end);
- ``http_ms`` and ``ws_ms``: the probes' round trips while the connections opened (median, 90th
  percentile, most, and how many);
- with ``--syscalls``, ``syscalls_per_open``: the server's system calls per opened connection while they
  open, all and some one by one (:data:`SYSCALLS`), its context switches and page faults, as ``perf stat``
  counts them (which needs the right to read the kernel's tracepoints). They depend much less on the
  machine's load than the times do.

The figures of a round depend on the machine's load; its load average is printed with them. ``--pin`` puts
the server on the last CPU and the load generator and the probes on the others, as ``./dev bench --pin``
does. To compare two versions of rolo, run it from each checkout, a round of each in turn.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time

from bench import loadgen
from bench.processes import ROOT, Placement, Ports, on_cpus, stat_fields

STATS = "/spawn-stats"


def serve(port: int) -> None:
    """The instrumented server (in its own process): rolo's benchmark application, with :data:`STATS`
    answering the reactor's figures so far as JSON, and ``?reset`` setting them to zero."""
    from bench.servers import MAX_CONNECTIONS, twisted_run
    from bench.servers.rolo_app import echo, hello, publish, room
    from rolo import Response, Router, route
    from rolo.gateway import Gateway
    from rolo.gateway.handlers import RouterHandler
    from rolo.serving.twisted import TwistedGateway
    from rolo.threads import HandlerPool

    reactor_thread = threading.current_thread()  # the reactor runs on the thread that calls run()
    figures = {"submits": 0, "wall": 0.0, "cpu": 0.0, "starts": 0, "all_starts": 0}
    submit, start = HandlerPool.submit, threading.Thread.start

    def timed_submit(pool: HandlerPool, *args, **kwargs):
        if threading.current_thread() is not reactor_thread or pool.name != "rolo-websocket":
            return submit(pool, *args, **kwargs)
        wall, cpu = time.perf_counter(), time.thread_time()
        try:
            return submit(pool, *args, **kwargs)
        finally:
            figures["cpu"] += time.thread_time() - cpu
            figures["wall"] += time.perf_counter() - wall
            figures["submits"] += 1

    def counted_start(thread: threading.Thread) -> None:
        figures["all_starts"] += 1  # not exact across threads; the reactor's own count is
        if threading.current_thread() is reactor_thread:
            figures["starts"] += 1
        start(thread)

    HandlerPool.submit = timed_submit  # type: ignore[method-assign]
    threading.Thread.start = counted_start  # type: ignore[method-assign]

    @route(STATS, methods=["GET"])
    def stats(request) -> Response:
        answer = json.dumps(figures)
        if "reset" in request.args:
            figures.update(dict.fromkeys(figures, 0))
        return Response(answer, mimetype="application/json")

    router = Router()
    for endpoint in (echo, room, publish, hello, stats):
        router.add(endpoint)
    gateway = Gateway(request_handlers=[RouterHandler(router, respond_not_found=True)])
    twisted_run.run(TwistedGateway(gateway, max_connections=MAX_CONNECTIONS, ping_interval=0), port)


def _get(conn: http.client.HTTPConnection, path: str) -> bytes:
    conn.request("GET", path)
    response = conn.getresponse()
    return response.read()


PROBE_INTERVAL = 0.1
"""Seconds from one probe's question to the next (or more, when an answer takes longer): the probes load
the server alike however fast it answers."""


def _probe(ask, done: threading.Event, times: list[float]) -> None:
    while True:
        began = time.perf_counter()
        ask()
        times.append(time.perf_counter() - began)
        if done.wait(max(0.0, began + PROBE_INTERVAL - time.perf_counter())):
            return


def _summary(times: list[float]) -> dict:
    if not times:
        return {"count": 0}
    ordered = sorted(times)
    return {
        "median": round(statistics.median(ordered) * 1e3, 2),
        "p90": round(ordered[int(len(ordered) * 0.9)] * 1e3, 2),
        "max": round(ordered[-1] * 1e3, 2),
        "count": len(ordered),
    }


def _cpu_seconds(pid: int) -> tuple[float, float]:
    """The process's user and system CPU time so far, in seconds."""
    fields = stat_fields(pid)
    tick = os.sysconf("SC_CLK_TCK")
    return int(fields[11]) / tick, int(fields[12]) / tick


def _switches(pid: int) -> int:
    """Context switches, voluntary or not, of the process's threads alive now."""
    total = 0
    for task in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{task}/status") as status:
                total += sum(int(line.split()[1]) for line in status if "ctxt_switches" in line)
        except (FileNotFoundError, ProcessLookupError):
            pass  # ended meanwhile
    return total


SYSCALLS = ("futex", "clone3", "mmap", "mprotect", "sched_setscheduler", "epoll_wait", "sendto", "recvfrom")
"""The system calls ``--syscalls`` counts one by one: the GIL's and the locks' hand-offs, starting a thread,
the reactor's polls and socket I/O."""


class _SyscallCount:
    """``perf stat`` attached to a process: its system calls (all, and :data:`SYSCALLS` each), context
    switches and page faults from now until :meth:`stop`. Needs ``perf`` and the right to read the kernel's
    tracepoints (root, or ``kernel.perf_event_paranoid`` at -1)."""

    def __init__(self, pid: int, out: str) -> None:
        events = ["raw_syscalls:sys_enter", "context-switches", "page-faults"]
        events += [f"syscalls:sys_enter_{name}" for name in SYSCALLS]
        self.out = out
        command = ["perf", "stat", "-x,", "-o", out, "-e", ",".join(events), "-p", str(pid)]
        self.perf = subprocess.Popen(command)
        time.sleep(0.5)  # perf attaches: there is nothing to wait on but time

    def stop(self, per: int) -> dict[str, float]:
        """Stop counting: each count per ``per`` (opened connections)."""
        self.perf.send_signal(signal.SIGINT)
        self.perf.wait(30)
        counts = {}
        with open(self.out) as lines:
            for line in lines:
                fields = line.strip().split(",")
                if len(fields) > 2 and fields[0].replace(".", "").isdigit():
                    event = fields[2]
                    name = "all" if event == "raw_syscalls:sys_enter" else event.partition("sys_enter_")[2] or event
                    counts[name] = round(float(fields[0]) / per, 2)
        return counts


def measure(port: int, connections: int, at_once: int, syscalls: str | None = None) -> dict:
    """One round on a fresh server; with ``syscalls``, a file for ``perf stat`` to write the server's
    system calls to while the connections open."""
    import websocket as wsclient

    command = [sys.executable, "-m", "bench.spawning", "--serve", str(port)]
    server = subprocess.Popen(command, cwd=ROOT, preexec_fn=on_cpus(Placement.server_cpus))
    hold = None
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
                _get(conn, "/hello")
                break
            except OSError:
                if time.monotonic() > deadline or server.poll() is not None:
                    raise
                time.sleep(0.05)  # a port not open yet: nothing to wait on but time
        ws = wsclient.create_connection(f"ws://127.0.0.1:{port}/echo", timeout=30)
        time.sleep(1.0)  # the spares start
        _get(conn, STATS + "?reset")
        counting = _SyscallCount(server.pid, syscalls) if syscalls else None
        (user, system), switches = _cpu_seconds(server.pid), _switches(server.pid)
        done = threading.Event()
        http_times: list[float] = []
        ws_times: list[float] = []

        def echo() -> None:
            ws.send("probe")
            ws.recv()

        probes = [
            threading.Thread(target=_probe, args=(lambda: _get(conn, "/hello"), done, http_times)),
            threading.Thread(target=_probe, args=(echo, done, ws_times)),
        ]
        for probe in probes:
            probe.start()
        hold = loadgen.Hold(port, connections, at_once, False)
        opened, open_seconds, _, _ = hold.opened()
        user_after, system_after = _cpu_seconds(server.pid)
        user, system, switches = user_after - user, system_after - system, _switches(server.pid) - switches
        counted = counting.stop(max(opened, 1)) if counting is not None else None
        done.set()
        for probe in probes:
            probe.join()
        figures = json.loads(_get(conn, STATS))
        ws.close()
    finally:
        if hold is not None:
            hold.close()
        server.terminate()
        server.wait(30)
    per = max(opened, 1)
    return {
        "opened": opened,
        "open_s": round(open_seconds, 2),
        "open_cpu_us": round((user + system) / per * 1e6),
        "open_system_us": round(system / per * 1e6),
        "switches_per_open": round(switches / per, 1),
        "starts_per_1000": round(figures["starts"] / per * 1000, 1),
        "all_starts_per_1000": round(figures["all_starts"] / per * 1000, 1),
        "submit_wall_us": round(figures["wall"] / per * 1e6, 1),
        "submit_cpu_us": round(figures["cpu"] / per * 1e6, 1),
        "http_ms": _summary(http_times),
        "ws_ms": _summary(ws_times),
        "load": os.getloadavg()[0],
    } | ({"syscalls_per_open": counted} if counted is not None else {})


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.spawning", description=__doc__.split("\n\n")[0])
    parser.add_argument("--connections", type=int, default=5000)
    parser.add_argument("--at-once", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--pin", action="store_true", help="the server on the last CPU, the clients on the others")
    parser.add_argument(
        "--syscalls", action="store_true", help="count the server's system calls while they open (perf stat)"
    )
    parser.add_argument("--serve", type=int, help=argparse.SUPPRESS)  # the server's process, on this port
    args = parser.parse_args()
    if args.serve:
        import resource

        _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        serve(args.serve)
        return
    if args.pin:
        Placement.pin()
        os.sched_setaffinity(0, Placement.client_cpus)  # the probes too
    ports = Ports(0)
    with tempfile.TemporaryDirectory() as scratch:
        counts = os.path.join(scratch, "perf-stat.csv") if args.syscalls else None
        for _ in range(args.rounds):
            print(json.dumps(measure(ports.next(), args.connections, args.at_once, counts)), flush=True)


if __name__ == "__main__":
    main()
