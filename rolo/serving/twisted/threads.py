"""Thread pools for handlers, owned by the server that uses them, and the count of running handlers."""

from __future__ import annotations

import threading
import time
from typing import Any

from twisted.internet.defer import Deferred, succeed
from twisted.logger import Logger
from twisted.python.threadpool import ThreadPool

__all__ = ["Activity", "HandlerThreadPool"]

log = Logger()

# threading.stack_size is process-wide: set and restore it under a lock around each start
_stack_size_lock = threading.Lock()


class _HandlerThread(threading.Thread):
    """A pool thread: a daemon, so that a handler that never returns cannot keep the process alive after
    the server stopped waiting for it; with a stack of ``stack_size`` bytes unless that is 0."""

    stack_size = 0

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, daemon=True, **kwargs)

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


class HandlerThreadPool(ThreadPool):
    """A thread pool that starts with its first job and stops when the reactor shuts down.

    Each server makes its own, rather than using the reactor's shared pool, so that one kind of work
    (WebSocket handlers that live as long as their connection) cannot starve another (HTTP requests).
    Its threads are daemon threads (see :meth:`stop`).

    :param reactor: the reactor whose shutdown stops the pool
    :param name: shown in thread names
    :param max_threads: the most threads the pool runs at once
    :param stack_size: the stack size of its threads in bytes (0: the platform's default)
    :param max_idle: how many idle threads to keep for later jobs; a thread finishing a job beyond that
        stops (``None``: every thread started stays, up to ``max_threads``)
    """

    def __init__(
        self, reactor: Any, name: str, max_threads: int, stack_size: int = 0, max_idle: int | None = None
    ) -> None:
        super().__init__(minthreads=0, maxthreads=max_threads, name=name)
        self.max_idle = max_idle
        self._thread_class = type("HandlerThread", (_HandlerThread,), {"stack_size": stack_size})
        self.threadFactory = self._new_thread
        self._reactor = reactor
        self._shutdown_trigger: Any = None

    def callInThreadWithCallback(self, onResult: Any, func: Any, *args: Any, **kw: Any) -> None:
        if not self.started and not self.joined:
            self.start()
            self._shutdown_trigger = self._reactor.addSystemEventTrigger("during", "shutdown", self.stop)
        super().callInThreadWithCallback(self._then_trim(onResult), func, *args, **kw)

    def _then_trim(self, onResult: Any) -> Any:
        if self.max_idle is None:
            return onResult

        def done(success: bool, result: Any) -> None:
            try:
                if onResult is not None:
                    onResult(success, result)
                elif not success:
                    log.failure("a job in thread pool {name} failed", result, name=self.name)
            finally:
                # this thread is about to go idle: past max_idle idle ones, one stops (unless the whole
                # pool is stopping)
                if self.started and len(self.waiters) >= self.max_idle:
                    self.stopAWorker()

        return done

    def _new_thread(self, *args: Any, **kwargs: Any) -> threading.Thread:
        # Twisted's pool lists every thread it ever started: forget the finished ones, which come and go
        # with max_idle (threads are only made, and listed, under the pool's coordinator lock)
        self.threads[:] = [thread for thread in self.threads if thread.is_alive()]
        return self._thread_class(*args, **kwargs)

    def stop(self) -> None:
        """Tell the pool's threads to quit, without waiting for them: an idle thread quits at once, a busy
        one when its job returns.

        Unlike :meth:`ThreadPool.stop` this does not join the threads, because it runs on the reactor
        thread, which a running handler may be waiting on. Call :meth:`join` from another thread to wait
        for them; a thread whose handler never returns is a daemon and does not keep the process alive.
        """
        if self._shutdown_trigger is not None:
            try:
                self._reactor.removeSystemEventTrigger(self._shutdown_trigger)
            except ValueError:
                pass  # already fired: this is the shutdown
            self._shutdown_trigger = None
        if self.started:
            # ThreadPool.stop tells every worker to quit, then joins the threads it lists: list none
            threads, self.threads = self.threads, []
            super().stop()
            self.threads = threads

    def join(self, timeout: float | None = None) -> bool:
        """Wait until every thread of the stopped pool has exited, at most ``timeout`` seconds in all
        (``None``: no limit). Never call it on the reactor thread. Whether they all exited."""
        deadline = None if timeout is None else time.monotonic() + timeout
        for thread in list(self.threads):
            thread.join(None if deadline is None else max(0.0, deadline - time.monotonic()))
        return not any(thread.is_alive() for thread in self.threads)


class Activity:
    """How many handlers of one kind are running, counted on the reactor thread, so that a shutdown can
    wait until none are.

    :param reactor: the reactor whose clock times :meth:`idle`
    """

    def __init__(self, reactor: Any) -> None:
        self.reactor = reactor
        self.running = 0
        self._idle_waiters: list[Deferred[bool]] = []

    def started(self) -> None:
        """A handler started."""
        self.running += 1

    def finished(self) -> None:
        """A handler returned."""
        self.running -= 1
        if self.running == 0:
            waiters, self._idle_waiters = self._idle_waiters, []
            for waiter in waiters:
                if not waiter.called:  # one whose timeout passed has fired already
                    waiter.callback(True)

    def idle(self, timeout: float) -> Deferred[bool]:
        """Fires with ``True`` once no handler is running, or with ``False`` after ``timeout`` seconds."""
        if self.running == 0:
            return succeed(True)
        waiter: Deferred[bool] = Deferred()
        self._idle_waiters.append(waiter)
        waiter.addTimeout(timeout, self.reactor, onTimeoutCancel=lambda result, timeout: False)
        return waiter
