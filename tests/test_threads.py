"""HandlerThread: a thread with a stack size of its own, which shares threading's bookkeeping once started
and runs under SCHED_BATCH where Linux has it; HandlerPool: threads reused by the next job, retired idle,
and the process's futexes hashed in Linux's global table."""

from __future__ import annotations

import errno
import json
import os
import queue
import subprocess
import sys
import threading
import time
from collections.abc import Callable

import pytest

from rolo.threads import HandlerPool, HandlerThread, PoolFull

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


@pytest.mark.skipif(not hasattr(os, "fork"), reason="fork is POSIX's")
def test_threads_that_ended_or_still_run_can_be_joined_in_a_forked_child() -> None:
    """threading forgets a started HandlerThread for forks (it keeps no weak reference to it): a fork still
    resets what a child needs to join both one that had ended and one that was running."""
    ended = StackThread(target=lambda: None)
    ended.start()
    ended.join(TIMEOUT)
    release = threading.Event()
    running = StackThread(target=release.wait, args=(TIMEOUT,))
    running.start()
    child = os.fork()
    if child == 0:  # the child: only the thread that forked runs in it
        ended.join(TIMEOUT)
        running.join(TIMEOUT)
        os._exit(0 if not ended.is_alive() and not running.is_alive() else 1)
    release.set()
    running.join(TIMEOUT)
    _, status = os.waitpid(child, 0)
    assert os.waitstatus_to_exitcode(status) == 0


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


# -- HandlerPool ---------------------------------------------------------------------------------------


_FUTEX_SLOTS = """
import ctypes, json, os, sys, threading

from rolo.settings import ServerSettings
from rolo.websocket.host import WebSocketHost


def slots():  # prctl(PR_FUTEX_HASH, PR_FUTEX_HASH_GET_SLOTS): 0 is the global table; errno for a kernel without
    thread = threading.Thread(target=lambda: None)  # a process with threads has a table of its own
    thread.start()
    thread.join()
    answer = ctypes.CDLL(None, use_errno=True).prctl(78, 2, 0, 0, 0)
    return answer if answer != -1 else -ctypes.get_errno()


def in_child():  # slots() in a forked child: the kernel gives it a table of its own, unless it asks again
    reader, writer = os.pipe()
    if os.fork() == 0:
        os.write(writer, json.dumps(slots()).encode())
        os._exit(0)
    os.close(writer)
    answer = json.loads(os.read(reader, 1024))
    os.wait()
    return answer


found = {"unasked": in_child()}  # what this kernel gives a process that never asked
WebSocketHost(lambda environ: None, ServerSettings(global_futex_hash=sys.argv[1] == "on"), lambda call: None)
found["host"] = slots()
found["child"] = in_child()
print(json.dumps(found))
"""


