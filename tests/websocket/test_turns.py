"""Handler turns on asyncio's loop, as the ASGI server runs them: handlers woken at the end of the loop's
turn, a bounded number at a time, and their sends run by the loop at the end of the turn, with no wake-up.

The adapters are real, with handler threads that echo; their I/O side records what the loop sends.
"""

from __future__ import annotations

import asyncio
import threading
import weakref
from collections.abc import Callable
from typing import ClassVar

from rolo.websocket import TextMessage, WebSocketDisconnectedError
from rolo.websocket.threaded import ThreadedWebSocketAdapter
from rolo.websocket.turns import BatchedCalls, HandlerTurns

TIMEOUT = 10.0


class EchoSide:
    """The I/O side of one connection on the loop: opens as soon as it is accepted, and records sends."""

    adapter: ThreadedWebSocketAdapter

    def __init__(self, opened: asyncio.Queue, sent: asyncio.Queue) -> None:
        self._opened = opened
        self._sent = sent

    def accept(self, subprotocol, headers) -> None:
        self.adapter.on_open()
        self._opened.put_nowait(self.adapter)

    def send(self, messages) -> None:
        for message in messages:
            self._sent.put_nowait(message if isinstance(message, str) else message.data)  # str: a text's text

    def close(self, code, reason) -> None:
        self.adapter.on_close(None)

    def reject(self, status, headers, body) -> None: ...

    def pause_reading(self) -> None: ...

    def resume_reading(self) -> None: ...


def echo(adapter: ThreadedWebSocketAdapter) -> None:
    """A handler: accept, then send back every message until the connection closes."""
    adapter.receive(TIMEOUT)
    adapter.accept(timeout=TIMEOUT)
    try:
        while True:
            adapter.send(adapter.receive(TIMEOUT))
    except WebSocketDisconnectedError:
        pass


class Server:
    """Connections whose handlers run on ``turns``, on the running loop; it counts the turns scheduled and
    the wake-ups of the loop from handler threads. ``adapter_types`` gives each connection's adapter class
    (all :class:`ThreadedWebSocketAdapter` without it)."""

    def __init__(self, count: int, adapter_types: tuple[type[ThreadedWebSocketAdapter], ...] = (), **limits) -> None:
        loop = asyncio.get_running_loop()
        self.turns_scheduled = 0
        self.wake_ups = 0

        def call_soon_threadsafe(call: Callable[[], None]) -> None:
            self.wake_ups += 1
            loop.call_soon_threadsafe(call)

        def call_soon(call: Callable[[], None]) -> None:
            self.turns_scheduled += 1
            loop.call_soon(call)

        calls = BatchedCalls(call_soon_threadsafe)
        self.turns = turns = HandlerTurns(call_soon, calls, **limits)
        # the handlers' calls to blocking, counted: a test waits for them (blocked) before it has a turn
        # deliver, so that no turn delivers to a handler between its look at its empty inbox and its call to
        # blocking (it would count that delivery's handler as blocked, and wake the turn's next one itself)
        self._blocks = 0
        self._blocks_changed = threading.Condition()
        blocking = turns.blocking

        def blocking_counted(adapter: ThreadedWebSocketAdapter) -> None:
            blocking(adapter)
            with self._blocks_changed:
                self._blocks += 1
                self._blocks_changed.notify_all()

        turns.blocking = blocking_counted  # type: ignore[method-assign]
        self.opened: asyncio.Queue = asyncio.Queue()
        self.sent: asyncio.Queue = asyncio.Queue()
        self.adapters = []
        self.threads = []
        for number in range(count):
            side = EchoSide(self.opened, self.sent)
            adapter_type = adapter_types[number] if adapter_types else ThreadedWebSocketAdapter
            side.adapter = adapter_type(side, calls, wake_ups=turns)
            self.adapters.append(side.adapter)
            self.threads.append(threading.Thread(target=echo, args=(side.adapter,), daemon=True))

    async def open(self) -> None:
        for thread in self.threads:
            thread.start()
        for _ in self.adapters:
            await asyncio.wait_for(self.opened.get(), TIMEOUT)
        await self.blocked(len(self.adapters))  # each handler once, past its accept

    async def blocked(self, times: int) -> None:
        """Wait until the handlers have called blocking ``times`` times in all (once a message each)."""

        def wait() -> bool:
            with self._blocks_changed:
                return self._blocks_changed.wait_for(lambda: self._blocks >= times, TIMEOUT)

        assert await asyncio.to_thread(wait)

    async def echoes(self, count: int) -> list:
        return sorted([await asyncio.wait_for(self.sent.get(), TIMEOUT) for _ in range(count)])

    def close(self) -> None:
        for adapter in self.adapters:
            adapter.on_close(None)
        for thread in self.threads:
            thread.join(TIMEOUT)


