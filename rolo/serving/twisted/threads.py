"""Thread pools for handlers, the count of running handlers, and how handler threads hand work to the
reactor."""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any

from twisted.internet.defer import Deferred, succeed
from twisted.internet.interfaces import IReactorFromThreads
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.python.threadpool import ThreadPool

from rolo.threads import HandlerThread

__all__ = ["Activity", "BatchedCallFromThread", "HandlerTurns", "HandlerThreadPool", "HandlerThreads"]

log = Logger()



class _DaemonHandlerThread(HandlerThread):
    """A handler thread (of :class:`HandlerThreadPool` or :class:`HandlerThreads`): a daemon, so that a
    handler that never returns cannot keep the process alive after the server stopped waiting for it; with
    a stack of ``stack_size`` bytes unless that is 0."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, daemon=True, **kwargs)


class HandlerThreadPool(ThreadPool):
    """A thread pool that starts with its first job and stops when the reactor shuts down.

    The server's HTTP handlers run in one of its own, rather than in the reactor's shared pool, so that
    nothing else in the process (WebSocket handlers have threads of their own) can starve them. Its
    threads are daemon threads (see :meth:`stop`).

    :param reactor: the reactor whose shutdown stops the pool
    :param name: shown in thread names
    :param max_threads: the most threads the pool runs at once
    :param stack_size: the stack size of its threads in bytes (0: the platform's default)
    """

    def __init__(self, reactor: Any, name: str, max_threads: int, stack_size: int = 0) -> None:
        super().__init__(minthreads=0, maxthreads=max_threads, name=name)
        self.threadFactory = type("HandlerThread", (_DaemonHandlerThread,), {"stack_size": stack_size})
        self._reactor = reactor
        self._shutdown_trigger: Any = None

    def callInThreadWithCallback(self, onResult: Any, func: Any, *args: Any, **kw: Any) -> None:
        if not self.started and not self.joined:
            self.start()
            self._shutdown_trigger = self._reactor.addSystemEventTrigger("during", "shutdown", self.stop)
        super().callInThreadWithCallback(onResult, func, *args, **kw)

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


class HandlerThreads:
    """A thread for each handler, started with it and ended by its return, offering the calls of
    :class:`HandlerThreadPool` that a server makes (``callInThreadWithCallback``, ``stop``, ``join``).

    For handlers that live as long as their connection, a pool reuses nothing: a Twisted pool worker costs
    about 12 KB more than its thread (a queue, three conditions, context objects), and an idle one keeps
    its thread after the connection is gone. Its threads are daemon threads, as the pool's.

    :param name: the threads' name
    :param stack_size: their stack size in bytes (0: the platform's default)
    """

    def __init__(self, name: str, stack_size: int = 0) -> None:
        self._thread_class = type("HandlerThread", (_DaemonHandlerThread,), {"stack_size": stack_size})
        self._name = name
        self._lock = threading.Lock()
        self.threads: set[threading.Thread] = set()

    def callInThreadWithCallback(self, onResult: Any, func: Any, *args: Any, **kw: Any) -> None:
        """Start a thread that runs ``func(*args, **kw)``, then ``onResult(True, result)`` or, if it
        raised, ``onResult(False, failure)``.

        :raises RuntimeError: if the thread could not be started (the process is out of threads); then
            ``onResult`` is never called
        """
        thread = self._thread_class(target=self._run, args=(onResult, func, args, kw), name=self._name)
        with self._lock:
            self.threads.add(thread)
        try:
            thread.start()
        except RuntimeError:
            with self._lock:
                self.threads.discard(thread)
            raise

    def _run(self, onResult: Any, func: Any, args: tuple[Any, ...], kw: dict[str, Any]) -> None:
        try:
            try:
                result = func(*args, **kw)
            except BaseException:
                onResult(False, Failure())
            else:
                onResult(True, result)
        finally:
            with self._lock:
                self.threads.discard(threading.current_thread())

    def stop(self) -> None:
        """Nothing to stop: each thread ends when its handler returns. Here for the pool's callers."""

    def join(self, timeout: float | None = None) -> bool:
        """Wait until every handler thread has exited, at most ``timeout`` seconds in all (``None``: no
        limit). Never call it on the reactor thread. Whether they all exited."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._lock:
            threads = list(self.threads)
        for thread in threads:
            thread.join(None if deadline is None else max(0.0, deadline - time.monotonic()))
        return not any(thread.is_alive() for thread in threads)


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


class BatchedCallFromThread:
    """``reactor.callFromThread`` for many small calls: wakes the reactor once for a batch of them.

    Each wake-up costs a write to the reactor's waker pipe and a turn of its loop, which for a small
    message is more than writing the message itself. Calls made while a wake-up is pending join it, and
    the reactor runs them all, in the order they were made, when it wakes: under load, one wake-up carries
    the sends of many connections.

    :param reactor: the reactor to run the calls on
    """

    def __init__(self, reactor: IReactorFromThreads) -> None:
        self._reactor = reactor
        self._calls: deque[Callable[[], None]] = deque()
        self._lock = threading.Lock()
        self._wake_pending = False

    def __call__(self, call: Callable[[], None]) -> None:
        """Run ``call`` on the reactor thread, soon; callable from any thread."""
        self._calls.append(call)
        with self._lock:
            if self._wake_pending:
                return
            self._wake_pending = True
        self._reactor.callFromThread(self._run_calls)

    def hold(self) -> None:
        """Queue calls without waking the reactor, until :meth:`release`; call this on the reactor thread,
        which is about to wait for them."""
        with self._lock:
            self._wake_pending = True

    def release(self) -> None:
        """Run the calls queued since :meth:`hold`, and wake the reactor for calls again."""
        self._run_calls()

    def _run_calls(self) -> None:
        # cleared before counting: a call queued from now on is counted below or wakes the reactor again
        with self._lock:
            self._wake_pending = False
        calls = self._calls
        # only those queued so far: the reactor gets back to I/O even while handlers keep sending
        for _ in range(len(calls)):
            call = calls.popleft()
            try:
                call()
            except Exception:
                log.failure("a call handed to the reactor failed")


class HandlerTurns:
    """Wakes WebSocket handlers at the end of each reactor turn, then lends them the reactor's time
    (:class:`~rolo.websocket.threaded.WakeUps`).

    Once the reactor has handled the I/O events at hand, it hands every message that arrived to its
    handler, and then waits, without the GIL, until each handler it woke has settled (blocked again in
    rolo, usually waiting for its next message) or the wait's bound (below) has passed. Then it runs what
    the handlers handed it meanwhile (their sends) itself, without a wake-up through the waker pipe.

    The handlers would hold the GIL in that time anyway; what the wait saves is the contention: a reactor
    going on with I/O while they run gives the GIL up at each system call and waits for it back, and each
    handler's send would wake it through the waker pipe to do so. The wait is bounded by
    ``handler_time`` for each handler woken, and by ``turn_limit`` in all, so a handler busy with
    something other than rolo (a computation, a database) delays the reactor by that at most.

    :param reactor: the reactor to run on
    :param calls: how the handlers hand calls to the reactor; held during the wait
    :param handler_time: how long the reactor waits for each handler it woke
    :param turn_limit: the longest the reactor waits for the handlers of one turn
    :param handlers_per_turn: the most handlers woken in one turn; in a burst (thousands of connections
        getting a message at once) the rest wait for the next turns, so that only so many threads contend
        for the CPU and the GIL at a time, and the reactor still gets to I/O between turns
    """

    def __init__(
        self,
        reactor: Any,
        calls: BatchedCallFromThread,
        handler_time: float = 0.0001,
        turn_limit: float = 0.002,
        handlers_per_turn: int = 64,
    ) -> None:
        self._reactor = reactor
        self._calls = calls
        self._handler_time = handler_time
        self._turn_limit = turn_limit
        self._handlers_per_turn = handlers_per_turn
        self._to_wake: list[Any] = []
        self._lock = threading.Lock()
        self._running: set[Any] = set()
        self._all_settled = threading.Lock()

    def wake(self, adapter: Any) -> None:
        """Deliver ``adapter``'s messages at the end of this turn; call this on the reactor thread."""
        if not self._to_wake:
            self._reactor.callLater(0, self._run_turn)
        self._to_wake.append(adapter)

    def settled(self, adapter: Any) -> None:
        """``adapter``'s handler is about to block; callable from any thread."""
        with self._lock:
            running = self._running
            if adapter in running:
                running.discard(adapter)
                if not running:
                    self._all_settled.release()

    def _run_turn(self) -> None:
        cut = self._handlers_per_turn
        adapters, self._to_wake = self._to_wake[:cut], self._to_wake[cut:]
        if self._to_wake:
            self._reactor.callLater(0, self._run_turn)  # the rest after the reactor's next look at I/O
        self._calls.hold()
        try:
            with self._lock:
                self._running = set(adapters)
                self._all_settled.acquire()
            for adapter in adapters:
                try:
                    adapter.deliver()
                except Exception:
                    log.failure("delivering messages to a handler failed")
            # released by the last handler to settle; otherwise the limit ends the wait
            self._all_settled.acquire(timeout=min(self._turn_limit, self._handler_time * len(adapters)))
            with self._lock:
                self._running = set()  # from now on, handlers settling are too late to count
                if self._all_settled.locked():
                    self._all_settled.release()
        finally:
            self._calls.release()
