"""Where plain HTTP under ``AsgiGateway`` spends its CPU, in process: ``python -m bench.asgi_http``.

No socket, no ASGI server: a stand-in server on the event loop (uvloop where installed, as uvicorn runs)
calls the application with the scope uvicorn gives ``GET /hello`` (one ``Host`` header), ``CONNECTIONS``
requests at once, each calling it again as soon as its response's last message is sent, as wrk's
keep-alive connections do. It prints:

- each step of a request timed alone, hot (the best of several runs of many calls): making its request
  (``request_for``, which builds no WSGI environment), ``Gateway.serve`` with the benchmark's route,
  ``answer`` and closing the response, and the handoff to the pool and back (a job through a
  :class:`~rolo.threads.HandlerPool` that does nothing and hands its result back through a
  :class:`~rolo.websocket.turns.BatchedCalls` to a future the loop awaits, ``CONNECTIONS`` at once, as
  the application does);
- the whole application under the stand-in server: CPU per request of the process and of the loop's
  thread (the rest is the pool's threads), for rolo's and for the bare application of
  ``bench/servers/asgi_app.py``.

Steps run together cost more than alone (caches, the collector, the threads' turns): the whole is the
figure to compare, the steps say where to look. ``./dev bench --only http`` adds what the server does
(uvicorn's parsing and task, the sockets), which both applications pay.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import time
import timeit
from collections.abc import Awaitable, Callable
from functools import partial
from typing import Any

from bench.servers import asgi_app, rolo_app
from rolo.gateway.answer import answer
from rolo.gateway.asgi import AsgiGateway
from rolo.gateway.asgi.environ import request_for
from rolo.request import Request, forget_request
from rolo.threads import HandlerPool
from rolo.websocket.turns import BatchedCalls

CONNECTIONS = 50
"""Requests at once, as ``bench/wrk.py``'s connections."""

SCOPE = {
    "type": "http",
    "asgi": {"version": "3.0", "spec_version": "2.3"},
    "http_version": "1.1",
    "server": ("127.0.0.1", 8000),
    "client": ("127.0.0.1", 40000),
    "scheme": "http",
    "method": "GET",
    "root_path": "",
    "path": "/hello",
    "raw_path": b"/hello",
    "query_string": b"",
    "headers": [(b"host", b"127.0.0.1:8000")],
    "state": {},
}
"""What uvicorn passes for wrk's ``GET /hello``."""


def best(call: Callable[[], object], number: int = 5_000, repeat: int = 9) -> float:
    """The fewest µs one call of ``call`` took, over ``repeat`` runs of ``number`` calls."""
    return min(timeit.repeat(call, number=number, repeat=repeat)) / number * 1e6


def steps() -> list[tuple[str, float]]:
    """Each step of a request, timed alone: (what, µs)."""
    gateway = rolo_app.gateway()

    def request() -> Request:
        return request_for(SCOPE, io.BytesIO())

    def serve() -> None:
        gateway.serve(request())

    def respond() -> None:
        made = request()
        response = gateway.serve(made)
        answer(response, made)
        forget_request(made)
        response.close()

    timed = [("request_for", best(request))]
    served = best(serve)
    timed.append(("Gateway.serve", served - timed[-1][1]))
    timed.append(("answer, close", best(respond) - served))
    return timed


def _run(main: Callable[[], Awaitable[None]]) -> None:
    try:
        import uvloop
    except ImportError:
        asyncio.run(main())
    else:
        uvloop.run(main())


def handoff(rounds: int) -> float:
    """CPU µs per job of a job that does nothing, handed to a pool's thread and its result back to the loop,
    ``CONNECTIONS`` at once."""
    pool = HandlerPool("bench-http", 32, max_waiting=CONNECTIONS)
    spent = 0.0

    def settle(done: asyncio.Future[None]) -> None:
        if not done.done():
            done.set_result(None)

    async def one(loop: asyncio.AbstractEventLoop, calls: BatchedCalls) -> None:
        done = loop.create_future()
        pool.submit(lambda: calls(partial(settle, done)))
        await done

    async def client(loop: asyncio.AbstractEventLoop, calls: BatchedCalls, count: int) -> None:
        for _ in range(count):
            await one(loop, calls)

    async def main() -> None:
        nonlocal spent
        loop = asyncio.get_running_loop()
        calls = BatchedCalls(loop.call_soon_threadsafe)
        await asyncio.gather(*(client(loop, calls, 100) for _ in range(CONNECTIONS)))
        started = time.process_time()
        await asyncio.gather(*(client(loop, calls, rounds // CONNECTIONS) for _ in range(CONNECTIONS)))
        spent = time.process_time() - started

    _run(main)
    pool.stop()
    return spent / (rounds // CONNECTIONS * CONNECTIONS) * 1e6


def whole(app: Callable[..., Awaitable[None]], rounds: int) -> tuple[float, float]:
    """CPU µs per request of the process and of the loop's thread, ``app`` under the stand-in server."""
    answered = 0
    spent = (0.0, 0.0)

    async def receive() -> dict[str, Any]:
        await asyncio.sleep(3600)  # the client stays: nothing to receive
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        nonlocal answered
        if message["type"] == "http.response.body" and not message.get("more_body", False):
            answered += 1

    async def client(count: int) -> None:
        for _ in range(count):
            await app(dict(SCOPE), receive, send)

    async def main() -> None:
        nonlocal answered, spent
        await asyncio.gather(*(client(100) for _ in range(CONNECTIONS)))
        answered = 0
        process, thread = time.process_time(), time.thread_time()
        await asyncio.gather(*(client(rounds // CONNECTIONS) for _ in range(CONNECTIONS)))
        spent = (time.process_time() - process, time.thread_time() - thread)

    _run(main)
    return spent[0] / answered * 1e6, spent[1] / answered * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.asgi_http", description=__doc__)
    parser.add_argument("--requests", type=int, default=30_000, help="requests measured (after 5,000 to warm up)")
    args = parser.parse_args()
    print("each step alone, hot (µs)")
    for what, micros in steps():
        print(f"  {what:34s} {micros:7.1f}")
    print(f"  {'handoff: pool, future, loop wake':34s} {handoff(args.requests):7.1f}")
    print(f"the whole application, {CONNECTIONS} requests at once (CPU µs per request)")
    gateway = AsgiGateway(rolo_app.gateway())
    for name, app in (("rolo (AsgiGateway)", gateway), ("bare ASGI app", asgi_app.app)):
        process, loop = whole(app, args.requests)
        pool = max(0.0, process - loop)
        print(f"  {name:34s} {process:7.1f}   the loop's thread {loop:6.1f}, the pool's {pool:6.1f}")
    gateway.http.shutdown()


if __name__ == "__main__":
    main()
