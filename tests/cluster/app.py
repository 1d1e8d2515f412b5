"""The application the cluster tests serve from several processes (``twistd rolo --broker URL``).

Its Hub uses the broker that ``--broker`` names, with timings short enough for tests; ``default`` is a Hub
made as an application would make it, ``Hub()``, to show that ``--broker`` reaches it.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import asdict

from rolo import Request, Router, route
from rolo.websocket import Hub, RedisBroker, WebSocketRequest

hub = Hub(broker=RedisBroker(os.environ["ROLO_BROKER"], heartbeat=0.2, ttl=1.0, timeout=0.5), name="tests")
default = Hub()


@route("/whoami")
def whoami(request: Request):
    return {"pid": os.getpid(), "node": hub.node, "default_broker": default.broker and default.broker.url}


@route("/rooms/<room>", methods=["WEBSOCKET"])
def join(request: WebSocketRequest, room: str):
    with request.accept() as websocket:
        connection_id = hub.add(websocket, room)  # returns once every process can reach it
        websocket.send(json.dumps({"id": connection_id, "pid": os.getpid()}))
        for _ in websocket:
            pass


@route("/rooms/<room>", methods=["POST"])
def broadcast(request: Request, room: str):
    exclude = request.args.getlist("exclude")
    return asdict(hub.broadcast(room, request.get_data(as_text=True), exclude=exclude))


@route("/connections/<connection_id>", methods=["POST"])
def send(request: Request, connection_id: str):
    return asdict(hub.send(connection_id, request.get_data(as_text=True)))


@route("/rooms/<room>/members")
def members(request: Request, room: str):
    return {"members": sorted(hub.members(room))}


@route("/rooms/<room>/stream", methods=["POST"])
def stream(request: Request, room: str):
    """Broadcast ``count`` messages, "0" to "count-1", one every ``interval`` seconds (0: as fast as it
    goes); answer which were reported failed, and the longest any broadcast took (seconds)."""
    count, interval = int(request.args["count"]), float(request.args.get("interval", 0))
    failed, longest = [], 0.0
    start = time.monotonic()
    for n in range(count):
        if interval:
            time.sleep(max(0.0, start + n * interval - time.monotonic()))  # pacing the load, not waiting
        began = time.monotonic()
        if hub.broadcast(room, str(n)).failed:
            failed.append(n)
        longest = max(longest, time.monotonic() - began)
    return json.dumps({"failed": failed, "longest": longest})


router = Router()
for endpoint in (whoami, join, broadcast, send, members, stream):
    router.add(endpoint)
