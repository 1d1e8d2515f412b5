"""A real ``redis-server`` on a unix socket of its own, for one test: started, killed, started again."""

from __future__ import annotations

import queue
import shutil
import signal
import subprocess
import threading
import time
from pathlib import Path


class RedisServer:
    """``redis-server`` listening on ``directory/redis.sock`` only, with nothing saved to disk, and
    keyspace events for expired keys published (``__keyevent@0__:expired``)."""

    def __init__(self, directory: Path) -> None:
        self.socket = directory / "redis.sock"
        self.url = f"unix://{self.socket}"
        self.process: subprocess.Popen[str] | None = None
        self.ready_at = 0.0

    def start(self, timeout: float = 10.0) -> None:
        """Start the server and wait for its "ready to accept connections" line; ``ready_at`` is when the
        line was read (``time.monotonic()``)."""
        command = shutil.which("redis-server")
        assert command, "redis-server is not installed (./dev test installs it)"
        self.process = subprocess.Popen(
            [command, "--port", "0", "--unixsocket", str(self.socket), "--save", "", "--appendonly", "no",
             "--notify-keyspace-events", "Ex"],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        ready: queue.Queue[bool] = queue.Queue()
        threading.Thread(target=self._read, args=(self.process, ready), daemon=True).start()
        try:
            assert ready.get(timeout=timeout), "redis-server exited before it was ready"
        except queue.Empty:
            raise AssertionError("redis-server was not ready in time") from None
        self.ready_at = time.monotonic()

    @staticmethod
    def _read(process: subprocess.Popen[str], ready: queue.Queue[bool]) -> None:
        assert process.stdout is not None
        for line in process.stdout:
            if "ready to accept connections" in line.lower():
                ready.put(True)
        ready.put(False)

    def kill(self) -> None:
        """SIGKILL: no goodbye to the clients, nothing flushed."""
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(10)

    def pause(self) -> None:
        """SIGSTOP: connections stay open, and nothing answers."""
        assert self.process is not None
        self.process.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGCONT)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.resume()
            self.kill()
