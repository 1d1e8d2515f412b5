"""A chat room: whatever one client says reaches everyone else in the room.

Run it with ``python examples/chat.py [PORT]``, then open two terminals::

    websocat 'ws://localhost:8000/rooms/lobby?name=alice'
    websocat 'ws://localhost:8000/rooms/lobby?name=bob'

and post to the room from HTTP::

    curl -d 'the server restarts at noon' http://localhost:8000/rooms/lobby

Each connection joins its room in a :class:`~rolo.websocket.Hub`; the handler of one connection and the
HTTP handler both push to the others through it, from their own threads.
"""

from _serve import serve

from rolo import Request, Router, route
from rolo.websocket import Hub, WebSocketRequest

hub = Hub()


@route("/rooms/<room>", methods=["WEBSOCKET"])
def chat(request: WebSocketRequest, room: str):
    name = request.args.get("name", "anonymous")
    with request.accept() as websocket:
        me = hub.add(websocket, room)
        hub.broadcast(room, f"{name} joined", exclude=[me])
        for message in websocket:
            hub.broadcast(room, f"{name}: {message}", exclude=[me])
    hub.broadcast(room, f"{name} left")


@route("/rooms/<room>", methods=["POST"])
def announce(request: Request, room: str):
    delivery = hub.broadcast(room, f"announcement: {request.get_data(as_text=True)}")
    return {"delivered": len(delivery.sent)}


router = Router()
router.add([chat, announce])

if __name__ == "__main__":
    serve(
        router,
        "chat rooms on ws://localhost:{port}/rooms/<room>?name=<name>",
        "post to a room: curl -d 'hello' http://localhost:{port}/rooms/<room>",
    )
