"""The examples, run as a user runs them (``python examples/X.py PORT``) and talked to with real clients."""

from __future__ import annotations

import json
import queue
import re
import subprocess
import sys
import threading
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
import websocket as wsclient

EXAMPLES = Path(__file__).parent.parent / "examples"


class Example:
    """An example server in a subprocess, on a port it picked; ``address`` is ``localhost:PORT``."""

    def __init__(self, name: str) -> None:
        self.process = subprocess.Popen(
            [sys.executable, str(EXAMPLES / f"{name}.py"), "0"],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self.lines: queue.Queue[str] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()
        self.address = self._wait_for_address()

    def _read(self) -> None:
        for line in self.process.stdout:
            self.lines.put(line)

    def _wait_for_address(self) -> str:
        seen = []
        while True:
            try:
                line = self.lines.get(timeout=30)
            except queue.Empty:
                raise AssertionError(f"the example printed no URL; it said: {''.join(seen)}") from None
            seen.append(line)
            found = re.search(r"(?:ws|http)://(localhost:\d+)", line)
            if found:
                return found.group(1)

    def stop(self) -> None:
        self.process.terminate()
        assert self.process.wait(timeout=10) == 0


@pytest.fixture
def example() -> Iterator:
    started: list[Example] = []

    def start(name: str) -> Example:
        started.append(Example(name))
        return started[-1]

    yield start
    for running in started:
        running.stop()


def test_echo(example):
    server = example("echo")
    ws = wsclient.create_connection(f"ws://{server.address}/echo/alice", timeout=10)
    assert ws.recv() == "thanks for connecting alice"
    ws.send("hello")
    assert ws.recv() == "echo: hello"
    ws.send("exit")
    assert [ws.recv(), ws.recv()] == ["echo: exit", "ok bye!"]
    ws.close()


def test_asgi_echo_under_uvicorn(example):
    server = example("asgi_echo")
    ws = wsclient.create_connection(f"ws://{server.address}/echo/bob", timeout=10)
    assert ws.recv() == "thanks for connecting bob"
    ws.send("exit")
    assert [ws.recv(), ws.recv()] == ["echo: exit", "ok bye!"]
    ws.close()


def test_auth_rejects_with_the_response_given_and_accepts_the_authorized(example):
    server = example("auth")
    with pytest.raises(wsclient.WebSocketBadStatusException) as refused:
        wsclient.create_connection(f"ws://{server.address}/", timeout=10)
    assert refused.value.status_code == 403
    assert refused.value.resp_body == b"no dice"

    ws = wsclient.create_connection(
        f"ws://{server.address}/", timeout=10, header=["Authorization: Bearer letmein"]
    )
    assert ws.recv() == "hello world!"
    ws.send("hi")
    assert ws.recv() == "you said: hi"
    ws.close()


def test_chat_room_with_three_clients_and_an_http_post(example):
    server = example("chat")

    def join(name: str) -> wsclient.WebSocket:
        return wsclient.create_connection(f"ws://{server.address}/rooms/lobby?name={name}", timeout=10)

    # each join is announced to those in the room already, which shows it has happened
    alice = join("alice")
    bob = join("bob")
    assert alice.recv() == "bob joined"
    carol = join("carol")
    assert [alice.recv(), bob.recv()] == ["carol joined", "carol joined"]
    elsewhere = wsclient.create_connection(f"ws://{server.address}/rooms/attic?name=dave", timeout=10)

    alice.send("hi")
    assert [bob.recv(), carol.recv()] == ["alice: hi", "alice: hi"]
    carol.send("hello alice")
    assert [alice.recv(), bob.recv()] == ["carol: hello alice", "carol: hello alice"]

    post = urllib.request.Request(f"http://{server.address}/rooms/lobby", data=b"tea is ready", method="POST")
    with urllib.request.urlopen(post, timeout=10) as response:
        assert json.loads(response.read()) == {"delivered": 3}
    assert [ws.recv() for ws in (alice, bob, carol)] == ["announcement: tea is ready"] * 3

    carol.close()
    assert [alice.recv(), bob.recv()] == ["carol left", "carol left"]
    # nothing said in the lobby reached the attic: the first thing there is what was posted there
    post = urllib.request.Request(f"http://{server.address}/rooms/attic", data=b"dust", method="POST")
    with urllib.request.urlopen(post, timeout=10) as response:
        assert json.loads(response.read()) == {"delivered": 1}
    assert elsewhere.recv() == "announcement: dust"
    for ws in (alice, bob, elsewhere):
        ws.close()
