"""Where a server's time goes under load: ``python -m bench.profile echo|http|broadcast [--server KIND]``.

Starts the server pinned to the last CPU and the load on the others (the echo load generator, wrk on
``GET /hello``, or the broadcast load generator: ``--connections`` members, ``--in-flight`` broadcasts at
a time); once it is warm, records for ``--seconds`` each, one after the other, ``perf stat`` (CPU time,
context switches), ``perf record -e cpu-clock -g`` (on-CPU samples, kernel included) and
``py-spy record --gil --native`` (Python stacks of the thread holding the GIL). It prints the server's
CPU per message, request or delivery, then the perf samples by where they were (the kernel by system call,
user space by library) and by thread (the main one, where the event loop or reactor runs, against the
others), and the py-spy samples by stage (the deepest frame that names one wins), and keeps the raw files
in ``--out``. With the round trip it prints the TCP segments sent per message (see
``bench/loadgen.c``): 3 rather than 2 for an echo means Linux acknowledges each message on its own, as it
does once replies come later than its delayed-ACK time (at least 40 ms). perf's hardware counters are
often missing in virtual machines, hence ``cpu-clock``; ``perf`` is Debian's ``linux-perf``, py-spy is in
the ``bench`` extra.
"""

from __future__ import annotations

import argparse
import collections
import re
import subprocess
import sys
import threading
from pathlib import Path

from bench import loadgen, wrk
from bench.processes import Placement, Ports, Server, on_cpus
from bench.servers import PEERS

WARMUP = 2.0

MAIN_THREAD = "the main thread (the event loop or reactor)"
OTHER_THREADS = "the other threads (handlers, thread pools)"

# (a piece of a perf frame, its bucket), checked from the outermost frame in: the system call decides
KERNEL_BUCKETS = (
    ("futex", "kernel: futex (GIL, locks, waking and waiting threads)"),
    ("epoll_wait", "kernel: epoll_wait"),
    ("sendto", "kernel: send"),
    ("sendmsg", "kernel: send"),
    ("ksys_write", "kernel: send"),
    ("recvfrom", "kernel: recv"),
    ("ksys_read", "kernel: recv"),
    ("exit_to_user_mode", "kernel: returning to user space (preemption, signals)"),
    ("asm_sysvec", "kernel: interrupts"),
    ("page_fault", "kernel: page faults, mmap, munmap"),
    ("mmap", "kernel: page faults, mmap, munmap"),
)

