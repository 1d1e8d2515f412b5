"""Worker processes: a supervisor that serves the same endpoints from several fresh Python interpreters.

One Python process runs Python on one CPU at a time (the GIL). :class:`WorkerSupervisor` (``twistd rolo
--workers N``, or :func:`run_workers`) uses N: it never imports the application itself, and starts N new
interpreters (spawned, never forked, so no thread of the supervisor's is copied), each a ``twistd rolo``
with the same options that serves every endpoint; :mod:`~rolo.serving.twisted.sharing` says how they share
a port. The supervisor restarts a worker that dies, relays every worker's log into its own
(:mod:`~rolo.serving.twisted.relay`), and stops them all gracefully when it stops.

A worker reads its standard input, a pipe from the supervisor: when the pipe closes, because the supervisor
stops or has died, the worker stops as on SIGTERM. Workers run in process groups of their own, so that a
Ctrl-C in a terminal reaches the supervisor alone, which then stops them.
"""

from __future__ import annotations

import importlib
import json
import os
import signal
import sys
from collections.abc import Sequence
from dataclasses import asdict
from typing import Any

from twisted.application.service import Service
from twisted.internet.defer import Deferred, succeed
from twisted.internet.error import ConnectionDone, ProcessDone, ProcessTerminated
from twisted.internet.interfaces import IAddress, IReadDescriptor, IStreamServerEndpoint
from twisted.internet.protocol import ProcessProtocol
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from . import relay
from .logs import show_rolo_logs
from .relay import FORMAT, LOG_FD, Lines, event_from_line, relabel
from .service import DEFAULT_ENDPOINT, LISTENING, STARTING, log_listening, log_start
from .sharing import Reservation, SharedEndpoint, reserve

__all__ = ["WorkerError", "WorkerSupervisor", "cpu_count", "run_workers", "worker_endpoints"]

log = Logger()

RESTART_DELAY = 0.1
"""Seconds before a worker that died is started again; doubled for each quick death in a row."""
MAX_RESTART_DELAY = 10.0
"""The longest wait before a restart, in seconds."""
STABLE = 10.0
"""Seconds a worker must have run for its death to restart it after :data:`RESTART_DELAY` again."""
START_ATTEMPTS = 3
"""Deaths in a row of a worker before it served (after the first start) that make the supervisor give up."""
STOP_MARGIN = 5.0
"""Seconds a stopping worker gets beyond the grace period before it is killed."""

# the first thing a worker does, before any import of rolo or Twisted: leave the terminal's process group
_LAUNCHER = "import os; os.setpgrp(); from rolo.serving.twisted.workers import _worker_main; _worker_main()"


class WorkerError(Exception):
    """The supervisor gave up: a worker kept dying before it served (its message says how)."""


