"""Threads for handlers, for servers that run thousands of them next to one event-loop thread.

A :class:`HandlerPool` runs handlers in threads that it starts as handlers come, reuses for the next
handler, and retires when they have been idle a while; a :class:`HandlerCount` counts, on the loop thread,
the handlers that run, so that a shutdown can wait until none does. Both know no event loop.

A :class:`HandlerThread` has a stack size of its own: ``threading.stack_size`` is process-wide, so it is
set only while the thread starts, under one lock shared by every server in the process, and the previous
value put back.

On Linux it also runs under the ``SCHED_BATCH`` policy. The event loop wakes handler threads all the time
(a message arrived, a request came in), and Linux runs a woken thread at once on its waker's CPU when it
can: there, a handler thread only finds the GIL held by the loop that woke it and blocks again, two context
switches for nothing, with the loop descheduled in between. A ``SCHED_BATCH`` thread never preempts on
waking; it runs once the loop blocks and lets go of the GIL. Its priority is otherwise unchanged.

On Linux 6.17 and later, :func:`use_global_futex_hash` has the process's futexes hashed in the kernel's
global table, which a server with thousands of handler threads needs (servers call it as they make their
WebSocket handlers' pool, unless told not to).
"""

from __future__ import annotations

import itertools
import logging
import os
import queue
import sys
import threading
import time
from collections.abc import Callable
from weakref import WeakSet

__all__ = ["HandlerCount", "HandlerPool", "HandlerThread", "PoolFull", "use_global_futex_hash"]

LOG = logging.getLogger("rolo.threads")

_stack_size_lock = threading.Lock()

# Every threading.Thread has an Event that says it started (about 1.2 KB with its Condition, lock and
# deque) and a closure that reports an exception escaping it (about 0.4 KB). Once a thread has started,
# its Event is only read, and set for good; the closure reads the current excepthook when it runs. So a
# started thread can share one set Event and one closure with every other: with thousands of handler
# threads, 1.6 KB each adds up. Where these internals differ (another Python), nothing is shared.
_STARTED = threading.Event()
_STARTED.set()
_make_invoke_excepthook = getattr(threading, "_make_invoke_excepthook", None)
_INVOKE_EXCEPTHOOK = _make_invoke_excepthook() if _make_invoke_excepthook is not None else None
# threading also keeps a weak reference to every thread ever made (about 130 bytes a thread with its
# place in a WeakSet), so that in a child process forked later it can reset the locks of threads that had
# ended, should they be joined there. A started thread is also in threading's table of running threads,
# which a fork goes through too, until it ends: only a fork in the moment a thread leaves that table,
# before its end is marked, leaves the child a thread it cannot join. Nobody joins a pool's threads in a
# forked child, and rolo's servers spawn their workers, never fork them.
_DANGLING = getattr(threading, "_dangling", None)


class HandlerThread(threading.Thread):
    """A thread started with a stack of ``stack_size`` bytes (0: the platform's default), scheduled so that
    waking it does not preempt the thread that woke it.

    Set ``stack_size`` on the instance, or on a subclass for a thread factory. Once started, it shares
    the per-thread bookkeeping that ``threading`` only reads from then on with its other instances, and
    ``threading`` no longer keeps a weak reference to it for forks (see above).
    """

    stack_size = 0

    def start(self) -> None:
        if _INVOKE_EXCEPTHOOK is not None and hasattr(self, "_invoke_excepthook"):
            self._invoke_excepthook = _INVOKE_EXCEPTHOOK
        if not self.stack_size:
            super().start()
        else:
            with _stack_size_lock:
                previous = threading.stack_size(self.stack_size)
                try:
                    super().start()
                finally:
                    threading.stack_size(previous)
        started = getattr(self, "_started", None)
        if isinstance(started, threading.Event) and started.is_set():
            self._started = _STARTED
        if isinstance(_DANGLING, WeakSet):
            _DANGLING.discard(self)

    def run(self) -> None:
        _schedule_as_batch()
        super().run()


