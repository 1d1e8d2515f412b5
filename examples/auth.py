"""Authorization before the upgrade, from rolo's WebSocket documentation: reject, or accept and talk.

Run it with ``python examples/auth.py [PORT]``, then::

    websocat ws://localhost:8000/                                         # 403 no dice
    websocat -H 'Authorization: Bearer letmein' ws://localhost:8000/      # hello world!
"""

from _serve import serve

from rolo import Response, Router, route
from rolo.websocket import WebSocketRequest


def is_authorized(auth: str | None) -> bool:
    return auth == "Bearer letmein"  # a real application checks a token or a session here


@route("/", methods=["WEBSOCKET"])
def app(request: WebSocketRequest):
    # example: do authorization first
    auth = request.headers.get("Authorization")
    if not is_authorized(auth):
        request.reject(Response("no dice", 403))
        return
    # then continue working with the websocket
    with request.accept() as websocket:
        websocket.send("hello world!")
        data = websocket.receive()
        websocket.send(f"you said: {data}")


router = Router()
router.add(app)

if __name__ == "__main__":
    serve(router, "authorized clients only, on ws://localhost:{port}/ (Authorization: Bearer letmein)")
