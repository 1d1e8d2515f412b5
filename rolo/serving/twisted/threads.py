"""How handler threads and the reactor hand work to each other: calls to the reactor in batches, handlers
woken at the end of the reactor's turn, and waiting on the reactor for handlers to return."""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable
from typing import Any

from twisted.internet.defer import Deferred, succeed
from twisted.internet.interfaces import IReactorFromThreads
from twisted.logger import Logger

from rolo.threads import HandlerCount

__all__ = ["BatchedCallFromThread", "HandlerTurns", "idle_within"]

log = Logger()


def idle_within(handlers: HandlerCount, timeout: float, reactor: Any) -> Deferred[bool]:
    """Fires with ``True`` once none of ``handlers`` runs, or with ``False`` after ``timeout`` seconds."""
    if handlers.running == 0:
        return succeed(True)
    idle: Deferred[bool] = Deferred()
    idle.addTimeout(timeout, reactor, onTimeoutCancel=lambda result, timeout: False)

    def fire() -> None:
        if not idle.called:  # one whose timeout passed has fired already
            idle.callback(True)

    handlers.when_idle(fire)
    return idle


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
    handler, and then waits, without the GIL, until each handler it woke has blocked again in rolo
    (usually waiting for its next message) or the wait's bound (below) has passed. Then it runs what
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
        self._all_blocked = threading.Lock()

    def wake(self, adapter: Any) -> None:
        """Deliver ``adapter``'s messages at the end of this turn; call this on the reactor thread."""
        if not self._to_wake:
            self._reactor.callLater(0, self._run_turn)
        self._to_wake.append(adapter)

    def blocking(self, adapter: Any) -> None:
        """``adapter``'s handler is about to block; callable from any thread."""
        with self._lock:
            running = self._running
            if adapter in running:
                running.discard(adapter)
                if not running:
                    self._all_blocked.release()

    def _run_turn(self) -> None:
        cut = self._handlers_per_turn
        adapters, self._to_wake = self._to_wake[:cut], self._to_wake[cut:]
        if self._to_wake:
            self._reactor.callLater(0, self._run_turn)  # the rest after the reactor's next look at I/O
        self._calls.hold()
        try:
            with self._lock:
                self._running = set(adapters)
                self._all_blocked.acquire()
            for adapter in adapters:
                try:
                    adapter.deliver()
                except Exception:
                    log.failure("delivering messages to a handler failed")
            # released by the last handler to block; otherwise the limit ends the wait
            self._all_blocked.acquire(timeout=min(self._turn_limit, self._handler_time * len(adapters)))
            with self._lock:
                self._running = set()  # from now on, handlers blocking are too late to count
                if self._all_blocked.locked():
                    self._all_blocked.release()
        finally:
            self._calls.release()
