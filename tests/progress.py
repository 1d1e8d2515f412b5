"""Progress lines: a test that runs long says, while it runs, that it does and where it is.

pytest prints a test's result once the test has ended, and captures what the test prints: a test that
runs for minutes (the Autobahn TestSuite, the packaging tests' fresh virtual environments) looks like a
hang. Here a thread watches the running test; every ``--progress-every`` seconds (15 by default; 0 turns
it off) that the test has run, it writes one line to the terminal, past pytest's capture::

    tests/conformance/test_autobahn_testsuite.py
        test_autobahn_testsuite[twisted]: 15s, 58 of 517 cases done
        test_autobahn_testsuite[twisted]: 30s, 131 of 517 cases done
    tests/conformance/test_autobahn_testsuite.py .                                       [ 50%]

A test says where it is through the ``progress`` fixture: ``progress.status = "..."``, or a callable that
returns that text when a line is written. A test that takes less than the interval writes no line.

The lines go to a copy of the descriptor of pytest's standard output, taken before any test runs (while
pytest's capture is suspended), so that capturing cannot hold them back. They are written only while a
phase of the test (setup, call, teardown) runs, never while pytest writes its own report.
"""

from __future__ import annotations

import os
import sys
import threading
import time
from collections.abc import Callable, Generator
from typing import IO

import pytest

__all__ = ["Progress"]

Status = str | Callable[[], str]


class Progress:
    """Where the running test is, for its progress lines.

    :ivar status: a text, or a callable that returns one (called from another thread, when a line is
        written); "" says nothing more than the time the test has run
    """

    def __init__(self) -> None:
        self.status: Status = ""

    def describe(self) -> str:
        status = self.status
        return status() if callable(status) else status


class _Watch:
    """The thread that writes the progress lines of the running test, once it has run ``every`` seconds.

    The methods but :meth:`close` are called by pytest's thread, as the test goes through its phases.
    """

    def __init__(self, terminal: IO[str], every: float) -> None:
        self._terminal = terminal
        self._every = every
        self._changed = threading.Condition()
        self._test = ""  # the running test's name; "" between tests
        self._phase = ""  # the running phase; "" while pytest reports
        self._started = 0.0
        self._next = 0.0
        self._progress = Progress()
        self._wrote = False  # lines written since pytest last wrote
        self._closed = False
        self._thread = threading.Thread(target=self._run, name="test-progress", daemon=True)
        self._thread.start()

    def begin(self, test: str) -> None:
        """A test starts: its lines are due every ``every`` seconds from now, while a phase runs."""
        with self._changed:
            self._test, self._phase, self._progress = test, "", Progress()
            self._started = time.monotonic()
            self._next = self._started + self._every

    def phase(self, phase: str) -> None:
        """A phase of the test starts: ``"setup"``, ``"call"`` or ``"teardown"``."""
        with self._changed:
            self._phase = phase
            self._changed.notify()

    def pause(self) -> None:
        """The phase has ended: no line until the next. Once it returns, no line is being written."""
        with self._changed:
            self._phase = ""

    def end(self) -> None:
        """The test has ended."""
        with self._changed:
            self._test = ""

    def wrote(self) -> bool:
        """Whether lines were written since pytest last wrote (since this was last asked)."""
        with self._changed:
            wrote, self._wrote = self._wrote, False
            return wrote

    def progress(self) -> Progress:
        """The running test's :class:`Progress`."""
        with self._changed:
            return self._progress

    def close(self) -> None:
        with self._changed:
            self._closed = True
            self._changed.notify()
        self._thread.join()
        self._terminal.close()

    def _run(self) -> None:
        with self._changed:
            while not self._closed:
                if not (self._test and self._phase):
                    self._changed.wait()
                    continue
                now = time.monotonic()
                if now < self._next:
                    self._changed.wait(self._next - now)
                    continue
                self._next = now + self._every
                self._write(now)

    def _write(self, now: float) -> None:
        # holding the lock, so that pause() returns once the line is out
        line = f"    {self._test}: {now - self._started:.0f}s"
        if self._phase != "call":
            line += f" (in its {self._phase})"
        try:
            status = self._progress.describe()
        except Exception as error:  # a progress line must not end the run
            status = f"no status: {error!r}"
        if status:
            line += f", {status}"
        # a line break first: pytest's line ("tests/x.py ..") is still open; pytest goes on on a new one
        # after the last of these (see _new_line)
        self._terminal.write("\n" + line)
        self._terminal.flush()
        self._wrote = True


_WATCH = pytest.StashKey[_Watch]()


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--progress-every",
        type=float,
        default=15.0,
        metavar="SECONDS",
        help="write a line every SECONDS that a test runs, saying where it is (default 15; 0: never)",
    )


def pytest_configure(config: pytest.Config) -> None:
    every = config.getoption("--progress-every")
    if every <= 0:
        return
    try:
        descriptor = os.dup(sys.stdout.fileno())  # pytest's capture is suspended while plugins configure
    except (AttributeError, OSError, ValueError):
        return  # no descriptor (pytest run in-process by another program): no progress lines
    watch = _Watch(os.fdopen(descriptor, "w"), every)
    config.stash[_WATCH] = watch
    config.pluginmanager.register(_Hooks(config, watch), "progress-lines")


def pytest_unconfigure(config: pytest.Config) -> None:
    watch = config.stash.get(_WATCH, None)
    if watch is not None:
        watch.close()


class _Hooks:
    """Tells the watch where the tests are, and pytest's terminal reporter where the lines went."""

    def __init__(self, config: pytest.Config, watch: _Watch) -> None:
        self.config = config
        self.watch = watch

    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_protocol(self, item: pytest.Item) -> Generator[None, object, object]:
        self.watch.begin(item.name)
        try:
            return (yield)
        finally:
            self.watch.end()
            if self.watch.wrote():  # in its teardown: the next test's results go on a line of their own
                self._new_line(item.nodeid)

    def _phase(self, phase: str) -> Generator[None, object, object]:
        self.watch.phase(phase)
        try:
            return (yield)
        finally:
            self.watch.pause()

    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_setup(self) -> Generator[None, object, object]:
        return (yield from self._phase("setup"))

    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_call(self) -> Generator[None, object, object]:
        return (yield from self._phase("call"))

    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_teardown(self) -> Generator[None, object, object]:
        return (yield from self._phase("teardown"))

    @pytest.hookimpl(tryfirst=True)
    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        # before the terminal reporter writes the result: a call's always, a setup's or teardown's if it
        # did not pass
        if (report.when == "call" or not report.passed) and self.watch.wrote():
            self._new_line(report.nodeid)

    def _new_line(self, nodeid: str) -> None:
        """Progress lines were written after pytest's last output: have pytest go on on a line of its own,
        as it does for a new file (the file's name, then the results; with -v, the test's name and its
        result; with -q, the results)."""
        reporter = self.config.pluginmanager.get_plugin("terminalreporter")
        if reporter is None:
            return
        try:
            reporter.currentfspath = None  # the file (or test) whose line is open; None: no line open
            if reporter.showlongtestinfo:
                pass  # the result's line starts with the test's name
            elif reporter.showfspath:
                reporter.write_fspath_result(nodeid, "")
            else:
                reporter.write_line("")
        except AttributeError:
            pass  # another pytest: the result goes on at the end of the last progress line


@pytest.fixture
def progress(request: pytest.FixtureRequest) -> Progress:
    """Where the test is, for its progress lines: set ``progress.status`` to a text, or to a callable that
    returns one (see :mod:`tests.progress`)."""
    watch = request.config.stash.get(_WATCH, None)
    return watch.progress() if watch is not None else Progress()
