"""What waking a thread costs on this machine: the floor under any thread-per-handler design.

``python -m bench.wakeup`` times ``queue.SimpleQueue.put`` from the main thread while another thread
waits in ``get`` (the put wakes it, as the reactor wakes a handler for its message), and the same put with
nobody waiting. The difference is the kernel's wake-up (a futex call and, when the woken thread goes to
an idle CPU, an inter-processor interrupt, which a virtual machine pays for dearly); each message an
rolo handler answers costs one such wake-up more than a plain Autobahn echo, on the reactor thread.
"""

from __future__ import annotations

import queue
import statistics
import threading
import time

ROUNDS = 20_000


def put_waking_a_thread() -> float:
    """Median seconds of a put that wakes a thread blocked in ``get``."""
    requests: queue.SimpleQueue[int | None] = queue.SimpleQueue()
    replies: queue.SimpleQueue[int] = queue.SimpleQueue()

    def echo() -> None:
        while (item := requests.get()) is not None:
            replies.put(item)

    thread = threading.Thread(target=echo)
    thread.start()
    timings = []
    for i in range(ROUNDS):
        started = time.perf_counter()
        requests.put(i)
        timings.append(time.perf_counter() - started)
        replies.get()  # returns once the thread lets go of the GIL: when it blocks in get again
    requests.put(None)
    thread.join()
    return statistics.median(timings)


def put_waking_nobody() -> float:
    """Median seconds of a put with nobody waiting."""
    items: queue.SimpleQueue[int] = queue.SimpleQueue()
    timings = []
    for i in range(ROUNDS):
        started = time.perf_counter()
        items.put(i)
        timings.append(time.perf_counter() - started)
    return statistics.median(timings)


def main() -> None:
    print(f"put waking a thread blocked in get: {put_waking_a_thread() * 1e6:6.2f} µs (median of {ROUNDS:,})")
    print(f"put with nobody waiting:            {put_waking_nobody() * 1e6:6.2f} µs")


if __name__ == "__main__":
    main()
