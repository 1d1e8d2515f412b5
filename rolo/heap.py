"""Keeping the objects a server made before it started out of the garbage collector's way.

A server imports its application, its framework and their libraries before it serves: tens of thousands
of objects that live as long as the process. CPython's collector of the oldest generation walks every one
of them each time it runs, which it does every few thousand requests under load (the objects of the
requests in flight at each younger collection count towards it): some 20 ms of CPU during which no
request moves, the slowest of every hundred requests waiting for it. :func:`freeze_startup_heap` moves
them out of the collector's view once, as the server starts; requests are collected as before.
"""

from __future__ import annotations

import gc
import threading

__all__ = ["freeze_startup_heap"]

_lock = threading.Lock()
_frozen = False


def freeze_startup_heap() -> None:
    """Collect what is garbage now, then leave every object still alive out of later collections
    (:func:`gc.freeze`). Once per process: later calls do nothing. An object frozen this way that later
    ends up in an unreachable reference cycle is not freed; startup objects (modules, classes,
    functions, settings) rarely do."""
    global _frozen
    with _lock:
        if _frozen:
            return
        _frozen = True
    gc.collect()
    gc.freeze()
