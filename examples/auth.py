"""Authorization before the upgrade, from rolo's WebSocket documentation: reject, or accept and talk.

Run it with ``python examples/auth.py [PORT]``. Without the header, the upgrade is refused with the handler's
403 response::

    $ websocat ws://localhost:8000/
    websocat: WebSocketError: WebSocketError: Received unexpected status code (403 Forbidden)
    websocat: error running

With it, the handler accepts and talks (websocat's ``-H`` takes every argument after it as a header, so give
the header with ``=``, or after the URL)::

    $ websocat -E --linemode-strip-newlines -H='Authorization: Bearer letmein' ws://localhost:8000/
    hello world!
    hi
    you said: hi
"""

from _serve import serve

from rolo import Response, Router, route
from rolo.websocket import WebSocketRequest


def is_authorized(auth: str | None) -> bool:
    return auth == "Bearer letmein"  # a real application checks a token or a session here


@route("/", methods=["WEBSOCKET"])
def app(request: WebSocketRequest) -> None:
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
