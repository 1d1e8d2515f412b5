"""BatchedCallFromThread: calls from many threads reach the reactor in order, one failure spares the rest."""

from __future__ import annotations

import threading

import pytest_twisted
from twisted.internet import reactor
from twisted.internet.defer import Deferred

from rolo.serving.twisted.threads import BatchedCallFromThread

from ..helpers import in_thread


@pytest_twisted.ensureDeferred
async def test_calls_from_threads_run_on_the_reactor_in_order() -> None:
    call_from_thread = BatchedCallFromThread(reactor)
    reactor_thread = threading.get_ident()
    seen: dict[int, list[int]] = {}
    done: Deferred[None] = Deferred()
    threads, calls_each = 4, 500

    def record(sender: int, index: int) -> None:
        assert threading.get_ident() == reactor_thread
        seen.setdefault(sender, []).append(index)
        if sum(map(len, seen.values())) == threads * calls_each:
            done.callback(None)

    def sender(number: int) -> None:
        for index in range(calls_each):
            call_from_thread(lambda index=index: record(number, index))

    for number in range(threads):
        in_thread(sender, number)
    await done.addTimeout(10, reactor)
    assert seen == {number: list(range(calls_each)) for number in range(threads)}


@pytest_twisted.ensureDeferred
async def test_a_failing_call_is_logged_and_the_next_still_runs() -> None:
    call_from_thread = BatchedCallFromThread(reactor)
    done: Deferred[str] = Deferred()

    def fail() -> None:
        raise RuntimeError("boom")

    def queue_both() -> None:
        call_from_thread(fail)
        call_from_thread(lambda: done.callback("ran"))

    await in_thread(queue_both)
    assert await done.addTimeout(10, reactor) == "ran"