def _schedule_as_batch() -> None:
    """Put the calling thread under ``SCHED_BATCH``, where the platform has it."""
    policy = getattr(os, "SCHED_BATCH", None)
    if policy is None:
        return
    try:
        os.sched_setscheduler(0, policy, os.sched_param(0))  # 0: the calling thread
    except OSError:
        pass  # not allowed here (a sandbox, a container's seccomp profile): the default policy only costs time


_PR_FUTEX_HASH = 78  # prctl(2) options (linux/prctl.h), which Linux 6.17 acts on
_PR_FUTEX_HASH_SET_SLOTS = 1
_futex_hash_lock = threading.Lock()
_futex_hash_pid: int | None = None  # the process that asked: a child forked from it has a table of its own


def use_global_futex_hash() -> None:
    """Have this process's futexes hashed in the kernel's global table, as every process's were before
    Linux 6.17, for good (``prctl(PR_FUTEX_HASH, PR_FUTEX_HASH_SET_SLOTS, 0)``); once per process.

    Every lock, queue and the GIL wait on a futex. Since Linux 6.17 a process with threads gets a table of
    its own, sized for four times the fewer of its threads and CPUs: 16 buckets on a small machine. A
    wake-up walks its bucket, and with thousands of handler threads each waiting on a futex of its own, a
    bucket holds hundreds of waiters: with 10,000 threads on 2 CPUs, handing an item to a thread and back
    cost 61 µs of CPU where it costs 7 with few threads. The global table has 256 buckets per CPU.

    It applies to the whole process, and a table the application chose is replaced. Where the kernel or
    the platform has no such setting (before 6.17, not Linux, a seccomp profile that forbids it), nothing
    changes. The call may wait for the kernel a few tens of milliseconds. A process forked from this one
    (``os.fork``: a daemon's, a preforking server's workers) asks again as it starts, as the kernel gives it
    a table of its own.
    """
    global _futex_hash_pid
    with _futex_hash_lock:
        if _futex_hash_pid == os.getpid() or not sys.platform.startswith("linux"):
            return
        if _futex_hash_pid is None:  # the first to ask, of this process and those it came from
            os.register_at_fork(after_in_child=use_global_futex_hash)
        _futex_hash_pid = os.getpid()
    try:
        import ctypes

        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (ImportError, OSError, AttributeError):
        return  # no C library to call (a static or unusual build): the default table only costs time
    prctl.argtypes = (ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong)
    # 0 slots: the global table; a kernel without the option answers EINVAL and keeps the only table it has
    prctl(_PR_FUTEX_HASH, _PR_FUTEX_HASH_SET_SLOTS, 0, 0, 0)


class PoolFull(RuntimeError):
    """Every thread of a :class:`HandlerPool` is busy and no more jobs may wait for one."""


_WAKE = object()
"""Put into a pool's queue to wake an idle thread of a stopped pool, so that it exits."""

_Task = tuple[Callable[[], object], "Callable[[], object] | None"]
"""A job, and what to call once its thread is back in the pool."""


_NO_KEYWORDS: dict[str, object] = {}
"""The keyword arguments of every pool thread's (absent) target: never read nor changed."""


class _PoolThread(HandlerThread):
    """A thread of a :class:`HandlerPool`: it runs the pool's loop of jobs, starting with ``task``.

    It calls that loop itself, with a plain call, rather than through ``Thread.run``, whose call with
    ``*args`` Python 3.11 makes through a C frame of its own: the handler's stack is about 600 bytes
    shallower, which keeps a connection's idle handler thread within two pages of its stack (one fewer
    page resident per connection).
    """

    def __init__(self, pool: HandlerPool, task: _Task | None, name: str) -> None:
        # a thread with no target keeps its (unused) keyword arguments: the one empty dict for all
        super().__init__(name=name, daemon=True, kwargs=_NO_KEYWORDS)
        self._pool = pool  # not its bound _work: one object fewer per thread
        self._task = task

    def run(self) -> None:
        _schedule_as_batch()
        task, self._task = self._task, None  # the thread keeps no job alive once it is done with it
        self._pool._work(task)


