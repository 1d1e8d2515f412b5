"""aiohttp's web server: a WebSocket echo and the hello route."""

from __future__ import annotations

from aiohttp import WSMsgType, web

from bench.servers import BACKLOG, HELLO, MAX_MESSAGE_SIZE


def application(deflate: bool) -> web.Application:
    async def echo(request: web.Request) -> web.WebSocketResponse:
        websocket = web.WebSocketResponse(compress=deflate, max_msg_size=MAX_MESSAGE_SIZE, heartbeat=None)
        await websocket.prepare(request)
        async for message in websocket:
            if message.type == WSMsgType.TEXT:
                await websocket.send_str(message.data)
            elif message.type == WSMsgType.BINARY:
                await websocket.send_bytes(message.data)
        return websocket

    async def hello(request: web.Request) -> web.Response:
        return web.Response(body=HELLO, content_type="text/plain")

    app = web.Application()
    app.add_routes([web.get("/echo", echo), web.get("/hello", hello)])
    return app


def serve(port: int, deflate: bool) -> None:
    web.run_app(
        application(deflate), host="127.0.0.1", port=port, backlog=BACKLOG, access_log=None, print=None
    )
