"""Fixtures: a real Redis server for each test."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.cluster.redis_server import RedisServer


@pytest.fixture
def redis_server() -> Iterator[RedisServer]:
    # a short directory of its own: a unix socket's path has at most 107 bytes, and pytest's are long
    directory = Path(tempfile.mkdtemp(prefix="rolo-redis-"))
    server = RedisServer(directory)
    server.start()
    yield server
    server.stop()
    shutil.rmtree(directory, ignore_errors=True)
