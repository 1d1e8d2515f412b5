"""Eager awaiting: a coroutine run at once, in the loop's current callback, until it first has to wait.

Awaiting a coroutine from a callback takes a task, and a task takes a turn of the loop before it starts.
An ASGI server's ``send`` usually has nothing to wait for (it frames the message and writes it to its
transport), so for the many small sends of a WebSocket that turn, and the task, are pure cost. With
:func:`run_eagerly` the coroutine runs in the caller's callback; only one that does wait (its transport's
buffer is full) needs a task to finish it.
"""

from __future__ import annotations

import types
from collections.abc import Awaitable, Coroutine, Generator
from typing import Any

__all__ = ["RETURNED", "resume", "run_eagerly"]

RETURNED = object()
"""What stepping a coroutine gives once it has returned (it yields anything else, ``None`` included):
``next(coroutine.__await__(), RETURNED)`` is the first step :func:`run_eagerly` takes, for a caller that
takes it itself, a call fewer per coroutine."""


def run_eagerly(coroutine: Awaitable[None]) -> Awaitable[None] | None:
    """Run ``coroutine`` now, outside any task, until it returns or first waits.

    Call it on the loop thread. The coroutine must not need a task until it first waits (nothing in it may
    call ``asyncio.current_task()`` before that); what it awaits may be futures of the running loop or a
    bare yield, as in any asyncio coroutine. An awaitable that is not a coroutine (a future, say: what an
    ASGI ``send`` may return as well) is returned as it is, for a task to await.

    :returns: ``None`` if it returned; otherwise an awaitable that goes on with it from where it waits, for
        a task to await (raising what the coroutine raises)
    :raises Exception: whatever the coroutine raised before it first waited
    """
    # a native coroutine, what an ``async def`` send returns, is known by its type: no ABC check per message
    if type(coroutine) is not types.CoroutineType and not isinstance(coroutine, Coroutine):
        return coroutine
    # stepped as an iterator with a default: a coroutine that returns (most sends) makes no StopIteration
    # to raise and catch, where ``coroutine.send(None)`` does: some 800 instructions less per message sent
    waiting = next(coroutine.__await__(), RETURNED)
    if waiting is RETURNED:
        return None
    return resume(coroutine, waiting)


@types.coroutine
def resume(coroutine: Coroutine[Any, Any, None], waiting: Any) -> Generator[Any, Any, None]:
    """The rest of a native ``coroutine`` that waits on ``waiting`` after its first step (see
    :data:`RETURNED`), for a task to await: it goes on from where it waits, and raises what it raises."""
    # what ``await coroutine`` does (PEP 380's ``yield from``), taken up where the coroutine first waited:
    # what it waits on goes up to the task, and what the task sends or throws goes down to it
    while True:
        try:
            sent = yield waiting
        except GeneratorExit:
            coroutine.close()
            raise
        except BaseException as error:
            try:
                waiting = coroutine.throw(error)
            except StopIteration:
                return
        else:
            try:
                waiting = coroutine.send(sent)
            except StopIteration:
                return
