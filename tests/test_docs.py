"""The documentation (``docs/``) builds as ``./dev docs`` builds it, without a warning, and its code runs.

The build is Sphinx's, nitpicky, with warnings as errors, from scratch into a fresh directory: a reference
to a name that does not exist, a public class or function without a docstring, or broken markup fails it.
The tutorial's first program, the seed's WebSocket route, runs as written against a real server and
client; the other examples it shows are included from ``examples/``, whose commands ``test_examples``
runs. The testing page's first test module runs as written, and the program that serves with ``listen``
ends. Every Python block of every page at least compiles.
"""

from __future__ import annotations

import re
import subprocess
import sys
import textwrap
from dataclasses import fields
from pathlib import Path

from rolo.serving.twisted import TwistedSettings
from tests.documented import DOCS, REPO, Running, file_commands

TUTORIAL = DOCS / "tutorial.rst"
TESTING = DOCS / "testing.rst"

# a code-block directive, its options, and its indented body
_BLOCK = re.compile(r"^\.\. code-block:: (\w+)\n((?:[ ]{3}:.*\n)*)\n((?:(?:[ ]{4}.*)?\n)+)", re.MULTILINE)


def code_blocks(page: Path, language: str = "python") -> list[str]:
    """The code of each ``.. code-block:: LANGUAGE`` of ``page``, in order."""
    return [
        textwrap.dedent(body).strip("\n") + "\n"
        for found, _, body in _BLOCK.findall(page.read_text())
        if found == language
    ]


def test_the_documentation_builds_without_a_warning(tmp_path):
    built = subprocess.run(
        [sys.executable, "-m", "sphinx", "-E", "-n", "-W", "--keep-going", "-q", "-b", "html",
         "-d", str(tmp_path / "doctrees"), str(DOCS), str(tmp_path / "html")],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert built.returncode == 0, built.stderr
    # the settings tables and the twistd options are made from the settings' declarations
    serving = (tmp_path / "html" / "serving.html").read_text()
    for declared in fields(TwistedSettings):
        assert f'<span class="pre">{declared.name}</span>' in serving, declared.name
    assert "--max-connections=" in serving
    # and the reference documents each public name once
    assert "rolo.websocket.Hub" in (tmp_path / "html" / "reference" / "websocket.html").read_text()


def test_every_python_block_compiles():
    pages = sorted(DOCS.glob("*.rst"))
    assert TUTORIAL in pages
    for page in pages:
        for number, block in enumerate(code_blocks(page)):
            compile(block, f"{page.name}, Python block {number + 1}", "exec")


def test_the_tutorials_first_route_runs_as_written(rolo_server):
    # the seed's route, then the program that serves it: run as written, but for the two lines that run a
    # reactor on port 8000, for which the test's server serves the same gateway on a free port
    route, program = code_blocks(TUTORIAL)[:2]
    assert '@route("/stream", methods=["WEBSOCKET"])' in route
    lines = program.splitlines()
    serving = ["reactor.listenTCP(8000, TwistedGateway(gateway))", "reactor.run()"]
    assert lines[-2:] == serving
    namespace: dict[str, object] = {}
    exec(compile(route + "\n".join(lines[:-2]), str(TUTORIAL), "exec"), namespace)
    server = rolo_server(namespace["gateway"])

    (command,) = [command for command in file_commands(TUTORIAL) if "/stream" in command.text]
    client = Running(command.argv_on(server.port))
    assert client.rest() == list(command.output), command.where
    assert client.process.wait(10) == 1  # websocat says "error running" and fails


def test_the_tutorials_test_runs_as_written(rolo_server, monkeypatch):
    (test,) = [block for block in code_blocks(TUTORIAL) if "def test_echo(rolo_server)" in block]
    monkeypatch.syspath_prepend(str(REPO / "examples"))  # where "from echo import router" finds it
    namespace: dict[str, object] = {}
    exec(compile(test, str(TUTORIAL), "exec"), namespace)
    namespace["test_echo"](rolo_server)


def test_the_testing_pages_first_test_runs_as_written(rolo_server):
    # it used a router with routes no example had all of; now the block is a test module of its own
    (module,) = [block for block in code_blocks(TESTING) if "def test_hello(rolo_server)" in block]
    namespace: dict[str, object] = {}
    exec(compile(module, str(TESTING), "exec"), namespace)
    namespace["test_hello"](rolo_server)


def test_the_program_that_runs_listen_serves_then_stops_and_exits():
    # it stopped the service and left the reactor running, so the program never ended
    (program,) = [block for block in code_blocks(DOCS / "serving.rst") if "await listen(" in block]
    assert "deferLater(reactor, 60, " in program
    program = program.replace("deferLater(reactor, 60, ", "deferLater(reactor, 0, ")  # not a minute here
    done = subprocess.run(
        [sys.executable, "-c", program], cwd=REPO / "examples", capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("listening at IPv4Address(type='TCP', host='127.0.0.1', port="), done.stdout
