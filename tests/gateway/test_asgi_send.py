"""AsgiConnection.send: each message goes to the ASGI ``send`` at once, in the callback that hands it over;
one that ``send`` makes wait, and those behind it, go in order from a task, counted against the high-water
mark.

The ``send`` here is an ASGI server's side of the interface, as small as it gets: what it records is what a
server would frame and write.
"""

from __future__ import annotations

import asyncio
from typing import Any

from rolo.gateway.asgi.websocket import AsgiConnection
from rolo.websocket.adapter import BytesMessage, TextMessage
from rolo.websocket.threaded import ThreadedWebSocketAdapter


async def never_received() -> dict[str, Any]:
    raise AssertionError("nothing here reads")


def connection_for(send: Any, write_high_water: int = 64 * 1024) -> AsgiConnection:
    """An accepted connection over ``send``, with its adapter (on the running loop)."""
    connection = AsgiConnection({"path": "/"}, never_received, send, write_high_water, close_timeout=1.0)
    connection.adapter = ThreadedWebSocketAdapter(connection, asyncio.get_running_loop().call_soon_threadsafe)
    connection.accept(None, [])
    return connection


def test_a_send_with_nothing_to_wait_for_is_done_before_send_returns():
    async def run() -> list:
        sent: list = []

        async def send(event: dict[str, Any]) -> None:
            sent.append(event)

        connection = connection_for(send)
        connection.send([TextMessage("one"), BytesMessage(b"two")])
        return sent

    assert asyncio.run(run()) == [
        {"type": "websocket.accept", "subprotocol": None, "headers": []},
        {"type": "websocket.send", "text": "one"},
        {"type": "websocket.send", "bytes": b"two"},
    ]


def test_messages_behind_one_the_server_makes_wait_go_after_it_in_order():
    async def run() -> tuple[list, list, bool]:
        sent: list = []
        room = asyncio.get_running_loop().create_future()

        async def send(event: dict[str, Any]) -> None:
            if event.get("text") == "waits":
                await room  # the transport's buffer is full
            sent.append(event.get("text"))

        # a high-water mark below one event's size: the message that waits holds the handler's sends
        connection = connection_for(send, write_high_water=100)
        connection.send([TextMessage("waits"), TextMessage("behind")])
        connection.send([TextMessage("later")])
        before, paused = list(sent), connection.adapter._writing_paused
        room.set_result(None)
        while len(sent) < 4:
            await asyncio.sleep(0)
        return before, sent, paused and not connection.adapter._writing_paused

    before, sent, paused_then_resumed = asyncio.run(run())
    assert before == [None]  # the accept only
    assert sent == [None, "waits", "behind", "later"]
    assert paused_then_resumed


def test_a_send_that_returns_a_future_is_awaited_by_a_task():
    async def run() -> list:
        sent: list = []
        loop = asyncio.get_running_loop()

        def send(event: dict[str, Any]) -> asyncio.Future[None]:
            # a plain function that returns a future, as an ASGI send may be; done on the loop's next turn
            sent.append(event.get("text"))
            done = loop.create_future()
            loop.call_soon(done.set_result, None)
            return done

        connection = connection_for(send)
        connection.send([TextMessage("one"), TextMessage("two")])
        assert sent == [None]  # "one" waits for the accept's future, "two" for "one"'s
        while len(sent) < 3:
            await asyncio.sleep(0)
        return sent

    assert asyncio.run(run()) == [None, "one", "two"]


def test_a_send_that_raises_ends_the_connection():
    async def run() -> tuple[bool, bool]:
        async def send(event: dict[str, Any]) -> None:
            if event["type"] == "websocket.send":
                raise ConnectionResetError("the client is gone")

        connection = connection_for(send)
        connection.send([TextMessage("one")])
        return connection.gone, connection.finished

    assert asyncio.run(run()) == (True, True)
