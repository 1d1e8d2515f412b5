"""Threads for handlers, for servers that run thousands of them next to one event-loop thread.

A :class:`HandlerThread` has a stack size of its own: ``threading.stack_size`` is process-wide, so it is
set only while the thread starts, under one lock shared by every server in the process, and the previous
value put back.

On Linux it also runs under the ``SCHED_BATCH`` policy. The event loop wakes handler threads all the time
(a message arrived, a request came in), and Linux runs a woken thread at once on its waker's CPU when it
can: there, a handler thread only finds the GIL held by the loop that woke it and blocks again, two context
switches for nothing, with the loop descheduled in between. A ``SCHED_BATCH`` thread never preempts on
waking; it runs once the loop blocks and lets go of the GIL. Its priority is otherwise unchanged.
"""

from __future__ import annotations

import os
import threading

__all__ = ["HandlerThread"]

_stack_size_lock = threading.Lock()

# Every threading.Thread has an Event that says it started (about 1.2 KB with its Condition, lock and
# deque) and a closure that reports an exception escaping it (about 0.4 KB). Once a thread has started,
# its Event is only read, and set for good; the closure reads the current excepthook when it runs. So a
# started thread can share one set Event and one closure with every other: with thousands of handler
# threads, 1.6 KB each adds up. Where these internals differ (another Python), nothing is shared.
_STARTED = threading.Event()
_STARTED.set()
_make_invoke_excepthook = getattr(threading, "_make_invoke_excepthook", None)
_INVOKE_EXCEPTHOOK = _make_invoke_excepthook() if _make_invoke_excepthook is not None else None


class HandlerThread(threading.Thread):
    """A thread started with a stack of ``stack_size`` bytes (0: the platform's default), scheduled so that
    waking it does not preempt the thread that woke it.

    Set ``stack_size`` on the instance, or on a subclass for a thread factory. Once started, it shares
    the per-thread bookkeeping that ``threading`` only reads from then on with its other instances.
    """

    stack_size = 0

    def start(self) -> None:
        if _INVOKE_EXCEPTHOOK is not None and hasattr(self, "_invoke_excepthook"):
            self._invoke_excepthook = _INVOKE_EXCEPTHOOK
        if not self.stack_size:
            super().start()
        else:
            with _stack_size_lock:
                previous = threading.stack_size(self.stack_size)
                try:
                    super().start()
                finally:
                    threading.stack_size(previous)
        started = getattr(self, "_started", None)
        if isinstance(started, threading.Event) and started.is_set():
            self._started = _STARTED

    def run(self) -> None:
        _schedule_as_batch()
        super().run()


def _schedule_as_batch() -> None:
    """Put the calling thread under ``SCHED_BATCH``, where the platform has it."""
    policy = getattr(os, "SCHED_BATCH", None)
    if policy is None:
        return
    try:
        os.sched_setscheduler(0, policy, os.sched_param(0))  # 0: the calling thread
    except OSError:
        pass  # not allowed here (a sandbox, a container's seccomp profile): the default policy only costs time