def test_a_turn_wakes_at_most_handlers_per_turn_and_the_rest_in_later_turns():
    async def run() -> int:
        server = Server(5, handlers_per_turn=2, handler_time=TIMEOUT, turn_limit=TIMEOUT)
        await server.open()
        server.turns_scheduled = 0
        for number, adapter in enumerate(server.adapters):  # all arrive in one callback of the loop
            adapter.on_message(TextMessage(str(number)))
        assert await server.echoes(5) == ["0", "1", "2", "3", "4"]
        server.close()
        return server.turns_scheduled

    assert asyncio.run(run()) == 3  # 2 + 2 + 1


def wake_ups_in_echo_rounds(handlers: int) -> int:
    """The wake-ups of the loop while each of ``handlers`` echoes a message in each of 20 rounds."""

    async def run() -> int:
        # the loop waits until every handler it woke blocks again, however long that takes
        server = Server(handlers, handler_time=TIMEOUT, turn_limit=TIMEOUT)
        await server.open()
        server.wake_ups = 0
        for round_number in range(20):
            for adapter in server.adapters:
                adapter.on_message(TextMessage(str(round_number)))
            assert await server.echoes(handlers) == [str(round_number)] * handlers
        server.close()
        return server.wake_ups

    return asyncio.run(run())


def test_sends_made_during_a_turn_run_at_its_end_without_waking_the_loop():
    assert wake_ups_in_echo_rounds(3) == 0


def test_a_lone_handler_is_woken_without_the_loop_waiting_for_it():
    # a turn of one: the loop would gain nothing for waiting (no other handler to contend with for the
    # GIL), and waiting cost more than the wake-up its send makes instead, one for each echo here
    assert wake_ups_in_echo_rounds(1) == 20


class Awake(ThreadedWebSocketAdapter):
    """An adapter that counts the handlers woken and not blocked again in rolo, at most, over all of its kind."""

    lock = threading.Lock()
    awake: ClassVar[set[ThreadedWebSocketAdapter]] = set()
    most = 0

    def deliver(self) -> bool:
        with Awake.lock:
            Awake.awake.add(self)
            Awake.most = max(Awake.most, len(Awake.awake))
        return super().deliver()

    def receive(self, timeout=None):
        with Awake.lock:  # about to block in rolo (if its inbox is empty, which it is here)
            Awake.awake.discard(self)
        return super().receive(timeout)


def test_a_turn_wakes_its_handlers_one_at_a_time_each_as_the_one_before_blocks():
    # woken together, all but one handler would only wake to sleep again waiting for the GIL: 4 awake at
    # once in each turn before (deliver was called for each before any ran), 1 now
    async def run() -> int:
        server = Server(4, adapter_types=(Awake,) * 4, handler_time=TIMEOUT, turn_limit=TIMEOUT)
        await server.open()
        Awake.awake.clear()  # of a run before, whose close delivered to its handlers
        Awake.most = 0
        for round_number in range(10):
            for adapter in server.adapters:  # all arrive in one callback of the loop: one turn
                adapter.on_message(TextMessage(str(round_number)))
            assert await server.echoes(4) == [str(round_number)] * 4
            await server.blocked(4 * (round_number + 2))  # each back in receive, its inbox empty
        most = Awake.most  # before the close, which delivers to all four at once
        server.close()
        return most

    assert asyncio.run(run()) == 1


class _LockTellingContention:
    """A lock that sets ``contended`` when a thread finds it held, then waits for it as usual."""

    def __init__(self, contended: threading.Event) -> None:
        self._lock = threading.Lock()
        self._contended = contended

    def acquire(self, blocking: bool = True, timeout: float = -1) -> bool:
        if self._lock.acquire(False):
            return True
        self._contended.set()
        return self._lock.acquire(blocking, timeout)

    def release(self) -> None:
        self._lock.release()

    def __enter__(self) -> bool:
        return self.acquire()

    def __exit__(self, *exc_info: object) -> None:
        self.release()


