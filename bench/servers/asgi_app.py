"""A bare ASGI application (echo and hello, no framework), and running any ASGI application under uvicorn
or hypercorn with the benchmark's settings."""

from __future__ import annotations

import asyncio

from bench.servers import BACKLOG, HELLO, MAX_MESSAGE_SIZE


async def app(scope, receive, send) -> None:
    if scope["type"] == "websocket":
        await receive()  # websocket.connect
        await send({"type": "websocket.accept"})
        while (event := await receive())["type"] == "websocket.receive":
            if event.get("text") is not None:
                await send({"type": "websocket.send", "text": event["text"]})
            else:
                await send({"type": "websocket.send", "bytes": event["bytes"]})
    elif scope["type"] == "http":
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-type", b"text/plain"), (b"content-length", b"%d" % len(HELLO))],
            }
        )
        await send({"type": "http.response.body", "body": HELLO})
    elif scope["type"] == "lifespan":
        while (event := await receive())["type"] != "lifespan.shutdown":
            await send({"type": "lifespan.startup.complete"})
        await send({"type": "lifespan.shutdown.complete"})


def run_uvicorn(application, port: int, deflate: bool) -> None:
    """uvicorn as installed by ``uvicorn[standard]``: uvloop, httptools, and websockets for WebSockets."""
    import uvicorn

    config = uvicorn.Config(
        application,
        host="127.0.0.1",
        port=port,
        backlog=BACKLOG,
        log_level="warning",
        access_log=False,
        ws_max_size=MAX_MESSAGE_SIZE,
        ws_ping_interval=None,
        ws_ping_timeout=None,
        ws_per_message_deflate=deflate,
    )
    uvicorn.Server(config).run()


def run_hypercorn(application, port: int, deflate: bool) -> None:
    """hypercorn on asyncio (wsproto for WebSockets; it accepts permessage-deflate whenever a client
    offers it, so ``deflate`` changes nothing)."""
    from hypercorn.asyncio import serve
    from hypercorn.config import Config

    config = Config()
    config.bind = [f"127.0.0.1:{port}"]
    config.backlog = BACKLOG
    config.loglevel = "WARNING"
    config.accesslog = None
    config.websocket_max_message_size = MAX_MESSAGE_SIZE
    config.websocket_ping_interval = None
    asyncio.run(serve(application, config))


def serve_uvicorn(port: int, deflate: bool) -> None:
    run_uvicorn(app, port, deflate)


def serve_hypercorn(port: int, deflate: bool) -> None:
    run_hypercorn(app, port, deflate)
