"""Handler turns: an event loop and its WebSocket handler threads hand work to each other in batches.

Two ideas, for any event loop, which a server gives its two ways of scheduling a call (Twisted's
``reactor.callFromThread`` and ``reactor.callLater(0, …)``; asyncio's ``loop.call_soon_threadsafe`` and
``loop.call_soon``):

- :class:`BatchedCalls`: the calls handler threads make to the loop (their sends) wake the loop once for a
  batch of them, not once each.
- :class:`HandlerTurns` (:class:`~rolo.websocket.threaded.WakeUps`): the handlers are woken at the end of
  the loop's turn, one after the other, and the loop waits for them without the GIL, then runs what they
  handed it.

A woken handler thread only contends with a busy loop for the GIL: each system call of the loop lets the
GIL go to a handler, and the loop waits for it back (up to the interpreter's switch interval, 5 ms, while
thousands of handlers are runnable). Waiting for them instead costs the loop the time the handlers would
hold the GIL anyway, and saves the contention. A lone handler has no other handler to contend with, and
the loop has no other message at hand: it is woken, and the loop does not wait for it.
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from collections.abc import Callable

from .threaded import ThreadedWebSocketAdapter

__all__ = ["BatchedCalls", "HandlerTurns"]

LOG = logging.getLogger("rolo.websocket")

Call = Callable[[], None]


class BatchedCalls:
    """Runs calls on the loop thread, from any thread, waking the loop once for a batch of them.

    Each wake-up costs a write to the loop's waker (a pipe, an eventfd), which also lets go of the GIL, and
    a turn of the loop: for a small message, more than writing the message. Calls made while a wake-up is
    pending join it, and the loop runs them all, in the order they were made, when it wakes; under load one
    wake-up carries the sends of many connections.

    Once the loop is closed (``call_from_thread`` raises ``RuntimeError``, as asyncio's
    ``call_soon_threadsafe`` does), the calls waiting are dropped, since nothing will run them, and a later
    call tries to wake the loop again.

    :param call_from_thread: runs a callable on the loop thread soon, from any thread, waking the loop;
        raises ``RuntimeError`` if the loop is closed

    Hand a connection its bound ``__call__`` rather than the object: calling the object, CPython looks
    ``__call__`` up on its type and binds it each time, 0.6k instructions more for every send.
    """

    def __init__(self, call_from_thread: Callable[[Call], object]) -> None:
        self._call_from_thread = call_from_thread
        self._calls: deque[Call] = deque()
        # held while a wake-up is pending (or the calls are held): taking it is the one check a call makes,
        # without the Python-level ``with`` a lock around a flag costs; only the loop thread releases it
        self._wake_pending = threading.Lock()

    def __call__(self, call: Call) -> None:
        """Run ``call`` on the loop thread, soon; callable from any thread."""
        self._calls.append(call)
        wake_pending = self._wake_pending
        # locked() first, which parses no arguments where acquire does: under load a wake-up is usually
        # pending, or the calls held. A wake-up pending then releases the lock after this append, before
        # it counts the calls to run: this one is among them
        if not wake_pending.locked() and wake_pending.acquire(False):  # none was pending: this call wakes the loop
            try:
                self._call_from_thread(self._run_calls)
            except RuntimeError:
                # the loop is closed: whoever made these calls is gone with it. Held, the lock would make
                # every later call wait for a wake-up that never comes, and keep it
                self._calls.clear()
                wake_pending.release()

    def hold(self) -> None:
        """Queue calls without waking the loop, until :meth:`release`; call this on the loop thread, which
        is about to wait for them."""
        self._wake_pending.acquire(False)

    def release(self) -> None:
        """Run the calls queued since :meth:`hold` (loop thread), and wake the loop for calls again."""
        self._run_calls()

    def _run_calls(self) -> None:
        # cleared before counting: a call queued from now on is counted below or wakes the loop again
        if self._wake_pending.locked():  # unless a release ran the calls this wake-up was for
            self._wake_pending.release()
        calls = self._calls
        # only those queued so far: the loop gets back to I/O even while handlers keep calling
        for _ in range(len(calls)):
            call = calls.popleft()
            try:
                call()
            except Exception:
                LOG.exception("a call handed to the event loop failed")


def _delivered(adapter: ThreadedWebSocketAdapter) -> bool:
    """Hand ``adapter`` the messages that arrived, waking its handler: whether it was woken (not if its
    close handed them over already, nor if delivering failed, which costs its own connection only)."""
    try:
        return adapter.deliver()
    except Exception:
        LOG.exception("delivering messages to a handler failed")
        return False


class HandlerTurns:
    """Wakes WebSocket handlers at the end of each turn of the loop, one at a time, then lends them the
    loop's time (:class:`~rolo.websocket.threaded.WakeUps`).

    Once the loop has handled the I/O at hand, it hands the messages that arrived to their handlers, and
    then waits, without the GIL, until each handler it woke has blocked again in rolo (usually waiting for
    its next message) or the wait's bound (below) has passed. Then it runs what the handlers handed it
    meanwhile (their sends) itself, without a wake-up.

    The handlers of a turn are woken one at a time, in the order their messages arrived, each by the
    thread of the one before as that one blocks in rolo (about to let go of the GIL). Woken together, all
    but one would only wake to sleep again waiting for the GIL: a context switch more per message.

    The wait is bounded by ``handler_time`` for each handler of the turn, and by ``turn_limit`` in all, so
    a handler busy with something other than rolo (a computation, a database) delays the loop, and the
    handlers of its turn after it, by that at most: once the bound has passed, the loop wakes those at
    once. The loop sleeps through the whole wait, rather than waking to check on each handler.

    A turn of one handler is not waited for: its handler is woken, and its sends wake the loop as they
    would outside a turn. The loop would gain nothing for the wait: the handler has no other to contend
    with for the GIL, and the loop, with no other message at hand, is about to wait for I/O. Waiting cost
    more: at one connection (an echo of 32 bytes, server pinned to a CPU), 10 to 17 µs more server CPU per
    message than the pipe write, read and ``epoll_wait`` of the wake-up it saves, and 5 to 36% fewer
    messages a second. Either way the two threads take the CPU from each other once each per message.

    :param call_soon: runs a callable on the loop thread once the I/O at hand is handled; called on the
        loop thread
    :param calls: how the handlers hand calls to the loop; held during the wait
    :param handler_time: how long the loop waits for each handler of the turn, in seconds
    :param turn_limit: the longest the loop waits for the handlers of one turn, in seconds
    :param handlers_per_turn: the most handlers woken in one turn; in a burst (thousands of connections
        getting a message at once) the rest wait for the next turns, so that only so many threads contend
        for the CPU and the GIL at a time, and the loop still gets to I/O between turns
    """

    def __init__(
        self,
        call_soon: Callable[[Call], None],
        calls: BatchedCalls,
        handler_time: float = 0.0001,
        turn_limit: float = 0.002,
        handlers_per_turn: int = 64,
    ) -> None:
        self._call_soon = call_soon
        self._calls = calls
        self._handler_time = handler_time
        self._turn_limit = turn_limit
        self._handlers_per_turn = handlers_per_turn
        self._to_wake: list[ThreadedWebSocketAdapter] = []
        # the turn's state, shared by the loop and the handler threads of the turn, under this lock
        self._lock = threading.Lock()
        self._running: set[ThreadedWebSocketAdapter] = set()  # woken this turn, not blocked yet
        self._waiting: list[ThreadedWebSocketAdapter] = []  # this turn's, not woken yet (the next last)
        self._all_blocked = threading.Lock()  # held through a turn; the last handler to block frees it for the loop

    def wake(self, adapter: ThreadedWebSocketAdapter) -> None:
        """Deliver ``adapter``'s messages at the end of this turn; call this on the loop thread."""
        if not self._to_wake:
            self._call_soon(self._run_turn)
        self._to_wake.append(adapter)

    def blocking(self, adapter: ThreadedWebSocketAdapter) -> None:
        """``adapter``'s handler is about to block; callable from any thread. The turn's next handler is
        woken now, by this thread, which is about to let go of the GIL."""
        if adapter not in self._running:
            # not woken by a turn (a lone handler, or one the turn gave up on): nothing to do, and no lock
            # to take for it. As the same test under the lock: the turn counts an adapter as running
            # before it delivers to it (_wake_next), so a handler this delivery wakes finds it running
            return
        lock = self._lock  # taken for every message a handler receives: acquire and release cost less than with
        lock.acquire()
        try:
            running = self._running
            if adapter in running:
                running.discard(adapter)
                self._wake_next()
        finally:
            lock.release()

    def _wake_next(self) -> None:
        # holding the lock: the turn's next handler runs, or the turn is over once none is left running.
        # A handler thread may deliver here: the loop waits in the turn meanwhile, and does not touch the
        # adapters of the turn until it has emptied _waiting under the lock
        waiting = self._waiting
        running = self._running
        while waiting:
            adapter = waiting.pop()
            # running before its handler is woken: that handler may block again before the delivery
            # returns (this thread losing the GIL to it), and blocking, without the lock, must find it
            running.add(adapter)
            try:  # _delivered, without its call: this runs for every message of a turn
                if adapter.deliver():
                    return
            except Exception:
                LOG.exception("delivering messages to a handler failed")
            running.discard(adapter)  # its close handed its messages over, or it failed: not this turn's
        if not running:
            self._all_blocked.release()

    def _run_turn(self) -> None:
        cut = self._handlers_per_turn
        adapters, self._to_wake = self._to_wake[:cut], self._to_wake[cut:]
        if self._to_wake:
            self._call_soon(self._run_turn)  # the rest after the loop's next look at I/O
        if len(adapters) == 1:  # a lone handler, not waited for (see above)
            _delivered(adapters[0])
            return
        # counted before the turn: waking its handlers pops them off the list
        bound = min(self._turn_limit, self._handler_time * len(adapters))
        self._calls.hold()
        try:
            with self._lock:
                adapters.reverse()  # popped from the end: in the order their messages arrived
                self._waiting = adapters
                self._all_blocked.acquire(False)  # free between turns: each turn's end releases it
                self._wake_next()
            # released by the last handler to block; otherwise the bound ends the wait
            self._all_blocked.acquire(True, bound)  # positional: no keyword parsing
        finally:
            self._end_turn()

    def _end_turn(self) -> None:
        # whatever ended the turn (its handlers all blocked, the bound passed, a delivery raised): the
        # handlers not woken yet, behind one busy with something other than rolo, are woken at once; from
        # now on, handlers blocking are too late to count; the sends handed over meanwhile run
        try:
            with self._lock:
                try:
                    while self._waiting:
                        self._wake_next()
                finally:
                    rest, self._waiting = self._waiting, []
                    if rest:  # a delivery raised past this loop: the rest are the next turn's first
                        rest.reverse()
                        if not self._to_wake:
                            self._call_soon(self._run_turn)
                        self._to_wake[:0] = rest
                    self._running = set()
                    if self._all_blocked.locked():
                        self._all_blocked.release()
        finally:
            self._calls.release()