# (a piece of a py-spy frame, its stage); the deepest frame that matches decides
STAGES = (
    ("runUntilCurrent", "reactor: timed calls and calls from threads"),
    ("_runThreadedCallables", "reactor: timed calls and calls from threads"),
    ("twisted/internet/base.py", "reactor: epoll and dispatch"),
    ("twisted/internet/epollreactor.py", "reactor: epoll and dispatch"),
    ("twisted/python/log.py", "reactor: callWithLogger and context"),
    ("twisted/python/context.py", "reactor: callWithLogger and context"),
    ("twisted/internet/posixbase.py", "reactor: TCP read and write (Twisted)"),
    ("twisted/internet/tcp.py", "reactor: TCP read and write (Twisted)"),
    ("twisted/internet/abstract.py", "reactor: TCP read and write (Twisted)"),
    ("twisted/internet/defer.py", "Deferreds"),
    ("twisted/logger", "logging"),
    ("rolo/serving/twisted/logs.py", "logging"),
    ("autobahn/websocket/protocol.py", "Autobahn: frame parsing and protocol"),
    ("autobahn/twisted/websocket.py", "Autobahn: frame parsing and protocol"),
    ("autobahn/nvx/_xormasker", "Autobahn: unmasking (a masker per frame)"),
    ("autobahn/nvx/_utf8validator", "Autobahn: UTF-8 validation"),
    ("autobahn/util.py", "Autobahn: helpers"),
    ("autobahn/twisted/util.py", "logging"),
    ("rolo/serving/twisted/protocol.py", "rolo: Twisted WebSocket protocol, framing, writes"),
    ("write_now (rolo/serving/twisted/_twisted.py", "rolo: Twisted WebSocket protocol, framing, writes"),
    ("write_each (rolo/serving/twisted/_twisted.py", "rolo: Twisted WebSocket protocol, framing, writes"),
    ("rolo/serving/twisted/threads.py", "rolo: hand-off between reactor and handler threads"),
    ("rolo/websocket/turns.py", "rolo: hand-off between reactor and handler threads"),
    ("rolo/websocket/threaded.py", "rolo: inbox and outbox (waking the handler)"),
    ("rolo/websocket/websocket.py", "handler: the WebSocket API"),
    ("rolo/websocket/hub.py", "handler: Hub"),
    ("bench/servers/", "handler: the handler's own code"),
    ("twisted/web/http.py", "Twisted Web: HTTP parsing and writing"),
    ("twisted/protocols/basic.py", "Twisted Web: HTTP parsing and writing"),
    ("twisted/web/server.py", "Twisted Web: Site and Request"),
    ("twisted/web/http_headers.py", "Twisted Web: headers"),
    ("rolo/serving/twisted/http.py", "rolo HTTP: resource and response writer"),
    ("rolo/serving/twisted/environ.py", "rolo HTTP: building the WSGI environ"),
    ("rolo/serving/twisted/channel.py", "rolo HTTP: channel"),
    ("rolo/serving/twisted/site.py", "rolo HTTP: site"),
    ("twisted/python/threadpool.py", "thread pool (Twisted ThreadPool)"),
    ("twisted/_threads", "thread pool (Twisted ThreadPool)"),
    ("threading.py", "threading: locks, conditions"),
    ("queue.py", "threading: locks, conditions"),
    ("rolo/gateway", "rolo gateway: handler chain"),
    ("rolo/routing", "routing"),
    ("werkzeug/routing", "routing"),
    ("rolo/request.py", "werkzeug: request"),
    ("rolo/response.py", "werkzeug: response"),
    ("werkzeug/", "werkzeug: request and response"),
    ("gc_collect", "garbage collector"),
    ("_PyGC_", "garbage collector"),
    ("sock_send", "system call: send"),
    ("sock_recv", "system call: recv"),
    ("SimpleQueue_put", "rolo: inbox and outbox (waking the handler)"),
)


def perf_buckets(path: Path, pid: int) -> tuple[collections.Counter, collections.Counter]:
    """perf samples (``perf script``) by bucket (kernel by system call, user space by library) and by
    thread: process ``pid``'s main thread, where its event loop or reactor runs, against all its others."""
    script = subprocess.run(["perf", "script", "-i", str(path)], capture_output=True, text=True).stdout
    buckets: collections.Counter = collections.Counter()
    threads: collections.Counter = collections.Counter()
    for sample in script.split("\n\n"):
        frames = re.findall(r"^\s+[0-9a-f]+\s+(.*?)\s+\((.*)\)$", sample, re.M)
        if not frames:
            continue
        if "kernel" in frames[0][1]:
            names = " ".join(symbol for symbol, _ in frames)
            bucket = next((name for key, name in KERNEL_BUCKETS if key in names), "kernel: other")
        else:
            library = frames[0][1].rsplit("/", 1)[-1]
            bucket = "user: CPython" if "python" in library else f"user: {library}"
        buckets[bucket] += 1
        # the header line: the thread's name, its id, the time; a thread's id is its process's for the main one
        tid = re.match(r"\s*.*?\s(\d+)\s+[0-9.]+:", sample)
        threads[MAIN_THREAD if tid is not None and int(tid.group(1)) == pid else OTHER_THREADS] += 1
    return buckets, threads


def pyspy_stages(path: Path) -> collections.Counter:
    """py-spy's collapsed stacks by stage."""
    stages: collections.Counter = collections.Counter()
    for line in path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        stage = "other"
        for frame in stack.split(";"):
            stage = next((name for key, name in STAGES if key in frame), stage)
        stages[stage] += int(count)
    return stages


