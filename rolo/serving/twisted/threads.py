"""How handler threads and the reactor hand work to each other: calls to the reactor in batches, handlers
woken at the end of the reactor's turn (both :mod:`rolo.websocket.turns` on the reactor), and waiting on
the reactor for handlers to return."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from twisted.internet.defer import Deferred, succeed
from twisted.internet.interfaces import IReactorFromThreads

from rolo.threads import HandlerCount
from rolo.websocket import turns

from ._twisted import call_after_poll, call_from_thread

__all__ = ["BatchedCallFromThread", "HandlerTurns", "idle_within"]


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


class BatchedCallFromThread(turns.BatchedCalls):
    """``reactor.callFromThread`` for many small calls: wakes the reactor once for a batch of them (see
    :class:`~rolo.websocket.turns.BatchedCalls`).

    :param reactor: the reactor to run the calls on
    """

    def __init__(self, reactor: IReactorFromThreads) -> None:
        super().__init__(call_from_thread(reactor))


class HandlerTurns(turns.HandlerTurns):
    """Wakes WebSocket handlers at the end of each reactor turn, then lends them the reactor's time (see
    :class:`~rolo.websocket.turns.HandlerTurns`).

    :param reactor: the reactor to run on
    :param calls: how the handlers hand calls to the reactor; held during the wait
    :param limits: ``handler_time``, ``turn_limit`` and ``handlers_per_turn``, as
        :class:`~rolo.websocket.turns.HandlerTurns` takes them
    """

    def __init__(self, reactor: Any, calls: BatchedCallFromThread, **limits: Any) -> None:
        def call_soon(call: Callable[[], None]) -> None:
            # once the poll's events are handled, without a timed call where the reactor allows it
            if not call_after_poll(reactor, call):
                reactor.callLater(0, call)

        super().__init__(call_soon, calls, **limits)