class _TellingBlocked:
    """``wake_ups`` for one adapter: its turns, telling ``passed`` once its handler went through ``blocking``."""

    def __init__(self, turns: HandlerTurns, passed: threading.Event) -> None:
        self._turns = turns
        self._passed = passed

    def wake(self, adapter: ThreadedWebSocketAdapter) -> None:
        self._turns.wake(adapter)

    def blocking(self, adapter: ThreadedWebSocketAdapter) -> None:
        self._turns.blocking(adapter)
        self._passed.set()


class PreemptedAfterDelivery(ThreadedWebSocketAdapter):
    """An adapter whose delivery, while ``armed``, returns only once its handler has handled the message and
    is about to block again (it went through the turn's ``blocking``, or waits for the turn's lock there):
    as when the thread that delivers loses the GIL to the handler it woke just as the delivery returns."""

    armed = False
    handler_on = threading.Event()

    def __init__(self, connection, call_in_loop, wake_ups: HandlerTurns, **options) -> None:
        handler_on = PreemptedAfterDelivery.handler_on
        wake_ups._lock = _LockTellingContention(handler_on)  # type: ignore[assignment]
        super().__init__(connection, call_in_loop, wake_ups=_TellingBlocked(wake_ups, handler_on), **options)

    def deliver(self) -> bool:
        woken = super().deliver()
        if PreemptedAfterDelivery.armed:
            PreemptedAfterDelivery.armed = False
            PreemptedAfterDelivery.handler_on.wait(TIMEOUT)
        return woken


def test_a_handler_that_blocks_again_before_its_delivery_returns_still_ends_its_part_of_the_turn():
    # the thread that delivers a message may lose the GIL as the delivery returns, and the handler it woke
    # echo and block again before it goes on. Before, the turn counted the handler as running only once
    # the delivery returned: the handler, blocking before, was not counted as blocked, and the turn held
    # the loop and its next handler for its whole bound (here 2 x TIMEOUT)
    async def run() -> list:
        kinds = (PreemptedAfterDelivery, ThreadedWebSocketAdapter)
        server = Server(2, adapter_types=kinds, handler_time=TIMEOUT, turn_limit=2 * TIMEOUT)
        await server.open()
        PreemptedAfterDelivery.handler_on.clear()
        PreemptedAfterDelivery.armed = True
        for adapter, text in zip(server.adapters, ("preempted", "next")):
            adapter.on_message(TextMessage(text))
        echoed = await server.echoes(2)
        server.close()
        return echoed

    result: list = []
    loop_thread = threading.Thread(target=lambda: result.append(asyncio.run(run())), daemon=True)
    loop_thread.start()
    loop_thread.join(TIMEOUT)
    assert result == [["next", "preempted"]]


class Failing(ThreadedWebSocketAdapter):
    """An adapter whose delivery fails (as a full memory would make it) while ``failing`` is set."""

    failing = True

    def deliver(self) -> bool:
        if Failing.failing:
            raise MemoryError("delivery failed")
        return super().deliver()


def test_a_delivery_that_fails_costs_its_own_connection_only_and_the_turns_go_on():
    # the first failure is the loop's (it wakes the turn's first handler), the second a handler thread's
    # (it wakes the next as it blocks). Handlers woken all at once, a failing connection counted as running
    # and held every turn for its whole bound; in the one-at-a-time wake first tried (9db8b79, reverted),
    # the first failure left the turn's lock held, and the loop froze
    Failing.failing = True

    async def run() -> list:
        kinds = (Failing, ThreadedWebSocketAdapter, Failing, ThreadedWebSocketAdapter)
        server = Server(4, adapter_types=kinds, handler_time=TIMEOUT, turn_limit=TIMEOUT)
        await server.open()
        echoed = []
        for round_number in range(3):
            for adapter in server.adapters:
                adapter.on_message(TextMessage(str(round_number)))
            echoed += await server.echoes(2)
        Failing.failing = False  # lets the close reach the failing connections' handlers
        server.close()
        return echoed

    assert asyncio.run(run()) == ["0", "0", "1", "1", "2", "2"]


class Interrupted(BaseException):
    """What no ``except Exception`` catches; asyncio logs it when a callback raises it, and goes on."""


class InterruptedOnce(ThreadedWebSocketAdapter):
    """An adapter whose next delivery raises :class:`Interrupted` while ``armed``."""

    armed = True

    def deliver(self) -> bool:
        if InterruptedOnce.armed:
            InterruptedOnce.armed = False
            raise Interrupted
        return super().deliver()


