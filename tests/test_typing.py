"""Plain user code type-checks under ``mypy --strict``: the README's echo example, as written.

A message is a ``str`` or ``bytes`` (:data:`rolo.websocket.websocket.Received`); typed ``str | bytes``, mypy
rejected the example's ``f"echo: {line}"``. The example is checked as a user's project would check it:
``--strict`` and nothing else of rolo's configuration, with rolo followed silently as an installed package.
"""

from __future__ import annotations

import subprocess
import sys

from tests.documented import REPO
from tests.test_docs import code_blocks


def mypy_strict(source: str, directory) -> subprocess.CompletedProcess[str]:
    """Run ``mypy --strict`` on ``source``, written to ``user.py`` in ``directory``, outside the checkout."""
    (directory / "user.py").write_text(source)
    (directory / "mypy.ini").write_text("[mypy]\n")  # none of rolo's settings
    return subprocess.run(
        [sys.executable, "-m", "mypy", "--strict", "--follow-imports=silent", "--config-file=mypy.ini", "user.py"],
        cwd=directory,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_the_readmes_echo_example_passes_mypy_strict(tmp_path):
    (example,) = [block for block in code_blocks(REPO / "README.rst") if 'f"echo: {line}"' in block]
    checked = mypy_strict(example, tmp_path)
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_code_that_needs_bytes_must_narrow_first(tmp_path):
    # the typing is lenient for text only: a message may be text, so using it as bytes needs a check
    source = (
        "from rolo.websocket import WebSocket\n"
        "def size(websocket: WebSocket) -> int:\n"
        "    data: bytes = websocket.receive()\n"
        "    return len(data)\n"
        "def checked(websocket: WebSocket) -> int:\n"
        "    data = websocket.receive()\n"
        "    return len(data) if isinstance(data, bytes) else 0\n"
    )
    checked = mypy_strict(source, tmp_path)
    assert checked.returncode == 1, checked.stdout
    (error,) = [line for line in checked.stdout.splitlines() if ": error:" in line]
    assert error.startswith("user.py:3: error: Incompatible types in assignment"), error
