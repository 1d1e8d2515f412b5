"""The echo server from rolo's WebSocket documentation.

Run it with ``./dev echo`` (or ``python examples/echo.py [PORT]``), then talk to it. It greets you by the name
in the URL, echoes every line you type, and says goodbye to ``exit``. websocat sends each line with its
newline unless told to strip it (``--linemode-strip-newlines``), and the handler compares ``line ==
"exit"``; ``-E`` makes websocat exit when the server closes, rather than wait for the end of your input::

    $ websocat -E --linemode-strip-newlines ws://localhost:8000/echo/alice
    thanks for connecting alice
    hello
    echo: hello
    exit
    echo: exit
    ok bye!
"""

from _serve import serve

from rolo import Router, route
from rolo.websocket import WebSocketRequest


@route("/echo/<name>", methods=["WEBSOCKET"])
def handler(request: WebSocketRequest, name: str) -> None:
    with request.accept() as websocket:
        websocket.send(f"thanks for connecting {name}")
        for line in websocket:
            websocket.send(f"echo: {line}")
            if line == "exit":
                websocket.send("ok bye!")
                return


router = Router()
router.add(handler)

if __name__ == "__main__":
    serve(router, "echo server on ws://localhost:{port}/echo/<name>")
