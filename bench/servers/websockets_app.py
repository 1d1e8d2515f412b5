"""websockets' asyncio server; the room is sent to with websockets' ``broadcast()``."""

from __future__ import annotations

import asyncio

from websockets.asyncio.server import ServerConnection, broadcast
from websockets.asyncio.server import serve as websockets_serve
from websockets.exceptions import ConnectionClosed

from bench.servers import BACKLOG, MAX_MESSAGE_SIZE

ROOM: set[ServerConnection] = set()


async def handler(websocket: ServerConnection) -> None:
    path = websocket.request.path
    if path == "/echo":
        try:
            async for message in websocket:
                await websocket.send(message)
        except ConnectionClosed:
            pass  # closed by the client with replies still on their way
    elif path == "/room":
        ROOM.add(websocket)
        try:
            await websocket.send("joined")
            await websocket.wait_closed()
        finally:
            ROOM.discard(websocket)
    elif path == "/publish":
        async for message in websocket:
            broadcast(ROOM, message)


async def main(port: int, deflate: bool) -> None:
    async with websockets_serve(
        handler,
        "127.0.0.1",
        port,
        compression="deflate" if deflate else None,
        max_size=MAX_MESSAGE_SIZE,
        ping_interval=None,
        backlog=BACKLOG,
    ) as server:
        await server.serve_forever()


def serve(port: int, deflate: bool) -> None:
    asyncio.run(main(port, deflate))
