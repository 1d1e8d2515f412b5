"""Hub.broadcast throughput, run by hand: ``.venv/bin/python bench/broadcast.py [CLIENTS] [MESSAGES]``.

Serves a room with run_in_thread, connects CLIENTS websockets clients (in this process, each reading in a
thread of its own), broadcasts MESSAGES small messages to the room from the main thread, and reports how
fast the broadcast calls return and how soon every client has every message.
"""

import queue
import sys
import threading
import time

from websockets.sync.client import connect

from rolo import Router, route
from rolo.serving.twisted import run_in_thread
from rolo.websocket import Hub, WebSocketRequest

hub = Hub()
joined: queue.Queue = queue.Queue()


@route("/room", methods=["WEBSOCKET"])
def room(request: WebSocketRequest):
    with request.accept() as websocket:
        hub.add(websocket, "room")
        joined.put(websocket)
        for _ in websocket:
            pass


def main() -> None:
    clients, messages = (int(arg) for arg in (sys.argv[1:] + ["100", "1000"])[:2])
    router = Router()
    router.add(room)
    with run_in_thread(router, "tcp:0:interface=127.0.0.1", max_connections=clients + 10) as server:
        url = f"ws://127.0.0.1:{server.port}/room"
        connections = [connect(url, compression=None) for _ in range(clients)]
        for _ in range(clients):
            joined.get(timeout=30)
        received: queue.Queue = queue.Queue()

        def read(connection) -> None:
            for _ in range(messages):
                connection.recv(timeout=60)
            received.put(connection)

        for connection in connections:
            threading.Thread(target=read, args=(connection,), daemon=True).start()
        started = time.perf_counter()
        slow = sum(len(hub.broadcast("room", f"message {i:06d} " + "x" * 40).slow) for i in range(messages))
        pushed = time.perf_counter()
        for _ in range(clients):
            received.get(timeout=120)
        delivered = time.perf_counter()
        print(
            f"{clients} clients, {messages} broadcasts: {(pushed - started) / messages * 1e3:.2f} ms per "
            f"broadcast call; every message at every client after {delivered - started:.2f} s "
            f"({clients * messages / (delivered - started):,.0f} messages/s); slow: {slow}"
        )
        for connection in connections:
            connection.close()


if __name__ == "__main__":
    main()
