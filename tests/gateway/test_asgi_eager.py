"""run_eagerly: a coroutine run at once until it first waits, and finished by a task only if it does.

This is how the ASGI side sends a WebSocket message: at once, in the loop's callback, without a task, unless
the server's ``send`` has to wait.
"""

from __future__ import annotations

import asyncio

import pytest

from rolo.gateway.asgi.eager import run_eagerly


async def steps(record: list, waits_on: asyncio.Future | None = None) -> None:
    record.append("start")
    if waits_on is not None:
        try:
            record.append(await waits_on)
        finally:
            record.append("cleaned up")
    record.append("end")


def test_a_coroutine_with_nothing_to_wait_for_runs_to_its_end_at_once():
    async def run() -> list:
        record: list = []
        assert run_eagerly(steps(record)) is None
        return record

    assert asyncio.run(run()) == ["start", "end"]


def test_a_coroutine_that_waits_runs_to_its_wait_and_a_task_finishes_it():
    async def run() -> list:
        record: list = []
        waits_on = asyncio.get_running_loop().create_future()
        rest = run_eagerly(steps(record, waits_on))
        assert rest is not None and record == ["start"]
        task = asyncio.ensure_future(rest)
        await asyncio.sleep(0)
        assert not task.done()  # still waiting, in the task now
        waits_on.set_result("resumed")
        await task
        return record

    assert asyncio.run(run()) == ["start", "resumed", "cleaned up", "end"]


def test_what_the_coroutine_raises_after_its_wait_the_task_raises():
    async def fails(waits_on: asyncio.Future) -> None:
        await waits_on
        raise ConnectionResetError("gone")

    async def run() -> None:
        waits_on = asyncio.get_running_loop().create_future()
        task = asyncio.ensure_future(run_eagerly(fails(waits_on)))
        waits_on.set_result(None)
        await task

    with pytest.raises(ConnectionResetError):
        asyncio.run(run())


def test_cancelling_the_task_cancels_the_coroutine_where_it_waits():
    async def run() -> list:
        record: list = []
        waits_on = asyncio.get_running_loop().create_future()
        task = asyncio.ensure_future(run_eagerly(steps(record, waits_on)))
        await asyncio.sleep(0)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert waits_on.cancelled()
        return record

    assert asyncio.run(run()) == ["start", "cleaned up"]


def test_a_coroutine_that_yields_to_the_loop_goes_on_in_the_task():
    async def yields(record: list) -> None:
        record.append("before")
        await asyncio.sleep(0)  # a bare yield, as StreamWriter.drain does on a closing transport
        record.append("after")

    async def run() -> list:
        record: list = []
        rest = run_eagerly(yields(record))
        assert rest is not None and record == ["before"]
        await asyncio.ensure_future(rest)
        return record

    assert asyncio.run(run()) == ["before", "after"]


def test_an_awaitable_that_is_not_a_coroutine_is_left_to_a_task():
    # an ASGI server's send may be a plain function returning a future, not a coroutine function
    async def run() -> str:
        future = asyncio.get_running_loop().create_future()
        rest = run_eagerly(future)
        assert rest is future
        future.set_result("sent")
        return await asyncio.ensure_future(rest)

    assert asyncio.run(run()) == "sent"
