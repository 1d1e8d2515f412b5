"""HandlerThread: a thread with a stack size of its own, which shares threading's bookkeeping once started
and runs under SCHED_BATCH where Linux has it."""

from __future__ import annotations

import os
import queue
import threading

import pytest

from rolo.threads import HandlerThread

TIMEOUT = 10


class StackThread(HandlerThread):
    stack_size = 256 * 1024


def test_started_threads_report_alive_and_joined_each_on_its_own() -> None:
    release = [threading.Event(), threading.Event()]
    threads = [StackThread(target=event.wait, args=(TIMEOUT,)) for event in release]
    for thread in threads:
        thread.start()
    assert all(thread.is_alive() for thread in threads)

    release[0].set()
    threads[0].join(TIMEOUT)
    assert not threads[0].is_alive()
    assert threads[1].is_alive()  # the other is still running, whatever they share

    release[1].set()
    threads[1].join(TIMEOUT)
    assert not threads[1].is_alive()
    with pytest.raises(RuntimeError):
        threads[0].start()  # still known to have started


def test_the_process_stack_size_is_put_back_after_start() -> None:
    before = threading.stack_size()
    thread = StackThread(target=lambda: None)
    thread.start()
    thread.join(TIMEOUT)
    assert threading.stack_size() == before


def test_an_exception_escaping_the_thread_reaches_threading_excepthook(monkeypatch: pytest.MonkeyPatch) -> None:
    reported: queue.Queue[threading.ExceptHookArgs] = queue.Queue()
    monkeypatch.setattr(threading, "excepthook", reported.put)  # set after the thread class was defined

    def fail() -> None:
        raise ValueError("boom")

    thread = StackThread(target=fail)
    thread.start()
    thread.join(TIMEOUT)
    args = reported.get(timeout=TIMEOUT)
    assert args.exc_type is ValueError
    assert args.thread is thread


@pytest.mark.skipif(not hasattr(os, "SCHED_BATCH"), reason="no SCHED_BATCH on this platform")
def test_a_handler_thread_runs_under_sched_batch() -> None:
    policies: queue.SimpleQueue[int] = queue.SimpleQueue()
    thread = HandlerThread(target=lambda: policies.put(os.sched_getscheduler(0)))
    thread.start()
    thread.join(TIMEOUT)
    assert policies.get(timeout=TIMEOUT) == os.SCHED_BATCH
