"""A chat room: whatever one client says reaches everyone else in the room.

Run it with ``python examples/chat.py [PORT]``, then open http://localhost:8000/rooms/lobby?name=alice in a
browser, and http://localhost:8000/rooms/lobby?name=bob in another tab: the page (``examples/chat.html``,
plain JavaScript) joins the room of its URL over a WebSocket. Or join from two terminals, one after the
other::

    $ websocat --linemode-strip-newlines 'ws://localhost:8000/rooms/lobby?name=alice'
    welcome to lobby, alice

    $ websocat --linemode-strip-newlines 'ws://localhost:8000/rooms/lobby?name=bob'
    welcome to lobby, bob

and post to the room from HTTP::

    $ curl -d 'the server restarts at noon' http://localhost:8000/rooms/lobby
    {"delivered": 2}

Each connection joins its room in a :class:`~rolo.websocket.Hub`; the handler of one connection and the
HTTP handler both push to the others through it, from their own threads.
"""

from pathlib import Path

from _serve import serve

from rolo import Request, Response, Router, route
from rolo.websocket import Hub, WebSocketRequest

hub = Hub()
PAGE = (Path(__file__).parent / "chat.html").read_bytes()


@route("/rooms/<room>", methods=["GET"])
def page(request: Request, room: str) -> Response:
    """The room's page for browsers, which joins the room of its own URL."""
    return Response(PAGE, mimetype="text/html")


@route("/rooms/<room>", methods=["WEBSOCKET"])
def chat(request: WebSocketRequest, room: str) -> None:
    name = request.args.get("name", "anonymous")
    with request.accept() as websocket:
        me = hub.add(websocket, room)
        hub.broadcast(room, f"{name} joined", exclude=[me])
        websocket.send(f"welcome to {room}, {name}")  # once this arrives, the room knows the client is in
        for message in websocket:
            hub.broadcast(room, f"{name}: {message}", exclude=[me])
    hub.broadcast(room, f"{name} left")


@route("/rooms/<room>", methods=["POST"])
def announce(request: Request, room: str) -> dict[str, int]:
    delivery = hub.broadcast(room, f"announcement: {request.get_data(as_text=True)}")
    return {"delivered": len(delivery.sent)}


router = Router()
router.add([page, chat, announce])

if __name__ == "__main__":
    serve(
        router,
        "chat rooms on ws://localhost:{port}/rooms/<room>?name=<name>",
        "in a browser: http://localhost:{port}/rooms/lobby?name=alice",
        "post to a room: curl -d 'hello' http://localhost:{port}/rooms/<room>",
    )