@pytest.mark.parametrize("setting", ["on", "off"])
def test_a_websocket_host_has_the_process_hash_its_futexes_in_the_global_table_unless_told_not_to(setting) -> None:
    # Linux 6.17+ gives a process with threads a table of its own, 16 buckets on 2 CPUs: with 10,000
    # handler threads waiting, a hand-off to a thread and back cost 61 µs of CPU instead of 7. A fresh
    # process, as the choice is the whole process's and for good
    done = subprocess.run([sys.executable, "-c", _FUTEX_SLOTS, setting], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    found = json.loads(done.stdout)
    if found["unasked"] == -errno.EINVAL:  # a kernel before 6.17: the global table is the only one
        assert found == {"unasked": -errno.EINVAL, "host": -errno.EINVAL, "child": -errno.EINVAL}
        return
    # asked, the process and the children it forks use the global table; otherwise, what the kernel gives
    # (a table of its own, unless the kernel was built without them)
    expected = 0 if setting == "on" else found["unasked"]
    assert found == {"unasked": found["unasked"], "host": expected, "child": expected}


def run_and_report(pool: HandlerPool, release: threading.Event | None = None) -> queue.SimpleQueue[str]:
    """Submit a job that reports the name of the thread running it, after ``release`` if given."""
    ran: queue.SimpleQueue[str] = queue.SimpleQueue()

    def job() -> None:
        if release is not None:
            assert release.wait(TIMEOUT)
        ran.put(threading.current_thread().name)

    pool.submit(job)
    return ran


def test_a_thread_that_finished_its_job_runs_the_next() -> None:
    pool = HandlerPool("test-pool", 4)
    first = run_and_report(pool).get(timeout=TIMEOUT)
    assert wait_until(lambda: pool.busy == 0)
    assert run_and_report(pool).get(timeout=TIMEOUT) == first
    assert len(pool.threads) == 1
    pool.stop()
    assert pool.join(TIMEOUT)


def test_a_pool_thread_running_a_job_holds_no_method_object_of_its_own() -> None:
    # a job (a WebSocket handler) runs as long as its connection: its thread held a bound method of the
    # pool's (64 bytes) all that time
    pool = HandlerPool("test-pool", 1)
    held: queue.Queue[list[str]] = queue.Queue()
    done = threading.Event()

    def job() -> None:
        thread = threading.current_thread()
        held.put([name for name, value in vars(thread).items() if type(value).__name__ == "method"])
        done.wait(TIMEOUT)

    pool.submit(job)
    assert held.get(timeout=TIMEOUT) == []
    done.set()
    pool.stop()
    assert pool.join(TIMEOUT)


def test_busy_threads_make_more_up_to_the_limit_then_jobs_wait_then_it_is_full() -> None:
    pool = HandlerPool("test-pool", 2, max_waiting=1)
    release = threading.Event()
    reports = [run_and_report(pool, release) for _ in range(3)]  # two run, one waits
    assert wait_until(lambda: pool.busy == 2 and pool.waiting == 1)
    with pytest.raises(PoolFull):
        pool.submit(lambda: None)
    # a job that goes on with admitted work may wait past the limit
    reports.append(queue.SimpleQueue())
    pool.submit(lambda: reports[-1].put(threading.current_thread().name), queue_anyway=True)
    assert pool.waiting == 2
    release.set()
    names = {report.get(timeout=TIMEOUT) for report in reports}
    assert len(names) == 2  # the waiting jobs ran in the two threads
    pool.stop()
    assert pool.join(TIMEOUT)


def test_submit_says_whether_the_job_waits_for_a_thread() -> None:
    pool = HandlerPool("test-pool", 1, max_waiting=2)
    release = threading.Event()
    done: queue.SimpleQueue[str] = queue.SimpleQueue()
    assert pool.submit(release.wait) is False  # a new thread takes it
    assert pool.submit(lambda: done.put("second")) is True  # the one thread is busy
    assert pool.waiting == 1
    release.set()
    assert done.get(timeout=TIMEOUT) == "second"
    assert wait_until(lambda: pool.busy == 0)
    assert pool.submit(lambda: done.put("third")) is False  # the idle thread takes it
    assert done.get(timeout=TIMEOUT) == "third"
    pool.stop()
    assert pool.join(TIMEOUT)


def test_a_spare_still_starting_takes_a_job_and_is_joined_once_started() -> None:
    # the spare counts among the threads as soon as the spawner made it, and reaches the queue only once
    # it runs: a job submitted in between waits for it. Before, about half of these pools were full
    # (PoolFull) with one thread of two busy.
    for _ in range(50):
        pool = HandlerPool("test-pool", 2, spares=2)
        release = threading.Event()
        reports = [run_and_report(pool, release)]
        assert wait_until(lambda pool=pool: len(pool.threads) == 2)  # the spare is made; it may not run yet
        reports.append(run_and_report(pool, release))
        release.set()
        assert all(report.get(timeout=TIMEOUT) for report in reports)
        pool.stop()
        assert pool.join(TIMEOUT)


def counted_starts(pool: HandlerPool, monkeypatch: pytest.MonkeyPatch, before: Callable[[], None] = lambda: None):
    """The threads that start the pool's threads (the spawner's own start is not counted), in order;
    ``before`` is called before each start, in the starting thread."""
    starters: list[threading.Thread] = []
    start = pool._thread_class.start

    def counted(thread: threading.Thread) -> None:
        starters.append(threading.current_thread())
        before()
        start(thread)

    monkeypatch.setattr(pool._thread_class, "start", counted)
    return starters


def test_once_the_spawner_runs_it_starts_the_threads_of_a_burst_up_to_the_limit(monkeypatch) -> None:
    # whoever submits (the event loop) starts the first thread only, and does not wait for the others
    pool = HandlerPool("test-pool", 12, spares=2)
    starters = counted_starts(pool, monkeypatch)
    together = threading.Barrier(13, timeout=TIMEOUT)  # passed once all twelve jobs run at once
    pool.submit(together.wait)
    assert wait_until(lambda: len(pool.threads) == 3)  # the first job's, and the spawner's two spares
    for _ in range(11):  # two take the spares, nine are owed a thread
        assert pool.submit(together.wait) is False
    with pytest.raises(PoolFull):  # twelve jobs, each running or owed a thread: none more
        pool.submit(lambda: None)
    together.wait()
    assert len(pool.threads) == 12
    assert starters.count(threading.current_thread()) == 1
    pool.stop()
    assert pool.join(TIMEOUT)


def hold_the_spawner(
    pool: HandlerPool, monkeypatch: pytest.MonkeyPatch, error: Exception | None = None
) -> tuple[threading.Event, threading.Event]:
    """Have each thread start of the pool's spawner wait until the second event returned is set, then fail
    with ``error`` if given; the first is set once the spawner is about to start one."""
    spawning, go_on = threading.Event(), threading.Event()

    def hold() -> None:
        if threading.current_thread() is not threading.main_thread():
            spawning.set()
            assert go_on.wait(TIMEOUT)
            if error is not None:
                raise error

    counted_starts(pool, monkeypatch, hold)
    return spawning, go_on


def test_the_jobs_owed_a_thread_when_the_pool_stops_still_run(monkeypatch) -> None:
    pool = HandlerPool("test-pool", 4, spares=1)
    spawning, go_on = hold_the_spawner(pool, monkeypatch)
    release = threading.Event()
    reports = [run_and_report(pool, release)]
    assert spawning.wait(TIMEOUT)  # the spawner runs, and is about to start a spare
    reports += [run_and_report(pool), run_and_report(pool)]  # one for the spare, one owed a thread
    pool.stop()
    go_on.set()
    release.set()
    assert all(report.get(timeout=TIMEOUT) for report in reports)
    assert pool.join(TIMEOUT)


# out of threads, or of memory for the thread's state: a spawner that died of the latter left every job
# finding no idle thread to it, and one for the spare it was starting to a thread that never ran
@pytest.mark.parametrize("error", [RuntimeError("can't start new thread"), MemoryError()])
def test_a_spawner_out_of_threads_leaves_the_next_job_to_start_its_own(monkeypatch, error) -> None:
    failed: list[threading.Thread] = []

    def fail_once_in_the_spawner() -> None:
        if threading.current_thread() is not threading.main_thread() and not failed:
            failed.append(threading.current_thread())
            raise error

    pool = HandlerPool("test-pool", 4, spares=1)
    starters = counted_starts(pool, monkeypatch, fail_once_in_the_spawner)
    release = threading.Event()
    reports = [run_and_report(pool, release)]
    assert wait_until(lambda: bool(failed))
    assert wait_until(lambda: len(pool.threads) == 1)  # the spawner gave up: the spare it made is gone
    reports.append(run_and_report(pool, release))  # started here, as no spare is ready
    assert starters[:3] == [threading.current_thread(), failed[0], threading.current_thread()]
    assert wait_until(lambda: len(pool.threads) == 3)  # the spawner tried again: a spare
    release.set()
    assert all(report.get(timeout=TIMEOUT) for report in reports)
    pool.stop()
    assert pool.join(TIMEOUT)


def spawner_alive(pool: HandlerPool) -> bool:
    """Whether the pool's spawner thread runs (found by its name)."""
    return any(thread.name == f"{pool.name}-spawner" for thread in threading.enumerate())


def test_a_stopped_spawner_out_of_threads_ends_and_its_jobs_owed_a_thread_still_run(monkeypatch) -> None:
    # it ended only once every job owed a thread had one: out of threads, it waited for a wake-up that a
    # stopped pool never gives, and join() without a timeout (a server's stop) never returned
    pool = HandlerPool("test-pool", 4, spares=1)
    spawning, go_on = hold_the_spawner(pool, monkeypatch, RuntimeError("can't start new thread"))
    release = threading.Event()
    reports = [run_and_report(pool, release)]
    assert spawning.wait(TIMEOUT)  # the spawner runs, and is about to start a spare
    reports += [run_and_report(pool), run_and_report(pool)]  # one for the spare, one owed a thread
    pool.stop()
    go_on.set()  # every start of the spawner fails from now on
    assert wait_until(lambda: not spawner_alive(pool))  # before the busy thread is free
    release.set()  # the busy thread runs the jobs left
    assert all(report.get(timeout=TIMEOUT) for report in reports)
    assert pool.join(TIMEOUT)


def test_jobs_owed_a_thread_count_against_max_waiting_only_past_max_threads(monkeypatch) -> None:
    # a job owed a thread does not wait for one to be free: max_waiting more may still wait
    pool = HandlerPool("test-pool", 3, spares=1, max_waiting=1)
    spawning, go_on = hold_the_spawner(pool, monkeypatch)
    release = threading.Event()
    reports = [run_and_report(pool, release)]
    assert spawning.wait(TIMEOUT)  # the spawner runs, and is about to start a spare
    reports += [run_and_report(pool), run_and_report(pool)]  # one for the spare, one owed the third thread
    reports.append(queue.SimpleQueue())
    assert pool.submit(lambda: reports[-1].put("waited")) is True  # waits for one of the three
    with pytest.raises(PoolFull):
        pool.submit(lambda: None)
    go_on.set()
    release.set()
    assert all(report.get(timeout=TIMEOUT) for report in reports)
    pool.stop()
    assert pool.join(TIMEOUT)


def test_an_idle_thread_exits_after_the_idle_timeout() -> None:
    pool = HandlerPool("test-pool", 2, idle_timeout=0.05)
    run_and_report(pool).get(timeout=TIMEOUT)
    assert wait_until(lambda: not pool.threads)
    run_and_report(pool).get(timeout=TIMEOUT)  # a new thread for the next job
    pool.stop()
    assert pool.join(TIMEOUT)


def test_stopping_runs_what_was_submitted_wakes_idle_threads_and_refuses_more() -> None:
    pool = HandlerPool("test-pool", 1, max_waiting=1, idle_timeout=60)
    release = threading.Event()
    first, second = run_and_report(pool, release), run_and_report(pool)
    pool.stop()
    with pytest.raises(RuntimeError, match="stopped"):
        pool.submit(lambda: None)
    release.set()
    assert first.get(timeout=TIMEOUT) and second.get(timeout=TIMEOUT)
    assert pool.join(TIMEOUT)  # not the 60 s idle timeout

    idle = HandlerPool("test-pool", 1, idle_timeout=60)
    run_and_report(idle).get(timeout=TIMEOUT)
    assert wait_until(lambda: idle.busy == 0)
    idle.stop()
    assert idle.join(TIMEOUT)


def test_threads_back_together_in_a_stopped_pool_for_one_job_left_all_exit_at_once() -> None:
    # both threads count themselves idle before either takes the job: the other waited in the queue for
    # the idle timeout, and so did join()
    pool = HandlerPool("test-pool", 2, max_waiting=1, idle_timeout=60)
    release = threading.Event()
    both_back = threading.Barrier(2, timeout=TIMEOUT)  # passed once both are back in the pool
    for _ in range(2):
        pool.submit(lambda: release.wait(TIMEOUT), then=both_back.wait)
    last = run_and_report(pool)  # waits for one of them
    pool.stop()
    release.set()
    assert last.get(timeout=TIMEOUT)
    assert pool.join(TIMEOUT)  # not the 60 s idle timeout


def test_a_failing_job_is_logged_and_its_thread_goes_on(caplog: pytest.LogCaptureFixture) -> None:
    pool = HandlerPool("test-pool", 1, max_waiting=1)

    def fail() -> None:
        raise ValueError("boom")

    pool.submit(fail)
    assert run_and_report(pool).get(timeout=TIMEOUT)
    assert "a job of the test-pool pool failed" in caplog.text
    pool.stop()
    assert pool.join(TIMEOUT)


def wait_until(condition: Callable[[], bool]) -> bool:
    """Whether ``condition`` became true within the test's timeout (polled: the pool has no event for it)."""
    deadline = time.monotonic() + TIMEOUT
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.001)
    return True
