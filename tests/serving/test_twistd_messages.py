"""What ``twistd rolo`` says to its user: mistakes on the command line and in the application, and the
lines it logs as it starts and refuses upgrades."""

from __future__ import annotations

import re
import socket
import subprocess
import urllib.request
from pathlib import Path

import pytest
import websocket as wsclient

import rolo

from .test_twistd import LOOPBACK, twistd  # noqa: F401 (a fixture)
from .twistd import REPO, twistd_command


def failing(*args: str, cwd: Path = REPO) -> list[str]:
    """Run ``twistd -n rolo *args``, which must fail at once with status 1: the lines it printed."""
    result = subprocess.run(
        [twistd_command(), "-n", "--pidfile=", "rolo", *args], cwd=cwd, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 1, result
    return (result.stdout + result.stderr).strip().splitlines()


@pytest.mark.parametrize(
    "args, line",
    [
        ([], "rolo: --app is required: the application to serve, as package.module:attribute"),
        (["--app", "m:a", "--max-queue", "0"], "rolo: --max-queue must be at least 1, not 0"),
        (["--app", "m:a", "--close-timeout", "soon"], "rolo: --close-timeout must be a number, not 'soon'"),
        (["--app", "m:a", "--no-such-option"], "rolo: option --no-such-option not recognized"),
    ],
)
def test_a_command_line_mistake_is_one_line_with_a_hint_not_the_usage(args, line):
    assert failing(*args) == [f"{line} (twistd rolo --help lists the options)"]


def test_the_help_of_a_flag_that_turns_a_setting_off_says_what_it_turns_off():
    # it repeated the setting's own help: "--no-compression  Accept the permessage-deflate extension …"
    result = subprocess.run([twistd_command(), "rolo", "--help"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    usage = " ".join(result.stdout.split())  # the help of an option is wrapped over several lines
    assert "--no-compression Decline the permessage-deflate extension (RFC 7692) a client offers" in usage
    assert "--no-freeze-heap Leave every object to the garbage collector (no gc.freeze" in usage
    assert "--no-global-futex-hash Leave the process's futexes hashed in a small table of its own" in usage
    assert "Accept the permessage-deflate" not in usage and "out of later garbage collections" not in usage


APPLICATIONS = {
    "undefined.py": "from rolo import Router\n\nrouter = Router()\nrouter.add(handler)\n",
    "unclosed.py": "from rolo import Router\n\nrouter = Router(\n",
    "needs.py": "import rolo\nimport no_such_dependency\n",
    "factory.py": "def make():\n    return build()\n\n\ndef build():\n    raise RuntimeError('no gateway today')\n",
}


@pytest.fixture
def applications(tmp_path: Path) -> Path:
    for name, text in APPLICATIONS.items():
        (tmp_path / name).write_text(text)
    return tmp_path


@pytest.mark.parametrize(
    "app, lines",
    [
        (
            "undefined:router",
            [
                "rolo: --app 'undefined:router': cannot import undefined: NameError: name 'handler' is not defined",
                r'  File ".*/undefined\.py", line 4, in <module>',
                r"    router\.add\(handler\)",
            ],
        ),
        (
            "unclosed:router",
            [
                "rolo: --app 'unclosed:router': cannot import unclosed: SyntaxError: '\\(' was never closed",
                r'  File ".*/unclosed\.py", line 3',
                r"    router = Router\(",
            ],
        ),
        (
            "needs:router",
            [
                "rolo: --app 'needs:router': cannot import needs: ModuleNotFoundError: "
                "No module named 'no_such_dependency'",
                r'  File ".*/needs\.py", line 2, in <module>',
                "    import no_such_dependency",
            ],
        ),
        (
            "factory:make",
            [
                "rolo: --app 'factory:make': calling make\\(\\) raised RuntimeError: no gateway today",
                r'  File ".*/factory\.py", line 2, in make',
                r"    return build\(\)",
                r'  File ".*/factory\.py", line 6, in build',
                r"    raise RuntimeError\('no gateway today'\)",
            ],
        ),
    ],
)
def test_an_error_in_the_application_says_where(applications, app, lines):
    # the lines that point at the failing expression (^^^) differ from one Python release to the next
    printed = [line for line in failing("--app", app, cwd=applications) if not re.fullmatch(r" +\^+", line)]
    assert len(printed) == len(lines), printed
    for text, pattern in zip(printed, lines):
        assert re.fullmatch(pattern, text), (text, pattern)


@pytest.mark.parametrize(
    "app, line",
    [
        ("no_such_module:router", "ModuleNotFoundError: No module named 'no_such_module'"),
        ("no_such_package.app:router", "ModuleNotFoundError: No module named 'no_such_package'"),
    ],
)
def test_a_module_that_is_not_there_is_one_line(applications, app, line):
    printed = failing("--app", app, cwd=applications)
    assert len(printed) == 1 and line in printed[0], printed


def test_the_start_is_one_line_with_rolo_s_version_and_each_endpoint_another(twistd):  # noqa: F811
    server = twistd("--app", "tests.serving.apps:router", "--listen", LOOPBACK)
    with urllib.request.urlopen(f"http://127.0.0.1:{server.port()}/hello/ann", timeout=10) as response:
        assert response.read() == b"hello ann"  # the reactor runs: a signal now stops it gracefully
    assert server.stop() == 0
    started = [line for line in server.lines if "[rolo." in line and ("start" in line or "listening" in line)]
    assert len(started) == 2, server.output
    assert f"rolo {rolo.__version__} starting, on Twisted " in started[0]
    assert "rolo listening at 127.0.0.1:" in started[1]
    # Twisted's own line for the port ("TwistedGateway starting on 40561") is left out
    assert not any(" starting on " in line for line in server.lines), server.output


def test_a_refused_upgrade_is_one_line_with_its_path_as_text(twistd):  # noqa: F811
    server = twistd(
        "--app", "tests.serving.apps:router", "--listen", LOOPBACK, "--allowed-origin", "https://ok.example"
    )
    port = server.port()
    with pytest.raises(wsclient.WebSocketBadStatusException) as refused:
        wsclient.create_connection(f"ws://127.0.0.1:{port}/echo/eve", origin="https://evil.example", timeout=10)
    assert refused.value.status_code == 403
    server.wait_for(
        r"WebSocket refused /echo/eve from tcp4:127\.0\.0\.1:\d+ \(origin 'https://evil\.example'\): 403 "
        r"\(origin not allowed\)$"
    )
    # without an Origin header, the line says nothing of one ("origin None")
    with socket.create_connection(("127.0.0.1", port), timeout=10) as client:
        client.sendall(
            b"GET /echo/bob HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 8\r\n\r\n"
        )
        assert client.recv(65536).startswith(b"HTTP/1.1 426 ")
    server.wait_for(r"WebSocket refused /echo/bob from tcp4:127\.0\.0\.1:\d+: 426 \(WebSocket version 13 only\)$")
    assert server.stop() == 0
    assert sum("/echo/eve" in line for line in server.lines) == 1, server.output


def test_with_workers_the_supervisor_alone_says_that_rolo_starts(twistd):  # noqa: F811
    server = twistd("--app", "tests.serving.apps:router", "--listen", LOOPBACK, "--workers", "2")
    with urllib.request.urlopen(f"http://127.0.0.1:{server.port()}/hello/ann", timeout=10) as response:
        assert response.read() == b"hello ann"
    assert server.stop() == 0
    assert sum(f"rolo {rolo.__version__} starting" in line for line in server.lines) == 1, server.output
    assert not any(" starting on " in line for line in server.lines), server.output
