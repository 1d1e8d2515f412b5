"""Conformance: the Autobahn TestSuite cases, run by kosoku against an echo server built on rolo."""

from __future__ import annotations

import collections
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import pytest_twisted
from twisted.internet import threads

from rolo import route
from rolo.websocket import WebSocketRequest

PASSING = {"OK", "NON-STRICT", "INFORMATIONAL"}


@route("/", methods=["WEBSOCKET"])
@route("/<path:path>", methods=["WEBSOCKET"])
def echo(request: WebSocketRequest, path: str = ""):
    with request.accept() as websocket:
        for message in websocket:
            websocket.send(message)


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


@pytest.mark.servers("twisted", reason="the whole suite takes minutes; test_autobahn_asgi runs the ASGI side")
@pytest_twisted.ensureDeferred
async def test_autobahn_testsuite(serve, tmp_path):
    # the suite sends 16 MiB messages; everything else is the default configuration
    server = serve(echo, max_message_size=32 * 1024 * 1024)
    result = await threads.deferToThread(
        subprocess.run,
        [kosoku_binary(), "-p", "4", "-o", str(tmp_path), server.address],
        capture_output=True,
        text=True,
        timeout=900,
    )
    summary = summarise(tmp_path)
    print(
        f"\nAutobahn TestSuite: {sum(summary['behavior'].values())} cases, "
        f"behavior {dict(summary['behavior'])}, behaviorClose {dict(summary['behaviorClose'])}"
    )
    assert sum(summary["behavior"].values()) == 517, result.stdout[-2000:] + result.stderr[-2000:]
    assert summary["failed"] == []
