"""Keeping a server's long-lived objects out of the garbage collector's way.

A server imports its application, its framework and their libraries before it serves: tens of thousands
of objects that live as long as the process. CPython's collector of the oldest generation walks every one
of them each time it runs, which it does every few thousand requests under load (the objects of the
requests in flight at each younger collection count towards it): some 20 ms of CPU during which no
request moves, the slowest of every hundred requests waiting for it. :func:`freeze_startup_heap` moves
them out of the collector's view once, as the server starts; requests are collected as before.

The objects of open connections live long too, and cannot be frozen: they are freed when their
connection closes, often in reference cycles only a collection frees. A full collection walks them
all (0.6-0.9 s with 10,000 WebSockets open under an ASGI server), and CPython starts one once the
objects that survived two younger collections since the last grew by a quarter of the oldest generation.
A burst of messages on many connections at once keeps thousands of short-lived objects alive long
enough to survive them. :func:`set_young_threshold` makes younger collections rarer, so that those die
first, by reference counting, and fewer full collections are set off.
"""

from __future__ import annotations

import gc
import threading

__all__ = ["MAX_YOUNG_THRESHOLD", "freeze_startup_heap", "set_young_threshold"]

MAX_YOUNG_THRESHOLD = 2**31 - 1
"""The largest threshold :func:`gc.set_threshold` takes (a C ``int``)."""

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


def set_young_threshold(threshold: int) -> None:
    """Set the youngest generation's collection threshold of the whole process (the first value of
    :func:`gc.set_threshold`; the older generations' stay as they are): a collection runs once the
    objects the collector tracks (containers) allocated minus those freed since the last exceed it. A
    larger one means rarer, longer young collections, and fewer objects that only lived through a burst
    reaching the oldest generation.

    :param threshold: tracked allocations, from 1 to :data:`MAX_YOUNG_THRESHOLD`
    :raises ValueError: for a threshold out of that range
    :raises TypeError: for one that is not an integer
    """
    if not 1 <= threshold <= MAX_YOUNG_THRESHOLD:
        raise ValueError(f"the young threshold must be from 1 to {MAX_YOUNG_THRESHOLD}, not {threshold}")
    _, older, oldest = gc.get_threshold()
    gc.set_threshold(threshold, older, oldest)
