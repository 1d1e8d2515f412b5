"""Conformance: the Autobahn TestSuite cases, run by kosoku against an echo server built on rolo."""

from __future__ import annotations

import collections
import json
import shutil
import subprocess
import sys
import threading
from collections.abc import Callable, Sequence
from pathlib import Path

import pytest
import pytest_twisted
from twisted.internet import threads

from rolo import route
from rolo.websocket import WebSocketRequest
from tests.conftest import Server
from tests.progress import Progress

PASSING = {"OK", "NON-STRICT", "INFORMATIONAL"}


class Echo:
    """The server under test: a route that echoes every message, at any path, and counts the connections
    it has served (kosoku opens one per case), for the progress lines of a run that takes minutes.

    :ivar route: the route to serve
    :ivar served: how many connections' handlers have returned
    """

    def __init__(self) -> None:
        self.served = 0
        counting = threading.Lock()

        @route("/", methods=["WEBSOCKET"])
        @route("/<path:path>", methods=["WEBSOCKET"])
        def echo(request: WebSocketRequest, path: str = "") -> None:
            try:
                with request.accept() as websocket:
                    for message in websocket:
                        websocket.send(message)
            finally:
                with counting:
                    self.served += 1

        self.route = echo


def kosoku_binary() -> str:
    return shutil.which("kosoku") or str(Path(sys.executable).parent / "kosoku")


def summarise(reports: Path) -> dict[str, collections.Counter]:
    """Counts of each case's ``behavior`` and ``behaviorClose`` from kosoku's JSON reports."""
    behaviour: collections.Counter = collections.Counter()
    closing: collections.Counter = collections.Counter()
    failed = []
    for path in reports.rglob("*.json"):
        report = json.loads(path.read_text())
        if not isinstance(report, dict) or "behavior" not in report:
            continue
        behaviour[report["behavior"]] += 1
        closing[report["behaviorClose"]] += 1
        if report["behavior"] not in PASSING or report["behaviorClose"] not in PASSING:
            failed.append((report.get("id"), report["behavior"], report["behaviorClose"]))
    return {"behavior": behaviour, "behaviorClose": closing, "failed": failed}


async def run_cases(
    serve: Callable[..., Server], cases: int, reports: Path, progress: Progress, sections: Sequence[str] = ()
) -> None:
    """Serve the echo and run the TestSuite's ``cases`` cases against it (those of ``sections``, ``"9.*"``
    …, or all), four at a time, writing the reports into ``reports``; assert that all ran and passed."""
    echo = Echo()
    # the suite sends 16 MiB messages; everything else is the default configuration
    server = serve(echo.route, max_message_size=32 * 1024 * 1024)
    progress.status = lambda: f"{echo.served} of {cases} cases done"
    selection = [arg for section in sections for arg in ("-i", section)]
    result = await threads.deferToThread(
        subprocess.run,
        [kosoku_binary(), "-p", "4", *selection, "-o", str(reports), server.address],
        capture_output=True,
        text=True,
        timeout=1800,  # a run on a busy 2-CPU machine took 13 minutes
    )
    summary = summarise(reports)
    print(
        f"\nAutobahn TestSuite on {server.kind}: {sum(summary['behavior'].values())} cases, "
        f"behavior {dict(summary['behavior'])}, behaviorClose {dict(summary['behaviorClose'])}"
    )
    assert sum(summary["behavior"].values()) == cases, result.stdout[-2000:] + result.stderr[-2000:]
    assert summary["failed"] == [], f"passing is one of {PASSING}"


@pytest.mark.slow
@pytest.mark.servers("twisted", reason="the whole suite takes minutes; test_autobahn_asgi runs the ASGI side")
@pytest_twisted.ensureDeferred
async def test_autobahn_testsuite(serve, tmp_path, progress):
    await run_cases(serve, 517, tmp_path, progress)
