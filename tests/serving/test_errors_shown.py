"""A handler's error reaches the operator, with its traceback, in every way of serving, with nothing
configured; and the standard logging module configures all of rolo's lines, whatever serves them.

Each server is a real process (as its users run it) serving ``tests.serving.apps:faults``, whose HTTP and
WebSocket handlers raise; the test reads what the process prints.
"""

from __future__ import annotations

import re
import urllib.error
import urllib.request

import pytest
import websocket as wsclient

from tests.documented import Running

from .test_twistd import close_frame

LOOPBACK = "tcp:0:interface=127.0.0.1"

# a program that runs the reactor itself and begins no Twisted logging
LISTEN = """
from twisted.internet import reactor
from rolo.serving.twisted import listen
from tests.serving.apps import faults

def listening(service):
    print("listening at 127.0.0.1:%d" % service.ports[0].getHost().port, flush=True)

listen(faults, "tcp:0:interface=127.0.0.1").addCallback(listening)
reactor.run()
"""

# a program that is not Twisted-based, and configures no logging
RUN_IN_THREAD = """
import sys
from rolo.serving.twisted import run_in_thread
from tests.serving.apps import faults

with run_in_thread(faults, "tcp:0:interface=127.0.0.1") as server:
    print("listening at 127.0.0.1:%d" % server.port, flush=True)
    sys.stdin.readline()
"""

WAYS = {
    "twistd": ["twistd", "-n", "--pidfile=", "rolo", "--app", "tests.serving.apps:faults", "--listen", LOOPBACK],
    "listen": ["python", "-c", LISTEN],
    "run_in_thread": ["python", "-c", RUN_IN_THREAD],
    "hypercorn": ["hypercorn", "tests.serving.apps:faults_asgi", "--bind", "127.0.0.1:0"],
    "uvicorn": ["uvicorn", "tests.serving.apps:faults_asgi", "--port", "0"],
}

_PORT = r"(?i)(?:listening at|running on) (?:http://)?127\.0\.0\.1:(\d+)"


def websocket_close_code(port: int, path: str) -> int:
    """Open a WebSocket and read until the server's close: its code."""
    ws = wsclient.create_connection(f"ws://127.0.0.1:{port}{path}", timeout=10)
    try:
        return close_frame(ws)[0]
    finally:
        ws.close()


def http_status(port: int, path: str) -> int:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=10) as response:
            return response.status
    except urllib.error.HTTPError as error:
        return error.code


@pytest.mark.parametrize("way", WAYS)
def test_a_handler_error_is_shown_with_its_traceback(way):
    server = Running(WAYS[way], stdin=way == "run_in_thread")
    try:
        port = int(server.wait_for(_PORT).group(1))

        assert http_status(port, "/fault") == 500
        server.wait_for(r"Traceback \(most recent call last\)")
        server.wait_for(r", in http_fault$")
        server.wait_for(r"RuntimeError: the HTTP handler's fault")

        assert websocket_close_code(port, "/fault/ws") == 1011
        server.wait_for(r", in websocket_fault$")
        server.wait_for(r"RuntimeError: the WebSocket handler's fault")
    finally:
        server.stop()


# the one documented way: stdlib logging, here in a program that is not Twisted-based
CONFIGURED = """
import logging, sys
from rolo.serving.twisted import run_in_thread
from tests.serving.apps import faults

logging.basicConfig(level=logging.INFO, stream=sys.stdout, format="%(levelname)s %(name)s: %(message)s")
logging.getLogger("rolo.serving.twisted.protocol").setLevel(logging.WARNING)
with run_in_thread(faults, "tcp:0:interface=127.0.0.1") as server:
    sys.stdin.readline()
"""


def test_stdlib_logging_configures_every_line_rolo_writes():
    server = Running(["python", "-c", CONFIGURED], stdin=True)
    try:
        listening = server.wait_for(r"^INFO rolo\.serving\.twisted\.service: rolo listening at 127\.0\.0\.1:(\d+)")
        port = int(listening.group(1))
        assert http_status(port, "/fault") == 500
        server.wait_for(r"^ERROR rolo\.gateway: exception while handling")
        server.wait_for(r"^INFO rolo\.serving\.twisted\.http: GET /fault from .*: 500 in")
        assert websocket_close_code(port, "/fault/ws") == 1011
        server.wait_for(r"RuntimeError: the WebSocket handler's fault")
        assert http_status(port, "/fault") == 500
        server.wait_for(r"^INFO rolo\.serving\.twisted\.http: GET /fault from")
        # the protocol's lines were turned down to warnings: no "WebSocket open" line
        assert not any(re.search("WebSocket (open|closed)", line) for line in server.lines), server.lines
        assert server.rest() == []  # and nothing twice: each line once, through logging
    finally:
        server.stop()
