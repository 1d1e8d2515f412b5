"""Helpers for tests that drive blocking clients against a server on the test's reactor."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from twisted.internet import threads


def in_thread(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """Run a blocking client off the reactor thread, so the server keeps serving meanwhile."""
    return threads.deferToThread(fn, *args, **kwargs)


class Signal:
    """A threading.Event whose wait fails the test instead of hanging it."""

    def __init__(self) -> None:
        self._event = threading.Event()

    def set(self) -> None:
        self._event.set()

    def wait(self, timeout: float = 10.0) -> None:
        assert self._event.wait(timeout), "timed out waiting for a signal"
