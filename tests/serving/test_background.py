"""run_in_thread: serving from a reactor in a background thread, in a process of its own."""

from __future__ import annotations

import json
import subprocess
import sys

from .twistd import REPO


def test_run_in_thread_serves_stops_and_reuses_the_reactor_thread():
    result = subprocess.run(
        [sys.executable, "-m", "tests.serving.background_script"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert "Traceback" not in output
    seen = json.loads(next(line for line in result.stdout.splitlines() if line.startswith("RESULT "))[7:])

    assert seen["address"] == ["127.0.0.1", True]
    assert seen["http"] == "hello eve"
    assert seen["greeting"] == "thanks for connecting eve"
    assert seen["close"] == [1001, "server shutting down"]
    # the handler threads are gone; the reactor thread stays for later servers
    assert seen["threads_after_stop"] == ["rolo-reactor"]
    assert seen["second_http"] == "hello again"
    assert seen["threads_while_second_runs"] == ["rolo-reactor"]
    assert seen["second_stopped_cleanly"] is True
    assert seen["on_reactor_thread"] == "run_in_thread waits for the reactor: on the reactor thread, use listen()"
    assert seen["stuck"] == "stuck"
    assert seen["third_stopped_cleanly"] is False
    # stopping a server the reactor's end stopped waits the grace period stop was given (0.6 s, not the
    # setting's 2 s) for both pools' threads in all, not one each
    assert seen["fifth_stuck"] == "stuck"
    assert seen["fifth_stopped_cleanly"] is False
    assert seen["fifth_stop_seconds"] < 1.1
    # the server left running was stopped at exit
    assert f"(TCP Port {seen['fourth_port']} Closed)" in result.stdout
