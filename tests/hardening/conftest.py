"""Fixtures of the hardening tests: the Twisted server only, the ``--heavy`` switch, and a server in a
process of its own."""

from __future__ import annotations

import json
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import websocket
from twisted.logger import globalLogPublisher

from .support import process_usage

ROOT = Path(__file__).resolve().parents[2]
POLL_INTERVAL = 0.02  # seconds between two looks at a server's stats


@pytest.fixture
def server_kind() -> str:
    """The ``serve`` fixture's server: here always TwistedGateway. Under hypercorn and uvicorn the socket,
    the HTTP parser and the handshake belong to those servers; what rolo adds there (origins, capacity,
    the handler model) is covered by the tests that run on every server."""
    return "twisted"


@pytest.fixture
def heavy(request: pytest.FixtureRequest) -> bool:
    """Whether to run at full size (``pytest --heavy``): minutes, not seconds."""
    return bool(request.config.getoption("--heavy"))


class ServerProcess:
    """tests/hardening/server.py running in a child process."""

    def __init__(self, settings: dict[str, Any]) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "tests.hardening.server", json.dumps(settings)],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            text=True,
        )
        line = self.process.stdout.readline()
        if not line.strip().isdigit():
            self.process.kill()
            raise RuntimeError(f"the server process did not start: {line!r}")
        self.address = ("127.0.0.1", int(line))

    def ws(self, path: str) -> str:
        return f"ws://{self.address[0]}:{self.address[1]}{path}"

    def stats(self, wait_idle: bool = False) -> dict[str, int]:
        """The server's WebSocket counters; with ``wait_idle``, once no handler runs."""
        url = f"http://{self.address[0]}:{self.address[1]}/stats" + ("?idle=1" if wait_idle else "")
        with urllib.request.urlopen(url, timeout=15) as response:
            return json.load(response)

    def control(self, command: str = "stats") -> Any:
        """Send ``command`` to the server's ``/control`` WebSocket, which answers while every HTTP thread
        is busy: ``stats`` gets the HTTP side's figures and the process's (a dict), ``release`` lets the
        ``/hold`` handlers return."""
        ws = websocket.create_connection(self.ws("/control"), timeout=15)
        try:
            ws.send(command)
            answer = ws.recv()
        finally:
            ws.close()
        return json.loads(answer) if command == "stats" else answer

    def wait_for(self, condition: Callable[[dict[str, int]], bool], timeout: float = 10.0) -> dict[str, int]:
        """Poll the ``/control`` stats until ``condition(stats)`` holds; the stats then, or at the timeout
        (the caller asserts on them)."""
        deadline = time.monotonic() + timeout
        while True:
            stats = self.control()
            if condition(stats) or time.monotonic() > deadline:
                return stats
            time.sleep(POLL_INTERVAL)  # paces the polling; what is waited on is the condition

    def usage(self) -> dict[str, int]:
        return process_usage(self.process.pid)

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


@pytest.fixture
def failures(caplog):
    """Every failure the server logs while the test runs: rolo's are records of its stdlib loggers,
    Twisted's and Autobahn's are events of Twisted's log."""
    logged = []

    def observe(event):
        if "log_failure" in event:
            logged.append(event)

    globalLogPublisher.addObserver(observe)
    yield logged
    globalLogPublisher.removeObserver(observe)
    logged.extend(record for record in caplog.records if record.exc_info and record.name.startswith("rolo"))


@pytest.fixture
def server_process() -> Iterator[Callable[..., ServerProcess]]:
    """``server_process(**settings)`` starts tests/hardening/server.py; it is stopped when the test ends."""
    started: list[ServerProcess] = []

    def start(**settings: Any) -> ServerProcess:
        server = ServerProcess(settings)
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()
