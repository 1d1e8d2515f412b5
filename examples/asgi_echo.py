"""The echo server from rolo's WebSocket documentation, as an ASGI application for hypercorn or uvicorn.

``app`` is made at import time, as the servers' commands expect. From this directory::

    $ hypercorn asgi_echo:app --bind localhost:8000
    $ uvicorn asgi_echo:app --port 8000

or ``python examples/asgi_echo.py [PORT]``, which runs it under uvicorn. Then talk to it::

    $ websocat -E --linemode-strip-newlines ws://localhost:8000/echo/alice
    thanks for connecting alice
    exit
    echo: exit
    ok bye!
"""

import signal
import socket
import sys

from _serve import port_argument
from echo import router

from rolo.gateway import as_gateway
from rolo.gateway.asgi import AsgiGateway

# binds to no event loop until the server calls it; as_gateway answers what the router raises (404, 426 to a
# plain GET of /echo/<name>) as twistd rolo does
app = AsgiGateway(as_gateway(router))


def main() -> None:
    import uvicorn

    port = port_argument()
    # listening before the server starts, so the URL printed (port 0 picks a free one) is good at once; on the
    # loopback interface, as every example
    sock = socket.create_server(("127.0.0.1", port))
    print(f"echo server on ws://localhost:{sock.getsockname()[1]}/echo/<name>", flush=True)
    # uvicorn shuts down gracefully on SIGINT or SIGTERM, then raises the signal again: exit with success
    for stop in (signal.SIGINT, signal.SIGTERM):
        signal.signal(stop, lambda *_: sys.exit(0))
    uvicorn.Server(uvicorn.Config(app, log_level="info")).run(sockets=[sock])


if __name__ == "__main__":
    main()