def cpu_count() -> int:
    """The CPUs this process may run on: what ``--workers auto`` starts."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # no affinity on this system
        return os.cpu_count() or 1


class WorkerSupervisor(Service):
    """Serves an application from ``workers`` worker processes while running, as a Twisted service.

    Starting it reserves every endpoint (in the privileged step, as ``twistd`` runs services) and starts
    the workers, each ``twistd -n rolo`` with the options ``args`` (the app, the settings; ``--listen``
    and ``--workers`` there are ignored: ``endpoints`` rule). :attr:`listening` fires, and the log says
    ``rolo listening at …`` for each endpoint, once every worker serves.

    A worker that dies is started again, after :data:`RESTART_DELAY` seconds, doubled for each death in
    a row that came within :data:`STABLE` seconds of its start (at most :data:`MAX_RESTART_DELAY`); each
    death and start is logged with the worker's number and pid. If a worker dies before it serves while
    the supervisor starts, or :data:`START_ATTEMPTS` times in a row later, the supervisor gives up: it
    logs why in one line (with the last line the worker wrote to its standard error, such as
    ``rolo: --app …``), stops the other workers, and :attr:`ended` fails with :class:`WorkerError`.

    Stopping it (:meth:`stopService`, which ``twistd`` calls on SIGTERM or SIGINT) closes every worker's
    standard input, upon which each stops gracefully (stops listening, closes its WebSockets with 1001,
    gives its handlers the grace period); a worker still running ``grace_period`` + :data:`STOP_MARGIN`
    seconds later is killed. It fires once every worker has exited, when the reserved sockets are closed.

    :param args: the ``twistd rolo`` options of every worker, such as ``["--app", "myapp:router",
        "--max-connections", "1000"]``
    :param endpoints: Twisted endpoint strings of the kinds ``tcp:``, ``tcp6:``, ``ssl:`` and ``unix:``
    :param workers: how many worker processes
    :param pin_workers: run worker *i* on the *i*-th CPU this process may use (and only there)
    :param grace_period: how long a stopping worker waits for its handlers, in seconds (as the workers'
        ``--grace-period``; it bounds the wait for them here)
    :param reactor: the reactor (the global one by default), which spawns the workers
    :raises ValueError: for no worker or no endpoint
    """

    def __init__(
        self,
        args: Sequence[str],
        endpoints: Sequence[str],
        workers: int,
        *,
        pin_workers: bool = False,
        grace_period: float = 10.0,
        reactor: Any = None,
    ) -> None:
        if workers < 1:
            raise ValueError(f"{workers} workers: at least one is needed")
        if not endpoints:
            raise ValueError("at least one endpoint is needed")
        if reactor is None:
            from twisted.internet import reactor
        show_rolo_logs()  # its own lines (where it listens) are rolo's, as a server's are
        self.reactor = reactor
        self.args = list(args)
        self.endpoints = list(endpoints)
        self.workers = workers
        self.grace_period = grace_period
        cpus = sorted(os.sched_getaffinity(0)) if pin_workers else []
        self._cpus = {number: cpus[(number - 1) % len(cpus)] if cpus else None for number in range(1, workers + 1)}
        self.listening: Deferred[list[IAddress]] = Deferred()
        """Fires with the endpoints' addresses once every worker serves; fails with :class:`WorkerError`
        if the supervisor gives up or stops first."""
        self.ended: Deferred[None] = Deferred()
        """Fires once the supervisor has stopped and every worker exited; fails with :class:`WorkerError`
        if it stopped because it gave up."""
        self._reservations: list[Reservation] | None = None
        self._running: dict[int, _Worker] = {}
        self._restarts: dict[int, Any] = {}  # delayed calls
        self._delays: dict[int, float] = {}
        self._failed_starts: dict[int, int] = {}
        self._stopping = False
        self._finished = False
        self._gave_up: WorkerError | None = None
        self._kill_call: Any = None
        self._waiting: list[Deferred[None]] = []

    def privilegedStartService(self) -> None:
        """Reserve every endpoint.

        :raises ValueError: for an endpoint string that does not parse, or of a kind workers cannot share
        :raises twisted.internet.error.CannotListenError: if an address is taken (those reserved are
            released again)
        """
        log_start()
        super().privilegedStartService()
        reservations: list[Reservation] = []
        try:
            for description in self.endpoints:
                reservations.append(reserve(description))
        except BaseException:
            for reservation in reservations:
                reservation.close()
            raise
        self._reservations = reservations

    def startService(self) -> None:
        if self._reservations is None:  # started without the privileged step (not by twistd)
            self.privilegedStartService()
        super().startService()
        for number in range(1, self.workers + 1):
            self._start(number)

    def stopService(self) -> Deferred[None]:
        """Stop every worker gracefully (see the class); fires once all have exited."""
        if self.running:
            super().stopService()
        return self._stop()

    def _start(self, number: int) -> None:
        self._restarts.pop(number, None)
        assert self._reservations is not None
        child_fds: dict[int, int | str] = {0: "w", 1: "r", 2: "r", LOG_FD: "r"}
        shared: list[SharedEndpoint] = []
        for reservation in self._reservations:
            fd = None
            if reservation.inherited:
                fd = max(child_fds) + 1
                child_fds[fd] = reservation.socket.fileno()
            shared.append(reservation.shared(fd))
        plan = {
            "number": number,
            "cpu": self._cpus[number],
            "reactor": type(self.reactor).__module__,
            "endpoints": [asdict(endpoint) for endpoint in shared],
        }
        worker = _Worker(self, number)
        argv = [sys.executable, "-c", _LAUNCHER, json.dumps(plan), *self.args]
        self.reactor.spawnProcess(worker, sys.executable, argv, env=dict(os.environ), childFDs=child_fds)
        self._running[number] = worker
        where = "" if self._cpus[number] is None else f" on CPU {self._cpus[number]}"
        log.info("worker {number} (pid {pid}) started{where}", number=number, pid=worker.pid, where=where)

    def _serving(self, worker: _Worker) -> None:
        worker.serving = True
        self._failed_starts[worker.number] = 0
        log.info("worker {number} (pid {pid}) serving", number=worker.number, pid=worker.pid)
        if self.listening.called or len(self._running) < self.workers:
            return
        if all(running.serving for running in self._running.values()):
            assert self._reservations is not None
            for reservation in self._reservations:
                log_listening(reservation.address, reservation.description)
            self.listening.callback([reservation.address for reservation in self._reservations])

    def _ended(self, worker: _Worker, reason: Failure) -> None:
        number, pid = worker.number, worker.pid
        if self._running.get(number) is worker:
            del self._running[number]
        how = _how_it_ended(reason)
        if self._stopping:
            log.info("worker {number} (pid {pid}) {how}", number=number, pid=pid, how=how)
            if not self._running:
                self._finish()
            return
        if not worker.serving:
            failed = self._failed_starts[number] = self._failed_starts.get(number, 0) + 1
            if not self.listening.called or failed >= START_ATTEMPTS:
                times = f", {failed} times in a row" if failed > 1 else ""
                said = f": {worker.last_error}" if worker.last_error else ""
                self._give_up(f"worker {number} (pid {pid}) {how} before serving{times}{said}")
                return
        lived = self.reactor.seconds() - worker.started_at
        previous = self._delays.get(number)
        delay = RESTART_DELAY if previous is None or lived >= STABLE else min(2 * previous, MAX_RESTART_DELAY)
        self._delays[number] = delay
        # a worker that stopped gracefully (SIGTERM to it alone, to recycle it) is no fault: an info line
        emit = log.info if isinstance(reason.value, ProcessDone) else log.warn
        emit(
            "worker {number} (pid {pid}) {how}; starting it again in {delay:.1f}s",
            number=number,
            pid=pid,
            how=how,
            delay=delay,
        )
        self._restarts[number] = self.reactor.callLater(delay, self._start, number)

    def _give_up(self, message: str) -> None:
        log.critical("rolo: {message}", message=message)
        self._gave_up = WorkerError(message)
        self._stop()

    def _stop(self) -> Deferred[None]:
        if self._reservations is None or self._finished:
            return succeed(None)
        stopped: Deferred[None] = Deferred()
        self._waiting.append(stopped)
        if not self._stopping:
            self._stopping = True
            for call in self._restarts.values():
                call.cancel()
            self._restarts.clear()
            for worker in self._running.values():
                assert worker.transport is not None, "a running worker's process has its transport"
                worker.transport.closeStdin()
            if self._running:
                self._kill_call = self.reactor.callLater(self.grace_period + STOP_MARGIN, self._kill)
            else:
                self._finish()
        return stopped

    def _kill(self) -> None:
        self._kill_call = None
        for worker in self._running.values():
            log.warn(
                "worker {number} (pid {pid}) still running {seconds}s after shutdown began; killing it",
                number=worker.number,
                pid=worker.pid,
                seconds=self.grace_period + STOP_MARGIN,
            )
            assert worker.transport is not None, "a running worker's process has its transport"
            worker.transport.signalProcess("KILL")

    def _finish(self) -> None:
        self._finished = True
        if self._kill_call is not None:
            self._kill_call.cancel()
            self._kill_call = None
        assert self._reservations is not None
        for reservation in self._reservations:
            reservation.close()
        waiting, self._waiting = self._waiting, []
        for stopped in waiting:
            stopped.callback(None)
        error = self._gave_up or WorkerError("stopped before every worker served")
        if not self.listening.called:
            self.listening.errback(error)
        if self._gave_up is not None:
            self.ended.errback(self._gave_up)
        else:
            self.ended.callback(None)


def _how_it_ended(reason: Failure) -> str:
    """``exited with status 1``, ``was killed by signal 9 (SIGKILL)``."""
    ended = reason.value
    assert isinstance(ended, (ProcessDone, ProcessTerminated)), "what processEnded is given"
    if isinstance(ended, ProcessTerminated) and ended.signal is not None:
        number = ended.signal
        try:
            name = f" ({signal.Signals(number).name})"
        except ValueError:
            name = ""
        return f"was killed by signal {number}{name}"
    return f"exited with status {ended.exitCode}"


class _Worker(ProcessProtocol):
    """One worker process as its supervisor sees it: its pipes, whether it serves, how it ended."""

    def __init__(self, supervisor: WorkerSupervisor, number: int) -> None:
        self.supervisor = supervisor
        self.number = number
        self.name = f"worker {number}"
        self.pid: int | None = None
        self.started_at = supervisor.reactor.seconds()
        self.serving = False
        self.last_error = ""  # the last line it wrote to its standard error, but for indented ones
        self._listening = 0  # endpoints it said it listens on
        self._lines = {1: Lines(), 2: Lines(), LOG_FD: Lines()}

    def connectionMade(self) -> None:
        assert self.transport is not None, "set before connectionMade"
        self.pid = self.transport.pid

    def childDataReceived(self, childFD: int, data: bytes) -> None:
        for line in self._lines[childFD].feed(data):
            self._line(childFD, line)

    def childConnectionLost(self, childFD: int) -> None:
        if childFD in self._lines and (rest := self._lines[childFD].rest()):
            self._line(childFD, rest)

    def _line(self, fd: int, line: bytes) -> None:
        if fd == LOG_FD and (event := event_from_line(line)) is not None:
            if event.get(FORMAT) == LISTENING:  # the supervisor says where, once
                self._listening += 1
                if self._listening == len(self.supervisor.endpoints):
                    self.supervisor._serving(self)
            elif event.get(FORMAT) != STARTING:  # and that it starts, once
                log.observer(relabel(event, self.name))
            return
        text = line.decode("utf-8", "replace").rstrip()
        if not text:
            return
        stream = {1: "stdout", 2: "stderr"}.get(fd, "log")
        if fd == 2 and not text[0].isspace():
            # an indented line goes on the one before: where the error of an --app was raised
            self.last_error = text
        log.info("{text}", text=text, log_system=f"{self.name} {stream}")

    def processEnded(self, reason: Failure) -> None:
        self.supervisor._ended(self, reason)


# ---- in the worker process ----

_endpoints: list[SharedEndpoint] | None = None


def worker_endpoints(reactor: Any) -> list[IStreamServerEndpoint] | None:
    """In a worker process: the endpoints its supervisor reserved, to serve with ``reactor``; ``None`` in
    any other process."""
    if _endpoints is None:
        return None
    return [endpoint.endpoint(reactor) for endpoint in _endpoints]


def _worker_main() -> None:
    """A worker's start: ``python -c LAUNCHER PLAN ARGS…`` runs ``twistd -n rolo ARGS…`` with the plan."""
    global _endpoints
    plan = json.loads(sys.argv[1])
    if plan["cpu"] is not None:
        os.sched_setaffinity(0, {plan["cpu"]})
    try:  # the supervisor's kind of reactor
        importlib.import_module(plan["reactor"]).install()
    except (ImportError, AttributeError):
        pass  # not one that installs itself: twistd's default
    from twisted.internet import reactor

    _endpoints = [SharedEndpoint(**endpoint) for endpoint in plan["endpoints"]]
    reactor.callWhenRunning(reactor.addReader, _SupervisorPipe(reactor))
    sys.argv = ["twistd", "-n", "--pidfile=", f"--logger={relay.__name__}.pipe_log_observer", "rolo", *sys.argv[2:]]
    from twisted.scripts.twistd import run

    run()