def show(title: str, counts: collections.Counter, per_unit_us: float | None) -> None:
    total = sum(counts.values()) or 1
    print(f"\n{title} ({total:,} samples)")
    for name, count in counts.most_common():
        share = count / total
        micro = f"{share * per_unit_us:7.1f} µs" if per_unit_us else ""
        print(f"  {share:6.1%} {micro}  {name}")


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.profile", description=__doc__.split("\n\n")[0])
    parser.add_argument("load", choices=("echo", "http", "broadcast"))
    parser.add_argument("--server", choices=PEERS, default="rolo")
    parser.add_argument("--connections", type=int, default=10, help="echo connections")
    parser.add_argument("--in-flight", type=int, default=1, help="broadcasts in flight")
    parser.add_argument("--size", type=int, default=32, help="echo message size, bytes")
    parser.add_argument("--seconds", type=float, default=10.0, help="seconds each recording lasts")
    parser.add_argument("--settle", type=float, default=1.0, help="seconds between the warm-up and recording")
    parser.add_argument("--out", type=Path, default=Path("/tmp/rolo-profile"), help="where the raw files go")
    args = parser.parse_args()
    Placement.pin()
    args.out.mkdir(parents=True, exist_ok=True)
    server = Server(args.server, Ports(0).next())
    pid, length = server.pid, 3 * args.seconds + args.settle + 9
    figures: dict = {}
    if args.load == "echo":
        load = threading.Thread(
            target=lambda: figures.update(loadgen.echo(server.port, args.connections, args.size, WARMUP, length, pid))
        )
        unit = "message"
    elif args.load == "broadcast":
        load = threading.Thread(
            target=lambda: figures.update(
                loadgen.broadcast(server.port, args.connections, args.in_flight, WARMUP, length, pid)
            )
        )
        unit = "delivery"
    else:
        wrk.wrk(server.port, WARMUP)
        load = threading.Thread(target=lambda: figures.update(wrk.wrk(server.port, length)))
        unit = "request"
    try:
        cpu = server.cpu_seconds()
        load.start()
        load.join(WARMUP + args.settle)  # returns at the timeout: the load runs on
        perf_stat = subprocess.run(
            ["perf", "stat", "-e", "task-clock,context-switches,cpu-migrations", "-p", str(pid),
             "--", "sleep", str(args.seconds)],
            capture_output=True, text=True, preexec_fn=on_cpus(Placement.client_cpus),
        ).stderr
        perf_data = args.out / f"{args.load}.perf"
        subprocess.run(
            ["perf", "record", "-q", "-e", "cpu-clock", "-F", "1999", "-g", "-p", str(pid), "-o", str(perf_data),
             "--", "sleep", str(args.seconds)],
            capture_output=True, preexec_fn=on_cpus(Placement.client_cpus),
        )
        stacks = args.out / f"{args.load}-pyspy.txt"
        subprocess.run(
            [str(Path(sys.executable).parent / "py-spy"), "record", "--gil", "--native", "--rate", "200",
             "--duration", str(round(args.seconds)), "--format", "raw", "--output", str(stacks), "--pid", str(pid)],
            capture_output=True, preexec_fn=on_cpus(Placement.client_cpus),
        )
        load.join()
        cpu = server.cpu_seconds() - cpu
    finally:
        server.stop()
    count = figures.get("msg") or figures.get("requests") or figures.get("delivery")
    rate = figures.get("msg_per_s") or figures.get("requests_per_s") or figures.get("delivery_per_s")
    per_unit = figures.get("server_us_per_msg") or figures.get("server_us_per_delivery")
    if per_unit is None and count:
        per_unit = cpu / count * 1e6
    print(f"{args.server}, {args.load}: {rate:,.0f} {unit}s/s, server CPU {per_unit:.1f} µs per {unit}")
    if f"tcp_segments_per_{unit}" in figures:
        print(
            f"round trip p50 {figures['p50_ms']:.1f} ms; TCP segments sent per {unit} (network namespace's): "
            f"{figures[f'tcp_segments_per_{unit}']:.2f}"
        )
    print("perf stat:" + "".join(f"\n  {line.strip()}" for line in perf_stat.splitlines() if "#" in line))
    buckets, threads = perf_buckets(perf_data, pid)
    show("perf, on-CPU samples, all threads", buckets, per_unit)
    show("perf, on-CPU samples by thread", threads, per_unit)
    show("py-spy, the GIL holder's stacks (shares of the time the GIL was held)", pyspy_stages(stacks), None)
    print(f"\nraw: {perf_data} (perf report -i ...), {stacks} (collapsed stacks)")


if __name__ == "__main__":
    main()