def test_a_turn_that_raises_what_is_not_an_exception_ends_and_the_next_turns_run():
    # the loop's delivery to the turn's first handler raises past the turn's code, which asyncio logs
    # before it goes on: before, the turn's lock stayed held (a next turn would wait for it for good, on
    # the loop's thread: the loop runs in a thread of its own here, for the test to end either way), and
    # the other handlers of the turn were never woken; now the turn ends, the others are woken, and the
    # interrupted connection alone stays without its message
    InterruptedOnce.armed = True
    raised: list = []

    async def run() -> list:
        kinds = (InterruptedOnce, ThreadedWebSocketAdapter, ThreadedWebSocketAdapter)
        server = Server(3, adapter_types=kinds, handler_time=TIMEOUT, turn_limit=TIMEOUT)
        asyncio.get_running_loop().set_exception_handler(lambda loop, context: raised.append(context["exception"]))
        await server.open()
        for adapter in server.adapters:
            adapter.on_message(TextMessage("0"))
        echoed = await server.echoes(2)
        for adapter in server.adapters[1:]:
            adapter.on_message(TextMessage("1"))
        echoed += await server.echoes(2)
        server.close()
        return echoed

    result: list = []
    loop_thread = threading.Thread(target=lambda: result.append(asyncio.run(run())), daemon=True)
    loop_thread.start()
    loop_thread.join(3 * TIMEOUT)
    assert result == [["0", "0", "1", "1"]]
    assert [type(error) for error in raised] == [Interrupted]


def test_a_connection_closed_before_its_turn_does_not_hold_the_turn():
    # a message and the close arrive in one callback: the close hands the message over itself, and its
    # handler, which finds the end of the connection behind it, never blocks again. Before, the turn
    # counted it as running and waited its whole bound (here 2 x TIMEOUT) before the next handler's echo
    async def run() -> list:
        server = Server(2, handler_time=TIMEOUT, turn_limit=2 * TIMEOUT)
        await server.open()
        closing, other = server.adapters
        closing.on_message(TextMessage("closing"))
        other.on_message(TextMessage("other"))
        closing.on_close(None)
        echoed = await server.echoes(1)  # within TIMEOUT
        server.close()
        return echoed

    assert asyncio.run(run()) == ["other"]


class BusyOnce(ThreadedWebSocketAdapter):
    """An adapter whose handler, given the message ``busy``, is busy with something other than rolo (it
    waits for ``done``) before it goes on."""

    done = threading.Event()

    def receive(self, timeout=None):
        message = super().receive(timeout)
        if getattr(message, "data", None) == "busy":
            BusyOnce.done.wait(TIMEOUT)
        return message


def test_a_delivery_that_raises_as_the_turn_ends_leaves_the_rest_of_the_turn_to_the_next():
    # the first handler is busy past the turn's bound (3 ms here), so the loop wakes the rest of the turn
    # at once as it ends it; the first of them raises what is not an Exception. Before, the turn's
    # handlers not woken yet were forgotten (their connections never woken again); now the next turn
    # wakes them
    async def run() -> list:
        kinds = (BusyOnce, InterruptedOnce, ThreadedWebSocketAdapter)
        server = Server(3, adapter_types=kinds, handler_time=0.001, turn_limit=TIMEOUT)
        asyncio.get_running_loop().set_exception_handler(lambda loop, context: None)
        await server.open()
        InterruptedOnce.armed = True
        for adapter, text in zip(server.adapters, ("busy", "lost", "woken")):
            adapter.on_message(TextMessage(text))
        echoed = await server.echoes(1)
        BusyOnce.done.set()
        echoed += await server.echoes(1)
        server.close()
        return echoed

    BusyOnce.done.clear()
    result: list = []
    loop_thread = threading.Thread(target=lambda: result.append(asyncio.run(run())), daemon=True)
    loop_thread.start()
    loop_thread.join(3 * TIMEOUT)
    assert result == [["woken", "busy"]]


def test_calls_to_a_closed_loop_are_dropped_and_the_next_call_tries_again():
    # a server's loop closed while handler threads still call it (their sends, their handlers returning).
    # Before, the first call's failed wake-up left the wake-up pending for good: every later call was kept
    # in the queue, with what it holds, and none tried to wake the loop again
    class Job:
        def __call__(self) -> None: ...

    loop = asyncio.new_event_loop()
    attempts = []

    def call_soon_threadsafe(call: Callable[[], None]) -> None:
        attempts.append(call)
        loop.call_soon_threadsafe(call)

    calls = BatchedCalls(call_soon_threadsafe)
    loop.close()
    job = Job()
    dropped = weakref.ref(job)
    calls(job)
    del job
    assert dropped() is None
    calls(Job())
    assert len(attempts) == 2
