"""A Flask (werkzeug) application with the hello route, served by gunicorn's threaded worker: the
blocking-handlers-in-a-pool design that rolo's HTTP side shares."""

from __future__ import annotations

import os
import sys

from flask import Flask

from bench.servers import BACKLOG, HELLO

app = Flask(__name__)


@app.get("/hello")
def hello():
    return HELLO, 200, {"content-type": "text/plain"}


def serve(port: int, deflate: bool) -> None:
    """Replace this process with gunicorn: one worker, gthread, 32 threads (its children are measured)."""
    command = [sys.executable, "-m", "gunicorn", "--worker-class", "gthread", "--workers", "1"]
    command += ["--threads", "32", "--bind", f"127.0.0.1:{port}", "--backlog", str(BACKLOG)]
    command += ["--log-level", "warning", "bench.servers.flask_app:app"]
    os.execv(sys.executable, command)
