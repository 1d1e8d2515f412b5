"""Threads with a stack size of their own, for servers that run thousands of handlers at once.

``threading.stack_size`` is process-wide: :class:`SizedStackThread` sets it only while it starts, under one
lock shared by every server in the process, and puts the previous value back.
"""

from __future__ import annotations

import threading

__all__ = ["SizedStackThread"]

_stack_size_lock = threading.Lock()


class SizedStackThread(threading.Thread):
    """A thread started with a stack of ``stack_size`` bytes (0: the platform's default).

    Set ``stack_size`` on the instance, or on a subclass for a thread factory.
    """

    stack_size = 0

    def start(self) -> None:
        if not self.stack_size:
            super().start()
            return
        with _stack_size_lock:
            previous = threading.stack_size(self.stack_size)
            try:
                super().start()
            finally:
                threading.stack_size(previous)
