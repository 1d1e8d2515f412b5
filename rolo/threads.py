"""Threads with a stack size of their own, for servers that run thousands of handlers at once.

``threading.stack_size`` is process-wide: :class:`SizedStackThread` sets it only while it starts, under one
lock shared by every server in the process, and puts the previous value back.
"""

from __future__ import annotations

import threading

__all__ = ["SizedStackThread"]

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


class SizedStackThread(threading.Thread):
    """A thread started with a stack of ``stack_size`` bytes (0: the platform's default).

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
