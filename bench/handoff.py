"""What one thread handing the GIL's work to another costs: ``python -m bench.handoff [--batch]``.

Two threads take turns, as rolo's reactor and handler threads, and handlers among themselves, do: each
wakes the other, then blocks until woken back. Printed for each way of waking, per hand-off: the wall
time, the process's CPU time (the system's part apart) and its voluntary and involuntary context switches.

- ``queue``: ``SimpleQueue.put``, then ``get`` (rolo's inbox); ``lock``: ``Lock.release``, then
  ``acquire``. Both wake the other thread while holding the GIL: where the woken thread runs at once (on
  the same CPU, the kernel lets it preempt the one that woke it; on another, it was idle), it finds the
  GIL held, sleeps again waiting for it, and is woken once more when the first thread blocks: about three
  context switches and two more futex calls per hand-off rather than one and none.
- ``eventfd``: ``os.eventfd_write``, then ``os.eventfd_read``, which let go of the GIL before their system
  call: the woken thread finds it free.

``--batch`` runs both threads under ``SCHED_BATCH``, whose woken threads do not preempt the running one
(Linux): a thread woken under the GIL then waits for the CPU until the one that woke it blocks, as it would
for the GIL. Run it under ``taskset -c 1`` for the figures of a server pinned to one CPU.
"""

from __future__ import annotations

import argparse
import os
import queue
import resource
import threading
import time
from collections.abc import Callable

ROUNDS = 20_000

Waits = tuple[Callable[[], object], Callable[[], object], Callable[[], object], Callable[[], object]]
"""How the first thread waits and wakes the second, then how the second waits and wakes the first."""


def by_queue() -> Waits:
    first, second = queue.SimpleQueue[int](), queue.SimpleQueue[int]()
    return first.get, lambda: second.put(1), second.get, lambda: first.put(1)


def by_lock() -> Waits:
    first, second = threading.Lock(), threading.Lock()
    first.acquire()
    second.acquire()
    return first.acquire, second.release, second.acquire, first.release


def by_eventfd() -> Waits:
    first, second = os.eventfd(0), os.eventfd(0)
    return (
        lambda: os.eventfd_read(first),
        lambda: os.eventfd_write(second, 1),
        lambda: os.eventfd_read(second),
        lambda: os.eventfd_write(first, 1),
    )


WAYS = {"queue": by_queue, "lock": by_lock, "eventfd": by_eventfd}


def measure(waits: Waits, batch: bool) -> tuple[float, float, float, float, float]:
    """Per hand-off: wall µs, CPU µs, system CPU µs, voluntary and involuntary context switches."""
    wait, wake, other_wait, other_wake = waits

    def other() -> None:
        if batch:
            os.sched_setscheduler(0, os.SCHED_BATCH, os.sched_param(0))
        for _ in range(ROUNDS):
            other_wait()
            other_wake()

    thread = threading.Thread(target=other)
    thread.start()
    before, started = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
    for _ in range(ROUNDS):
        wake()
        wait()
    elapsed, after = time.perf_counter() - started, resource.getrusage(resource.RUSAGE_SELF)
    thread.join()
    handoffs = 2 * ROUNDS
    system = after.ru_stime - before.ru_stime
    cpu = after.ru_utime - before.ru_utime + system
    return (
        elapsed / handoffs * 1e6,
        cpu / handoffs * 1e6,
        system / handoffs * 1e6,
        (after.ru_nvcsw - before.ru_nvcsw) / handoffs,
        (after.ru_nivcsw - before.ru_nivcsw) / handoffs,
    )


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.handoff", description=__doc__.split("\n\n")[0])
    parser.add_argument("--batch", action="store_true", help="both threads under SCHED_BATCH")
    options = parser.parse_args()
    if options.batch:
        os.sched_setscheduler(0, os.SCHED_BATCH, os.sched_param(0))
    print(f"per hand-off, {ROUNDS:,} round trips, CPUs {sorted(os.sched_getaffinity(0))}")
    for name, make in WAYS.items():
        wall, cpu, system, voluntary, involuntary = measure(make(), options.batch)
        print(
            f"  {name:>8}: {wall:6.2f} µs wall, {cpu:6.2f} µs CPU ({system:5.2f} system), "
            f"{voluntary:.2f} voluntary + {involuntary:.2f} involuntary switches"
        )


if __name__ == "__main__":
    main()
