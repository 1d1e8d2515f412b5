"""Running ``twistd -n rolo`` as a real process and watching its log."""

from __future__ import annotations

import os
import queue
import re
import shutil
import signal
import subprocess
import sys
import threading
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def twistd_command() -> str:
    found = Path(sys.executable).parent / "twistd"
    return str(found) if found.exists() else shutil.which("twistd") or "twistd"


class Twistd:
    """A ``twistd -n rolo …`` process (or another ``command``) run from the repository, its output (stdout
    and stderr) read line by line as it comes.

    It starts with SIGINT's default action, as a command typed at a terminal does (so that Ctrl-C, or
    :meth:`stop` with SIGINT, stops it), whatever this process inherited: a shell without job control (a
    script, a CI runner) starts a command it runs in the background (``./dev test &``) with SIGINT
    ignored, and so every process that command starts. Twisted then leaves SIGINT ignored.
    """

    def __init__(self, *args: str, command: list[str] | None = None, env: dict[str, str] | None = None) -> None:
        env = dict(os.environ, PYTHONUNBUFFERED="1", **(env or {}))
        self.process = subprocess.Popen(
            # env (GNU coreutils) resets SIGINT, then executes the command in its place (the same pid)
            ["env", "--default-signal=INT", *(command or [twistd_command(), "-n", "--pidfile=", "rolo"]), *args],
            cwd=REPO,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self.lines: list[str] = []
        self._new_lines: queue.Queue[str | None] = queue.Queue()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.append(line.rstrip("\n"))
            self._new_lines.put(line)
        self._new_lines.put(None)

    def wait_for(self, pattern: str, timeout: float = 10.0) -> re.Match[str]:
        """The first match of ``pattern`` in a line logged from now on (or earlier, if not yet seen)."""
        for line in self.lines:
            if match := re.search(pattern, line):
                return match
        while True:
            try:
                line = self._new_lines.get(timeout=timeout)
            except queue.Empty:
                raise AssertionError(f"no line matching {pattern!r} in:\n{self.output}") from None
            if line is None:
                raise AssertionError(f"twistd exited with no line matching {pattern!r}:\n{self.output}")
            if match := re.search(pattern, line):
                return match

    def port(self) -> int:
        """The TCP port of the first endpoint, from its "rolo listening at" line."""
        return int(self.wait_for(r"rolo listening at 127\.0\.0\.1:(\d+)").group(1))

    def stop(self, signum: int = signal.SIGTERM, timeout: float = 10.0) -> int:
        """Send ``signum`` and return the exit status, which must come within ``timeout`` seconds."""
        self.process.send_signal(signum)
        return self.wait(timeout)

    def wait(self, timeout: float = 10.0) -> int:
        status = self.process.wait(timeout)
        self._reader.join(timeout)
        return status

    @property
    def output(self) -> str:
        return "\n".join(self.lines)

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()
