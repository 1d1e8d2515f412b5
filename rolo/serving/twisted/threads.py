"""Thread pools for handlers, owned by the server that uses them."""

from __future__ import annotations

import threading
from typing import Any

from twisted.python.threadpool import ThreadPool

__all__ = ["HandlerThreadPool"]

# threading.stack_size is process-wide: set and restore it under a lock around each start
_stack_size_lock = threading.Lock()


class _SizedStackThread(threading.Thread):
    stack_size = 0

    def start(self) -> None:
        with _stack_size_lock:
            previous = threading.stack_size(self.stack_size)
            try:
                super().start()
            finally:
                threading.stack_size(previous)


class HandlerThreadPool(ThreadPool):
    """A thread pool that starts with its first job and stops when the reactor shuts down.

    Each server makes its own, rather than using the reactor's shared pool, so that one kind of work
    (WebSocket handlers that live as long as their connection) cannot starve another (HTTP requests).

    :param reactor: the reactor whose shutdown stops the pool
    :param name: shown in thread names
    :param max_threads: the most threads the pool runs at once
    :param stack_size: the stack size of its threads in bytes (0: the platform's default)
    """

    def __init__(self, reactor: Any, name: str, max_threads: int, stack_size: int = 0) -> None:
        super().__init__(minthreads=0, maxthreads=max_threads, name=name)
        if stack_size:
            self.threadFactory = type("SizedStackThread", (_SizedStackThread,), {"stack_size": stack_size})
        self._reactor = reactor
        self._shutdown_trigger: Any = None

    def callInThreadWithCallback(self, onResult: Any, func: Any, *args: Any, **kw: Any) -> None:
        if not self.started and not self.joined:
            self.start()
            self._shutdown_trigger = self._reactor.addSystemEventTrigger("during", "shutdown", self.stop)
        super().callInThreadWithCallback(onResult, func, *args, **kw)

    def stop(self) -> None:
        if self._shutdown_trigger is not None:
            try:
                self._reactor.removeSystemEventTrigger(self._shutdown_trigger)
            except ValueError:
                pass  # already fired: this is the shutdown
            self._shutdown_trigger = None
        if self.started:
            super().stop()