class HandlerPool:
    """Threads that run handlers: started as jobs come, up to ``max_threads``; a thread that finished a
    job takes the next one, and one idle for ``idle_timeout`` seconds exits (unless it is one of the
    ``spares``).

    Starting a thread makes its starter wait until the thread runs, and hand it the GIL: with ``spares``,
    a thread of the pool's own, the spawner, starts threads ahead of the jobs, so that a job (a connection
    being opened) finds one idle. Once the spawner runs, it also starts the thread of a job that finds
    none idle, which takes the job as it starts: whoever submits jobs (the event loop) starts none itself
    but the first, and does not wait, however many come at once.

    When every thread is busy, up to ``max_waiting`` jobs wait for one, in order; beyond that
    :meth:`submit` raises :class:`PoolFull` at once, so that the server can answer "try later" rather than
    hold requests it cannot run. Its threads are :class:`HandlerThread` daemons, so that a handler that
    never returns cannot keep the process alive after the server stopped waiting for it.

    :param name: the threads' name, to which each adds its number
    :param max_threads: the most threads at once
    :param stack_size: their stack size in bytes (0: the platform's default)
    :param max_waiting: how many jobs may wait for a thread
    :param idle_timeout: how long a thread waits for a job before it exits, in seconds
    :param spares: how many idle threads to keep ready (0: none)
    """

    def __init__(
        self,
        name: str,
        max_threads: int,
        *,
        stack_size: int = 0,
        max_waiting: int = 0,
        idle_timeout: float = 10.0,
        spares: int = 0,
    ) -> None:
        if max_threads < 1:
            raise ValueError(f"max_threads must be at least 1, not {max_threads}")
        self.name = name
        self.max_threads = max_threads
        self.max_waiting = max_waiting
        self.idle_timeout = idle_timeout
        self.spares = spares
        self._thread_class: type[_PoolThread] = type("HandlerThread", (_PoolThread,), {"stack_size": stack_size})
        self._numbers = itertools.count(1)
        # a C queue: an idle thread waits in it without the GIL, and a job put into it wakes one
        self._jobs: queue.SimpleQueue[_Task | object] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._unstarted = 0  # threads made and counted in ``threads``, whose start() has not returned yet
        self._all_started = threading.Condition(self._lock)
        self._idle = 0  # threads waiting in the queue
        self._queued = 0  # jobs in the queue that no thread took yet
        self._starting = 0  # spare threads started, not yet waiting for a job
        # what wakes the spawner: a C queue, whose put wakes it without a Python-level condition
        self._spare_wanted: queue.SimpleQueue[None] = queue.SimpleQueue()
        self._spawn_pending = False
        self._spawner: threading.Thread | None = None
        self._spawning = False  # whether the spawner runs and starts threads: jobs owed one are left to it
        self._stopped = False
        self.threads: set[threading.Thread] = set()
        """The pool's live threads."""

    @property
    def busy(self) -> int:
        """How many threads run a job."""
        with self._lock:
            return len(self.threads) - self._idle - self._starting

    @property
    def waiting(self) -> int:
        """How many jobs wait for a thread."""
        with self._lock:
            return max(0, self._queued - self._idle - self._starting)

    def submit(
        self, job: Callable[[], object], *, then: Callable[[], object] | None = None, queue_anyway: bool = False
    ) -> bool:
        """Run ``job()`` in a thread of the pool: an idle one, a new one, or the first to be free.

        What ``job`` raises is logged; it should handle its own errors.

        :param then: called in the thread once ``job`` returned and the thread is back in the pool, ready
            for another job: whoever counts the jobs running and submits more by that count never finds
            the pool full
        :param queue_anyway: let the job wait even past ``max_waiting``: for a job that goes on with work
            admitted before (the rest of a response), whose number the caller bounds
        :returns: whether the job waits for a thread, every one being busy (what :attr:`waiting` counts),
            without taking the pool's lock again to ask; not for a job the spawner starts a thread for
        :raises PoolFull: if every thread is busy and ``max_waiting`` jobs wait already (and not
            ``queue_anyway``)
        :raises RuntimeError: if the pool is stopped, or this call could not start the job's thread (the
            process is out of threads); then the job will not run. A job left to the spawner, whose start
            fails, waits for a thread of the pool to be free instead
        """
        with self._lock:
            if self._stopped:
                raise RuntimeError(f"the {self.name} pool is stopped")
            # idle threads, and spares on their way to idle, that no queued job is promised to; below 0,
            # the queued jobs owed a thread: the spawner starts one for each, up to max_threads in all
            spare = self._idle + self._starting - self._queued
            has_room = len(self.threads) - min(spare, 0) < self.max_threads
            waits = spare <= 0 and not has_room
            thread = None
            if spare <= 0 and has_room and not self._spawning:
                thread = self._new_thread((job, then))  # this caller starts it, and waits for it
            else:
                # past max_threads, the jobs owed a thread wait for a busy one: those count against max_waiting
                if waits and len(self.threads) - spare - self.max_threads >= self.max_waiting and not queue_anyway:
                    raise PoolFull(f"all {self.max_threads} {self.name} threads are busy")
                self._queued += 1
                self._jobs.put((job, then))
                spawner = self._want_spares()
        if thread is not None:
            try:
                thread.start()
            except RuntimeError:
                with self._lock:
                    self._started(thread, failed=True)
                raise
            with self._lock:
                self._started(thread)
                spawner = self._want_spares()
        if spawner is not None:
            self._start_spawner(spawner)
        return waits

    def _new_thread(self, task: _Task | None) -> threading.Thread:
        # called holding the lock
        name = f"{self.name}-{next(self._numbers)}"
        thread = self._thread_class(self, task, name)
        self.threads.add(thread)
        self._unstarted += 1
        return thread

    def _started(self, thread: threading.Thread, failed: bool = False) -> None:
        # called holding the lock, once ``thread.start()`` returned or raised
        if failed:
            self.threads.discard(thread)
        self._unstarted -= 1
        if not self._unstarted:
            self._all_started.notify_all()

    def _want_spares(self) -> threading.Thread | None:
        # called holding the lock: wake the spawner if fewer idle threads are ready than the spares, the
        # jobs owed a thread counted against them. The first time, the spawner is made, and returned for
        # the caller to start once it let go of the lock
        made = None
        if self.spares and self._idle - self._queued + self._starting < self.spares:
            if self._spawner is None:
                # under SCHED_BATCH too, so that waking it never preempts whoever submitted the job
                self._spawner = made = HandlerThread(target=self._spawn, name=f"{self.name}-spawner", daemon=True)
                self._unstarted += 1
            if not self._spawn_pending:
                self._spawn_pending = True
                self._spare_wanted.put(None)
        return made

    def _start_spawner(self, spawner: threading.Thread) -> None:
        # spares only save starting a thread per job: a spawner that cannot start is left for the next job
        # to try again, and the job that wanted it is not failed for it
        try:
            spawner.start()
        except RuntimeError:
            LOG.warning("could not start the %s pool's spawner of spare threads", self.name)
            with self._lock:
                self._spawner = None
                self._spawn_pending = False
                self._started(spawner, failed=True)
            return
        with self._lock:
            self._started(spawner)

    def _spawn(self) -> None:
        """Start threads whenever fewer are ready than the spares, jobs owed a thread counted against them
        (the spawner's thread); once the pool is stopped, only for the jobs owed one, then end (at once if
        a start fails: those left wait for a busy thread, which a stopped pool keeps while jobs wait)."""
        with self._lock:
            self._spawning = True
        while True:
            self._spare_wanted.get()
            while True:
                with self._lock:
                    self._spawn_pending = False
                    ready = self._idle - self._queued + self._starting
                    if ready >= (0 if self._stopped else self.spares) or len(self.threads) >= self.max_threads:
                        if self._stopped:
                            self._spawning = False
                            return
                        break
                    thread = self._new_thread(None)
                    self._starting += 1
                try:
                    thread.start()
                except (RuntimeError, MemoryError):
                    # out of threads (or of memory for one's state): until a start succeeds here again (tried
                    # at the next job), jobs start their own, or are refused; those owed a thread already wait
                    # for one to be free. A stopped pool has no next job: it ends now
                    with self._lock:
                        self._started(thread, failed=True)
                        self._starting -= 1
                        self._spawning = False
                        if self._stopped:
                            return
                    break
                with self._lock:
                    self._started(thread)
                    self._spawning = True

    def _work(self, task: _Task | None) -> None:
        # a spare starts without a job
        task = task if task is not None else self._next_job(None, spare=True)
        job: Callable[[], object] | None
        while task is not None:
            job, then = task
            task = None  # not kept while the job runs (a handler runs as long as its connection)
            try:
                job()
            except BaseException:
                LOG.exception("a job of the %s pool failed", self.name)
            job = None  # an idle thread keeps nothing of its last job alive
            task = self._next_job(then)

    def _next_job(self, then: Callable[[], object] | None, spare: bool = False) -> _Task | None:
        """The next job for this thread (after ``then``, the last job's), or None when it is to exit (and
        is no longer counted)."""
        with self._lock:
            if spare:
                self._starting -= 1
            leave = self._stopped and not self._queued
            if leave:
                self.threads.discard(threading.current_thread())
            else:
                self._idle += 1
                if self._stopped and self._idle > self._queued:
                    # threads back at once for fewer jobs: the one left without a job is woken to exit
                    self._jobs.put(_WAKE)
        if then is not None:
            try:
                then()
            except BaseException:
                LOG.exception("a job of the %s pool failed after it returned", self.name)
        if leave:
            return None
        while True:
            try:
                job = self._jobs.get(timeout=self.idle_timeout)
            except queue.Empty:
                job = None
            with self._lock:
                self._idle -= 1
                while job is _WAKE or (job is None and self._queued > self._idle):
                    # woken to exit; or a job was queued for this thread as it timed out: take it
                    job = self._jobs.get_nowait() if self._queued > self._idle else None
                if job is not None:
                    self._queued -= 1
                    return job  # type: ignore[return-value]
                if self._stopped or self._idle - self._queued >= self.spares:
                    self.threads.discard(threading.current_thread())
                    return None
                self._idle += 1  # one of the spares: it stays

    @property
    def stopped(self) -> bool:
        """Whether :meth:`stop` was called: the pool takes no more jobs."""
        return self._stopped

    def stop(self) -> None:
        """Take no more jobs. The jobs submitted already still run; then the threads exit, the idle ones
        at once. Does not wait: see :meth:`join`."""
        with self._lock:
            self._stopped = True
            for _ in range(max(0, self._idle - self._queued)):
                self._jobs.put(_WAKE)
            self._spare_wanted.put(None)  # the spawner ends

    def join(self, timeout: float | None = None) -> bool:
        """Wait until every thread of the stopped pool has exited, at most ``timeout`` seconds in all
        (``None``: no limit). Never call it on an event-loop thread a job may wait for. Whether they all
        exited."""
        deadline = None if timeout is None else time.monotonic() + timeout

        def left() -> float | None:
            return None if deadline is None else max(0.0, deadline - time.monotonic())

        with self._lock:
            # a thread being started as the pool stopped is waited for too, once it can be joined
            self._all_started.wait_for(lambda: not self._unstarted, timeout)
            spawner = self._spawner
        if spawner is not None:  # first: it ends once every job owed a thread has one
            spawner.join(left())
        with self._lock:
            self._all_started.wait_for(lambda: not self._unstarted, left())
            threads = list(self.threads) + ([spawner] if spawner is not None else [])
        for thread in threads:
            thread.join(left())
        return not any(thread.is_alive() for thread in threads)


class HandlerCount:
    """How many handlers of one kind run, counted on the event-loop thread, and who waits for none to.

    A server counts a handler when it hands it to a thread and uncounts it when the loop learns that it
    returned; a shutdown waits with :meth:`when_idle`.
    """

    def __init__(self) -> None:
        self.running = 0
        self._idle_callbacks: list[Callable[[], None]] = []

    def started(self) -> None:
        """A handler started."""
        self.running += 1

    def finished(self) -> None:
        """A handler returned."""
        self.running -= 1
        if self.running == 0:
            callbacks, self._idle_callbacks = self._idle_callbacks, []
            for callback in callbacks:
                callback()

    def when_idle(self, callback: Callable[[], None]) -> None:
        """Call ``callback()`` (on the loop thread) once no handler runs: at once if none does."""
        if self.running == 0:
            callback()
        else:
            self._idle_callbacks.append(callback)