@implementer(IReadDescriptor)
class _SupervisorPipe:
    """A worker's standard input, the pipe from its supervisor: its end stops the worker."""

    def __init__(self, reactor: Any) -> None:
        self.reactor = reactor
        self.stopping = False
        os.set_blocking(0, False)
        reactor.addSystemEventTrigger("before", "shutdown", setattr, self, "stopping", True)

    def fileno(self) -> int:
        return 0

    def doRead(self) -> Any:
        try:
            if os.read(0, 4096):
                return None  # the supervisor says nothing else
        except BlockingIOError:
            return None
        except OSError:
            pass
        return ConnectionDone()

    def connectionLost(self, reason: Failure) -> None:
        if not self.stopping:
            self.reactor.stop()

    def logPrefix(self) -> str:
        return "supervisor"


def run_workers(
    app: str,
    *endpoints: str,
    workers: int | None = None,
    pin_workers: bool = False,
    grace_period: float = 10.0,
    options: Sequence[str] = (),
) -> int:
    """Serve ``app`` on ``endpoints`` (:data:`~rolo.serving.twisted.service.DEFAULT_ENDPOINT` if none are
    given: this machine only, as ``twistd rolo`` without ``--listen``) from worker processes, as
    ``twistd -n rolo --workers`` does, until SIGTERM or SIGINT; return the exit status.

    It runs the global reactor in this thread, with its signal handlers, and logs to standard output.
    The workers import ``app`` themselves, so it is an import path (``"myapp.server:router"``, see
    ``twistd rolo --app``), not an object; in the module that calls this, call it under ``if __name__ ==
    "__main__":`` so that a worker importing that module does not call it again::

        if __name__ == "__main__":
            sys.exit(run_workers("myapp.server:router", "tcp:8000", workers=4))

    :param app: the application, as ``package.module:attribute``
    :param endpoints: Twisted endpoint strings of the kinds ``tcp:``, ``tcp6:``, ``ssl:`` and ``unix:``
    :param workers: how many worker processes (default: one per CPU this process may use)
    :param pin_workers: run worker *i* on the *i*-th CPU only
    :param grace_period: how long a stopping worker waits for its handlers, in seconds
    :param options: more ``twistd rolo`` options for the workers, such as ``["--max-connections", "1000"]``
    :return: 0 once stopped by a signal, 1 if the supervisor gave up (a worker kept dying before serving)
    :raises ValueError: for an endpoint that does not parse, or of another kind
    :raises twisted.internet.error.CannotListenError: if an address is taken
    """
    from twisted.internet import reactor
    from twisted.logger import globalLogBeginner, textFileLogObserver

    endpoints = endpoints or (DEFAULT_ENDPOINT,)
    args = ["--app", app, "--grace-period", str(grace_period), *options]
    for endpoint in endpoints:
        args += ["--listen", endpoint]
    supervisor = WorkerSupervisor(
        args, endpoints, workers or cpu_count(), pin_workers=pin_workers, grace_period=grace_period
    )
    globalLogBeginner.beginLoggingTo([textFileLogObserver(sys.stdout)], redirectStandardIO=False)
    supervisor.privilegedStartService()
    status = 0

    def gave_up(failure: Failure) -> None:
        nonlocal status
        status = 1
        reactor.stop()

    supervisor.ended.addErrback(gave_up)
    supervisor.listening.addErrback(lambda _: None)  # what went wrong is logged; ended says so
    reactor.callWhenRunning(supervisor.startService)
    reactor.addSystemEventTrigger("before", "shutdown", supervisor.stopService)
    reactor.run()
    return status
