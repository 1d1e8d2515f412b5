"""picows' server (Cython, on asyncio): the fastest WebSocket echo in Python, as a reference.

It has no permessage-deflate and does not validate UTF-8; each frame is echoed as it comes (the load
generator sends unfragmented messages).
"""

from __future__ import annotations

import asyncio

from picows import WSFrame, WSListener, WSMsgType, WSTransport, ws_create_server

from bench.servers import BACKLOG, MAX_MESSAGE_SIZE


class Echo(WSListener):
    def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
        if frame.msg_type == WSMsgType.CLOSE:
            transport.send_close(frame.get_close_code())
            transport.disconnect()
        elif frame.msg_type in (WSMsgType.TEXT, WSMsgType.BINARY):
            transport.send(frame.msg_type, frame.get_payload_as_memoryview())


async def main(port: int) -> None:
    server = await ws_create_server(
        lambda request: Echo(), "127.0.0.1", port, max_frame_size=MAX_MESSAGE_SIZE, backlog=BACKLOG
    )
    await server.serve_forever()


def serve(port: int, deflate: bool) -> None:
    asyncio.run(main(port))
